"""The per-sender SMTP limit holds across intake instances (it was counted per process:
two instances let a sender through twice as often)."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

from sqlalchemy import Engine

from hub.mail.intake.addresses import MailLogin, add_intake_address, add_mail_user
from hub.mail.intake.policy import IntakePolicy, MailEnvelope
from hub.store.db import session_scope
from tests.conftest import make_config

INTAKE = "sms@hub.test"


def _env(login: MailLogin, n: int) -> MailEnvelope:
    msg = EmailMessage()
    msg["From"] = "reception@clinic.example"
    msg["To"] = INTAKE
    msg["Subject"] = "0612345678"
    msg["Message-ID"] = f"<limit-{n}@clinic.example>"
    msg.set_content("Rappel")
    return MailEnvelope(
        msg.as_bytes(policy=SMTP_POLICY), "reception@clinic.example", [INTAKE], login=login
    )


def test_sender_limit_holds_across_two_intake_instances(
    engine: Engine, db_url: str, tmp_path: Path, account: str
) -> None:
    config = make_config(
        db_url, tmp_path, smtp={"mails_per_sender_per_minute": 4, "confirmations": False}
    )
    with session_scope(engine) as s:
        add_intake_address(s, "acme", INTAKE, require_auth=True)
        user = add_mail_user(s, "acme", "reception", "correct horse battery")
        assert user.id is not None
        login = MailLogin(user.id, "reception", user.account_id)
    # Two instances: two policies, each with its own caches and connection.
    first, second = IntakePolicy(engine, config), IntakePolicy(engine, config)
    replies = []
    for n in range(8):
        policy = first if n % 2 == 0 else second
        replies.append(policy.take(_env(login, n)).reply)
    accepted = [r for r in replies if r.startswith("250")]
    refused = [r for r in replies if not r.startswith("250")]
    assert len(accepted) == 4, replies
    assert len(refused) == 4
    assert all(r.startswith("450 4.7.1 reception sent more than 4 mails") for r in refused)
    assert all("smtp.mails_per_sender_per_minute" in r for r in refused)


def test_a_group_taken_again_counts_each_mail_once(
    engine: Engine, db_url: str, tmp_path: Path, account: str
) -> None:
    config = make_config(
        db_url, tmp_path, smtp={"mails_per_sender_per_minute": 3, "confirmations": False}
    )
    with session_scope(engine) as s:
        add_intake_address(s, "acme", INTAKE, require_auth=True)
        user = add_mail_user(s, "acme", "reception", "correct horse battery")
        assert user.id is not None
        login = MailLogin(user.id, "reception", user.account_id)
    policy = IntakePolicy(engine, config)
    # Three mails in one group transaction count three, the fourth is over the limit.
    outcomes = policy.take_group([_env(login, n) for n in range(3)])
    assert [o.reply[:3] for o in outcomes] == ["250"] * 3
    assert policy.take(_env(login, 99)).reply.startswith("450 4.7.1")
