"""A balance alert follows the commit of the change that crossed, never runs inside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from hub.core.config import Config
from hub.inbound import alerts
from hub.sending import balance_alert
from hub.sending.accounts import get_account
from hub.sending.submit import SubmitRequest, submit_in
from hub.store.db import session_scope
from hub.store.models import Account, Message, OutgoingMail
from tests.conftest import make_config

ALERT_NUMBER = "+33698765432"


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    # Mail is only queued here, never delivered: any relay address will do.
    return make_config(
        db_url,
        tmp_path,
        mail_out={"host": "127.0.0.1", "port": 2, "starttls": False, "from_address": "hub@x.test"},
    )


@pytest.fixture(autouse=True)
def _alerts_plugged_in() -> None:
    balance_alert.on_crossing(alerts.alert_committed)


def _set_alert(engine: Engine, threshold: int) -> None:
    with session_scope(engine) as s:
        acc = get_account(s, "acme")
        acc.alert_threshold = threshold
        acc.alert_email = "boss@acme.example"
        acc.alert_sms = ALERT_NUMBER
        acc.alert_armed = True
        s.add(acc)


def _request(n: int) -> SubmitRequest:
    return SubmitRequest(
        account="acme", recipients=[f"+336120000{i:02d}" for i in range(n)], text="Hello"
    )


def _alerted(session: Session) -> tuple[list[OutgoingMail], list[Message]]:
    mails = session.exec(select(OutgoingMail).where(OutgoingMail.kind == "alert")).all()
    sms = session.exec(select(Message).where(col(Message.source) == alerts.SOURCE)).all()
    return list(mails), list(sms)


def _state(engine: Engine) -> tuple[Account, list[OutgoingMail], list[Message]]:
    with session_scope(engine) as s:
        return get_account(s, "acme"), *_alerted(s)


def test_the_alert_of_a_submit_is_queued_after_its_commit(
    engine: Engine, account: Any, config: Config
) -> None:
    _set_alert(engine, 95)
    with session_scope(engine) as s:
        result = submit_in(s, config, _request(6))  # 100 -> 94: crossed
        assert result.balance_after == 94
        # Inside the submit's transaction: charged, but nothing alerted and still armed.
        assert _alerted(s) == ([], [])
        armed = s.execute(select(Account.alert_armed).where(Account.name == "acme")).scalar()
        assert armed is True
    acme, mails, sms = _state(engine)
    assert [m.recipient for m in mails] == ["boss@acme.example"]
    assert [m.recipient for m in sms] == [ALERT_NUMBER]
    assert sms[0].text.startswith("smshub: account acme has 94 credits left")
    assert not acme.alert_armed
    assert acme.balance == 93  # the alert SMS is paid by the account, and alerts no more


def test_a_rolled_back_submit_alerts_nothing(engine: Engine, account: Any, config: Config) -> None:
    _set_alert(engine, 95)
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        submit_in(s, config, _request(6))
        raise RuntimeError("the door failed after the submit")
    acme, mails, sms = _state(engine)
    assert (acme.balance, acme.alert_armed, mails, sms) == (100, True, [], [])

    with session_scope(engine) as s:
        submit_in(s, config, _request(6))
    acme, mails, sms = _state(engine)
    assert (len(mails), len(sms), acme.alert_armed) == (1, 1, False)


def test_a_crossing_whose_alert_never_ran_is_sent_by_check_all_once(
    engine: Engine, account: Any, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_alert(engine, 95)
    # As if the process died between the commit and the alert.
    monkeypatch.setattr(balance_alert, "_handlers", [])
    with session_scope(engine) as s:
        submit_in(s, config, _request(6))
    acme, mails, sms = _state(engine)
    assert (acme.alert_armed, mails, sms) == (True, [], [])
    monkeypatch.undo()

    [sent] = alerts.check_all(engine, config)
    assert (sent.balance, sent.mail_to, sent.sms_to) == (94, "boss@acme.example", ALERT_NUMBER)
    assert alerts.check_all(engine, config) == []
    _, mails, sms = _state(engine)
    assert (len(mails), len(sms)) == (1, 1)


def test_an_alert_in_a_rolled_back_savepoint_is_dropped_with_it(
    engine: Engine, account: Any, config: Config
) -> None:
    _set_alert(engine, 95)
    with session_scope(engine) as s:
        with pytest.raises(RuntimeError), s.begin_nested():
            submit_in(s, config, _request(6))
            raise RuntimeError("this part is undone")
        submit_in(s, config, _request(1))  # 100 -> 99: no crossing
    acme, mails, sms = _state(engine)
    assert (acme.balance, acme.alert_armed, mails, sms) == (99, True, [], [])
