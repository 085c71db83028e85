"""`smshub calendars auth ...`: sign in to Google or Microsoft 365 once and print (or store)
the refresh token a calendar needs. The sign-in itself (a browser or a device code) is the
connector's; this module finds it through the calendar source's entry point, runs it and
delivers its token.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli.common import fail

auth_app = typer.Typer(
    help="Sign in to Google or Microsoft 365 once and get the refresh token a calendar needs.",
    no_args_is_help=True,
)


def _login_function(source_type: str, function: str) -> Callable[..., str]:
    """FUNCTION of the connector registered as SOURCE_TYPE.

    The hub never imports connectors/ by name: the entry point registered for the source
    (pyproject.toml, group smshub.calendar_sources) says which module implements it, and the
    sign-in helper lives next to the source class in that module.
    """
    import importlib
    from importlib.metadata import entry_points

    from hub.ports.registry import CALENDAR_GROUP

    for ep in entry_points(group=CALENDAR_GROUP):
        if ep.name == source_type:
            module = importlib.import_module(ep.module)
            found = getattr(module, function, None)
            if not callable(found):
                fail(f"the {source_type!r} calendar connector ({ep.module}) has no {function}")
            return found
    fail(f"no {source_type!r} calendar connector is installed (reinstall smshub)")


def _check_output(output: Path | None) -> None:
    """Refuse an unwritable --output before the user goes through the sign-in for nothing."""
    if output is None:
        return
    if output.is_dir():
        fail(f"--output {output} is a directory; name a file such as {output}/token")
    parent = output.parent
    if not parent.is_dir():
        fail(f"--output {output}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        fail(f"--output {output} cannot be written (permissions)")


def _deliver_token(token: str, output: Path | None, source_type: str) -> None:
    """Print TOKEN on standard output, or store it in OUTPUT readable by its owner only."""
    if output is None:
        # Alone on stdout, so `... > file` or `$(...)` captures exactly the token.
        typer.echo(token)
        typer.echo(
            f"store it in a file or an environment variable and name it in the calendar: "
            f"--set refresh_token_file=PATH (or refresh_token_env=NAME) with --type {source_type}",
            err=True,
        )
        return
    from hub.reminders.setup import write_secret_file

    try:
        write_secret_file(output, token)
    except OSError as exc:
        # The sign-in cannot simply be repeated later (it needed a person): show the token
        # rather than lose it.
        typer.echo(token)
        fail(f"cannot write {output} ({exc.strerror or exc}); the token is printed above")
    typer.echo(
        f"refresh token written to {output} (mode 0600); connect the calendar with "
        f"`smshub calendars add ACCOUNT NAME --type {source_type} "
        f"--set refresh_token_file={output.resolve()} ...`"
    )


def _run_login(login: Callable[..., str], **kwargs: Any) -> str:
    """Call a connector's sign-in, turning its failures into one-line errors."""
    from hub.errors import SourceError

    try:
        return login(**kwargs)
    except SourceError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("the sign-in was interrupted; nothing was stored")


OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write the refresh token to this file (created with mode 0600) instead of "
        "printing it.",
    ),
]


@auth_app.command("google")
def auth_google(
    client_id: Annotated[
        str,
        typer.Option(
            help="The OAuth client ID of a 'Desktop app' client (Google Cloud console → "
            "APIs & Services → Credentials), in a project with the Calendar API enabled."
        ),
    ],
    client_secret_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the client's secret."),
    ] = None,
    client_secret_file: Annotated[
        Path | None, typer.Option(help="File holding the client's secret.")
    ] = None,
    read_only: Annotated[
        bool,
        typer.Option(help="Ask only to read the calendar (OUI/NON answers are then not noted)."),
    ] = False,
    browser: Annotated[
        bool,
        typer.Option(help="Open the consent page in a browser (--no-browser: only print it)."),
    ] = True,
    port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="Local port receiving Google's redirect (0: any free one). Reach it with an "
            "SSH tunnel when the browser runs on another machine.",
        ),
    ] = 0,
    output: OutputOpt = None,
) -> None:
    """Sign in to Google in a browser; get a Google calendar's refresh token.

    Run it once per Google account, on a machine with a browser (or with
    --no-browser and a fixed --port reached through an SSH tunnel). Then:
    smshub calendars add ACCOUNT NAME --type google --set client_id=ID
    --set client_secret_env=VAR --set refresh_token_file=FILE.
    The client secret is never an argument (it would stay in shell history).
    """
    from hub.core.config import read_secret

    if bool(client_secret_env) == bool(client_secret_file):
        fail(
            "give the OAuth client's secret with --client-secret-env NAME (an environment "
            "variable) or --client-secret-file PATH, exactly one of them"
        )
    try:
        secret = read_secret(
            {
                "client_secret_env": client_secret_env,
                "client_secret_file": str(client_secret_file) if client_secret_file else None,
            },
            "client_secret",
            "smshub calendars auth google",
        )
    except Exception as exc:  # ConfigError, or an unreadable file
        fail(str(exc))
    if not secret:
        where = f"${client_secret_env}" if client_secret_env else str(client_secret_file)
        fail(f"the OAuth client secret is empty: {where} holds nothing")
    _check_output(output)
    login = _login_function("google", "installed_app_login")

    def _show(text: str) -> None:
        typer.echo(text, err=True)

    token = _run_login(
        login,
        client_id=client_id,
        client_secret=secret,
        read_only=read_only,
        open_browser=browser,
        port=port,
        show=_show,
    )
    _deliver_token(token, output, "google")


@auth_app.command("microsoft")
def auth_microsoft(
    client_id: Annotated[
        str,
        typer.Option(
            help="The Application (client) ID of an Entra ID app registration that allows "
            "public client flows, with the delegated permission Calendars.ReadWrite."
        ),
    ],
    tenant: Annotated[
        str,
        typer.Option(
            help="Directory (tenant) ID or domain; 'common' for any work or personal account."
        ),
    ] = "common",
    authority: Annotated[
        str | None,
        typer.Option(help="Sign-in service (default Microsoft's global cloud)."),
    ] = None,
    graph_url: Annotated[
        str | None,
        typer.Option(help="Graph API root (default https://graph.microsoft.com/v1.0)."),
    ] = None,
    read_only: Annotated[
        bool, typer.Option(help="Ask only Calendars.Read (OUI/NON answers are not noted).")
    ] = False,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA bundle for a TLS-inspecting proxy.")
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = 30.0,
    output: OutputOpt = None,
) -> None:
    """Sign in to Microsoft 365 / Outlook with a device code; get a refresh token.

    Prints a code to enter at https://microsoft.com/devicelogin in any
    browser, then waits (15 minutes at most) for the sign-in. Then:
    smshub calendars add ACCOUNT NAME --type graph --set client_id=ID
    --set tenant_id=TENANT --set refresh_token_file=FILE.
    """
    _check_output(output)
    login = _login_function("graph", "device_code_login")
    kwargs: dict[str, Any] = {
        "client_id": client_id,
        "tenant_id": tenant,
        "read_only": read_only,
        "timeout": timeout,
        "show": lambda text: typer.echo(text, err=True),
    }
    if authority:
        kwargs["authority"] = authority
    if graph_url:
        kwargs["graph_base_url"] = graph_url
    if ca_file is not None:
        kwargs["ca_file"] = str(ca_file)
    token = _run_login(login, **kwargs)
    _deliver_token(token, output, "graph")
