"""Provider send rates: one limit per provider, whatever the number of dispatchers.

A provider's `rate_per_second` is its contract with us, not with one process. On PostgreSQL
(where several dispatchers can share the work) the limit lives in a `rate_buckets` row
updated with GCRA (the generic cell rate algorithm): each dispatcher reserves a small block
of send slots in one atomic UPDATE, then spends them at the paced times the database gave.
Only offsets from the database clock leave the database, so the machines' clocks need not
agree. On SQLite, one process is the only case and an in-process token bucket does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

from sqlalchemy import Engine

from hub.store.db import is_sqlite, session_scope, sql

# Reserve about a tenth of a second's worth of slots per round trip: ten round trips a
# second per dispatcher at most, and never more than this many slots ahead.
_BLOCK_SECONDS = 0.1
_MAX_BLOCK = 50
# Slots reserved but left unused this long (the dispatcher went idle) are dropped rather
# than spent late in a burst.
_STALE_SECONDS = 1.0

_RESERVE = """
WITH c AS (SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8 AS now)
UPDATE rate_buckets
   SET tat = GREATEST(tat, c.now) + :block / :rate
  FROM c
 WHERE name = :name
RETURNING tat - :block / :rate - c.now
"""


class Limiter(Protocol):
    rate: float

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait for a send slot; False when STOP was set while waiting (no slot used)."""
        ...


async def _sleep(delay: float, stop: asyncio.Event | None) -> bool:
    """Sleep DELAY seconds; False if STOP is set first."""
    if stop is None:
        await asyncio.sleep(delay)
        return True
    if stop.is_set():
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
        return False
    return True


class RateLimiter:
    """A token bucket in this process: at most RATE sends per second, with a burst of one
    second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = max(rate, 1.0)
        self.updated = time.monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        if self.rate <= 0:
            return True
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return True
                if not await _sleep((1 - self.tokens) / self.rate, stop):
                    return False


def reserve(engine: Engine, name: str, rate: float, block: int) -> float:
    """Reserve BLOCK paced slots of bucket NAME; returns in how many seconds the first is
    due (negative or zero: now). The slots follow each other 1/RATE seconds apart."""
    with session_scope(engine) as session:
        offset = session.execute(
            sql(_RESERVE), {"name": name, "rate": float(rate), "block": float(block)}
        ).scalar_one_or_none()
        if offset is None:
            # First use of this bucket: create it, then reserve (a concurrent creator wins).
            session.execute(
                sql(
                    "INSERT INTO rate_buckets (name, tat) VALUES (:name, 0) "
                    "ON CONFLICT (name) DO NOTHING"
                ),
                {"name": name},
            )
            offset = session.execute(
                sql(_RESERVE), {"name": name, "rate": float(rate), "block": float(block)}
            ).scalar_one()
    return float(offset)


class SharedRateLimiter:
    """RATE sends per second for provider NAME across every dispatcher on the database."""

    def __init__(self, engine: Engine, name: str, rate: float) -> None:
        self.engine = engine
        self.name = name
        self.rate = rate
        self.block = max(1, min(_MAX_BLOCK, int(rate * _BLOCK_SECONDS)))
        # Monotonic times of the slots reserved and not yet spent, earliest first.
        self._slots: list[float] = []
        self.lock = asyncio.Lock()

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        if self.rate <= 0:
            return True
        async with self.lock:
            now = time.monotonic()
            while self._slots and self._slots[0] < now - _STALE_SECONDS:
                self._slots.pop(0)
            if not self._slots:
                offset = await asyncio.to_thread(
                    reserve, self.engine, self.name, self.rate, self.block
                )
                start = time.monotonic() + offset
                self._slots = [start + i / self.rate for i in range(self.block)]
            delay = self._slots[0] - time.monotonic()
            if delay > 0 and not await _sleep(delay, stop):
                return False
            self._slots.pop(0)
            return True


def limiter_for(engine: Engine, name: str, rate: float) -> Limiter:
    """The limiter for provider NAME: shared through PostgreSQL, in-process on SQLite."""
    if rate <= 0 or is_sqlite(engine):
        return RateLimiter(rate)
    return SharedRateLimiter(engine, f"provider:{name}", rate)
