"""Mailboxes reached by OAuth, end to end against real servers: a Dovecot whose oauth2 passdb
checks tokens with the introspection endpoint, an SMTP server requiring AUTH XOAUTH2, and the
Microsoft and Google stand-ins issuing (refreshing, revoking) the tokens. Both databases."""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import pytest
from imapclient import IMAPClient
from sqlalchemy import Engine
from sqlmodel import select

from connectors.mail.imap_source import ImapUnavailable
from connectors.mail.oauth_login import imap_login
from hub.core.config import Config
from hub.errors import ConsentRevoked
from hub.mail.intake.addresses import add_intake_address
from hub.mail.intake.policy import IntakePolicy
from hub.mail.mailboxes import configured_mailboxes, find_mailbox, mailbox_probe
from hub.mail.oauth import (
    MAIL_OUT,
    MailboxAccess,
    intake_key,
    mailbox_namespace,
    mailbox_state,
    store_grant,
)
from hub.mail.outbox import build_message
from hub.ports.registry import build_mail_sender, build_mail_sources, try_mailbox
from hub.runtime.ops_http import start_ops
from hub.store.db import session_scope
from hub.store.models import ConnectorState, Message
from hub.store.state_sql import SqlStateStore, state_store
from tests.conftest import make_config
from tests.fakes import google_calendar, graph
from tests.fakes.google_calendar import GoogleCalendarFake
from tests.fakes.graph import GraphFake
from tests.servers._util import free_port
from tests.servers.dovecot import DovecotServer, dovecot_oauth_fixture  # noqa: F401
from tests.servers.oauth_introspection import Introspection
from tests.servers.smtp_sink import SmtpSink

google_fake = google_calendar.google_fake
graph_fake = graph.graph_fake

INTAKE = "sms@hub.test"
SECRET_ENV = "SMSHUB_TEST_MAIL_OAUTH_SECRET"
MS_APP, MS_SECRET = "11111111-mail-app", "ms-secret"
G_APP, G_SECRET = "mail-app.apps.googleusercontent.com", "g-secret"


def _mail(subject: str = "06 12 34 56 78", body: str = "Rendez-vous demain 9h") -> bytes:
    msg = EmailMessage()
    msg["Return-Path"] = "<anne@clinic.example>"
    msg["From"] = "Anne <anne@clinic.example>"
    msg["To"] = INTAKE
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="clinic.example")
    msg["Authentication-Results"] = "mx.clinic.example; dmarc=pass header.from=clinic.example"
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP_POLICY)


def _recipients(engine: Engine) -> list[str]:
    with session_scope(engine) as s:
        return sorted(m.recipient for m in s.exec(select(Message)).all())


def _stored_values(engine: Engine) -> str:
    with session_scope(engine) as s:
        return " ".join(r.value for r in s.exec(select(ConnectorState)).all())


@pytest.fixture
def user(dovecot_oauth: DovecotServer) -> str:
    name, _ = dovecot_oauth.add_user(f"ada-{uuid.uuid4().hex[:8]}@contoso.example")
    return name


@pytest.fixture
def microsoft(graph_fake: GraphFake, introspection: Introspection, user: str) -> GraphFake:
    graph_fake.app(MS_APP, MS_SECRET)
    introspection.accept(graph_fake.user_of)
    return graph_fake


@pytest.fixture
def google(google_fake: GoogleCalendarFake, introspection: Introspection, user: str) -> Any:
    google_fake.oauth_client(G_APP, G_SECRET, "1//g-refresh")
    google_fake.oauth_users[G_APP] = user
    introspection.accept(google_fake.user_of)
    return google_fake


def _config(
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    graph: GraphFake | None = None,
    google: GoogleCalendarFake | None = None,
    **overrides: Any,
) -> Config:
    oauth: dict[str, Any] = {}
    if graph is not None:
        monkeypatch.setenv(SECRET_ENV, MS_SECRET)
        oauth["microsoft"] = {
            "client_id": MS_APP,
            "client_secret_env": SECRET_ENV,
            "tenant": graph.tenant,
            "authority": graph.url,
            "graph_url": f"{graph.url}/v1.0",
            "ca_file": graph.ca_file,
        }
    if google is not None:
        monkeypatch.setenv(SECRET_ENV, G_SECRET)
        oauth["google"] = {
            "client_id": G_APP,
            "client_secret_env": SECRET_ENV,
            "token_url": f"{google.url}/token",
            "auth_url": f"{google.url}/o/oauth2/auth",
        }
    return make_config(db_url, tmp_path, calendar_oauth=oauth, **overrides)


def _intake(dovecot: DovecotServer, user: str, provider: str) -> dict[str, Any]:
    return {
        "name": "front-desk",
        "host": dovecot.host,
        "port": dovecot.port,
        "security": "plain",
        "username": user,
        "auth": "xoauth2",
        "oauth_provider": provider,
        "intake_address": INTAKE,
        "trusted_authserv_id": "mx.clinic.example",
        "timeout": 5.0,
    }


async def _drop_connection(source: Any, dovecot: DovecotServer, user: str) -> None:
    """The server closes the session (as at a restart): the source's next pass fails, the
    one after signs in again (the background loop does the same with its backoff)."""
    dovecot.kick(user)
    with pytest.raises(ImapUnavailable, match="closed"):
        await source.run_once()


@pytest.fixture
def intake_address(engine: Engine, account: str) -> str:
    with session_scope(engine) as s:
        add_intake_address(s, account, INTAKE, allowed_senders=["@clinic.example"])
    return INTAKE


async def test_intake_by_xoauth2_token_expiry_then_revoked_consent(
    db_url, tmp_path, monkeypatch, engine, intake_address, dovecot_oauth, user, microsoft, make_hub
):
    config = _config(
        db_url,
        tmp_path,
        monkeypatch,
        graph=microsoft,
        imap=[_intake(dovecot_oauth, user, "microsoft")],
        ops={"port": free_port()},
    )
    store = state_store(engine, config)
    key = intake_key("front-desk")
    refresh = microsoft.refresh_token_for(MS_APP, user)
    store_grant(store, key, "microsoft", refresh, account=user)
    [source] = build_mail_sources(config, IntakePolicy(engine, config), store=store)
    try:
        dovecot_oauth.append(user, "INBOX", _mail("06 12 34 56 78"))
        stats = await source.run_once()
        assert (stats["accepted"], stats["moved"]) == (1, 1)
        assert _recipients(engine) == ["+33612345678"]
        # Signed in with a token of the sign-in, refreshed once; nothing in clear in SQL.
        assert [r["grant_type"] for r in microsoft.token_requests] == ["refresh_token"]
        asked = microsoft.token_requests[0]["scope"].split()
        assert "https://outlook.office.com/IMAP.AccessAsUser.All" in asked
        assert "offline_access" in asked
        assert refresh not in _stored_values(engine)
        assert mailbox_state(store, key).activity["what"] == "read INBOX"

        # The access token expires mid-run: the next login is refused, refreshed, retried.
        microsoft.expire_access_tokens()
        await _drop_connection(source, dovecot_oauth, user)
        dovecot_oauth.append(user, "INBOX", _mail("06 11 22 33 44"))
        stats = await source.run_once()
        assert stats["accepted"] == 1
        assert len(_recipients(engine)) == 2
        assert [r["grant_type"] for r in microsoft.token_requests] == ["refresh_token"] * 2

        # The user withdraws consent: a clear error with the fix, on the page and /readyz.
        microsoft.revoke(user)
        await _drop_connection(source, dovecot_oauth, user)
        with pytest.raises(ImapUnavailable) as caught:
            await source.run_once()
        assert "reconnect the mailbox in the console" in str(caught.value)
        assert "invalid_grant" in str(caught.value)
        state = mailbox_state(store, key)
        assert state.revoked.startswith("invalid_grant")
        assert "reconnect the mailbox" in state.activity["error"]
        # /readyz of an instance with the imap role names the mailbox and the fix.
        hub = await make_hub(config=config, start=False)
        ops = await start_ops(config, hub, {"imap"}, "i-1")
        assert ops is not None
        try:
            async with httpx.AsyncClient() as http:
                ready = await http.get(f"{ops.url}/readyz")
        finally:
            await ops.stop()
            await hub.hub_client.aclose()
        assert ready.status_code == 503
        check = ready.json()["checks"]["mailbox imap:front-desk"]
        assert check["status"] == "fail"
        assert "consent was revoked or has expired (invalid_grant" in check["reason"]
        fix = "reconnect the mailbox in the console: Mailboxes → imap:front-desk"
        assert fix in check["reason"]

        # Connected again: the status clears.
        store_grant(store, key, "microsoft", microsoft.refresh_token_for(MS_APP, user))
        assert (await mailbox_probe(store, find_mailbox(config, key))())["status"] == "ok"
        dovecot_oauth.append(user, "INBOX", _mail("06 99 88 77 66"))
        assert (await source.run_once())["accepted"] == 1
    finally:
        await source.stop()


async def test_answer_appended_with_google_token(
    db_url, tmp_path, monkeypatch, engine, dovecot_oauth, user, google
):
    config = _config(
        db_url,
        tmp_path,
        monkeypatch,
        google=google,
        mail_out={
            "method": "imap",
            "imap_host": dovecot_oauth.host,
            "imap_port": dovecot_oauth.port,
            "imap_security": "plain",
            "imap_username": user,
            "imap_auth": "xoauth2",
            "oauth_provider": "google",
            "imap_folder": "SMS",
            "from_address": "hub@contoso.example",
        },
    )
    store = state_store(engine, config)
    store_grant(store, MAIL_OUT, "google", "1//g-refresh", account=user)
    sender = build_mail_sender(config, store)
    assert sender is not None
    await sender.send(build_message("hub@contoso.example", user, "SMS from Jeanne", "Oui"))
    [appended] = dovecot_oauth.list_folder(user, "SMS")
    assert b"SMS from Jeanne" in appended
    assert [r["grant_type"] for r in google.token_requests] == ["refresh_token"]
    assert "client_secret" in google.token_requests[0]
    # The console's / CLI's test: a mail to oneself in the same folder.
    said = await asyncio.to_thread(try_mailbox, config, store, MAIL_OUT)
    assert said == f"a test mail was appended to 'SMS' of {user}"
    assert len(dovecot_oauth.list_folder(user, "SMS")) == 2

    google.revoke(G_APP)
    google.expire_access_tokens()
    with pytest.raises(ConnectionError, match="reconnect the mailbox in the console"):
        await sender.send(build_message("hub@contoso.example", user, "again", "Non"))
    assert (
        mailbox_state(store, MAIL_OUT).revoked
        == "invalid_grant: Token has been expired or revoked."
    )


async def test_mail_out_through_xoauth2_smtp(
    db_url, tmp_path, monkeypatch, engine, smtp_oauth_sink: SmtpSink, user, microsoft
):
    config = _config(
        db_url,
        tmp_path,
        monkeypatch,
        graph=microsoft,
        mail_out={
            "host": smtp_oauth_sink.host,
            "port": smtp_oauth_sink.port,
            "starttls": False,
            "username": user,
            "auth": "xoauth2",
            "oauth_provider": "microsoft",
            "from_address": user,
        },
    )
    store = state_store(engine, config)
    store_grant(store, MAIL_OUT, "microsoft", microsoft.refresh_token_for(MS_APP, user))
    sender = build_mail_sender(config, store)
    assert sender is not None
    await sender.send(build_message(user, "office@clinic.example", "SMS from +33612345678", "Hi"))
    assert [m["Subject"] for m in smtp_oauth_sink.messages] == ["SMS from +33612345678"]
    assert smtp_oauth_sink.logins == [(user, True)]

    # Expired mid-run: 334 error challenge, 535, one refresh, signed in.
    microsoft.expire_access_tokens()
    await sender.send(build_message(user, "office@clinic.example", "second", "Hi"))
    assert smtp_oauth_sink.logins[1:] == [(user, False), (user, True)]
    assert len(smtp_oauth_sink.messages) == 2
    assert "SMTP.Send" in microsoft.token_requests[-1]["scope"]

    microsoft.revoke(user)
    with pytest.raises(ConsentRevoked, match="reconnect the mailbox in the console"):
        await sender.send(build_message(user, "office@clinic.example", "third", "Hi"))
    assert len(smtp_oauth_sink.messages) == 2
    [mailbox] = configured_mailboxes(config)
    assert (mailbox.kind, mailbox.oauth) == ("relay", True)
    assert (await mailbox_probe(store, mailbox)())["status"] == "fail"


async def test_store_namespace_holds_tokens_encrypted(db_url, tmp_path, engine):
    config = make_config(db_url, tmp_path)
    store: SqlStateStore = state_store(engine, config)
    store_grant(store, MAIL_OUT, "google", "1//very-secret", access={"access_token": "ya29.x"})
    with session_scope(engine) as s:
        rows = s.exec(
            select(ConnectorState).where(ConnectorState.namespace == mailbox_namespace(MAIL_OUT))
        ).all()
    assert {r.key for r in rows} == {"refresh_token", "access_token", "grant"}
    assert all(r.secret for r in rows if r.key != "grant")
    assert "very-secret" not in " ".join(r.value for r in rows)


@pytest.mark.parametrize("offered", ["XOAUTH2", "OAUTHBEARER"])
async def test_imap_login_uses_oauthbearer_where_offered_else_xoauth2(
    db_url, tmp_path, monkeypatch, engine, dovecot_oauth, user, microsoft, offered
):
    """Dovecot offers both; Exchange Online only XOAUTH2: each is used where it is the one."""
    config = _config(db_url, tmp_path, monkeypatch, graph=microsoft)
    store = state_store(engine, config)
    store_grant(store, MAIL_OUT, "microsoft", microsoft.refresh_token_for(MS_APP, user))
    access = MailboxAccess(config, store, MAIL_OUT, auth="xoauth2", provider="microsoft")

    def login() -> str:
        client = IMAPClient(dovecot_oauth.host, dovecot_oauth.port, ssl=False, timeout=5)
        real = client.capabilities()
        hidden = b"AUTH=OAUTHBEARER" if offered == "XOAUTH2" else b"AUTH=XOAUTH2"
        client.capabilities = lambda: tuple(c for c in real if c != hidden)  # type: ignore[method-assign]
        try:
            used = imap_login(client, user, "", access)
            client.select_folder("INBOX")
            return used
        finally:
            client.logout()

    assert await asyncio.to_thread(login) == offered
