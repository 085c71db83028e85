"""Claiming rows of a durable queue (mail out, webhook deliveries) so one worker sends each.

A claim pushes the row's `due_at` forward by a lease, in the transaction that reads it
(`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite transactions take the write lock at BEGIN,
so they run one at a time): other workers, of this release or an earlier one, see the row
as not due until the lease runs out, and a worker that dies simply lets it run out. The
pushed `due_at` is also the claim's token: handing a row back only touches rows still
carrying it. A worker sends a claimed row only while its lease is young (`Lease.fresh`),
so a row whose lease ran out and was taken over is never sent by both. A worker that sends
for longer renews its lease (`renew`): the lease can stay short, so the rows of a worker
that died come back within about one lease rather than after the longest send.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Engine, bindparam
from sqlmodel import Session, SQLModel

from hub.core.timeutil import utcnow
from hub.store.db import TIMESTAMP, padded, session_scope, sql, table

T = TypeVar("T")


@dataclass
class Lease:
    """How long the rows of one claim are this worker's (renewed: moved on by `renew`)."""

    until: datetime
    seconds: float
    taken: float = field(default_factory=time.monotonic)
    # A renewal found a row no longer carrying this lease: another worker may hold it.
    lost: bool = False

    def fresh(self) -> bool:
        """True while at least half the lease is left: time enough to send one more row."""
        return not self.lost and time.monotonic() - self.taken < self.seconds / 2


def claim_due(
    session: Session, query: Any, model: type[SQLModel], lease: timedelta
) -> tuple[list[Any], Lease]:
    """Run QUERY (rows whose first entity is MODEL, filtered and ordered by the caller)
    restricted to due rows, lock them, and push their `due_at` to the end of LEASE."""
    now = utcnow()
    claim = Lease(until=now + lease, seconds=lease.total_seconds())
    due_at = table(model).c.due_at
    rows = list(
        session.exec(query.where(due_at <= now).with_for_update(skip_locked=True, of=model)).all()
    )
    for row in rows:
        entity = row if isinstance(row, model) else row[0]
        entity.due_at = claim.until
        session.add(entity)
    session.flush()
    return rows, claim


def _move_due(
    session: Session, model: type[SQLModel], ids: Sequence[int], until: datetime, due: datetime
) -> int:
    """Set `due_at` to DUE on the rows IDS still pending under the lease that runs UNTIL;
    returns how many moved (a row another worker took over has another `due_at`)."""
    result = session.execute(
        sql(
            f"UPDATE {table(model).name} SET due_at = :due "  # noqa: S608 (a table name of ours)
            "WHERE id IN :ids AND status = 'pending' AND due_at = :until"
        ).bindparams(bindparam("ids", expanding=True), bindparam("until", type_=TIMESTAMP)),
        {"ids": padded(ids), "due": due, "until": until},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def renew(engine: Engine, model: type[SQLModel], ids: Sequence[int], lease: Lease) -> None:
    """Push the lease on the claimed rows IDS (still pending, not yet sent) to a full lease
    from now. A row that no longer carries the lease was taken over after it ran out: the
    lease is then `lost` and the worker sends nothing more of this claim (`fresh`)."""
    if not ids or lease.lost:
        return
    taken = time.monotonic()
    until = utcnow() + timedelta(seconds=lease.seconds)
    with session_scope(engine) as session:
        if _move_due(session, model, ids, lease.until, until) != len(set(ids)):
            # Not ours any more (or sent meanwhile: the caller passes only unsent rows).
            session.rollback()
            lease.lost = True
            return
    lease.until = until
    lease.taken = taken


def release(engine: Engine, model: type[SQLModel], ids: Sequence[int], lease: Lease) -> int:
    """Hand back claimed rows IDS not sent (a stop, a lease too old to send on): due now.
    Rows another worker took over since (their `due_at` changed) are left alone."""
    if not ids:
        return 0
    with session_scope(engine) as session:
        return _move_due(session, model, ids, lease.until, utcnow())


class Holding:
    """The rows of one claim a worker has not settled yet, their lease renewed every third
    of it while the worker holds them (``async with``). Settling a row (``settle``) and a
    renewal take turns: a renewal must not count a row settled meanwhile (its `due_at` or
    status changed) as taken over."""

    def __init__(
        self, engine: Engine, model: type[SQLModel], ids: Iterable[int], lease: Lease
    ) -> None:
        self.engine = engine
        self.model = model
        self.lease = lease
        self.unsettled: set[int] = set(ids)
        self._turn = asyncio.Lock()
        self._keeper: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Holding:
        self._keeper = asyncio.create_task(self._keep(), name=f"{table(self.model).name}-lease")
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.lease.seconds / 3)
            async with self._turn:
                await asyncio.to_thread(
                    renew, self.engine, self.model, sorted(self.unsettled), self.lease
                )

    async def settle(self, row_id: int, write: Callable[[], T]) -> T:
        """Run WRITE (the row's outcome, blocking) in a worker thread; the row is then no
        longer this claim's to renew."""
        async with self._turn:
            try:
                return await asyncio.to_thread(write)
            finally:
                self.unsettled.discard(row_id)

    async def release(self, ids: Iterable[int]) -> int:
        """Hand back IDS (not sent: a stop, a lease too old to send on); due now."""
        wanted = sorted(set(ids) & self.unsettled)
        async with self._turn:
            released = await asyncio.to_thread(release, self.engine, self.model, wanted, self.lease)
            self.unsettled.difference_update(wanted)
        return released
