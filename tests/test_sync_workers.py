"""Calendar syncs in worker processes (hub.reminders.workers.SyncPool), on both databases:
what the scheduler's sync job runs each calendar in. Real ICS sources (files, and a local
HTTP server that holds its answer until the test lets it go), real processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine
from sqlmodel import col, func, select

from hub.core.config import Config
from hub.reminders.sync import due_calendars, sync_many
from hub.reminders.workers import SyncPool
from hub.runtime.logs import instance_id
from hub.sending.accounts import get_account
from hub.sending.credits import ledger_problems
from hub.store.db import session_scope
from hub.store.models import Calendar, Message
from tests.servers._util import BackgroundServer

REPO = Path(__file__).resolve().parents[1]
EVENTS = 3  # appointments per calendar


def _ics(serial: int) -> str:
    """A calendar of EVENTS appointments in four days, each with its own mobile number."""
    day = (datetime.now(UTC) + timedelta(days=4)).replace(hour=9, minute=0, second=0)
    events = "".join(
        "BEGIN:VEVENT\r\n"
        f"UID:rdv-{serial}-{n}@cabinet\r\nDTSTAMP:20250301T000000Z\r\n"
        f"DTSTART:{(day + timedelta(hours=n)).strftime('%Y%m%dT%H%M%SZ')}\r\n"
        f"SUMMARY:Consultation\r\nDESCRIPTION:Tel: 06 12 34 {serial:02d} {n:02d}\r\n"
        "END:VEVENT\r\n"
        for n in range(EVENTS)
    )
    head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//smshub tests//EN\r\n"
    return f"{head}{events}END:VCALENDAR\r\n"


def _calendars(engine: Engine, urls: list[str]) -> list[int]:
    """An ICS calendar of account acme per URL (local addresses allowed); their ids."""
    with session_scope(engine) as s:
        owner = get_account(s, "acme").id
        assert owner is not None
        calendars = [
            Calendar(
                account_id=owner,
                name=f"c{n}",
                source_type="ics",
                settings=json.dumps({"url": url, "private_ok": True}),
            )
            for n, url in enumerate(urls)
        ]
        s.add_all(calendars)
        s.flush()
        return [c.id for c in calendars if c.id is not None]


def _reminders(engine: Engine) -> int:
    with session_scope(engine) as s:
        query = select(func.count()).where(col(Message.source) == "calendar")
        return int(s.exec(query).one())


def _submitted() -> float:
    return REGISTRY.get_sample_value("smshub_submitted_total", {"source": "calendar"}) or 0.0


async def test_planned_reminders_are_counted_as_submitted_from_the_calendar_door(
    engine: Engine, config: Config, account: str, tmp_path: Path
) -> None:
    """In this process too: smshub_submitted_total{source="calendar"} moves by the reminders
    a sync queued, once committed; a re-sync that plans nothing counts nothing."""
    path = tmp_path / "0.ics"
    path.write_text(_ics(0), "utf-8")
    ids = _calendars(engine, [str(path)])
    counted = _submitted()
    assert [r.planned if r else None for r in await sync_many(engine, config, ids)] == [EVENTS]
    assert _submitted() - counted == EVENTS
    await sync_many(engine, config, ids, full=True)
    assert _submitted() - counted == EVENTS


def _assert_ledger_exact(engine: Engine) -> None:
    with session_scope(engine) as s:
        assert ledger_problems(s) == []


class Gate:
    """An ICS server whose answers wait until ``open`` (the syncs under way stay under way)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.hits = 0
        self.lock = threading.Lock()

    def url(self, base: str, serial: int) -> str:
        return f"{base}/{serial}.ics"

    def wait_for(self, hits: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.hits < hits:
            assert time.monotonic() < deadline, f"{self.hits} of {hits} requests came"
            time.sleep(0.02)


@pytest.fixture
def gate() -> Iterator[tuple[Gate, str]]:
    state = Gate()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            with state.lock:
                state.hits += 1
            state.opened.wait(60)
            body = _ics(int(self.path.strip("/").removesuffix(".ics"))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with BackgroundServer(Handler) as server:
        yield state, server.url
        state.opened.set()


@pytest.fixture
async def pool(config: Config) -> Any:
    workers = SyncPool(config, 2)
    yield workers
    await workers.close(30)


async def test_calendars_sync_in_worker_processes_as_in_this_one(
    engine: Engine, config: Config, account: str, pool: SyncPool, tmp_path: Path
) -> None:
    """Every calendar synced in a worker (reports in the calendars' order), one whose source
    fails reported as None with its error recorded; a second sync plans nothing twice."""
    pids = await pool.start()
    assert len(pids) == 2 and os.getpid() not in pids
    urls = []
    for serial in range(4):
        path = tmp_path / f"{serial}.ics"
        path.write_text(_ics(serial), "utf-8")
        urls.append(str(path))
    urls.insert(2, str(tmp_path / "missing.ics"))
    ids = _calendars(engine, urls)
    counted = _submitted()
    reports = await sync_many(engine, config, ids, runner=pool)
    assert [r.planned if r else None for r in reports] == [EVENTS, EVENTS, None, EVENTS, EVENTS]
    # smshub_submitted_total of this process, though the workers queued them.
    assert _submitted() - counted == 4 * EVENTS
    if engine.dialect.name == "postgresql":
        # The workers' sessions are named after this instance, in PostgreSQL's activity.
        with engine.connect() as conn:
            names = conn.exec_driver_sql(
                "SELECT application_name FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            ).scalars()
            assert f"{instance_id(config)}/sync" in set(names)
    with session_scope(engine) as s:
        assert "missing.ics" in (s.get(Calendar, ids[2]).last_error or "")
    assert _reminders(engine) == 4 * EVENTS
    again = await sync_many(engine, config, ids, full=True, runner=pool)
    assert [r.planned if r else None for r in again] == [0, 0, None, 0, 0]
    assert _reminders(engine) == 4 * EVENTS
    _assert_ledger_exact(engine)


async def test_a_stopping_instance_starts_no_other_calendar_in_its_workers(
    engine: Engine, config: Config, account: str, pool: SyncPool, gate: tuple[Gate, str]
) -> None:
    """STOPPING set while two calendars are being read in the workers: those two finish,
    no other starts, and the rest stay due for the next leader."""
    state, base = gate
    ids = _calendars(engine, [state.url(base, n) for n in range(5)])
    stopping = asyncio.Event()
    syncing = asyncio.create_task(sync_many(engine, config, ids, stopping=stopping, runner=pool))
    await asyncio.to_thread(state.wait_for, 2)
    stopping.set()
    state.opened.set()
    reports = await syncing
    assert [r is not None for r in reports] == [True, True, False, False, False]
    assert _reminders(engine) == 2 * EVENTS
    assert sorted(due_calendars(engine)) == ids[2:]
    _assert_ledger_exact(engine)


def _alive(pid: int) -> bool:
    """PID runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, before the open or the read
        return False


async def test_a_worker_killed_mid_sync_costs_the_syncs_under_way_only(
    engine: Engine,
    config: Config,
    account: str,
    pool: SyncPool,
    gate: tuple[Gate, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker killed (SIGKILL, the OOM killer) while two calendars are read: both syncs
    report None and say why, the calendars stay due, and the next round, in new workers,
    plans every calendar once."""
    state, base = gate
    pids = await pool.start()
    ids = _calendars(engine, [state.url(base, n) for n in range(2)])
    syncing = asyncio.create_task(sync_many(engine, config, ids, runner=pool))
    await asyncio.to_thread(state.wait_for, 2)
    os.kill(pids[0], signal.SIGKILL)
    with caplog.at_level(logging.ERROR, "smshub.calendars"):
        assert await syncing == [None, None]
    assert "ended abruptly" in caplog.text and "synced again at the next round" in caplog.text
    assert sorted(due_calendars(engine)) == ids
    state.opened.set()
    reports = await sync_many(engine, config, ids, runner=pool)
    assert [r.planned if r else None for r in reports] == [EVENTS, EVENTS]
    assert _reminders(engine) == 2 * EVENTS
    assert pids[0] not in await pool.start()
    _assert_ledger_exact(engine)


async def test_a_sync_past_the_stop_grace_is_cut_and_left_due(
    engine: Engine,
    config: Config,
    account: str,
    gate: tuple[Gate, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stop's grace ends while a calendar is still being read: its worker is killed, the
    stop returns, nothing of that sync is planned and the calendar stays due."""
    state, base = gate
    pool = SyncPool(config, 1)
    pids = await pool.start()
    ids = _calendars(engine, [state.url(base, 0)])
    syncing = asyncio.create_task(sync_many(engine, config, ids, runner=pool))
    await asyncio.to_thread(state.wait_for, 1)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "smshub.calendars"):
        await pool.close(0.5)
    assert time.monotonic() - started < 5
    assert "still running after 0.5 s: stopped" in caplog.text
    assert await syncing == [None]
    deadline = time.monotonic() + 10
    while _alive(pids[0]):
        assert time.monotonic() < deadline, "the worker outlived the stop"
        await asyncio.sleep(0.05)
    assert _reminders(engine) == 0
    assert due_calendars(engine) == ids


async def test_idle_workers_end_quietly_with_a_stop_whose_grace_is_spent(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """No sync under way: the workers exit at the stop even with no grace left, and nothing
    says a sync was cut."""
    pool = SyncPool(config, 2)
    pids = await pool.start()
    with caplog.at_level(logging.WARNING, "smshub.calendars"):
        await pool.close(0)
    assert "still running" not in caplog.text
    deadline = time.monotonic() + 10
    while any(map(_alive, pids)):
        assert time.monotonic() < deadline, "an idle worker outlived the stop"
        await asyncio.sleep(0.05)


HUB = """
import asyncio, json, sys
from pathlib import Path
from hub.reminders.workers import SyncPool
from hub.runtime.logs import instance_id
from tests.conftest import make_config

async def main():
    pool = SyncPool(make_config(sys.argv[1], Path(sys.argv[2])), 2)
    print(json.dumps(await pool.start()), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_workers_ignore_stop_signals_and_end_with_their_hub(db_url: str, tmp_path: Path) -> None:
    """Workers leave SIGTERM and SIGINT (which a stop sends to the whole group) to their
    hub, and end by themselves when the hub's process is killed."""
    hub = subprocess.Popen(
        [sys.executable, "-c", HUB, db_url, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hub.stdout is not None
        pids = json.loads(hub.stdout.readline())
        assert len(pids) == 2
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGINT)
        time.sleep(0.5)
        assert all(_alive(pid) for pid in pids)
        hub.kill()
        hub.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, "a worker outlived its hub"
            time.sleep(0.1)
    finally:
        hub.kill()
        hub.wait(10)
