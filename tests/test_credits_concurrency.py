"""Credits under concurrent sends from separate OS processes: never below zero, never lost.

Two processes (multiprocessing, "spawn": fresh interpreters, their own engines and connection
pools, as two hub instances would have) submit single-recipient SMS at the same time against an
account that can pay for fewer than they try. Every submit is either accepted and charged, or
refused with InsufficientCredits having charged nothing.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import col, select

from hub.sending.accounts import create_account
from hub.sending.credits import ledger_problems, top_up
from hub.store.db import session_scope
from hub.store.models import Account, LedgerEntry, LedgerKind, Message

CREDITS = 300
TRIES = 400
START_TIMEOUT = 60.0
RUN_TIMEOUT = 180.0


@dataclass
class WorkerResult:
    """What one sending process saw (sent back through a queue, so plain data only)."""

    account: str
    accepted: list[str] = field(default_factory=list)  # message ids
    charged: int = 0  # credits the accepted submits reported
    refused: int = 0  # InsufficientCredits
    errors: list[str] = field(default_factory=list)  # anything else, as repr
    # Wall-clock span of the submits, to check the processes really ran at the same time.
    started: float = 0.0
    finished: float = 0.0


def _send_many(
    db_url: str,
    data_dir: str,
    account: str,
    worker: int,
    barrier: Any,
    results: Any,
) -> None:
    """Child process: TRIES single-recipient submits as ACCOUNT, as fast as it can."""
    from hub.errors import InsufficientCredits
    from hub.sending import submit as sending
    from hub.store.db import make_engine
    from tests.conftest import make_config

    engine = make_engine(db_url)
    config = make_config(db_url, Path(data_dir))
    result = WorkerResult(account=account)
    # Open a connection before the start line, so both processes race on sends, not on setup.
    with engine.connect():
        pass
    barrier.wait(START_TIMEOUT)
    result.started = time.time()
    try:
        for i in range(TRIES):
            try:
                submitted = sending.submit(
                    engine,
                    config,
                    sending.SubmitRequest(
                        account=account,
                        # Distinct valid French mobiles per process: +33 6 2<worker> nnnnnn.
                        recipients=[f"+3362{worker}{i:06d}"],
                        text="Votre code : 1234",
                    ),
                )
            except InsufficientCredits:
                result.refused += 1
            except Exception as exc:  # reported to the parent, which fails the test
                result.errors.append(repr(exc))
            else:
                ids = [r.message_id for r in submitted.recipients if r.message_id]
                if submitted.credits_charged != 1 or len(ids) != 1:
                    result.errors.append(f"unexpected result: {submitted.to_dict()}")
                result.accepted += ids
                result.charged += submitted.credits_charged
    finally:
        result.finished = time.time()
        engine.dispose()
        results.put(result)


def _race(db_url: str, tmp_path: Path, accounts: list[str]) -> list[WorkerResult]:
    """Run one sending process per entry of ACCOUNTS, all starting together."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(accounts))
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_send_many,
            args=(db_url, str(tmp_path / f"w{n}"), name, n, barrier, results),
            name=f"sender-{n}",
        )
        for n, name in enumerate(accounts)
    ]
    for proc in procs:
        proc.start()
    collected: list[WorkerResult] = []
    try:
        # Read before joining: a child blocks on exit until its queued result is consumed.
        for _ in procs:
            collected.append(results.get(timeout=RUN_TIMEOUT))
    except queue.Empty:
        raise AssertionError(
            "a sending process gave no result: "
            + ", ".join(f"{p.name} exit={p.exitcode}" for p in procs)
        ) from None
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join()
    for proc in procs:
        assert proc.exitcode == 0, f"{proc.name} exited with {proc.exitcode}"
    # Guard against a test that passes because the senders happened to run one after the other.
    assert max(r.started for r in collected) < min(r.finished for r in collected), (
        "the sending processes did not overlap"
    )
    return collected


def _check_ledger(engine: Engine, payer: str, results: list[WorkerResult]) -> None:
    """The payer's balance, its ledger and the accepted sends all tell the same story."""
    accepted = [m for r in results for m in r.accepted]
    for r in results:
        assert r.errors == [], f"{r.account}: {r.errors[:3]}"
        # Every submit ended one way or the other: charged, or refused for credits.
        assert len(r.accepted) + r.refused == TRIES
    with session_scope(engine) as session:
        assert ledger_problems(session) == []
        account = session.exec(select(Account).where(Account.name == payer)).one()
        entries = session.exec(
            select(LedgerEntry).where(LedgerEntry.account_id == account.id)
        ).all()
        stored = session.exec(select(Message.id, Message.charged_account_id)).all()
        negative = session.exec(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.balance_after < 0)
        ).one()
    # Never below zero, not even for a moment: every ledger row records the balance it left.
    assert negative == 0
    assert account.balance >= 0
    spent = CREDITS - account.balance
    assert len(accepted) == spent == sum(r.charged for r in results)
    # The offer exceeds the credits, so the race must have used them all up.
    assert account.balance == 0
    assert sum(e.amount for e in entries) == account.balance
    charges = [e for e in entries if e.kind == LedgerKind.CHARGE]
    assert len(charges) == len(accepted)
    assert sorted(m for m, _ in stored) == sorted(accepted), "rows differ from accepted sends"
    assert {payer_id for _, payer_id in stored} <= {account.id}


def test_two_processes_share_limited_credits(engine: Engine, db_url: str, tmp_path: Path) -> None:
    with session_scope(engine) as session:
        create_account(session, "acme", region="FR")
        top_up(session, "acme", CREDITS)
    results = _race(db_url, tmp_path, ["acme", "acme"])
    _check_ledger(engine, "acme", results)
    assert sum(r.refused for r in results) == 2 * TRIES - CREDITS


def test_unlimited_sub_account_and_parent_draw_from_one_balance(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    with session_scope(engine) as session:
        create_account(session, "acme", region="FR")
        create_account(session, "acme-lyon", parent="acme", credit_mode="unlimited")
        top_up(session, "acme", CREDITS)
    results = _race(db_url, tmp_path, ["acme", "acme-lyon"])
    _check_ledger(engine, "acme", results)
    with session_scope(engine) as session:
        sub = session.exec(select(Account).where(Account.name == "acme-lyon")).one()
        parent = session.exec(select(Account).where(Account.name == "acme")).one()
        sub_entries = session.exec(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.account_id == sub.id)
        ).one()
        origins = dict(
            session.exec(
                select(LedgerEntry.origin_account_id, func.count())
                .where(LedgerEntry.kind == LedgerKind.CHARGE.value)
                .group_by(col(LedgerEntry.origin_account_id))
            ).all()
        )
    # The unlimited sub-account has no balance of its own: nothing is ever booked on it.
    assert sub.balance == 0 and sub_entries == 0
    by_account = {r.account: len(r.accepted) for r in results}
    # Each charge on the parent names who sent, and the counts match what each process got.
    assert origins == {
        k: v
        for k, v in {parent.id: by_account["acme"], sub.id: by_account["acme-lyon"]}.items()
        if v
    }
