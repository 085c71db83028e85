"""Mails taken in together (group commit): each gets the answer it would get alone."""

from __future__ import annotations

import asyncio
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select

from hub.core.config import Config
from hub.mail.intake.addresses import add_intake_address
from hub.mail.intake.group_commit import GroupCommit
from hub.mail.intake.policy import IntakePolicy, MailEnvelope
from hub.sending.credits import ledger_problems, top_up
from hub.store.db import session_scope
from hub.store.models import Account, InboundMail, IntakeAddress, LedgerEntry, Message
from tests.conftest import make_config

INTAKE = "sms@hub.test"
SENDER = "anne@clinic.example"
VOUCHED = "mx.clinic.example; dmarc=pass header.from=clinic.example"


def _mail(subject: str, message_id: str, *, auth: str = VOUCHED, body: str = "Rappel") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Anne <{SENDER}>"
    msg["To"] = INTAKE
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{message_id}@clinic.example>"
    msg["Authentication-Results"] = auth
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP_POLICY)


def _env(raw: bytes) -> MailEnvelope:
    return MailEnvelope(raw, SENDER, [INTAKE], peer="127.0.0.1")  # from the relay


def _policy(engine: Engine, db_url: str, tmp_path: Path, **smtp: object) -> IntakePolicy:
    config: Config = make_config(
        db_url,
        tmp_path,
        smtp={
            "trusted_relays": [{"authserv_id": "mx.clinic.example", "networks": ["127.0.0.0/8"]}],
            "confirmations": False,
            **smtp,
        },
    )
    with session_scope(engine) as s:
        add_intake_address(s, "acme", INTAKE, allowed_senders=["@clinic.example"])
    return IntakePolicy(engine, config)


def _count(engine: Engine, model: type) -> int:
    with session_scope(engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def test_a_group_answers_each_mail_as_alone(engine, db_url, tmp_path, account):
    policy = _policy(engine, db_url, tmp_path)
    outcomes = policy.take_group(
        [
            _env(_mail("0612345678", "a")),
            _env(_mail("0612345679", "b", auth="mx.evil.example; dmarc=pass")),  # forged
            _env(_mail("hello", "c")),  # no number
            _env(_mail("0612345680, 0123456789", "d")),  # one landline left out
            _env(_mail("0612345678", "a")),  # the first one again, in the same group
        ]
    )
    replies = [o.reply for o in outcomes]
    assert replies[0].startswith("250 2.0.0 queued 1 SMS")
    assert replies[1].startswith("550 5.7.1 could not verify")
    assert replies[2].startswith("550 5.1.3 no phone number")
    assert replies[3].startswith("250 2.0.0 queued 1 SMS") and "landline" in replies[3]
    assert replies[4] == f"250 2.0.0 already received (mail {outcomes[0].mail_id}); not sent again"
    assert outcomes[4].duplicate
    with session_scope(engine) as s:
        messages = s.exec(select(Message).order_by(Message.recipient)).all()
        mails = s.exec(select(InboundMail).order_by(InboundMail.id)).all()
        assert [m.recipient for m in messages] == ["+33612345678", "+33612345680"]
        # Each mail is stored with the batch of its own SMS, and charged on its own line.
        assert [m.id for m in mails] == [outcomes[0].mail_id, outcomes[3].mail_id]
        assert {m.batch_id for m in mails} == {m.batch_id for m in messages}
        ledger = s.exec(select(LedgerEntry).where(LedgerEntry.kind == "charge")).all()
        assert sorted(e.batch_id or "" for e in ledger) == sorted(m.batch_id for m in messages)
        assert [e.balance_after for e in ledger] == [99, 98]
        assert ledger_problems(s) == []


def test_a_group_that_cannot_all_be_paid_charges_in_order(engine, db_url, tmp_path, account):
    policy = _policy(engine, db_url, tmp_path)
    with session_scope(engine) as s:
        acme = s.exec(select(Account).where(Account.name == "acme")).one()
        acme.balance = 0
        s.add(acme)
        s.add(LedgerEntry(account_id=acme.id or 0, kind="charge", amount=-97, balance_after=3))
        s.add(LedgerEntry(account_id=acme.id or 0, kind="charge", amount=-3, balance_after=0))
    with session_scope(engine) as s:
        top_up(s, "acme", 3)
    numbers = ["0612345678", "0612345679, 0612345670", "0612345671", "0612345672"]
    outcomes = policy.take_group([_env(_mail(n, f"m{i}")) for i, n in enumerate(numbers)])
    # 1 + 2 credits: the first two go; the third and fourth find nothing left.
    assert [o.reply[:3] for o in outcomes] == ["250", "250", "550", "550"]
    assert "credits" in outcomes[2].reply
    assert _count(engine, Message) == 3
    with session_scope(engine) as s:
        assert ledger_problems(s) == []
        assert s.exec(select(Account.balance).where(Account.name == "acme")).one() == 0


def test_the_hourly_limit_counts_the_mails_of_the_group(engine, db_url, tmp_path, account):
    policy = _policy(engine, db_url, tmp_path, sms_per_account_per_hour=3)
    first = policy.take_group([_env(_mail("0612345678, 0612345679", "a"))])
    assert first[0].reply.startswith("250")
    outcomes = policy.take_group([_env(_mail("0612345670", "b")), _env(_mail("0612345671", "c"))])
    assert outcomes[0].reply.startswith("250")
    assert outcomes[1].reply.startswith("450 4.7.1 this account already sent 3 SMS")


def test_a_removed_intake_address_takes_no_more_mail(engine, db_url, tmp_path, account):
    policy = _policy(engine, db_url, tmp_path)
    assert policy.take(_env(_mail("0612345678", "a"))).reply.startswith("250")
    with session_scope(engine) as s:
        intake = s.exec(select(IntakeAddress)).one()
        mails = s.exec(select(InboundMail)).all()
        for mail in mails:
            mail.intake_address_id = None
            s.add(mail)
        s.flush()
        s.delete(intake)
    # The address read a moment ago is kept; storing the mail against it fails, and the
    # mail taken again is refused as the database now says.
    refused = policy.take(_env(_mail("0612345679", "b")))
    assert refused.reply.startswith("550 5.1.1 no SMS intake address")
    assert _count(engine, Message) == 1


async def test_concurrent_mails_share_a_transaction(engine, db_url, tmp_path, account):
    policy = _policy(engine, db_url, tmp_path)
    raws = [_mail(f"06123456{i:02d}", f"c{i}") for i in range(8)]
    outcomes = await asyncio.gather(
        *(policy.take_async(policy.receive(_env(raw)), source=i % 4) for i, raw in enumerate(raws))
    )
    assert all(o.reply.startswith("250 2.0.0 queued 1 SMS") for o in outcomes)
    assert _count(engine, InboundMail) == 8 and _count(engine, Message) == 8


def test_group_commit_runs_waiting_items_together_and_reports_failures() -> None:
    seen: list[list[int]] = []
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        seen.append(items)
        gate.wait(5)
        if 13 in items:
            raise ValueError("unlucky")
        return [i * 2 for i in items]

    group: GroupCommit[int, int] = GroupCommit(run)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            results[i] = group.submit(i)
        except ValueError as exc:
            results[i] = exc

    first = threading.Thread(target=call, args=(1,))
    first.start()
    while not seen:
        time.sleep(0.001)
    others = [threading.Thread(target=call, args=(i,)) for i in (2, 3)]
    for t in others:
        t.start()
    while len(group.pending) < 2:
        time.sleep(0.001)
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert seen == [[1], [2, 3]]
    assert results == {1: 2, 2: 4, 3: 6}
    call(13)
    assert isinstance(results[13], ValueError)


def test_group_commit_waits_briefly_for_active_sources() -> None:
    seen: list[list[int]] = []
    group: GroupCommit[int, int] = GroupCommit(
        lambda items: seen.append(items) or items, linger=0.5
    )
    # Two sources seen lately: the batch waits for the second one's item.
    group.sources = {"a": time.monotonic(), "b": time.monotonic()}
    done: list[int] = []
    first = threading.Thread(target=lambda: done.append(group.submit(1, "a")))
    first.start()
    time.sleep(0.05)
    assert done == []
    assert group.submit(2, "b") == 2
    first.join(5)
    assert seen == [[1, 2]]
    # One source: no wait at all.
    group.sources.clear()
    started = time.monotonic()
    assert group.submit(3, "a") == 3
    assert time.monotonic() - started < 0.4


@pytest.mark.parametrize("cancel", [True])
async def test_an_abandoned_item_is_not_run(cancel: bool) -> None:
    seen: list[int] = []
    release = threading.Event()

    def run(items: list[int]) -> list[int]:
        seen.extend(items)
        release.wait(5)
        return items

    group: GroupCommit[int, int] = GroupCommit(run)
    busy = asyncio.ensure_future(group.submit_async(1))
    while not seen:
        await asyncio.sleep(0.001)
    gone = asyncio.ensure_future(group.submit_async(2))
    await asyncio.sleep(0.01)
    gone.cancel()
    kept = asyncio.ensure_future(group.submit_async(3))
    await asyncio.sleep(0.01)
    release.set()
    assert await busy == 1 and await kept == 3
    assert seen == [1, 3]
