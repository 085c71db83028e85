"""Forwarded SMS reach the mailbox: by IMAP APPEND into a real Dovecot folder."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

from hub.sending import submit as sending
from hub.store.db import session_scope
from hub.store.models import Account
from tests.conftest import MakeHub, make_config
from tests.servers.dovecot import DovecotServer, dovecot_fixture  # noqa: F401


async def test_forwarded_sms_is_appended_to_the_mailbox_folder(
    db_url: str,
    tmp_path: Path,
    engine: Any,
    account: str,
    dovecot: DovecotServer,
    monkeypatch,
    make_hub: MakeHub,
) -> None:
    user, password = dovecot.add_user()
    monkeypatch.setenv("TEST_IMAP_PASSWORD", password)
    config = make_config(
        db_url,
        tmp_path,
        mail_out={
            "method": "imap",
            "imap_host": dovecot.host,
            "imap_port": dovecot.port,
            "imap_security": "plain",
            "imap_username": user,
            "imap_password_env": "TEST_IMAP_PASSWORD",
            "imap_folder": "SMS replies",
            "from_address": "sms@hub.test",
        },
    )
    with session_scope(engine) as s:
        acc = s.get(Account, 1)
        acc.reply_mailbox = "accueil@cabinet.example"
    hub = await make_hub(config=config)
    try:
        sending.submit(
            engine,
            config,
            sending.SubmitRequest(
                account="acme", recipients=["0612345678"], text="Votre commande est prête"
            ),
        )
        await hub.dispatcher.drain()
        assert await hub.providers["simulator"].receive("+33612345678", "Merci, j'arrive")
        assert await hub.mail_outbox.send_due() == 1
    finally:
        await hub.stop()
    [raw] = dovecot.list_folder(user, "SMS replies")
    mail = message_from_bytes(raw, policy=default)
    assert mail["To"] == "accueil@cabinet.example"
    assert mail["Subject"] == "SMS from +33 6 12 34 56 78 (re: Votre commande est prête)"
    assert "Merci, j'arrive" in mail.get_body().get_content()


async def test_wrong_imap_password_is_retried_not_lost(
    db_url: str,
    tmp_path: Path,
    engine: Any,
    account: str,
    dovecot: DovecotServer,
    monkeypatch,
    make_hub: MakeHub,
) -> None:
    user, _ = dovecot.add_user()
    monkeypatch.setenv("TEST_IMAP_PASSWORD", "not-the-password")
    config = make_config(
        db_url,
        tmp_path,
        mail_out={
            "method": "imap",
            "imap_host": dovecot.host,
            "imap_port": dovecot.port,
            "imap_security": "plain",
            "imap_username": user,
            "imap_password_env": "TEST_IMAP_PASSWORD",
        },
    )
    with session_scope(engine) as s:
        s.get(Account, 1).reply_mailbox = "accueil@cabinet.example"
    hub = await make_hub(config=config)
    try:
        sending.submit(
            engine,
            config,
            sending.SubmitRequest(account="acme", recipients=["0612345678"], text="Info"),
        )
        await hub.dispatcher.drain()
        await hub.providers["simulator"].receive("+33612345678", "Ok")
        assert await hub.mail_outbox.send_due() == 0
        from sqlmodel import select

        from hub.store.models import OutgoingMail

        with session_scope(engine) as s:
            row = s.exec(select(OutgoingMail)).one()
        assert row.status == "pending" and "refused the login" in row.last_error
    finally:
        await hub.stop()
