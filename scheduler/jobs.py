"""Periodic jobs (APScheduler 3.x) and the leader lock that keeps them on one instance."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from hub.inbound.alerts import check_all
from hub.mail.intake import refusals
from hub.reminders.sync import sync_due
from hub.reminders.workers import SyncPool
from hub.sending import idempotency, outbox
from scheduler.leader import LeaderLock

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger("smshub.scheduler")


class HubScheduler(AsyncIOScheduler):
    """APScheduler running the hub's jobs, with the leader lock they share, the worker
    processes that sync calendars (SYNC_POOL; None: syncs run in this process) and a stop
    that lets the runs under way finish before the lock goes."""

    def __init__(self, leader: LeaderLock, sync_pool: SyncPool | None = None) -> None:
        super().__init__(timezone="UTC")
        self.leader = leader
        self.sync_pool = sync_pool
        # Set at the stop: a job made of many steps (calendar syncs) starts no other.
        self.stopping = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()

    def add_hub_job(self, func: Callable[[], Awaitable[None]], **options: Any) -> None:
        """FUNC on an interval trigger (OPTIONS: its length and the job's settings), its runs
        tracked so that ``stop`` can wait for them."""

        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                await func()
            finally:
                self._running.discard(task)

        self.add_job(run, "interval", name=func.__name__, **options)

    async def stop(self, grace: float) -> None:
        """No new runs; those under way get GRACE seconds, then the leader lock is let go,
        so that another instance runs the jobs from its next try (within 15 s) rather than
        from this process's exit. A run still going after GRACE is cancelled and keeps the
        lock: its worker thread may still be writing, and another instance would run the
        same job beside it (the lock goes when the process ends)."""
        # Paused first: shutting down cancels the runs under way (APScheduler's executor).
        self.pause()
        self.stopping.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        running = [task for task in self._running if not task.done()]
        late: set[asyncio.Task[Any]] = set()
        if running:
            _, late = await asyncio.wait(running, timeout=max(0.0, grace))
        self.shutdown(wait=False)
        if self.sync_pool is not None:
            await self.sync_pool.close(deadline - loop.time())
        if late:
            log.warning(
                "%d periodic job(s) still running after %.0f s; the leader lock is kept "
                "until this process ends",
                len(late),
                grace,
            )
            return
        await asyncio.to_thread(self.leader.release)


def start_scheduler(hub: Hub) -> HubScheduler:
    """Start the periodic jobs of HUB; they run only while this instance holds the lock."""
    leader = LeaderLock(hub.engine, hub.leadership)
    processes = hub.config.calendars.sync_processes
    scheduler = HubScheduler(leader, SyncPool(hub.config, processes) if processes else None)
    window = timedelta(hours=hub.config.dispatcher.report_window_hours)
    key_retention = timedelta(hours=hub.config.sending.idempotency_key_hours)

    async def expire_reports() -> None:
        if not await asyncio.to_thread(leader.acquire):
            return
        expired = await asyncio.to_thread(outbox.expire_reports, hub.engine, window)
        if expired:
            log.info(
                "%d message(s) had no delivery report after %s: dr_unavailable", expired, window
            )

    async def sync_calendars() -> None:
        if not await asyncio.to_thread(leader.acquire):
            return
        await sync_due(
            hub.engine,
            hub.config,
            store=hub.state,
            stopping=scheduler.stopping,
            runner=scheduler.sync_pool,
        )

    async def prune_state() -> None:
        # Expired sign-ins, part ids of long SMS past their receipt window, idempotency keys
        # past their retention.
        if not await asyncio.to_thread(leader.acquire):
            return
        pruned = await asyncio.to_thread(hub.state.prune)
        if pruned:
            log.info("deleted %d expired connector state entries", pruned)
        keys = await asyncio.to_thread(idempotency.prune, hub.engine, key_retention)
        if keys:
            log.info("deleted %d idempotency keys older than %s", keys, key_retention)
        await asyncio.to_thread(refusals.prune, hub.engine)

    async def check_alerts() -> None:
        # Catches balance crossings made by paths that do not check alerts themselves.
        if not await asyncio.to_thread(leader.acquire):
            return
        if await asyncio.to_thread(check_all, hub.engine, hub.config) and hub.mail_outbox:
            hub.mail_outbox.wake()

    async def keep_lead() -> None:
        # Tried often, so /readyz and the leader gauge are current and a dead leader's jobs
        # move to another instance within seconds rather than at the next job.
        await asyncio.to_thread(leader.acquire)

    # One run of each job at a time; runs missed while busy collapse into one.
    once = {"max_instances": 1, "coalesce": True}
    scheduler.add_hub_job(
        keep_lead, seconds=15, id="leader-lock", next_run_time=datetime.now(UTC), **once
    )
    scheduler.add_hub_job(check_alerts, minutes=5, id="balance-alerts", **once)
    scheduler.add_hub_job(sync_calendars, minutes=1, id="sync-calendars", **once)
    scheduler.add_hub_job(expire_reports, minutes=5, id="expire-reports", **once)
    scheduler.add_hub_job(prune_state, minutes=10, id="prune-state", **once)
    scheduler.start()
    return scheduler
