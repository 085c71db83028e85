"""The scheduler: its leader lock on each database, each periodic job's interval and effect
on a real database, and a failing job that is logged without stopping the others."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, text
from sqlmodel import col, select

from hub.app import Hub
from hub.core.timeutil import utcnow
from hub.sending import outbox
from hub.sending import submit as sending
from hub.sending.accounts import get_account
from hub.store.db import is_sqlite, make_engine, session_scope
from hub.store.leadership import Leadership, current_leader
from hub.store.models import (
    Calendar,
    CalendarEventRow,
    ConnectorState,
    IdempotencyKey,
    Message,
    OutgoingMail,
    RefusedIntakeMail,
)
from scheduler.jobs import HubScheduler, start_scheduler
from scheduler.leader import LeaderLock
from tests.conftest import MakeHub
from tests.servers._util import wait_until, wait_until_async

# Each job the scheduler registers and the interval it runs at (scheduler/jobs.py).
INTERVALS = {
    "leader-lock": timedelta(seconds=15),
    "balance-alerts": timedelta(minutes=5),
    "sync-calendars": timedelta(minutes=1),
    "expire-reports": timedelta(minutes=5),
    "prune-state": timedelta(minutes=10),
}


# -- the leader lock ---------------------------------------------------------------------------
@pytest.fixture
def two_pg_engines(pg_database: str) -> Iterator[tuple[Engine, Engine]]:
    """Two instances' engines on one PostgreSQL database, named as [hub] instance_id names
    them (application_name)."""
    first = make_engine(pg_database, application_name="instance-a")
    second = make_engine(pg_database, application_name="instance-b")
    yield first, second
    first.dispose()
    second.dispose()


def _release(lock: LeaderLock) -> None:
    """What a leader's death does to its lock: its session ends. (Closing the SQLAlchemy
    connection would not do: it goes back to the pool, its session and lock with it.)
    Returns once the server has ended that session: it does so a moment after the client
    has gone, and until then the lock is still held."""
    conn = lock._conn
    if conn is None:
        return
    try:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    except Exception:
        pid = None  # its session is gone already
    conn.invalidate()
    lock._conn = None
    if pid is None:
        return
    with lock.engine.connect() as other:

        def ended() -> bool:
            # pg_stat_activity is read once a transaction and kept until it ends: each look
            # ends its own, or the first look (session still there) would be the only one.
            try:
                query = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
                return other.execute(query, {"pid": pid}).scalar() == 0
            finally:
                other.rollback()

        wait_until(ended, 10, f"the session {pid} of a released leader lock to end")


def test_postgresql_lock_is_held_by_one_instance_at_a_time(
    two_pg_engines: tuple[Engine, Engine],
) -> None:
    first_engine, second_engine = two_pg_engines
    a = LeaderLock(first_engine, Leadership())
    b = LeaderLock(second_engine, Leadership())
    try:
        assert current_leader(first_engine) is None
        assert a.acquire() is True
        assert b.acquire() is False
        assert (a.leadership.leading, b.leadership.leading) == (True, False)
        assert b.leadership.checked_at is not None
        # Both instances name the holder, from the database.
        assert current_leader(first_engine) == current_leader(second_engine) == "instance-a"
        # Tried again (every 15 s), the leader keeps its lock and the other stays out.
        assert a.acquire() is True
        assert b.acquire() is False
        assert b._conn is None  # a failed try keeps no connection
        # The leader dies: the other takes over at its next try.
        _release(a)
        assert b.acquire() is True
        assert a.acquire() is False
        assert current_leader(first_engine) == "instance-b"
        assert (a.leadership.leading, b.leadership.leading) == (False, True)
    finally:
        _release(a)
        _release(b)
    assert current_leader(first_engine) is None


def test_postgresql_leader_whose_connection_broke_tries_again(
    two_pg_engines: tuple[Engine, Engine],
) -> None:
    first_engine, second_engine = two_pg_engines
    a = LeaderLock(first_engine)
    b = LeaderLock(second_engine)
    try:
        assert a.acquire() is True
        held = a._conn
        assert held is not None
        # The leader's session is cut from the server side (a restart, a network cut):
        # its next try notices and competes again, with a new session.
        with second_engine.connect() as admin:
            pid = held.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        assert a.acquire() is True
        assert a._conn is not None and a._conn is not held
        assert b.acquire() is False
    finally:
        _release(a)
        _release(b)


def test_postgresql_leader_session_is_not_left_in_a_transaction(
    two_pg_engines: tuple[Engine, Engine],
) -> None:
    # The leader's session lives as long as the instance: left "idle in transaction" by its
    # checks, a server's idle_in_transaction_session_timeout would end it and the lock with
    # it, and leadership would move at each timeout.
    first_engine, second_engine = two_pg_engines
    lock = LeaderLock(first_engine)
    try:
        for _ in range(3):
            assert lock.acquire() is True
            assert lock._conn is not None
            pid = lock._conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            lock._conn.commit()
            assert lock.acquire() is True
            with second_engine.connect() as other:
                state = other.execute(
                    text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar()
            assert state == "idle"
    finally:
        _release(lock)


def test_postgresql_lock_tried_by_two_jobs_at_once_leads_in_both(
    two_pg_engines: tuple[Engine, Engine],
) -> None:
    # The jobs share one lock and take it from worker threads: two jobs due at the same
    # moment (leader-lock and sync-calendars every minute) try it together. The instance
    # leads for both, rather than one of them losing to its own other connection.
    first_engine, _ = two_pg_engines
    for _ in range(5):
        lock = LeaderLock(first_engine)
        barrier = threading.Barrier(4)

        def together(lock: LeaderLock = lock, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait()
            return lock.acquire()

        try:
            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(lambda _: together(), range(4)))
            assert results == [True] * 4
            assert lock.leadership.leading
        finally:
            _release(lock)


@pytest.fixture
async def stopping_leader(
    two_pg_engines: tuple[Engine, Engine],
) -> AsyncIterator[tuple[HubScheduler, LeaderLock, asyncio.Event]]:
    """A scheduler leading on the first engine, whose one job holds on until the event is
    set; another instance's lock on the second engine."""
    first_engine, second_engine = two_pg_engines
    scheduler = HubScheduler(LeaderLock(first_engine, Leadership()))
    other = LeaderLock(second_engine, Leadership())
    started, finish = asyncio.Event(), asyncio.Event()

    async def long_job() -> None:
        assert await asyncio.to_thread(scheduler.leader.acquire)
        started.set()
        await finish.wait()

    scheduler.add_hub_job(long_job, minutes=1, id="long", next_run_time=datetime.now(UTC))
    scheduler.start()
    try:
        await asyncio.wait_for(started.wait(), 10)
        yield scheduler, other, finish
    finally:
        finish.set()
        if scheduler.running:
            scheduler.shutdown(wait=False)
        _release(scheduler.leader)
        _release(other)


async def test_postgresql_stopping_leader_hands_over_once_its_jobs_are_done(
    stopping_leader: tuple[HubScheduler, LeaderLock, asyncio.Event],
) -> None:
    scheduler, other, finish = stopping_leader
    stopping = asyncio.create_task(scheduler.stop(grace=30))
    await asyncio.sleep(0.3)
    # A job is still running: the lock stays, so no other instance runs the jobs beside it.
    assert not stopping.done()
    assert await asyncio.to_thread(other.acquire) is False
    finish.set()
    await asyncio.wait_for(stopping, 10)
    # Let go while this instance's engine (its process) still lives: the other one leads
    # at its next try, and a late try of the stopped instance takes nothing.
    assert scheduler.leader.leadership.leading is False
    assert await asyncio.to_thread(other.acquire) is True
    assert await asyncio.to_thread(scheduler.leader.acquire) is False
    assert current_leader(other.engine) == "instance-b"


async def test_postgresql_job_running_past_the_grace_keeps_the_lock(
    stopping_leader: tuple[HubScheduler, LeaderLock, asyncio.Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler, other, _ = stopping_leader
    with caplog.at_level(logging.WARNING, logger="smshub.scheduler"):
        await asyncio.wait_for(scheduler.stop(grace=0.3), 10)
    # Another instance would run the same job beside the late one: the lock goes only
    # with this process.
    assert "still running after 0 s; the leader lock is kept" in caplog.text
    assert await asyncio.to_thread(other.acquire) is False
    assert current_leader(other.engine) == "instance-a"


def test_sqlite_has_one_instance_which_always_leads(sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "smshub.db"
    shutil.copy(sqlite_template, path)
    first = make_engine(f"sqlite:///{path}")
    second = make_engine(f"sqlite:///{path}")
    try:
        a, b = LeaderLock(first), LeaderLock(second)
        # SQLite serves one instance: no lock to take, both say they lead, no connection kept.
        assert a.acquire() is True and b.acquire() is True
        assert a.leadership.leading and b.leadership.leading
        assert a._conn is None and b._conn is None
    finally:
        first.dispose()
        second.dispose()


# -- the jobs ----------------------------------------------------------------------------------
@pytest.fixture
async def scheduled(make_hub: MakeHub, tmp_path: Path, account: str) -> AsyncIterator[Any]:
    """A hub (mails to a closed port: queued, never sent) and its running scheduler."""
    hub = await make_hub(
        dispatcher={"report_window_hours": 48.0},
        sending={"idempotency_key_hours": 24.0},
        mail_out={"host": "127.0.0.1", "port": 9, "starttls": False, "from_address": "s@hub.test"},
    )
    # Another test's instance may not be leading here: this one would not run its jobs.
    assert is_sqlite(hub.engine) or current_leader(hub.engine) is None
    scheduler = start_scheduler(hub)
    try:
        yield hub, scheduler
    finally:
        # As the instance stops: the runs under way end, then the lock goes (PostgreSQL), so
        # the next test may lead.
        if scheduler.running:
            await scheduler.stop(grace=10)
        assert scheduler.leader._conn is None
        assert is_sqlite(hub.engine) or current_leader(hub.engine) is None


async def _run(scheduler: AsyncIOScheduler, job_id: str) -> None:
    """Run JOB_ID's function once, as the scheduler would."""
    job = scheduler.get_job(job_id)
    assert job is not None
    await job.func()


async def test_every_job_is_scheduled_at_its_interval(scheduled: Any) -> None:
    _, scheduler = scheduled
    assert scheduler.running
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == set(INTERVALS)
    for job_id, interval in INTERVALS.items():
        trigger = jobs[job_id].trigger
        assert isinstance(trigger, IntervalTrigger)
        assert trigger.interval == interval, job_id
        # One run at a time, and runs missed while busy collapse into one.
        assert (jobs[job_id].max_instances, jobs[job_id].coalesce) == (1, True)


async def test_leader_lock_job_runs_at_once_and_records_leadership(scheduled: Any) -> None:
    hub, scheduler = scheduled
    await wait_until_async(
        lambda: hub.leadership.checked_at is not None, 10, "the first leader-lock run"
    )
    assert hub.leadership.leading is True
    # The jobs' lock is on the hub's database and reports to what /readyz reads.
    lock = scheduler.leader
    assert (lock.engine, lock.leadership) == (hub.engine, hub.leadership)


def _send_one(hub: Hub, **extra: Any) -> str:
    result = sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(account="acme", recipients=["0612345678"], text="hi", **extra),
    )
    [r] = result.recipients
    assert r.message_id is not None, r.reason
    return r.message_id


async def test_expire_reports_job_ends_messages_without_report(scheduled: Any) -> None:
    hub, scheduler = scheduled
    old, young = _send_one(hub), _send_one(hub)
    await hub.dispatcher.drain()
    with session_scope(hub.engine) as s:
        message = s.get(Message, old)
        assert message is not None and message.status == "sent"
        message.first_sent_at = utcnow() - timedelta(hours=49)  # past the 48 h window
    await _run(scheduler, "expire-reports")
    with session_scope(hub.engine) as s:
        statuses = {m.id: m.status for m in s.exec(select(Message)).all()}
    assert statuses == {old: "dr_unavailable", young: "sent"}


async def test_prune_state_job_deletes_what_is_past_its_time(scheduled: Any) -> None:
    hub, scheduler = scheduled
    hub.state.put("console-signin", "expired", {"v": 1}, ttl=0.01)
    hub.state.put("console-signin", "current", {"v": 2}, ttl=3600)
    with session_scope(hub.engine) as s:
        acme_id = get_account(s, "acme").id
        assert acme_id is not None
        # An API key past the 24 h retention, and one within it.
        for key, age in (("old-key", timedelta(hours=25)), ("new-key", timedelta(hours=1))):
            s.add(
                IdempotencyKey(
                    account_id=acme_id, key=key, fingerprint="f" * 64, created_at=utcnow() - age
                )
            )
        s.add(RefusedIntakeMail(account_id=acme_id, door="smtp", refused_at=utcnow()))
        s.add(
            RefusedIntakeMail(
                account_id=acme_id, door="imap", refused_at=utcnow() - timedelta(days=400)
            )
        )
    await asyncio.sleep(0.05)
    await _run(scheduler, "prune-state")
    with session_scope(hub.engine) as s:
        assert [e.key for e in s.exec(select(ConnectorState)).all()] == ["current"]
        assert [k.key for k in s.exec(select(IdempotencyKey)).all()] == ["new-key"]
        assert [r.door for r in s.exec(select(RefusedIntakeMail)).all()] == ["smtp"]


async def test_balance_alerts_job_mails_an_alert_a_door_missed(scheduled: Any) -> None:
    hub, scheduler = scheduled
    with session_scope(hub.engine) as s:
        acme = get_account(s, "acme")
        acme.alert_threshold = 150  # the balance (100) is below: armed, not yet sent
        acme.alert_email = "boss@acme.example"
        acme.alert_armed = True
        s.add(acme)
    await _run(scheduler, "balance-alerts")
    with session_scope(hub.engine) as s:
        mails = s.exec(select(OutgoingMail).where(OutgoingMail.kind == "alert")).all()
        assert [m.recipient for m in mails] == ["boss@acme.example"]
        assert not get_account(s, "acme").alert_armed
    # Sent once: the next run finds nothing to say.
    await _run(scheduler, "balance-alerts")
    with session_scope(hub.engine) as s:
        assert len(s.exec(select(OutgoingMail).where(OutgoingMail.kind == "alert")).all()) == 1


def _ics(start: datetime) -> str:
    stamp = start.strftime("%Y%m%dT%H%M%SZ")
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//smshub tests//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:rdv-1@cabinet\r\nDTSTAMP:20250301T000000Z\r\nDTSTART:{stamp}\r\n"
        "SUMMARY:Consultation\r\nDESCRIPTION:Tel: 06 12 34 56 78\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


async def test_sync_calendars_job_syncs_the_due_calendars(scheduled: Any, tmp_path: Path) -> None:
    hub, scheduler = scheduled
    start = (datetime.now(UTC) + timedelta(days=5)).replace(hour=10, minute=0, microsecond=0)
    ics = tmp_path / "cabinet.ics"
    ics.write_text(_ics(start), "utf-8")
    with session_scope(hub.engine) as s:
        acme_id = get_account(s, "acme").id
        assert acme_id is not None
        settings = json.dumps({"url": str(ics)})
        due = Calendar(account_id=acme_id, name="due", source_type="ics", settings=settings)
        # Synced a minute ago, every 15 minutes: not due.
        fresh = Calendar(
            account_id=acme_id,
            name="fresh",
            source_type="ics",
            settings=settings,
            last_sync_at=utcnow() - timedelta(minutes=1),
        )
        s.add(due)
        s.add(fresh)
    await _run(scheduler, "sync-calendars")
    with session_scope(hub.engine) as s:
        calendars = {c.name: c for c in s.exec(select(Calendar)).all()}
        assert calendars["due"].last_error == ""
        assert calendars["due"].last_sync_at is not None
        rows = s.exec(select(CalendarEventRow)).all()
        assert [(r.calendar_id, r.uid) for r in rows] == [(calendars["due"].id, "rdv-1@cabinet")]
        reminders = s.exec(select(Message).where(col(Message.source) == "calendar")).all()
        assert [m.recipient for m in reminders] == ["+33612345678"]


async def test_calendars_sync_in_the_worker_processes_which_end_with_the_stop(
    scheduled: Any, make_hub: MakeHub, tmp_path: Path
) -> None:
    """With [calendars] sync_processes, the job syncs in the scheduler's worker processes,
    and the scheduler's stop ends them."""
    hub, scheduler = scheduled
    assert scheduler.sync_pool is None  # by default, syncs run in the hub's process
    await scheduler.stop(grace=10)
    scheduler = start_scheduler(await make_hub(calendars={"sync_processes": 2}))
    pool = scheduler.sync_pool
    assert pool is not None and pool.processes == 2
    workers = await pool.start()
    assert len(workers) == 2
    ics = tmp_path / "cabinet.ics"
    ics.write_text(_ics(utcnow() + timedelta(days=5)), "utf-8")
    with session_scope(hub.engine) as s:
        acme_id = get_account(s, "acme").id
        assert acme_id is not None
        settings = json.dumps({"url": str(ics)})
        s.add(Calendar(account_id=acme_id, name="due", source_type="ics", settings=settings))
    await _run(scheduler, "sync-calendars")
    with session_scope(hub.engine) as s:
        assert s.exec(select(Calendar)).one().last_error == ""
        assert len(s.exec(select(Message).where(col(Message.source) == "calendar")).all()) == 1
    await scheduler.stop(grace=10)
    await wait_until_async(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 10, "workers ended"
    )
    assert await pool.start() == []


async def test_a_failing_job_is_logged_and_the_scheduler_goes_on(
    scheduled: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hub, scheduler = scheduled
    real = outbox.expire_reports
    calls: list[str] = []

    def fails_once(engine: Engine, window: timedelta, now: datetime | None = None) -> int:
        calls.append("called")
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real(engine, window, now)

    monkeypatch.setattr(outbox, "expire_reports", fails_once)
    [mid] = [_send_one(hub)]
    await hub.dispatcher.drain()
    with session_scope(hub.engine) as s:
        message = s.get(Message, mid)
        assert message is not None
        message.first_sent_at = utcnow() - timedelta(hours=49)
    with caplog.at_level(logging.ERROR, logger="apscheduler"):
        scheduler.modify_job("expire-reports", next_run_time=datetime.now(UTC))
        await wait_until_async(
            lambda: any(r.exc_info for r in caplog.records), 10, "the job's failure in the log"
        )
    [record] = [r for r in caplog.records if r.exc_info]
    assert "expire-reports" in record.getMessage() or "expire_reports" in record.getMessage()
    assert record.exc_info is not None and "database went away" in str(record.exc_info[1])
    # Still running, the failed job still scheduled at its interval...
    assert scheduler.running
    job = scheduler.get_job("expire-reports")
    assert job is not None and job.next_run_time is not None
    assert job.next_run_time > datetime.now(UTC)
    # ... and its next run does its work.
    scheduler.modify_job("expire-reports", next_run_time=datetime.now(UTC))
    await wait_until_async(lambda: len(calls) >= 2, 10, "the job's next run")

    def expired() -> bool:
        with session_scope(hub.engine) as s:
            found = s.get(Message, mid)
            return found is not None and found.status == "dr_unavailable"

    await wait_until_async(expired, 10, "the message to expire")
    # The other jobs were never disturbed.
    assert {j.id for j in scheduler.get_jobs()} == set(INTERVALS)
