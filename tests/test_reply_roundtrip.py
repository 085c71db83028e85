"""Replies in the inbox, end to end: a mail-to-SMS over SMTP, the phone's answer appended to
a real Dovecot folder threaded under the original mail, and the mail client's reply to that
answer (quote, attribution line, signature and all) sent back over SMTP as an SMS carrying
only the new text."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import default
from email.utils import make_msgid, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from hub.app import Hub
from hub.mail.intake.addresses import add_intake_address
from hub.mail.intake.policy import IntakePolicy
from hub.mail.intake.smtp import start_smtp
from hub.store.db import session_scope
from hub.store.models import InboundMessage, Message
from tests.conftest import MakeHub, make_config
from tests.servers.dovecot import DovecotServer, dovecot_fixture  # noqa: F401

ANNE = "anne@clinic.example"
INTAKE = "sms@hub.test"
PHONE = "+33612345678"
FOLDER = "SMS replies"
REPLY_DOMAIN = "reply.hub.test"
# What the organisation's MX stamps on mail it checked (the hub trusts mx.clinic.example).
AUTH_RESULTS = "mx.clinic.example; dmarc=pass header.from=clinic.example"
ORIGINAL_TEXT = "Rendez-vous demain à 9h chez le Dr Martin, merci de confirmer"
ANSWER_SMS = "Oui je confirme, mais je serai peut-être 5 min en retard"
NEW_TEXT = "Pas de souci, le docteur vous attendra.\nBonne soirée !"
FRENCH_MONTHS = [
    "janv.",
    "févr.",
    "mars",
    "avr.",
    "mai",
    "juin",
    "juil.",
    "août",
    "sept.",
    "oct.",
    "nov.",
    "déc.",
]


@dataclass
class RoundTrip:
    hub: Hub
    port: int
    dovecot: DovecotServer
    user: str


@pytest.fixture
async def roundtrip(
    db_url: str,
    tmp_path: Path,
    engine: Any,
    account: str,
    dovecot: DovecotServer,
    monkeypatch: pytest.MonkeyPatch,
    make_hub: MakeHub,
) -> AsyncIterator[RoundTrip]:
    """A hub with SMTP intake on a free port and its mail appended to a Dovecot folder."""
    user, password = dovecot.add_user()
    monkeypatch.setenv("TEST_IMAP_PASSWORD", password)
    config = make_config(
        db_url,
        tmp_path,
        smtp={
            "trusted_relays": [{"authserv_id": "mx.clinic.example", "networks": ["127.0.0.0/8"]}],
            "reply_domain": REPLY_DOMAIN,
        },
        mail_out={
            "method": "imap",
            "imap_host": dovecot.host,
            "imap_port": dovecot.port,
            "imap_security": "plain",
            "imap_username": user,
            "imap_password_env": "TEST_IMAP_PASSWORD",
            "imap_folder": FOLDER,
            "from_address": INTAKE,
        },
    )
    with session_scope(engine) as s:
        add_intake_address(s, account, INTAKE, allowed_senders=["@clinic.example"])
    hub = await make_hub(config=config)
    server = await start_smtp(IntakePolicy(engine, config), config, port=0)
    try:
        yield RoundTrip(hub, server.sockets[0].getsockname()[1], dovecot, user)
    finally:
        server.close()
        await server.wait_closed()
        await hub.stop()


async def _smtp_send(port: int, msg: EmailMessage, rcpt: str) -> dict[str, Any]:
    """Send MSG to RCPT like the organisation's MX would (no AUTH; CRLF line endings)."""

    def go() -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            return client.sendmail(ANNE, [rcpt], msg.as_bytes(policy=SMTP_POLICY))

    return await asyncio.to_thread(go)


def _folder(rt: RoundTrip) -> list[EmailMessage]:
    mails = []
    for raw in rt.dovecot.list_folder(rt.user, FOLDER):
        mail = message_from_bytes(raw, policy=default)
        assert isinstance(mail, EmailMessage)
        mails.append(mail)
    return mails


def _attribution(mail: EmailMessage) -> str:
    """The French attribution line a mail client writes above the quote."""
    when = parsedate_to_datetime(str(mail["Date"]))
    return (
        f"Le {when.day} {FRENCH_MONTHS[when.month - 1]} {when.year} à "
        f"{when:%H:%M}, {mail['From']} a écrit :"
    )


def _client_reply(forwarded: EmailMessage) -> EmailMessage:
    """The answer a mail client builds with "Reply": top-posted new text, signature, then the
    attribution line and the whole forwarded mail quoted with "> "."""
    body = forwarded.get_body(preferencelist=("plain",))
    assert body is not None
    quoted = "\n".join(
        ">" if not line.strip() else f"> {line}" for line in body.get_content().splitlines()
    )
    reply = EmailMessage()
    reply["From"] = f"Anne Martin <{ANNE}>"
    reply["To"] = str(forwarded["Reply-To"])
    reply["Subject"] = f"Re: {forwarded['Subject']}"
    reply["Message-ID"] = make_msgid(domain="clinic.example")
    reply["In-Reply-To"] = str(forwarded["Message-ID"])
    reply["References"] = f"{forwarded['References']} {forwarded['Message-ID']}"
    reply["Authentication-Results"] = AUTH_RESULTS
    reply.set_content(f"{NEW_TEXT}\n\n-- \nAnne\n\n{_attribution(forwarded)}\n{quoted}\n")
    return reply


def _messages(rt: RoundTrip, source: str) -> list[Message]:
    with session_scope(rt.hub.engine) as s:
        query = select(Message).where(Message.source == source).order_by(col(Message.created_at))
        return list(s.exec(query).all())


def _sent(rt: RoundTrip) -> list[dict[str, Any]]:
    return [e for e in rt.hub.providers["simulator"].read_log() if e["kind"] == "mt"]


async def test_mail_answer_sms_answer_mail_reply_sms(roundtrip: RoundTrip) -> None:
    rt = roundtrip
    assert rt.hub.dispatcher is not None and rt.hub.mail_outbox is not None

    # 1. Anne mails the SMS through her organisation's relay.
    original = EmailMessage()
    original["From"] = f"Anne Martin <{ANNE}>"
    original["To"] = INTAKE
    original["Subject"] = "06 12 34 56 78"
    original["Message-ID"] = make_msgid(domain="clinic.example")
    original["Authentication-Results"] = AUTH_RESULTS
    original.set_content(ORIGINAL_TEXT)
    assert await _smtp_send(rt.port, original, INTAKE) == {}
    [sms] = _messages(rt, "mail")
    assert (sms.recipient, sms.text) == (PHONE, ORIGINAL_TEXT)

    # 2. The dispatcher sends it through the simulator.
    await rt.hub.dispatcher.drain()
    assert [(e["to"], e["text"]) for e in _sent(rt)] == [(PHONE, ORIGINAL_TEXT)]

    # 3. The phone answers; the answer is forwarded to Anne, appended to the Dovecot folder.
    assert await rt.hub.providers["simulator"].receive(PHONE, ANSWER_SMS)
    with session_scope(rt.hub.engine) as s:
        inbound = s.exec(select(InboundMessage)).one()
    assert (inbound.handling, inbound.forwarded_to) == ("forwarded", ANNE)
    assert inbound.reply_to_message_id == sms.id
    # The intake confirmation and the forwarded answer.
    assert await rt.hub.mail_outbox.send_due() == 2
    mails = _folder(rt)
    [forwarded] = [m for m in mails if str(m["Subject"]).startswith("SMS from")]
    assert forwarded["To"] == ANNE
    assert forwarded["Subject"] == (
        "SMS from +33 6 12 34 56 78 (re: Rendez-vous demain à 9h chez le…)"
    )
    # Threaded under the original mail (and under the per-number thread).
    assert forwarded["In-Reply-To"] == original["Message-ID"]
    references = str(forwarded["References"]).split()
    assert references[0] == original["Message-ID"]
    assert f"<sms-1-{PHONE.lstrip('+')}@smshub>" in references
    reply_to = str(forwarded["Reply-To"])
    assert reply_to.startswith("reply+") and reply_to.endswith(f"@{REPLY_DOMAIN}")
    assert ANSWER_SMS in forwarded.get_body(preferencelist=("plain",)).get_content()

    # 4. Anne answers from her mail client; her MX relays it to the Reply-To address.
    answer = _client_reply(forwarded)
    assert "> " + ANSWER_SMS in answer.get_content()  # the quote holds the SMS text
    assert await _smtp_send(rt.port, answer, reply_to) == {}

    # 5. The phone gets only the new text: no signature, attribution line or quote.
    [reply_sms] = _messages(rt, "reply")
    assert (reply_sms.recipient, reply_sms.text) == (PHONE, NEW_TEXT)
    assert reply_sms.account_id == sms.account_id
    await rt.hub.dispatcher.drain()
    assert [(e["to"], e["text"]) for e in _sent(rt)] == [
        (PHONE, ORIGINAL_TEXT),
        (PHONE, NEW_TEXT),
    ]

    # The same answer relayed twice (an MX retry) sends nothing more.
    assert await _smtp_send(rt.port, answer, reply_to) == {}
    assert len(_messages(rt, "reply")) == 1
    await rt.hub.dispatcher.drain()
    assert len(_sent(rt)) == 2
