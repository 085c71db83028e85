"""`smshub sms ...`: SMS text tools (parts and charge of a text)."""

from __future__ import annotations

from typing import Annotated

import typer

from hub.cli.common import JsonOpt, emit, fail, get_config, stdin_text

sms_app = typer.Typer(help="SMS text tools.", no_args_is_help=True)


@sms_app.command("count")
def sms_count(
    text: Annotated[str, typer.Argument(help="The text; '-' reads standard input.")],
    type: Annotated[
        str, typer.Option("--type", help="alert or marketing (marketing may add the STOP mention).")
    ] = "alert",
    sender: Annotated[str | None, typer.Option(help="The sender the send will use.")] = None,
    country: Annotated[
        str | None, typer.Option(help="Recipient country (ISO) for the sender rules.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Count SMS parts exactly as the send will charge them (opt-out mention included)."""
    from hub.sending.preview import preview_for

    if type not in {"alert", "marketing"}:
        fail(f"--type must be 'alert' or 'marketing', not {type!r}")
    if text == "-":
        text = stdin_text()
    config = get_config()
    country = (country or config.hub.default_region).upper()
    shown = preview_for(config, text, sender, type, country)
    lines = [
        f"{shown['segments']} part(s), {shown['encoding']}, {shown['characters']} "
        f"characters, length {shown['length']}, {shown['remaining']} left in the last part"
    ]
    if shown["mention_added"]:
        lines.append("text as sent:\n" + shown["text"])
    lines += [f"warning: {w}" for w in shown["warnings"]]
    lines += [f"error: {e}" for e in shown["errors"]]
    emit(shown, as_json, "\n".join(lines), ok=shown["ok"])
