"""The confirmation of a mail to SMS tells the truth (issue 17): when each SMS goes out
(a marketing SMS held for its hours says until when, in the recipient's local time) and the
exact text sent, with the opt-out mention submit added, its parts and credits."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlmodel import select

from hub.core.timeutil import utcnow
from hub.mail.intake.addresses import add_intake_address
from hub.mail.intake.policy import IntakePolicy, MailEnvelope
from hub.mail.outbox import MailOutbox
from hub.ports.registry import build_mail_sender
from hub.store.db import session_scope
from hub.store.models import Message
from tests.conftest import make_config
from tests.servers.smtp_sink import SmtpSink

INTAKE = "sms@hub.test"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


async def test_a_held_marketing_mail_is_confirmed_with_its_time_and_exact_text(
    db_url: str, tmp_path: Path, engine: Engine, account: str, smtp_sink: SmtpSink
) -> None:
    # Marketing SMS may go out only on the day three days from now (Paris time): this one
    # is held until then, 08:00, whenever the test runs.
    day = (utcnow().astimezone(ZoneInfo("Europe/Paris")) + timedelta(days=3)).date()
    config = make_config(
        db_url,
        tmp_path,
        mail_out={"host": "127.0.0.1", "port": smtp_sink.port, "starttls": False},
        marketing_hours={"days": [DAYS[day.weekday()]], "public_holidays": False},
    )
    with session_scope(engine) as s:
        add_intake_address(s, account, INTAKE, allowed_senders=["@clinic.example"])
    msg = EmailMessage()
    msg["From"] = "Anne <anne@clinic.example>"
    msg["To"] = INTAKE
    msg["Subject"] = "06 12 34 56 78, 06 98 76 54 32 type:marketing sender:Clinique"
    msg["Message-ID"] = make_msgid(domain="clinic.example")
    msg["Authentication-Results"] = "mx.clinic.example; dmarc=pass header.from=clinic.example"
    msg.set_content("Portes ouvertes samedi")
    outcome = IntakePolicy(engine, config).take(
        MailEnvelope(
            raw=msg.as_bytes(policy=SMTP_POLICY),
            mail_from="anne@clinic.example",
            rcpt_to=[INTAKE],
            source="imap",
            authserv_ids=("mx.clinic.example",),
        )
    )
    assert outcome.accepted, outcome.reply
    sender = build_mail_sender(config)
    assert sender is not None
    assert await MailOutbox(engine, sender).send_due() == 1

    [confirmation] = smtp_sink.messages
    body = confirmation.get_body().get_content().replace("\r\n", "\n")
    with session_scope(engine) as s:
        sent = s.exec(select(Message).order_by(Message.recipient)).all()
    [text] = {m.text for m in sent}
    # The text as sent, opt-out mention included, is what the mail shows.
    assert text != "Portes ouvertes samedi" and "STOP" in text
    assert "\n".join(f"    {line}" for line in text.splitlines()) in body
    assert f"Text sent ({sent[0].segments} part" in body
    held = f"held until {day:%Y-%m-%d} 08:00 Europe/Paris"
    for m in sent:
        credits = f"{m.credits} credit{'s' if m.credits != 1 else ''}"
        assert f"    {m.recipient}  ({credits})  {held}" in body
    assert "on their way" not in body
    assert "2 SMS are queued: they go out at the times below" in body
