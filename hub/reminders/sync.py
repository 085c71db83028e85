"""Syncing one calendar: read its source, then reconcile reminders in one transaction."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, bindparam
from sqlalchemy import select as core_select
from sqlmodel import Session, select

from hub.core.config import Config
from hub.core.timeutil import as_utc, utcnow
from hub.errors import ConfigError, CursorExpired, HubError, SourceError
from hub.ports.calendar import (
    CalendarSource,
    SourceContext,
    SyncResult,
    SyncWindow,
    move_name_keyed_files,
)
from hub.ports.registry import build_calendar_source
from hub.ports.state import StateStore
from hub.reminders.calendar_store import (
    adopt_secret_files,
    names_console_files,
    resolve_secrets,
)
from hub.reminders.reconcile import ReconcileReport, reconcile_chunked
from hub.reminders.setup import source_context, source_state_files
from hub.reminders.writeback import ANSWERS_DUE, write_answers
from hub.store.db import read_connection, session_scope, table
from hub.store.models import Calendar
from hub.store.secretbox import Keyring, SecretUnreadable, load_keyring
from hub.store.state_sql import SqlStateStore, state_store

log = logging.getLogger("smshub.calendars")


async def sync_calendar(
    engine: Engine,
    config: Config,
    calendar_id: int,
    full: bool = False,
    store: StateStore | None = None,
) -> ReconcileReport:
    """Sync one calendar now; errors are recorded on the calendar and raised as HubError.
    STORE: the hub's state store (default: one on ENGINE with CONFIG's keys)."""
    store = store if store is not None else state_store(engine, config)
    job = await asyncio.to_thread(_load, engine, config, calendar_id, full)
    adopting = None
    # The calendar read once: adopting files (rare) reads and changes it, then it is read again.
    if names_console_files(job.settings):
        adopting = await _adopt_secret_files(engine, config, store, calendar_id)
        job = await asyncio.to_thread(_load, engine, config, calendar_id, full)
    source = await _open_source(engine, job, store, adopting)
    result = await _read(engine, job, source)

    def _done(_session: Session, calendar: Calendar) -> None:
        # In the last chunk's transaction: a sync that dies before is done again from here.
        calendar.cursor = result.cursor
        calendar.last_sync_at = utcnow()
        calendar.last_error = ""

    def _apply() -> ReconcileReport:
        return reconcile_chunked(engine, config, calendar_id, result, job.window, finish=_done)

    report = await asyncio.to_thread(_apply)
    log.info(
        "%s synced: %d occurrences, %d planned, %d rescheduled, %d cancelled, %d problems",
        job.ctx.name,
        report.seen,
        report.planned,
        report.rescheduled,
        report.cancelled,
        len(report.problems),
    )
    return report


@dataclass
class _Job:
    """One sync's calendar, as read before its source is asked."""

    calendar_id: int
    settings: dict[str, Any]
    cursor: str | None  # None for a full sync
    window: SyncWindow
    ctx: SourceContext
    kind: str
    # Whether answers were due for writing back to the calendar when the sync began (those
    # that fall due during it are the answer writer's).
    answers_due: bool


_CALENDARS = table(Calendar)
# What a sync reads of its calendar before asking the source: built once (a Core statement
# on a bare connection, not an ORM object in a session, per sync).
_LOAD = core_select(
    _CALENDARS.c.name,
    _CALENDARS.c.settings,
    _CALENDARS.c.window_days,
    _CALENDARS.c.cursor,
    _CALENDARS.c.source_type,
    ANSWERS_DUE.label("answers_due"),
).where(_CALENDARS.c.id == bindparam("calendar_id"))


def _load(engine: Engine, config: Config, calendar_id: int, full: bool) -> _Job:
    # A read: on SQLite it must not take the write lock the dispatcher claims with.
    now = utcnow()
    with read_connection(engine) as conn:
        row = conn.execute(_LOAD, {"calendar_id": calendar_id, "now": now}).first()
    if row is None:
        raise HubError(f"no calendar {calendar_id}")
    name, settings_text, window_days, cursor, kind, answers_due = row
    settings = json.loads(settings_text or "{}")
    window = SyncWindow(now - timedelta(days=1), _hour_after(now + timedelta(days=window_days)))
    ctx = source_context(name, calendar_id, config.hub.data_dir)
    return _Job(
        calendar_id, settings, None if full else cursor, window, ctx, kind, bool(answers_due)
    )


def _hour_after(moment: datetime) -> datetime:
    """The first full hour after MOMENT. A window ending there is the same for every sync
    within the hour: an incremental sync asks the source only for changes, not also for the
    slice of time the window moved on by (for Google, one request instead of two: half the
    requests, and the quota, of a hub syncing many unchanged calendars)."""
    return moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


async def _adopt_secret_files(
    engine: Engine, config: Config, store: StateStore, calendar_id: int
) -> ConfigError | None:
    """Secret files the console of an earlier build wrote on this machine: into the store.
    The error when there is no usable key (told on the calendar once it is read)."""
    try:
        await asyncio.to_thread(
            adopt_secret_files,
            engine,
            lambda: store_keyring(store, config),
            config.hub.data_dir,
            calendar_id,
        )
    except ConfigError as exc:
        return exc
    return None


async def _failed(engine: Engine, job: _Job, exc: Exception) -> HubError:
    """EXC recorded on the calendar; the HubError to raise."""
    await asyncio.to_thread(_record_error, engine, job.calendar_id, str(exc))
    return HubError(f"{job.ctx.name} could not be read: {exc}")


async def _open_source(
    engine: Engine, job: _Job, store: StateStore, adopting: ConfigError | None
) -> CalendarSource:
    """The calendar's source, given its secrets and the hub's store; a problem is recorded
    on the calendar and raised as HubError."""
    ctx = job.ctx
    try:
        if adopting is not None:
            raise adopting
        # A secret this instance cannot read (a file of another machine, a store entry under
        # another key) is recorded on the calendar like any read error.
        ctx.secrets = await asyncio.to_thread(resolve_secrets, job.settings, store, job.calendar_id)
    except (ConfigError, SecretUnreadable) as exc:
        raise await _failed(engine, job, exc) from None
    ctx.store = store
    # Files a hub before calendar ids kept under the calendar's name: where they are now.
    await asyncio.to_thread(move_name_keyed_files, ctx, source_state_files(job.kind, job.settings))
    try:
        # Settings stored by an older hub can fail its source's checks: told like any error.
        return build_calendar_source(job.kind, job.settings, ctx, ctx.name)
    except (SourceError, ConfigError) as exc:
        raise await _failed(engine, job, exc) from None


async def _read(engine: Engine, job: _Job, source: CalendarSource) -> SyncResult:
    """What SOURCE lists (a full listing when the cursor expired), its unwritten answers
    written; closed after. A problem is recorded on the calendar and raised as HubError."""
    try:
        try:
            result = await source.sync(job.window, job.cursor)
        except CursorExpired:
            log.info("%s: the sync token expired; doing a full sync", job.ctx.name)
            result = await source.sync(job.window, None)
        # Answers not written yet (their writer failed, or none runs): with this source.
        if job.answers_due:
            await write_answers(engine, source, job.calendar_id)
    except (SourceError, ConfigError) as exc:
        raise await _failed(engine, job, exc) from None
    finally:
        await source.close()
    return result


def store_keyring(store: StateStore, config: Config) -> Keyring:
    """The keys STORE encrypts with (those of CONFIG for another kind of store)."""
    return store.keyring if isinstance(store, SqlStateStore) else load_keyring(config)


def _record_error(engine: Engine, calendar_id: int, error: str) -> None:
    with session_scope(engine) as session:
        calendar = session.get(Calendar, calendar_id)
        if calendar is not None:
            calendar.last_error = error[:1000]
            calendar.last_sync_at = utcnow()
            session.add(calendar)


def due_calendars(engine: Engine) -> list[int]:
    """Enabled calendars whose sync interval has passed."""
    now = utcnow()
    with session_scope(engine) as session:
        rows = session.exec(select(Calendar).where(Calendar.enabled == True)).all()  # noqa: E712
        return [
            c.id
            for c in rows
            if c.id is not None
            and (
                c.last_sync_at is None
                or as_utc(c.last_sync_at) + timedelta(minutes=c.sync_interval_minutes) <= now
            )
        ]


class SyncRunner(Protocol):
    """Where sync_many runs each calendar's sync instead of this process
    (``hub.reminders.workers.SyncPool``: worker processes)."""

    processes: int

    async def sync(self, calendar_id: int, full: bool) -> ReconcileReport | None:
        """The calendar synced, as ``sync_logged`` does it."""
        ...


async def sync_logged(
    engine: Engine,
    config: Config,
    calendar_id: int,
    full: bool = False,
    store: StateStore | None = None,
) -> ReconcileReport | None:
    """``sync_calendar``, its failure logged rather than raised (None): one calendar's
    problem must not stop a round of many."""
    try:
        return await sync_calendar(engine, config, calendar_id, full=full, store=store)
    except HubError as exc:
        log.warning("%s", exc)
    except Exception:
        log.exception("calendar %s sync failed", calendar_id)
    return None


# Calendars sync_many works on at once in this process, on PostgreSQL. While one calendar's
# rows are being written (the server working on the COPY and its indexes, without the GIL)
# the next one is read and decided; one at a time, that time was idle (measured: a first
# sync of 40 calendars 10-20 % shorter). More than two would only queue on the GIL. SQLite
# has one writer: a second planner in this process would queue on the write lock the
# dispatcher claims with, for no gain (measured), so there calendars go one at a time.
# Worker processes (RUNNER) do better on both: each has its own GIL.
SYNC_CONCURRENCY = 2


async def sync_due(
    engine: Engine,
    config: Config,
    store: StateStore | None = None,
    *,
    stopping: asyncio.Event | None = None,
    runner: SyncRunner | None = None,
) -> int:
    """Sync every due calendar (one failing calendar does not stop the others), in RUNNER's
    worker processes if given; none is started once STOPPING is set (they stay due, for the
    next sync)."""
    due = await asyncio.to_thread(due_calendars, engine)
    reports = await sync_many(engine, config, due, store, stopping=stopping, runner=runner)
    return sum(report is not None for report in reports)


async def sync_many(
    engine: Engine,
    config: Config,
    calendar_ids: list[int],
    store: StateStore | None = None,
    *,
    full: bool = False,
    concurrency: int | None = None,
    stopping: asyncio.Event | None = None,
    runner: SyncRunner | None = None,
) -> list[ReconcileReport | None]:
    """Sync CALENDAR_IDS, CONCURRENCY at a time, in their order: in RUNNER's worker processes
    (as many at once as it has), else in this process (SYNC_CONCURRENCY on PostgreSQL, one
    on SQLite). Each one's report, None for a calendar that failed (logged; it does not stop
    the others) or that was not started because STOPPING was set (the instance is stopping:
    those under way finish, no other starts)."""
    if concurrency is None:
        if runner is not None:
            concurrency = runner.processes
        else:
            concurrency = SYNC_CONCURRENCY if engine.dialect.name == "postgresql" else 1
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(calendar_id: int) -> ReconcileReport | None:
        async with slots:
            if stopping is not None and stopping.is_set():
                return None
            if runner is not None:
                return await runner.sync(calendar_id, full)
            return await sync_logged(engine, config, calendar_id, full, store)

    return list(await asyncio.gather(*(one(calendar_id) for calendar_id in calendar_ids)))
