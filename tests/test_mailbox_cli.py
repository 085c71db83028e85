"""`smshub mailboxes`: headless sign-in (Microsoft device code, Google pasted address), test,
list, disconnect, against the stand-ins and a Dovecot checking tokens by introspection."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hub.cli import mailboxes as cli_mailboxes
from hub.mail.oauth import mailbox_namespace
from hub.store.state_sql import state_store
from tests.conftest import make_config
from tests.fakes import google_calendar, graph
from tests.servers.dovecot import DovecotServer, dovecot_oauth_fixture  # noqa: F401
from tests.servers.oauth_introspection import Introspection

google_fake = google_calendar.google_fake
graph_fake = graph.graph_fake

PUBLIC_APP = "33333333-mail-cli"


def _intake(dovecot: DovecotServer, user: str, provider: str) -> dict[str, Any]:
    return {
        "name": "desk",
        "host": dovecot.host,
        "port": dovecot.port,
        "security": "plain",
        "username": user,
        "auth": "xoauth2",
        "oauth_provider": provider,
        "intake_address": "sms@hub.test",
    }


@pytest.fixture
def run(db_url: str, tmp_path: Path) -> Any:
    from hub.cli import main as cli

    runner = CliRunner()

    def invoke(config: Any, *args: str) -> tuple[int, str, str]:
        cli._state.clear()
        cli._state["config"] = config
        result = runner.invoke(cli_mailboxes.mailboxes_app, list(args))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    yield invoke
    cli._state.clear()


def test_device_code_sign_in_test_list_disconnect(
    run, db_url, tmp_path, engine, graph_fake, dovecot_oauth, introspection: Introspection
):
    user, _ = dovecot_oauth.add_user(f"cli-{uuid.uuid4().hex[:8]}@contoso.example")
    graph_fake.app(PUBLIC_APP, None)  # "allow public client flows": no secret
    graph_fake.device_user = user
    introspection.accept(graph_fake.user_of)
    config = make_config(
        db_url,
        tmp_path,
        calendar_oauth={
            "microsoft": {
                "client_id": PUBLIC_APP,
                "tenant": graph_fake.tenant,
                "authority": graph_fake.url,
                "ca_file": graph_fake.ca_file,
            }
        },
        imap=[_intake(dovecot_oauth, user, "microsoft")],
    )
    code, out, err = run(config, "auth", "imap:desk")
    assert code == 0, out + err
    assert "https://microsoft.com/devicelogin" in err
    assert "mailbox imap:desk connected with Microsoft 365" in out
    # The token is nowhere on the terminal.
    store = state_store(engine, config)
    refresh = store.get_secret(mailbox_namespace("imap:desk"), "refresh_token")
    assert refresh and refresh not in out + err

    # Refreshed as a public client (no secret), then used for XOAUTH2 / OAUTHBEARER.
    store.delete(mailbox_namespace("imap:desk"), "access_token")
    code, out, err = run(config, "test", "imap:desk")
    assert code == 0, out + err
    assert f"signed in to 127.0.0.1 as {user} and read 'INBOX'" in out
    assert "client_secret" not in graph_fake.token_requests[-1]

    code, out, _ = run(config, "list", "--json")
    [row] = json.loads(out)
    assert (row["key"], row["use"], row["connected"], row["problem"]) == (
        "imap:desk",
        "intake",
        True,
        "",
    )

    code, out, _ = run(config, "disconnect", "imap:desk")
    assert code == 0 and "disconnected" in out
    code, out, err = run(config, "test", "imap:desk")
    assert code == 1
    assert "is not connected: reconnect the mailbox in the console" in err
    code, _, err = run(config, "auth", "imap:nope")
    assert code != 0 and "no mailbox 'imap:nope'" in err


def test_google_pasted_address_sign_in(
    run, db_url, tmp_path, engine, google_fake, dovecot_oauth, introspection, monkeypatch
):
    user, _ = dovecot_oauth.add_user(f"g-{uuid.uuid4().hex[:8]}@cabinet.example")
    google_fake.oauth_client("cli.apps.googleusercontent.com", "g-secret", "1//cli-refresh")
    google_fake.oauth_users["cli.apps.googleusercontent.com"] = user
    introspection.accept(google_fake.user_of)
    monkeypatch.setenv("TEST_G_SECRET", "g-secret")
    # The stand-in speaks plain HTTP on 127.0.0.1; oauthlib insists on https otherwise.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    config = make_config(
        db_url,
        tmp_path,
        calendar_oauth={
            "google": {
                "client_id": "cli.apps.googleusercontent.com",
                "client_secret_env": "TEST_G_SECRET",
                "auth_url": f"{google_fake.url}/o/oauth2/auth",
                "token_url": f"{google_fake.url}/token",
            }
        },
        imap=[_intake(dovecot_oauth, user, "google")],
    )
    shown: list[str] = []
    real_start = cli_mailboxes.pasted_code_start

    def start(*args: Any) -> Any:
        started = real_start(*args)
        shown.append(started.url)
        return started

    def browser(text: str) -> str:
        # The person opens the address, consents, and copies where the browser ended.
        answer = httpx.get(shown[-1])
        assert answer.status_code == 302
        return str(answer.headers["location"])

    monkeypatch.setattr(cli_mailboxes, "pasted_code_start", start)
    monkeypatch.setattr(cli_mailboxes.typer, "prompt", browser)
    code, out, err = run(config, "auth", "imap:desk")
    assert code == 0, out + err
    assert "scope=https%3A%2F%2Fmail.google.com%2F" in shown[0]
    assert "code_challenge" in shown[0]
    code, out, err = run(config, "test", "imap:desk")
    assert code == 0, out + err
    assert "read 'INBOX'" in out
