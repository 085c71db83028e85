"""Calendar syncs in worker processes, beside the hub's own.

A first sync of a large calendar is CPU work in Python: parsing the source's pages, deciding
each reminder, handing rows to the driver (bench/reminders.py: about 3 s of CPU for 20,000
appointments). Threads take turns on one GIL, so a second calendar planned beside the first
gained nothing (bench/README.md), and the dispatcher's loop waited for the GIL meanwhile.
Each worker process has a GIL of its own: calendars are synced side by side on as many cores,
and the hub's process only waits for their reports.

A worker has its own engine on the hub's database, the one truth they share as instances
do: a sync commits in chunks, so a worker that dies halfway leaves nothing half-planned and
the calendar's next sync finishes it (tests/reliability/test_reminder_sync_crash.py).

Starting: a forkserver process imports the sync code once and forks each worker from itself
(a fresh interpreter would import the hub again, about a second of CPU each; forking the hub's
own process would copy locks its threads hold). Workers start on demand, one at a time, up to
``[calendars] sync_processes``, and live as long as the pool.

Stopping: workers ignore SIGINT and SIGTERM (a Ctrl-C reaches every process of the group, as
systemd's stop does with KillMode=control-group): the hub's stop decides. ``close`` starts no
other sync and lets those under way end within the grace, then kills their workers. A worker
whose hub is gone (SIGKILL, or an exit past the grace) exits at once, as a sync thread ends
with its process; what it had not committed is rolled back by the database. A pidfd watches
the hub (Linux 5.3 and later; elsewhere the worker checks every second).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from prometheus_client import REGISTRY
from sqlalchemy import Engine
from sqlalchemy.orm import configure_mappers

from hub.core import i18n
from hub.core.config import Config
from hub.core.metrics import SUBMITTED
from hub.ports.registry import calendar_source_modules
from hub.ports.state import StateStore
from hub.reminders.reconcile import ReconcileReport
from hub.reminders.sync import sync_logged
from hub.runtime.heap import tune_gc_forked
from hub.runtime.logs import instance_id, setup_logging
from hub.store.db import make_engine
from hub.store.state_sql import state_store

log = logging.getLogger("smshub.calendars")

# How long a stop waits for idle workers to exit before killing them.
IDLE_EXIT_SECONDS = 5.0


class SyncPool:
    """Up to PROCESSES worker processes syncing calendars for a hub with CONFIG
    (a ``hub.reminders.sync.SyncRunner``)."""

    def __init__(self, config: Config, processes: int) -> None:
        self.processes = processes
        # The workers' config: this instance's name with "/sync" in their log lines and as
        # their sessions' application_name in PostgreSQL's activity.
        hub = config.hub.model_copy(update={"instance_id": f"{instance_id(config)}/sync"})
        self._worker_config = config.model_copy(update={"hub": hub})
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False
        self._in_flight = 0

    async def sync(self, calendar_id: int, full: bool) -> ReconcileReport | None:
        """The calendar synced in a worker: its report, or None when it failed (logged by the
        worker) or its worker died (logged here; the calendar stays due)."""
        if self._closed:
            return None
        executor = self._running()
        self._in_flight += 1
        try:
            report, submitted = await asyncio.wrap_future(executor.submit(_sync, calendar_id, full))
        except BrokenProcessPool:
            log.error(
                "calendar %s: the worker process syncing it ended abruptly (killed? out of "
                "memory?); it stays due and is synced again at the next round",
                calendar_id,
            )
            self._replace(executor)
            return None
        finally:
            self._in_flight -= 1
        # The worker's metrics are not scraped: what it queued is counted here.
        if submitted:
            SUBMITTED.labels(source="calendar").inc(submitted)
        return report

    async def start(self) -> list[int]:
        """Every worker started now rather than at the syncs that need them (a benchmark
        measures the syncs of a hub that has been running); their process ids."""
        if self._closed:
            return []
        executor = self._running()
        seen: set[int] = set()
        # A task given while no worker is idle starts one more, up to PROCESSES; tasks that
        # last a moment keep the started ones busy until every worker has answered.
        for _ in range(100):
            batch = [executor.submit(_pid_after, 0.05) for _ in range(self.processes)]
            seen.update(await asyncio.gather(*map(asyncio.wrap_future, batch)))
            if len(seen) >= self.processes:
                break
        return sorted(seen)

    async def close(self, grace: float) -> None:
        """No other sync starts; those under way get GRACE seconds to end, then their workers
        are killed: what a sync had not committed is rolled back by the database, and done
        again by the calendar's next sync (here or on the next leader)."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        busy = self._in_flight > 0
        done = asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        try:
            # Idle workers end at once: a moment for that even when the grace is spent.
            await asyncio.wait_for(done, max(0.0, grace) if busy else IDLE_EXIT_SECONDS)
        except TimeoutError:
            if busy:
                log.warning(
                    "a calendar sync was still running after %g s: stopped; what it had "
                    "not committed is synced again at the calendar's next sync",
                    grace,
                )
            _kill_workers(executor)

    def _running(self) -> ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context("forkserver")
            # The forkserver imports these once; every worker forked from it starts warm.
            context.set_forkserver_preload([__name__, *calendar_source_modules()])
            self._executor = ProcessPoolExecutor(
                self.processes,
                mp_context=context,
                initializer=_start_worker,
                initargs=(self._worker_config, os.getpid()),
            )
        return self._executor

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        # Every sync given to a broken pool fails; the next round gets a new one. Its other
        # workers are killed too: their syncs' reports are lost, and one still running could
        # meet the next round's sync of the same calendar.
        if self._executor is broken:
            self._executor = None
            _kill_workers(broken)
            broken.shutdown(wait=False, cancel_futures=True)


def _kill_workers(executor: ProcessPoolExecutor) -> None:
    # SIGKILL: workers ignore SIGTERM (see the module's docstring). The executor keeps its
    # processes in a private mapping; there is no public way to reach them.
    for process in list(executor._processes.values()):
        process.kill()


# -- in the worker ---------------------------------------------------------------------------
_engine: Engine | None = None
_config: Config | None = None
_store: StateStore | None = None
# The worker's event loop, kept from one sync to the next: ``asyncio.run`` per sync made a
# loop and, for each hop to a thread, a new thread, then joined them all (~1 ms of a sync's
# ~20 ms of fixed cost, measured on small calendars).
_loop: asyncio.AbstractEventLoop | None = None


def _start_worker(config: Config, hub: int) -> None:
    """A worker's start: its signals, logs, engine and collector, and the watch on HUB (the
    hub's process id)."""
    global _engine, _config, _store, _loop
    # First: what the forkserver built stays shared with it (no collection walks it).
    tune_gc_forked()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging(config)
    # As the hub's process sets it (hub.app.Hub): texts written for no reader in particular.
    i18n.set_hub_language(i18n.account_language(None, config))
    _config = config
    _engine = make_engine(
        config.database_url,
        busy_timeout=config.database.sqlite_busy_timeout,
        application_name=config.hub.instance_id,
    )
    _store = state_store(_engine, config)
    _loop = asyncio.new_event_loop()
    # What every worker's first sync would do otherwise (~30 ms), then frozen with the rest.
    configure_mappers()
    tune_gc_forked()
    threading.Thread(target=_exit_with, args=(hub,), daemon=True, name="hub-watch").start()


def _exit_with(hub: int) -> None:
    # This worker ends when the hub's process does, as a sync thread ends with its process.
    # Not by its parent: the forkserver lives as long as any worker does (each holds the
    # pipe that tells the forkserver its hub is gone). A pidfd turns readable when the
    # process ends; the hub is waiting for this worker to start, so the id is still its own.
    try:
        watch = os.pidfd_open(hub)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd (not Linux, or a kernel before 5.3)
        while _alive(hub):
            time.sleep(1.0)
        os._exit(1)
    select.select([watch], [], [])
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process has the id now: the hub is gone
        return False
    return True


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _sync(calendar_id: int, full: bool) -> tuple[ReconcileReport | None, float]:
    """The sync's report, and the reminders it queued (the worker's smshub_submitted_total
    moved by as much, after each commit: the hub's process counts them in its own)."""
    assert _engine is not None and _config is not None and _loop is not None
    before = _submitted()
    report = _loop.run_until_complete(sync_logged(_engine, _config, calendar_id, full, _store))
    return report, _submitted() - before


def _submitted() -> float:
    return REGISTRY.get_sample_value("smshub_submitted_total", {"source": "calendar"}) or 0.0
