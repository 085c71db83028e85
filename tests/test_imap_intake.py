"""Mail to SMS from an IMAP mailbox, against a real Dovecot, on both database backends."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy import Engine
from sqlmodel import select

from connectors.mail.imap_source import ImapSource, ImapSourceSettings, ImapUnavailable
from hub.errors import ConfigError
from hub.mail.intake.addresses import add_intake_address
from hub.mail.intake.policy import IntakeOutcome, IntakePolicy, MailEnvelope
from hub.store.db import session_scope
from hub.store.models import InboundMail, Message
from tests.conftest import make_config
from tests.servers._util import wait_until, wait_until_async
from tests.servers.dovecot import (  # noqa: F401  (the fixtures)
    DovecotServer,
    dovecot_factory_fixture,
    dovecot_fixture,
)

INTAKE = "sms@hub.test"
GENUINE = (
    "mx.clinic.example; spf=pass smtp.mailfrom=clinic.example; dkim=pass header.d=clinic.example"
)
# Long enough to prove the loop was woken by IDLE (or a reconnect), never by a poll.
NEVER = 3600.0


def _mail(
    subject: str = "06 12 34 56 78",
    body: str = "Rendez-vous demain 9h",
    sender: str = "anne@clinic.example",
    auth: str | None = GENUINE,
) -> bytes:
    msg = EmailMessage()
    msg["Return-Path"] = f"<{sender}>"
    msg["From"] = f"Anne <{sender}>"
    msg["To"] = INTAKE
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="clinic.example")
    if auth is not None:
        msg["Authentication-Results"] = auth
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP_POLICY)


def _messages(engine: Engine) -> list[Message]:
    with session_scope(engine) as s:
        return list(s.exec(select(Message).order_by(Message.recipient)).all())


def _inbound(engine: Engine) -> list[InboundMail]:
    with session_scope(engine) as s:
        return list(s.exec(select(InboundMail)).all())


@pytest.fixture
def policy(db_url: str, tmp_path: Path, engine: Engine, account: str) -> IntakePolicy:
    config = make_config(
        db_url,
        tmp_path,
        smtp={"max_message_size": 20_000},
    )
    with session_scope(engine) as s:
        add_intake_address(s, account, INTAKE, allowed_senders=["@clinic.example"])
    return IntakePolicy(engine, config)


@pytest.fixture
async def make_source(
    dovecot: DovecotServer,
    policy: IntakePolicy,
) -> AsyncIterator[Callable[..., tuple[ImapSource, str]]]:
    """``(server=dovecot, user=None, **settings) -> (source, user)``: a source reading a
    fresh mailbox (plain IMAP unless told); all are stopped after the test."""
    sources: list[ImapSource] = []

    def factory(
        server: DovecotServer | None = None,
        user: str | None = None,
        password: str | None = None,
        **options: Any,
    ) -> tuple[ImapSource, str]:
        server = server or dovecot
        if user is None:
            user, _ = server.add_user()
        values: dict[str, Any] = {
            "host": server.host,
            "port": server.port,
            "security": "plain",
            "username": user,
            "password_env": "SMSHUB_TEST_IMAP_PASSWORD",  # not read: the password is given
            "intake_address": INTAKE,
            # The mailbox's server is the relay here: its verdicts count.
            "trusted_authserv_id": "mx.clinic.example",
            "poll_interval": NEVER,
            "timeout": 5.0,
        }
        values.update(options)
        source = ImapSource(
            ImapSourceSettings.model_validate(values),
            policy,
            password or server.passwords[user],
        )
        sources.append(source)
        return source, user

    yield factory
    for source in sources:
        await source.stop()


async def test_mail_in_inbox_becomes_sms_and_moves_to_processed(make_source, dovecot, engine):
    source, user = make_source()
    accepted: list[IntakeOutcome] = []
    source.on_accepted = accepted.append
    raw = _mail("06 12 34 56 78, +41 79 123 45 67")
    dovecot.append(user, "INBOX", raw)

    stats = await source.run_once()
    await asyncio.sleep(0)  # the hook runs in the event loop

    assert (stats["found"], stats["accepted"], stats["moved"]) == (1, 1, 1)
    assert [m.recipient for m in _messages(engine)] == ["+33612345678", "+41791234567"]
    assert {m.text for m in _messages(engine)} == {"Rendez-vous demain 9h"}
    [mail] = _inbound(engine)
    assert (mail.source, mail.mail_from, mail.rcpt_to) == ("imap", "anne@clinic.example", INTAKE)
    assert dovecot.list_folder(user, "INBOX") == []
    assert dovecot.list_folder(user, "Processed") == [raw]
    assert dovecot.list_folder(user, "Failed") == []  # created, empty
    assert len(accepted) == 1 and accepted[0].mail_id == mail.id
    again = await source.run_once()
    assert again["found"] == 0 and len(_messages(engine)) == 2


async def test_forged_unauthorized_and_oversized_mail_go_to_failed(make_source, dovecot, engine):
    source, user = make_source()
    forged = _mail(auth="mx.evil.example; dmarc=pass header.from=clinic.example")
    outsider = _mail(
        sender="eve@other.example",
        auth="mx.clinic.example; dmarc=pass header.from=other.example",
    )
    unverified = _mail(auth=None)
    huge = _mail(body="x" * 30_000)
    for raw in (forged, outsider, unverified, huge):
        dovecot.append(user, "INBOX", raw)

    stats = await source.run_once()

    assert (stats["failed"], stats["accepted"], stats["moved"]) == (4, 0, 4)
    assert _messages(engine) == [] and _inbound(engine) == []
    assert dovecot.list_folder(user, "INBOX") == []
    assert dovecot.list_folder(user, "Failed") == [forged, outsider, unverified, huge]
    reasons = {f.uid: f.reply for f in source.failed}
    assert reasons[1].startswith("550 5.7.1 could not verify that this mail is from anne@")
    assert (
        reasons[2] == "550 5.7.1 eve@other.example is not allowed to send SMS through this address"
    )
    assert "no Authentication-Results from a trusted relay" in reasons[3]
    assert reasons[4].startswith("552") and "the limit is 20000 bytes" in reasons[4]
    assert {f.uid: f.sender for f in source.failed}[2] == "eve@other.example"


async def test_crash_between_commit_and_move_moves_it_next_time(
    make_source,
    dovecot,
    engine,
    policy,
    monkeypatch,
):
    source, user = make_source()
    # 1. Taken by a previous process that died before moving it.
    first = _mail("0612345678")
    dovecot.append(user, "INBOX", first)
    outcome = policy.take(
        MailEnvelope(
            first,
            "anne@clinic.example",
            [INTAKE],
            source="imap",
            authserv_ids=("mx.clinic.example",),
        )
    )
    assert outcome.accepted and not outcome.duplicate
    # 2. Taken by this process, then the connection drops before the MOVE.
    second = _mail("0698765432")
    dovecot.append(user, "INBOX", second)
    real_move = source._move
    calls = 0

    def move_then_die(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError(104, "Connection reset by peer")
        real_move(*args)

    monkeypatch.setattr(source, "_move", move_then_die)
    with pytest.raises(ImapUnavailable, match="Connection reset by peer"):
        await source.run_once()
    assert len(dovecot.list_folder(user, "INBOX")) == 2
    assert [m.recipient for m in _messages(engine)] == ["+33612345678", "+33698765432"]

    stats = await source.run_once()

    assert (stats["duplicates"], stats["accepted"], stats["moved"]) == (2, 0, 2)
    assert [m.recipient for m in _messages(engine)] == ["+33612345678", "+33698765432"]
    assert len(_inbound(engine)) == 2
    assert dovecot.list_folder(user, "INBOX") == []
    assert dovecot.list_folder(user, "Processed") == [first, second]


async def test_uidvalidity_change_forgets_cached_uids(make_source, dovecot, engine, monkeypatch):
    source, user = make_source(folder="SMS", retry_backoff=NEVER)
    later = _mail("0612345678", body="try me later")
    dovecot.append(user, "SMS", later)
    old_validity = dovecot.uidvalidity(user, "SMS")
    real_take = source.policy.take

    def busy(env: MailEnvelope) -> IntakeOutcome:
        if b"try me later" in env.raw:
            return IntakeOutcome(accepted=False, reply="451 4.3.0 temporary failure")
        return real_take(env)

    monkeypatch.setattr(source.policy, "take", busy)
    stats = await source.run_once()
    assert (stats["deferred"], stats["moved"]) == (1, 0)
    assert dovecot.list_folder(user, "SMS") == [later]  # a 4xx stays, to be retried
    stats = await source.run_once()
    assert (stats["found"], stats["waiting"], stats["deferred"]) == (1, 1, 0)  # backing off

    # The folder is recreated: its new mail gets UID 1 again, under a new UIDVALIDITY.
    dovecot.delete_folder(user, "SMS")
    fresh = _mail("0612345678", body="fresh mail")
    assert dovecot.append(user, "SMS", fresh) == 1
    assert dovecot.uidvalidity(user, "SMS") != old_validity

    stats = await source.run_once()

    # UID 1 was "waiting" under the old UIDVALIDITY; under the new one it is another mail.
    assert stats["uidvalidity_changed"] and stats["uidvalidity"] != old_validity
    assert (stats["waiting"], stats["accepted"], stats["moved"]) == (0, 1, 1)
    assert [m.text for m in _messages(engine)] == ["fresh mail"]
    assert dovecot.list_folder(user, "Processed") == [fresh]
    assert all(key[0] == stats["uidvalidity"] for key in source._retries)


async def test_idle_wakes_the_loop_when_mail_arrives(make_source, dovecot, engine):
    source, user = make_source()
    await source.start()
    await wait_until_async(lambda: source.state == "idle", 5, "the source to enter IDLE")
    raw = _mail("0612345678")
    await asyncio.to_thread(dovecot.append, user, "INBOX", raw)

    await wait_until_async(lambda: _messages(engine), 4, "the SMS of the mail")
    await wait_until_async(lambda: source.state == "idle", 4, "the source to IDLE again")

    assert await asyncio.to_thread(dovecot.list_folder, user, "Processed") == [raw]
    assert len(_messages(engine)) == 1


async def test_mail_arriving_just_before_idle_is_not_missed(
    make_source, dovecot, engine, monkeypatch
):
    # Dovecot reports such a mail in the same packet as "+ idling", so imaplib has already
    # buffered it where poll() cannot see it (found by experiment).
    source, user = make_source()
    real_idle = IMAPClient.idle
    raced = False

    def mail_then_idle(self: IMAPClient) -> Any:
        nonlocal raced
        if not raced:
            raced = True
            dovecot.append(user, "INBOX", _mail("0612345678"))
        return real_idle(self)

    monkeypatch.setattr(IMAPClient, "idle", mail_then_idle)
    await source.start()

    await wait_until_async(lambda: _messages(engine), 4, "the SMS of the mail")


async def test_idle_is_renewed_and_a_4xx_is_retried_after_its_backoff(
    make_source, dovecot, engine, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="smshub.imap")
    idles = 0
    real_idle = IMAPClient.idle

    def counting_idle(self: IMAPClient) -> Any:
        nonlocal idles
        idles += 1
        return real_idle(self)

    monkeypatch.setattr(IMAPClient, "idle", counting_idle)
    source, user = make_source(retry_backoff=0.3)
    source.idle_renew_seconds = 0.2
    real_take = source.policy.take
    answers = iter(["451 4.3.0 temporary failure; please try again later"])

    def busy_once(env: MailEnvelope) -> IntakeOutcome:
        reply = next(answers, None)
        return IntakeOutcome(False, reply) if reply else real_take(env)

    monkeypatch.setattr(source.policy, "take", busy_once)
    dovecot.append(user, "INBOX", _mail("0612345678"))
    await source.start()

    # No new mail arrives: only the retry deadline can end the IDLE that follows the 451.
    await wait_until_async(lambda: _messages(engine), 4, "the retried mail's SMS")
    assert "left in 'INBOX' (the hub answered '451 4.3.0" in caplog.text
    assert "trying again in 0.3 s" in caplog.text
    count = idles
    await wait_until_async(lambda: idles >= count + 2, 2, "IDLE to be renewed")
    assert await asyncio.to_thread(dovecot.list_folder, user, "INBOX") == []


async def test_polls_when_the_server_refuses_idle(
    make_source, dovecot, engine, monkeypatch, caplog
):
    def refuse(self: IMAPClient) -> None:
        raise IMAPClientError("IDLE is switched off here")

    monkeypatch.setattr(IMAPClient, "idle", refuse)
    source, user = make_source(poll_interval=0.2)
    await source.start()
    await wait_until_async(lambda: source.state == "polling", 5, "the source to poll")
    await asyncio.to_thread(dovecot.append, user, "INBOX", _mail("0612345678"))

    await wait_until_async(lambda: _messages(engine), 4, "the SMS of the mail")
    assert "refused IDLE (IDLE is switched off here); checking for mail every 0.2 s" in caplog.text


async def test_reconnects_with_backoff_when_the_server_goes_away(
    make_source,
    dovecot_factory,
    engine,
    caplog,
):
    caplog.set_level(logging.INFO, logger="smshub.imap")
    server = dovecot_factory()
    user, _ = server.add_user()
    source, _ = make_source(server=server, user=user)
    source.reconnect_initial, source.reconnect_max = 0.05, 0.4
    await source.start()
    await wait_until_async(lambda: source.state == "idle", 5, "the source to enter IDLE")

    await asyncio.to_thread(server.stop)  # clients get "* BYE Server shutting down."

    def retries() -> list[str]:
        return [r.getMessage() for r in caplog.records if "trying again in" in r.getMessage()]

    def refused() -> list[float]:
        """Delays after each failure since the server stopped accepting connections."""
        delays = [float(line.rsplit(" ", 2)[-2]) for line in retries()]
        run = len(delays)
        while run and "connection refused" in retries()[run - 1]:
            run -= 1
        return delays[run:]

    await wait_until_async(
        lambda: len(refused()) >= 4 and refused()[-1] == 0.4,
        5,
        "failed reconnections to the stopped server",
    )
    assert f"the connection to 127.0.0.1:{server.port} was closed" in retries()[0]
    # While the server is away the delay doubles, up to the cap.
    delays = refused()
    assert all(b == min(a * 2, 0.4) for a, b in itertools.pairwise(delays)), delays
    assert server.passwords[user] not in caplog.text

    await asyncio.to_thread(server.start)
    await asyncio.to_thread(server.append, user, "INBOX", _mail("0612345678"))
    await wait_until_async(lambda: _messages(engine), 5, "the SMS after the restart")
    assert "connected again after" in caplog.text

    # Kicked out server-side (doveadm kick): back at once, no SMS lost or doubled.
    await wait_until_async(lambda: source.state == "idle", 5, "the source to IDLE again")
    await asyncio.to_thread(server.kick, user)
    await asyncio.to_thread(server.append, user, "INBOX", _mail("0698765432"))
    await wait_until_async(lambda: len(_messages(engine)) == 2, 5, "the SMS after the kick")
    assert [m.recipient for m in _messages(engine)] == ["+33612345678", "+33698765432"]
    # A mail is moved to Processed after its SMS is committed: a moment after it is seen.
    # Asking Dovecot blocks, so the wait runs in a thread and the hub's loop keeps moving.
    await asyncio.to_thread(
        wait_until,
        lambda: len(server.list_folder(user, "Processed")) >= 2,
        5,
        "both mails moved to Processed",
    )
    assert len(await asyncio.to_thread(server.list_folder, user, "Processed")) == 2


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_tls_with_the_servers_certificate(make_source, dovecot, engine, security):
    if dovecot.ca_file is None:
        pytest.skip("openssl is missing, so the test Dovecot has no certificate")
    port = dovecot.tls_port if security == "tls" else dovecot.port
    source, user = make_source(
        host="localhost", port=port, security=security, ca_file=str(dovecot.ca_file)
    )
    dovecot.append(user, "INBOX", _mail("0612345678"))
    assert (await source.run_once())["accepted"] == 1

    untrusted, _ = make_source(host="localhost", port=port, security=security)
    with pytest.raises(ImapUnavailable, match="TLS certificate of localhost:.* was not accepted"):
        await untrusted.run_once()


async def test_wrong_password_is_reported_without_the_password(make_source, dovecot, caplog):
    caplog.set_level(logging.DEBUG)
    source, user = make_source(password="not-the-password-42")
    with pytest.raises(ImapUnavailable) as err:
        await source.run_once()
    assert f"refused the login of {user!r}" in str(err.value)
    assert "SMSHUB_TEST_IMAP_PASSWORD" in str(err.value)
    assert "not-the-password-42" not in str(err.value) + caplog.text


def test_settings_errors_name_the_key():
    with pytest.raises(ConfigError) as err:
        ImapSourceSettings.from_config(
            {"host": "imap.example", "username": "u", "intake_address": "nope", "colour": 1},
            "imap[0]",
        )
    text = str(err.value)
    assert "'imap[0].intake_address'" in text and "unknown key 'imap[0].colour'" in text
    with pytest.raises(ConfigError, match="password_env or password_file"):
        ImapSourceSettings.from_config(
            {"host": "imap.example", "username": "u", "intake_address": INTAKE}, "imap[0]"
        )
    settings = ImapSourceSettings.from_config(
        {"host": "imap.example", "username": "u", "intake_address": INTAKE, "password_env": "X"}
    )
    assert (settings.effective_port, settings.label) == (993, "u@imap.example/INBOX")


async def test_a_refused_mail_is_told_to_its_verified_sender_never_to_a_forged_one(
    make_source, policy, dovecot, engine, smtp_sink, db_url, tmp_path
):
    """Issue 17: a mailbox mail refused used to go to Failed with no word to anyone."""
    from hub.mail.intake import refusals
    from hub.mail.outbox import MailOutbox
    from hub.ports.registry import build_mail_sender

    policy.config = make_config(
        db_url,
        tmp_path,
        smtp={"max_message_size": 20_000},
        mail_out={"host": "127.0.0.1", "port": smtp_sink.port, "starttls": False},
    )
    source, user = make_source()
    # A genuine sender (the trusted relay vouches for it) who forgot the number.
    genuine = _mail(subject="Rendez-vous demain")
    # The same From, but vouched for by nobody the hub trusts: maybe forged.
    forged = _mail(
        subject="Rendez-vous demain",
        auth="mx.evil.example; dmarc=pass header.from=clinic.example",
    )
    for raw in (genuine, forged):
        dovecot.append(user, "INBOX", raw)

    stats = await source.run_once()
    assert (stats["failed"], stats["accepted"]) == (2, 0)
    sender = build_mail_sender(policy.config)
    assert sender is not None
    assert await MailOutbox(engine, sender).send_due() == 1

    [notice] = smtp_sink.messages
    assert notice["To"] == "anne@clinic.example"
    assert notice["Subject"] == "SMS not sent: Rendez-vous demain"
    body = notice.get_body().get_content()
    assert "no SMS was sent" in body
    assert "550 5.1.3 no phone number found in the subject 'Rendez-vous demain'" in body
    # Both refusals are kept for the console, the forged one told to nobody.
    with session_scope(engine) as s:
        rows = refusals.recent(s, [1])
    assert [(r.door, r.sender, r.notified) for r in rows] == [
        ("imap", "anne@clinic.example", ""),
        ("imap", "anne@clinic.example", "anne@clinic.example"),
    ]
    assert rows[0].reason.startswith("550 5.7.1 could not verify that this mail is from anne@")


async def test_the_refusal_notice_is_written_in_the_accounts_language(
    make_source, policy, dovecot, engine, smtp_sink, db_url, tmp_path
):
    """Issue 18: a French account's sender reads the refusal in French, like a confirmation
    (the reason stays the hub's SMTP text, the words a bounce would carry)."""
    from hub.mail.outbox import MailOutbox
    from hub.ports.registry import build_mail_sender
    from hub.store.models import Account

    policy.config = make_config(
        db_url,
        tmp_path,
        mail_out={"host": "127.0.0.1", "port": smtp_sink.port, "starttls": False},
    )
    with session_scope(engine) as s:
        account = s.get(Account, 1)
        assert account is not None
        account.locale = "fr"
    source, user = make_source()
    dovecot.append(user, "INBOX", _mail(subject="Rendez-vous demain"))

    stats = await source.run_once()
    assert stats["failed"] == 1
    sender = build_mail_sender(policy.config)
    assert sender is not None
    assert await MailOutbox(engine, sender).send_due() == 1

    [notice] = smtp_sink.messages
    assert notice["Subject"] == "SMS non envoyé : Rendez-vous demain"
    body = notice.get_body().get_content()
    assert "aucun SMS n'a été envoyé" in body and "Motif :" in body
    assert "550 5.1.3 no phone number found in the subject 'Rendez-vous demain'" in body
