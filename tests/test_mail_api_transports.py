"""Mailboxes reached through the provider's mail API instead of IMAP/SMTP (transport =
"graph" / "gmail"), against the Microsoft Graph and Gmail stand-ins: intake → SMS with the
mail filed in Processed or Failed, an answer put into the mailbox, mail sent out; a token
expiring mid-run, a 429 with Retry-After, and a revoked consent shown by /readyz. Both
databases."""

from __future__ import annotations

import asyncio
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import default
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from connectors.mail.api_client import MailApi, MailApiError
from connectors.mail.imap_source import ImapUnavailable
from hub.core.config import Config
from hub.errors import ConfigError, ConsentRevoked, MailboxAuthError
from hub.mail.intake.addresses import add_intake_address
from hub.mail.intake.policy import IntakePolicy
from hub.mail.mailboxes import configured_mailboxes
from hub.mail.oauth import MAIL_OUT, intake_key, mailbox_state, scopes_for, store_grant
from hub.mail.outbox import build_message
from hub.ports.registry import build_mail_sender, build_mail_sources, try_mailbox
from hub.runtime.ops_http import start_ops
from hub.sending import submit as sending
from hub.store.db import session_scope
from hub.store.models import Account, Message
from hub.store.state_sql import state_store
from tests.conftest import make_config
from tests.fakes import google_calendar, graph
from tests.fakes.google_calendar import GoogleCalendarFake
from tests.fakes.graph import GraphFake
from tests.servers._util import free_port

google_fake = google_calendar.google_fake
graph_fake = graph.graph_fake

INTAKE = "sms@hub.test"
USER = "ada@contoso.example"
SECRET_ENV = "SMSHUB_TEST_MAIL_API_SECRET"
MS_APP, MS_SECRET = "22222222-mail-api", "ms-secret"
G_APP, G_SECRET = "mail-api.apps.googleusercontent.com", "g-secret"
KEY = intake_key("front-desk")


def _mail(subject: str, sender: str = "anne@clinic.example") -> bytes:
    msg = EmailMessage()
    msg["Return-Path"] = f"<{sender}>"
    msg["From"] = f"Anne <{sender}>"
    msg["To"] = INTAKE
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="clinic.example")
    msg["Authentication-Results"] = "mx.clinic.example; dmarc=pass header.from=clinic.example"
    msg.set_content("Rendez-vous demain 9h")
    return msg.as_bytes(policy=SMTP_POLICY)


def _recipients(engine: Engine) -> list[str]:
    with session_scope(engine) as s:
        return sorted(m.recipient for m in s.exec(select(Message)).all())


@pytest.fixture
def intake_address(engine: Engine, account: str) -> str:
    with session_scope(engine) as s:
        add_intake_address(s, account, INTAKE, allowed_senders=["@clinic.example"])
    return INTAKE


@pytest.fixture
def microsoft(graph_fake: GraphFake) -> GraphFake:
    graph_fake.app(MS_APP, MS_SECRET)
    graph_fake.add_mailbox(USER)
    return graph_fake


@pytest.fixture
def google(google_fake: GoogleCalendarFake) -> GoogleCalendarFake:
    google_fake.oauth_client(G_APP, G_SECRET, "1//g-refresh")
    google_fake.oauth_users[G_APP] = USER
    return google_fake


def _config(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: Any, **overrides: Any
) -> Config:
    monkeypatch.setenv(SECRET_ENV, MS_SECRET if isinstance(fake, GraphFake) else G_SECRET)
    if isinstance(fake, GraphFake):
        oauth = {
            "microsoft": {
                "client_id": MS_APP,
                "client_secret_env": SECRET_ENV,
                "tenant": fake.tenant,
                "authority": fake.url,
                "graph_url": f"{fake.url}/v1.0",
                "ca_file": fake.ca_file,
            }
        }
    else:
        oauth = {
            "google": {
                "client_id": G_APP,
                "client_secret_env": SECRET_ENV,
                "token_url": f"{fake.url}/token",
                "gmail_url": fake.url,
            }
        }
    return make_config(db_url, tmp_path, calendar_oauth=oauth, **overrides)


def _intake(transport: str) -> dict[str, Any]:
    return {
        "name": "front-desk",
        "transport": transport,
        "username": USER,
        "auth": "xoauth2",
        "oauth_provider": "microsoft" if transport == "graph" else "google",
        "intake_address": INTAKE,
        "trusted_authserv_id": "mx.clinic.example",
        "timeout": 5.0,
    }


def _connect(store: Any, key: str, fake: Any) -> None:
    """As the console's Connect of a mailbox with an API transport: the API's scopes."""
    if isinstance(fake, GraphFake):
        refresh = fake.refresh_token_for(MS_APP, USER)
        scopes = scopes_for("microsoft", "graph")
        store_grant(store, key, "microsoft", refresh, account=USER, scopes=scopes)
    else:
        scopes = scopes_for("google", "gmail")
        store_grant(store, key, "google", "1//g-refresh", account=USER, scopes=scopes)


def _deliver(fake: Any, folder: str, mime: bytes) -> None:
    with fake.lock:
        fake.mail.deliver(USER, folder, mime)


def _filed(fake: Any, folder: str) -> list[bytes]:
    with fake.lock:
        if isinstance(fake, GraphFake):
            return list(fake.mail.in_folder(USER, folder))
        return list(fake.mail.with_label(USER, folder))


def _throttle(fake: Any) -> None:
    if isinstance(fake, GraphFake):
        fake.throttle_next(429, retry_after=1)
    else:
        fake.fail_next(429, "rateLimitExceeded")


def _revoke(fake: Any) -> None:
    if isinstance(fake, GraphFake):
        fake.revoke(USER)
    else:
        fake.revoke(G_APP)


@pytest.fixture(params=["graph", "gmail"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake(transport: str, request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("microsoft" if transport == "graph" else "google")


async def test_intake_through_the_mail_api(
    db_url, tmp_path, monkeypatch, engine, intake_address, transport, fake, make_hub
):
    inbox = "Inbox" if transport == "graph" else "INBOX"
    config = _config(
        db_url,
        tmp_path,
        monkeypatch,
        fake,
        imap=[{**_intake(transport), "folder": inbox}],
        ops={"port": free_port()},
    )
    store = state_store(engine, config)
    _connect(store, KEY, fake)
    # Three mails: the delta query pages them (two a page) before its deltaLink.
    _deliver(fake, inbox, _mail("06 12 34 56 78"))
    _deliver(fake, inbox, _mail("06 11 22 33 44"))
    _deliver(fake, inbox, _mail("06 22 33 44 55", sender="mallory@elsewhere.example"))
    [source] = build_mail_sources(config, IntakePolicy(engine, config), store=store)
    try:
        stats = await source.run_once()
        assert (stats["accepted"], stats["failed"], stats["moved"]) == (2, 1, 3)
        assert _recipients(engine) == ["+33611223344", "+33612345678"]
        # The SMS go out (the simulator gateway).
        hub = await make_hub(config=config)
        try:
            await hub.dispatcher.drain()
            log = hub.providers["simulator"].read_log()
            sent = sorted(e["to"] for e in log if e.get("kind") == "mt")
        finally:
            await hub.stop()
        assert sent == ["+33611223344", "+33612345678"]
        assert len(_filed(fake, "Processed")) == 2
        [refused] = _filed(fake, "Failed")
        assert b"mallory@elsewhere.example" in refused
        assert _filed(fake, inbox) == []
        assert source.failed[-1].reply.startswith("5")
        assert mailbox_state(store, KEY).activity["what"] == f"read {inbox}"

        # Only what is new is looked at (the stored delta link / history id), across a
        # throttled request (429, Retry-After) and an access token expired mid-run.
        fake.expire_access_tokens()
        _throttle(fake)
        _deliver(fake, inbox, _mail("06 99 88 77 66"))
        stats = await source.run_once()
        assert (stats["found"], stats["accepted"]) == (1, 1)
        assert len(_recipients(engine)) == 3
        assert len(fake.token_requests) == 2

        # The console's / CLI's test reads the folder.
        said = await asyncio.to_thread(try_mailbox, config, store, KEY)
        assert said.startswith(f"signed in to the {source.api_name} and read {inbox!r}: 0 mail")

        # The consent is revoked: a clear error with the fix, on the page and /readyz.
        _revoke(fake)
        fake.expire_access_tokens()
        with pytest.raises(ImapUnavailable, match="reconnect the mailbox in the console"):
            await source.run_once()
        assert mailbox_state(store, KEY).revoked.startswith("invalid_grant")
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
        check = ready.json()["checks"][f"mailbox {KEY}"]
        assert "consent was revoked or has expired (invalid_grant" in check["reason"]
    finally:
        await source.stop()


async def test_answers_and_mail_out_through_the_mail_api(
    db_url, tmp_path, monkeypatch, engine, account, transport, fake, make_hub
):
    out = {
        "transport": transport,
        "oauth_provider": "microsoft" if transport == "graph" else "google",
        "from_address": USER,
    }
    # An SMS answer put into the answers folder (method "imap": created / inserted there).
    config = _config(
        db_url,
        tmp_path,
        monkeypatch,
        fake,
        mail_out={**out, "method": "imap", "imap_folder": "SMS", "imap_username": USER},
    )
    store = state_store(engine, config)
    _connect(store, MAIL_OUT, fake)
    with session_scope(engine) as s:
        acc = s.get(Account, 1)
        assert acc is not None
        acc.reply_mailbox = "accueil@cabinet.example"
    hub = await make_hub(config=config)
    try:
        sending.submit(
            engine,
            config,
            sending.SubmitRequest(account=account, recipients=["0612345678"], text="RDV demain"),
        )
        await hub.dispatcher.drain()
        assert await hub.providers["simulator"].receive("+33612345678", "Oui, merci")
        assert await hub.mail_outbox.send_due() == 1
    finally:
        await hub.stop()
    [raw] = _filed(fake, "SMS")
    answer = message_from_bytes(raw, policy=default)
    assert answer["To"] == "accueil@cabinet.example"
    assert answer["Subject"] == "SMS from +33 6 12 34 56 78 (re: RDV demain)"
    assert "Oui, merci" in answer.get_body().get_content()
    [box] = configured_mailboxes(config)
    assert (box.kind, box.transport, box.oauth) == ("answers", transport, True)

    # A confirmation mail sent through the API (method "smtp": sendMail / messages.send),
    # the token expiring mid-run and a throttled request on the way.
    config = _config(db_url, tmp_path, monkeypatch, fake, mail_out={**out, "username": USER})
    sender = build_mail_sender(config, store)
    assert sender is not None
    await sender.send(build_message(USER, "office@clinic.example", "Message queued", "1 SMS"))
    fake.expire_access_tokens()
    _throttle(fake)
    await sender.send(build_message(USER, "office@clinic.example", "Second", "1 SMS"))
    with fake.lock:
        sent = [mime for _, mime in fake.mail.sent]
    assert [b"Subject: Message queued" in m for m in sent] == [True, False]
    assert b"Subject: Second" in sent[1]
    said = await asyncio.to_thread(try_mailbox, config, store, MAIL_OUT)
    assert said == f"a test mail was sent to {USER}"
    assert mailbox_state(store, MAIL_OUT).activity["what"] == "sent a mail"

    _revoke(fake)
    fake.expire_access_tokens()
    with pytest.raises(ConsentRevoked, match="reconnect the mailbox in the console"):
        await sender.send(build_message(USER, "office@clinic.example", "Third", "1 SMS"))
    assert mailbox_state(store, MAIL_OUT).revoked.startswith("invalid_grant")


def test_api_transport_config_errors_name_the_key_and_fix(db_url, tmp_path):
    with pytest.raises(ConfigError, match='oauth_provider = "microsoft"'):
        make_config(db_url, tmp_path, mail_out={"transport": "graph"})
    config = make_config(
        db_url, tmp_path, imap=[{**_intake("gmail"), "oauth_provider": "microsoft"}]
    )
    with pytest.raises(ConfigError, match=r"imap\[0\].*transport = \"gmail\".*\"google\""):
        build_mail_sources(config, None)
    config = make_config(db_url, tmp_path, imap=[{**_intake("imap"), "auth": "xoauth2"}])
    with pytest.raises(ConfigError, match="set host"):
        build_mail_sources(config, None)


async def test_graph_refusing_a_fresh_token_says_to_reconnect(
    db_url, tmp_path, monkeypatch, engine, microsoft
):
    config = _config(
        db_url,
        tmp_path,
        monkeypatch,
        microsoft,
        mail_out={"transport": "graph", "oauth_provider": "microsoft", "from_address": USER},
    )
    store = state_store(engine, config)
    _connect(store, MAIL_OUT, microsoft)
    sender = build_mail_sender(config, store)
    assert sender is not None
    # Refused before and after a refresh (e.g. the admin removed the Graph permission).
    microsoft.throttle_next(401, retry_after=0, times=2)
    with pytest.raises(MailboxAuthError, match="connected again.*reconnect the mailbox"):
        await sender.send(build_message(USER, "office@clinic.example", "Hi", "1 SMS"))
    assert [r["grant_type"] for r in microsoft.token_requests] == ["refresh_token"] * 2
    assert "Mail.Send" in microsoft.token_requests[-1]["scope"]
    # A next/delta link off the API's host is never followed with the token.
    api = MailApi(sender.access, f"{microsoft.url}/v1.0", "Microsoft Graph")  # type: ignore[attr-defined]
    with pytest.raises(MailApiError, match="off its host"):
        api.request("GET", "", url="https://elsewhere.example/v1.0/me/messages")
    api.close()


async def test_background_loop_reads_new_mail_when_woken(
    db_url, tmp_path, monkeypatch, engine, intake_address, transport, fake
):
    inbox = "Inbox" if transport == "graph" else "INBOX"
    config = _config(
        db_url,
        tmp_path,
        monkeypatch,
        fake,
        imap=[{**_intake(transport), "folder": inbox, "poll_interval": 60.0}],
    )
    store = state_store(engine, config)
    _connect(store, KEY, fake)
    [source] = build_mail_sources(config, IntakePolicy(engine, config), store=store)
    await source.start()
    try:
        for _ in range(100):
            if source.state == "polling":
                break
            await asyncio.sleep(0.05)
        assert source.state == "polling"
        _deliver(fake, inbox, _mail("06 12 34 56 78"))
        source.wake()
        for _ in range(100):
            if _filed(fake, "Processed"):
                break
            await asyncio.sleep(0.05)
        assert len(_filed(fake, "Processed")) == 1
        assert _recipients(engine) == ["+33612345678"]
        assert source.status()["last_error"] is None
    finally:
        await source.stop()
    assert source.state == "stopped"


async def test_gmail_history_too_old_lists_the_label_again(
    db_url, tmp_path, monkeypatch, engine, intake_address, google
):
    config = _config(db_url, tmp_path, monkeypatch, google, imap=[_intake("gmail")])
    store = state_store(engine, config)
    _connect(store, KEY, google)
    [source] = build_mail_sources(config, IntakePolicy(engine, config), store=store)
    try:
        _deliver(google, "INBOX", _mail("06 12 34 56 78"))
        assert (await source.run_once())["accepted"] == 1
        with google.lock:
            google.mail.expire_history()
        _deliver(google, "INBOX", _mail("06 11 22 33 44"))
        stats = await source.run_once()
        assert (stats["found"], stats["accepted"]) == (1, 1)
        assert len(_filed(google, "Processed")) == 2
        # The next pass starts from the fresh history id again.
        assert (await source.run_once())["found"] == 0
    finally:
        await source.stop()
