"""Balance alerts: one mail (and/or SMS) per crossing of the threshold, re-armed by top-ups."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

from hub.errors import InsufficientCredits
from hub.inbound import alerts
from hub.sending import credits
from hub.sending import submit as sending
from hub.sending.accounts import create_account, get_account
from hub.store.db import session_scope
from hub.store.models import Account, Message, OutgoingMail
from tests.conftest import make_config
from tests.servers.smtp_sink import SmtpSink

ALERT_NUMBER = "+33698765432"


@pytest.fixture
def config(db_url: str, tmp_path: Path, smtp_sink: SmtpSink) -> Any:
    return make_config(
        db_url,
        tmp_path,
        mail_out={
            "host": "127.0.0.1",
            "port": smtp_sink.port,
            "starttls": False,
            "from_address": "smshub@hub.test",
        },
    )


def _set_alert(engine: Any, name: str, threshold: int, email: str = "", sms: str = "") -> None:
    with session_scope(engine) as s:
        acc = get_account(s, name)
        acc.alert_threshold = threshold
        acc.alert_email = email
        acc.alert_sms = sms
        acc.alert_armed = True
        s.add(acc)


def _send(hub: Any, n: int = 1, account: str = "acme") -> sending.SubmitResult:
    """N single-part SMS of 1 credit each, in one submission."""
    numbers = [f"+336120000{i:02d}" for i in range(n)]
    return hub.submit(sending.SubmitRequest(account=account, recipients=numbers, text="Hello"))


def _account(engine: Any, name: str = "acme") -> Account:
    with session_scope(engine) as s:
        return get_account(s, name)


def _alert_mails(engine: Any) -> list[OutgoingMail]:
    with session_scope(engine) as s:
        return list(
            s.exec(
                select(OutgoingMail)
                .where(OutgoingMail.kind == "alert")
                .order_by(col(OutgoingMail.id))
            ).all()
        )


async def test_crossing_mails_once_and_a_top_up_rearms(hub, engine, account, smtp_sink):
    _set_alert(engine, "acme", 95, email="boss@acme.example")
    _send(hub, 5)  # 100 -> 95: not below yet
    assert await hub.mail_outbox.send_due() == 0
    _send(hub, 1)  # 95 -> 94: crossed
    assert await hub.mail_outbox.send_due() == 1
    [mail] = smtp_sink.messages
    assert mail["To"] == "boss@acme.example"
    assert mail["Subject"] == "Balance alert: acme has 94 credits left"
    body = mail.get_content()
    assert "94 credits left, below the alert threshold of 95" in body
    assert "smshub accounts credit acme AMOUNT" in body
    assert not _account(engine).alert_armed

    _send(hub, 3)  # further below: nothing more
    assert await hub.mail_outbox.send_due() == 0

    with session_scope(engine) as s:
        credits.top_up(s, "acme", 4)  # 91 -> 95: back at the threshold, re-armed
    assert _account(engine).alert_armed
    _send(hub, 1)  # 95 -> 94: a new crossing
    assert await hub.mail_outbox.send_due() == 1
    assert [m["Subject"] for m in smtp_sink.messages][-1].endswith("has 94 credits left")
    assert len(_alert_mails(engine)) == 2


async def test_alert_by_sms_is_paid_by_the_account_and_does_not_alert_again(hub, engine, account):
    _set_alert(engine, "acme", 50, sms=ALERT_NUMBER)
    _send(hub, 51)  # 100 -> 49, then the alert SMS: 48
    with session_scope(engine) as s:
        [alert] = s.exec(select(Message).where(Message.source == "alert")).all()
    assert alert.recipient == ALERT_NUMBER
    assert alert.type == "alert"
    assert alert.text.startswith("smshub: account acme has 49 credits left (alert below 50)")
    assert alert.segments == 1
    assert _account(engine).balance == 48
    assert _alert_mails(engine) == []  # no e-mail address set

    _send(hub, 2)
    with session_scope(engine) as s:
        assert len(s.exec(select(Message).where(Message.source == "alert")).all()) == 1
        assert credits.ledger_problems(s) == []
    await hub.dispatcher.drain()
    sent = [e["to"] for e in hub.providers["simulator"].read_log() if e.get("kind") == "mt"]
    assert ALERT_NUMBER in sent


async def test_no_credits_for_the_alert_sms_mails_only_and_logs(
    hub, engine, account, smtp_sink, caplog
):
    _set_alert(engine, "acme", 10, email="boss@acme.example", sms=ALERT_NUMBER)
    caplog.set_level(logging.WARNING, logger="smshub.alerts")
    _send(hub, 100)  # 100 -> 0: nothing left to pay the alert SMS
    with session_scope(engine) as s:
        assert s.exec(select(Message).where(Message.source == "alert")).all() == []
    assert _account(engine).balance == 0
    assert await hub.mail_outbox.send_due() == 1
    assert "0 credits left" in smtp_sink.messages[0].get_content()
    assert "not enough credits for it (the e-mail was queued)" in caplog.text

    # A refused send changes nothing and alerts nothing.
    with pytest.raises(InsufficientCredits):
        _send(hub, 1)
    assert len(_alert_mails(engine)) == 1


async def test_sub_account_alert_on_transfer_and_refund_rearms(hub, engine, account, config):
    with session_scope(engine) as s:
        create_account(s, "lyon", parent="acme")
        credits.transfer(s, "acme", "lyon", 30, config=config)
    _set_alert(engine, "lyon", 20, email="lyon@acme.example")
    _set_alert(engine, "acme", 60, email="boss@acme.example")
    with session_scope(engine) as s:
        # The parent goes 70 -> 55 by the transfer: its own alert fires.
        credits.transfer(s, "acme", "lyon", 15, config=config)
    [parent_mail] = _alert_mails(engine)
    assert parent_mail.recipient == "boss@acme.example"

    result = _send(hub, 30, account="lyon")  # 45 -> 15
    [lyon_mail] = _alert_mails(engine)[1:]
    assert lyon_mail.recipient == "lyon@acme.example"
    assert b"smshub accounts transfer acme lyon AMOUNT" in lyon_mail.raw
    assert not _account(engine, "lyon").alert_armed

    # Cancelled messages are refunded: 15 + 5 = 20, back at the threshold.
    with session_scope(engine) as s:
        for r in result.recipients[:5]:
            assert r.message_id is not None
            sending.cancel(s, r.message_id)
    assert _account(engine, "lyon").alert_armed


async def test_change_without_config_is_alerted_by_check_all(hub, engine, account, config):
    _set_alert(engine, "acme", 90, email="boss@acme.example")
    with session_scope(engine) as s:
        acme = get_account(s, "acme")
        credits.charge(s, acme, 20, origin=acme, batch_id="b1")  # no config: cannot send
    assert _alert_mails(engine) == []
    assert _account(engine).alert_armed  # still armed: the crossing is not lost
    [sent] = alerts.check_all(engine, config)
    assert sent.mail_to == "boss@acme.example" and sent.balance == 80
    assert alerts.check_all(engine, config) == []
    assert len(_alert_mails(engine)) == 1


def test_concurrent_crossings_alert_once(engine, account, config):
    _set_alert(engine, "acme", 90, email="boss@acme.example")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                with session_scope(engine) as s:
                    acme = get_account(s, "acme")
                    credits.charge(s, acme, 1, origin=acme, batch_id="b", config=config)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert _account(engine).balance == 80
    assert len(_alert_mails(engine)) == 1


@pytest.fixture
def smshub(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from hub.cli import main as cli

    cfg = tmp_path / "smshub.toml"
    cfg.write_text(
        f'[hub]\ndata_dir = "{tmp_path}"\n[database]\nurl = "{db_url}"\n'
        '[mail_out]\nhost = "127.0.0.1"\nport = 2\nstarttls = false\n'
    )
    monkeypatch.setenv("SMSHUB_CONFIG", str(cfg))
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        cli._state.clear()
        result = runner.invoke(cli.app, list(args))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return run


def test_cli_sets_shows_and_turns_off_the_alert(smshub, engine, account):
    code, _, err = smshub("accounts", "alert", "acme", "--threshold", "50")
    assert code == 1 and "would tell nobody" in err
    code, out, _ = smshub(
        "accounts",
        "alert",
        "acme",
        "--threshold",
        "50",
        "--email",
        "boss@acme.example",
        "--sms",
        "06 98 76 54 32",
    )
    assert code == 0, out
    assert "falls below 50, to boss@acme.example and SMS +33698765432" in out
    code, out, _ = smshub("accounts", "alert", "acme", "--json")
    assert json.loads(out) | {"alert_sent": None} == {
        "account": "acme",
        "balance": 100,
        "threshold": 50,
        "email": "boss@acme.example",
        "sms": ALERT_NUMBER,
        "armed": True,
        "alert_sent": None,
    }
    # A threshold above the balance alerts at once (the SMS is paid by the account).
    code, out, _ = smshub("accounts", "alert", "acme", "--threshold", "200")
    assert code == 0
    assert "already below 200: alert sent" in out
    assert len(_alert_mails(engine)) == 1
    assert _account(engine).balance == 99

    code, out, _ = smshub("accounts", "alert", "acme", "--off")
    assert code == 0 and "no balance alert" in out
    code, _, err = smshub("accounts", "alert", "acme", "--sms", "hello")
    assert code == 1 and "not a phone number" in err
