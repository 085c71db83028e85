"""Answers come back: inbound SMS to e-mail, e-mail replies to SMS, STOP/START, auto-replies."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from hub.errors import InvalidInput
from hub.mail.intake.addresses import add_intake_address
from hub.mail.intake.policy import IntakePolicy, MailEnvelope
from hub.sending import submit as sending
from hub.sending.optout import classify, normalize_keyword, remove_number
from hub.store.db import session_scope
from hub.store.models import Account, BlacklistEntry, InboundMessage, Message, OptOutEvent
from tests.conftest import MakeHub, make_config
from tests.servers.smtp_sink import SmtpSink

AR = "mx.clinic.example; dmarc=pass header.from=clinic.example"


@pytest.fixture
async def hub(
    db_url: str, tmp_path: Path, engine: Any, account: str, smtp_sink: SmtpSink, make_hub: MakeHub
) -> Any:
    config = make_config(
        db_url,
        tmp_path,
        smtp={
            "trusted_relays": [{"authserv_id": "mx.clinic.example", "networks": ["127.0.0.0/8"]}],
            "reply_domain": "reply.hub.test",
        },
        mail_out={
            "host": "127.0.0.1",
            "port": smtp_sink.port,
            "starttls": False,
            "from_address": "sms@hub.test",
        },
    )
    with session_scope(engine) as s:
        add_intake_address(s, "acme", "sms@hub.test", allowed_senders=["@clinic.example"])
    instance = await make_hub(config=config)
    instance.policy = IntakePolicy(engine, config)
    yield instance
    await instance.stop()


def _mail(
    subject: str,
    body: str,
    to: str = "sms@hub.test",
    sender: str = "anne@clinic.example",
    extra: dict[str, str] | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Anne Martin <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="clinic.example")
    msg["Authentication-Results"] = AR
    for k, v in (extra or {}).items():
        msg[k] = v
    msg.set_content(body)
    return msg


def _take(hub: Any, msg: EmailMessage, rcpt: str | None = None) -> Any:
    return hub.policy.take(
        MailEnvelope(
            raw=msg.as_bytes(policy=SMTP_POLICY),
            mail_from="anne@clinic.example",
            rcpt_to=[rcpt or str(msg["To"])],
            peer="127.0.0.1",  # the relay
        )
    )


async def _receive(hub: Any, number: str, text: str) -> InboundMessage:
    assert await hub.providers["simulator"].receive(number, text)
    with session_scope(hub.engine) as s:
        return s.exec(select(InboundMessage).order_by(col(InboundMessage.id).desc())).first()


def _messages(hub: Any, **where: Any) -> list[Message]:
    with session_scope(hub.engine) as s:
        query = select(Message).order_by(col(Message.created_at))
        for k, v in where.items():
            query = query.where(getattr(Message, k) == v)
        return list(s.exec(query).all())


async def test_answer_is_forwarded_and_the_mail_reply_goes_back_by_sms(hub, smtp_sink):
    original = _mail(
        "06 12 34 56 78", "Rendez-vous demain à 9h chez le Dr Martin, merci de confirmer"
    )
    assert _take(hub, original).accepted
    await hub.dispatcher.drain()
    inbound = await _receive(hub, "+33612345678", "Oui je confirme")
    assert inbound.handling == "forwarded"
    assert inbound.forwarded_to == "anne@clinic.example"
    assert await hub.mail_outbox.send_due() == 2  # the intake confirmation and the answer
    forwarded = next(m for m in smtp_sink.messages if m["Subject"].startswith("SMS from"))
    assert forwarded["To"] == "anne@clinic.example"
    assert forwarded["Subject"] == (
        "SMS from +33 6 12 34 56 78 (re: Rendez-vous demain à 9h chez le…)"
    )
    assert forwarded["In-Reply-To"] == original["Message-ID"]
    assert "<sms-1-33612345678@smshub>" in forwarded["References"]
    reply_to = forwarded["Reply-To"]
    assert reply_to.startswith("reply+") and reply_to.endswith("@reply.hub.test")
    assert "Oui je confirme" in forwarded.get_content()

    answer = _mail(
        "Re: " + forwarded["Subject"],
        "Parfait, à demain !\n\nAnne\n\nLe 25 nov. 2026 à 10:02, sms@hub.test a écrit :\n"
        "> Oui je confirme\n",
        to=reply_to,
        extra={"In-Reply-To": forwarded["Message-ID"]},
    )
    outcome = _take(hub, answer)
    assert outcome.accepted, outcome.reply
    [sms] = _messages(hub, source="reply")
    assert (sms.recipient, sms.text) == ("+33612345678", "Parfait, à demain !\n\nAnne")
    assert _take(hub, answer).duplicate  # the same answer twice sends once

    # The phone writes again after the answer: the conversation stays with Anne.
    await hub.dispatcher.drain()
    again = await _receive(hub, "+33612345678", "Merci, à demain")
    assert again.forwarded_to == "anne@clinic.example"


async def test_reply_from_someone_else_or_forged_address_is_refused(hub, smtp_sink):
    _take(hub, _mail("0612345678", "Bonjour"))
    await hub.dispatcher.drain()
    inbound = await _receive(hub, "+33612345678", "Qui est-ce ?")
    from hub.mail.replytokens import reply_address

    with session_scope(hub.engine) as s:
        address = reply_address(s, inbound.id, "reply.hub.test")
    outcome = _take(hub, _mail("Re", "C'est moi", to=address, sender="eve@clinic.example"))
    assert not outcome.accepted
    assert "only anne@clinic.example can answer" in outcome.reply
    forged = address.replace(address.split(".")[1][:4], "0000")
    assert hub.policy.check_rcpt(forged, None).startswith("550")
    assert hub.policy.check_rcpt(address, None) is None
    empty = _take(hub, _mail("Re", "> Qui est-ce ?\n", to=address))
    assert "no new text" in empty.reply
    assert _messages(hub, source="reply") == []


@pytest.mark.parametrize(
    "text",
    ["STOP", "stop", "Stop !", "ARRÊT", "arret sms", "STOP SMS", "Unsubscribe", "stop please"],
)
def test_stop_keywords(text, config):
    assert classify(text, config.inbound) == "stop"


@pytest.mark.parametrize("text", ["Start", "UNSTOP", "  start. "])
def test_start_keywords(text, config):
    assert classify(text, config.inbound) == "start"


def test_ordinary_answers_are_not_keywords(config):
    for text in ["Oui", "Je ne peux pas m'arrêter", "Non merci", "Stopper? non"]:
        assert classify(text, config.inbound) is None, text
    assert normalize_keyword("Arrêt, SVP!") == "ARRET SVP"


async def test_stop_blacklists_confirms_once_and_blocks_later_sends(hub):
    sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(
            account="acme", recipients=["0612345678"], text="Promo -20%", type="alert"
        ),
    )
    await hub.dispatcher.drain()
    inbound = await _receive(hub, "+33612345678", "Stop")
    assert inbound.handling.startswith("stop")
    notices = _messages(hub, source="optout")
    assert len(notices) == 1 and "START" in notices[0].text
    await _receive(hub, "+33612345678", "STOP")  # a second STOP: no second notice
    assert len(_messages(hub, source="optout")) == 1
    result = sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(
            account="acme", recipients=["0612345678"], text="Alerte", type="alert"
        ),
    )
    assert result.recipients[0].status == "rejected"
    assert "blacklist" in (result.recipients[0].reason or "")
    await _receive(hub, "+33612345678", "START")
    with session_scope(hub.engine) as s:
        assert s.exec(select(BlacklistEntry)).all() == []
        actions = [e.action for e in s.exec(select(OptOutEvent).order_by(col(OptOutEvent.id)))]
    assert actions == ["stop", "stop", "start"]
    assert len(_messages(hub, source="optout")) == 2


async def test_manual_removal_needs_a_consent_reason(hub):
    await _receive(hub, "+33612345678", "hello")  # unknown conversation: stored only
    with session_scope(hub.engine) as s:
        from hub.sending.optout import opt_out

        opt_out(s, 1, "+33612345678", "manual", "asked by phone")
    with session_scope(hub.engine) as s, pytest.raises(InvalidInput, match="consent"):
        remove_number(s, "acme", "0612345678", " ", "FR")
    with session_scope(hub.engine) as s:
        remove_number(s, "acme", "0612345678", "asked again by phone, 2026-11-25", "FR")


async def test_auto_responder_answers_once_per_period(hub):
    with session_scope(hub.engine) as s:
        acc = s.exec(select(Account).where(Account.name == "acme")).one()
        acc.autoreply_enabled = True
        acc.autoreply_text = "Merci, nous vous rappelons vite."
    sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(account="acme", recipients=["0612345678", "0698765432"], text="Info"),
    )
    await hub.dispatcher.drain()
    await _receive(hub, "+33612345678", "Bonjour ?")
    await _receive(hub, "+33612345678", "Vous êtes là ?")
    await _receive(hub, "+33698765432", "Allo")
    replies = _messages(hub, source="autoreply")
    assert sorted(m.recipient for m in replies) == ["+33612345678", "+33698765432"]
    inbound = await _receive(hub, "ACME-INFO", "Automatic message")
    assert "autoreply" not in inbound.handling
