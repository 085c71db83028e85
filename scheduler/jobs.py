"""Periodic jobs (APScheduler 3.x) and the leader lock that keeps them on one instance."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from hub.mail.intake import refusals
from hub.sending import idempotency, outbox
from scheduler.leader import LeaderLock

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger("smshub.scheduler")


def start_scheduler(hub: Hub) -> AsyncIOScheduler:
    """Start the periodic jobs of HUB; they run only while this instance holds the lock."""
    leader = LeaderLock(hub.engine, hub.leadership)
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
        from hub.reminders.sync import sync_due

        await sync_due(hub.engine, hub.config, store=hub.state)

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
        from hub.inbound.alerts import check_all

        if await asyncio.to_thread(check_all, hub.engine, hub.config) and hub.mail_outbox:
            hub.mail_outbox.wake()

    async def keep_lead() -> None:
        # Tried often, so /readyz and the leader gauge are current and a dead leader's jobs
        # move to another instance within seconds rather than at the next job.
        await asyncio.to_thread(leader.acquire)

    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(
        keep_lead,
        "interval",
        seconds=15,
        id="leader-lock",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
    )
    scheduler.add_job(
        check_alerts, "interval", minutes=5, id="balance-alerts", max_instances=1, coalesce=True
    )
    scheduler.add_job(
        sync_calendars, "interval", minutes=1, id="sync-calendars", max_instances=1, coalesce=True
    )
    scheduler.add_job(
        expire_reports, "interval", minutes=5, id="expire-reports", max_instances=1, coalesce=True
    )
    scheduler.add_job(
        prune_state, "interval", minutes=10, id="prune-state", max_instances=1, coalesce=True
    )
    scheduler.start()
    return scheduler
