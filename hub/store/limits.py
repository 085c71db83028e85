"""Windowed counters in SQL: limits that hold across every instance sharing the database.

A counter is one row per key (``login:addr:192.0.2.7``, ``smtp:sender:a@b.example``): the
count of the current fixed window and of the window before it. A sliding window is
estimated from the two, the previous count weighted by how much of it the sliding window
still covers (the "sliding window counter" of nginx and Cloudflare): one row per key,
exact enough for a limit, and updated by one atomic UPSERT, so two instances counting at
the same moment never both get the last slot. Rows whose windows are over are pruned.

Every function takes the caller's connection (or session), so a count can be part of the
caller's transaction (mail intake counts a mail only if its transaction commits).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import BigInteger, Connection, Float, Integer, bindparam, case, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from hub.store.db import table
from hub.store.models import RateCounter

_T = table(RateCounter)
# Keys longer than the column are cut (callers hash what a client chooses freely).
MAX_KEY = 200
# Expired rows are deleted at most this often per process, by whoever counts next.
PRUNE_EVERY = 300.0
_last_prune = 0.0


@dataclass(frozen=True)
class Count:
    """A counter's state at a moment: the sliding estimate and the last event's time."""

    estimate: float
    last_at: float | None


@dataclass(frozen=True)
class Taken:
    """The answer of ``take``: allowed, or refused with the seconds until it would be."""

    allowed: bool
    retry_after: float = 0.0


def _conn(db: Session | Connection) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def _position(window: float, now: float) -> tuple[int, float]:
    """The current window's number and the weight of the previous one (1 → 0 over it)."""
    bucket = int(now // window)
    return bucket, 1.0 - (now - bucket * window) / window


@lru_cache(maxsize=8)
def _statement(dialect: str, conditional: bool) -> Any:
    """The UPSERT that counts events, built once per dialect (its values are bound)."""
    bucket = bindparam("bucket", type_=BigInteger)
    n = bindparam("n", type_=Integer)
    current = case((_T.c.bucket == bucket, _T.c.count), else_=0)
    previous = case(
        (_T.c.bucket == bucket, _T.c.previous),
        (_T.c.bucket == bindparam("before", type_=BigInteger), _T.c.count),
        else_=0,
    )
    values = {
        "bucket": bucket,
        "last_at": bindparam("now", type_=Float),
        "expires_at": bindparam("expires", type_=Float),
    }
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    within = previous * bindparam("weight", type_=Float) + current + n <= bindparam(
        "ceiling", type_=Float
    )
    return (
        insert(_T)
        .values(key=bindparam("key"), count=n, previous=0, **values)
        .on_conflict_do_update(
            index_elements=[_T.c.key],
            set_={**values, "count": current + n, "previous": previous},
            where=within if conditional else None,
        )
        .returning(_T.c.count, _T.c.previous)
    )


def _upsert(
    conn: Connection, key: str, window: float, now: float, n: int, ceiling: float | None
) -> tuple[int, int] | None:
    """Count N events of KEY at NOW; with CEILING, only if the estimate stays within it.
    Returns (current, previous) after counting, None when refused."""
    bucket, weight = _position(window, now)
    row = conn.execute(
        _statement(conn.dialect.name, ceiling is not None),
        {
            "key": key[:MAX_KEY],
            "bucket": bucket,
            "before": bucket - 1,
            "n": n,
            "now": now,
            # The row counts until the window after this one is over.
            "expires": (bucket + 2) * window,
            "weight": weight,
            "ceiling": ceiling if ceiling is not None else 0.0,
        },
    ).first()
    _maybe_prune(conn, now)
    return None if row is None else (int(row[0]), int(row[1]))


def take(
    db: Session | Connection,
    key: str,
    limit: int,
    window: float,
    *,
    n: int = 1,
    now: float | None = None,
) -> Taken:
    """Count N events of KEY if at most LIMIT happen in any WINDOW seconds; else refuse
    (and count nothing), saying when N would fit."""
    now = time.time() if now is None else now
    if n > limit:
        return Taken(False, math.inf)
    conn = _conn(db)
    if _upsert(conn, key, window, now, n, limit) is not None:
        return Taken(True)
    state = conn.execute(
        select(_T.c.bucket, _T.c.count, _T.c.previous).where(_T.c.key == key[:MAX_KEY])
    ).first()
    if state is None:  # pruned meanwhile
        return Taken(False, 1.0)
    return Taken(
        False, _retry_after(window, now, int(state[0]), int(state[1]), int(state[2]), n, limit)
    )


def _retry_after(
    window: float, now: float, bucket: int, count: int, previous: int, n: int, limit: int
) -> float:
    """Seconds until COUNT (window BUCKET) and PREVIOUS leave room for N more under LIMIT."""

    def wait_in(start: float, current: int, before: int) -> float | None:
        # Within the window starting at START, the estimate before*(1-f) + current + n falls
        # to LIMIT at fraction f (None: not within this window).
        room = limit - current - n
        if room < 0:
            return None
        f = 0.0 if before <= 0 else max(0.0, 1.0 - room / before)
        return max(0.0, start + f * window - now)

    now_bucket, _ = _position(window, now)
    if bucket < now_bucket - 1:
        return 0.0
    if bucket == now_bucket - 1:  # the row's window is the previous one now
        count, previous, bucket = 0, count, now_bucket
    start = bucket * window
    here = wait_in(start, count, previous)
    if here is not None:
        return here
    then = wait_in(start + window, 0, count)
    return then if then is not None else start + 2 * window - now


def add(
    db: Session | Connection, key: str, window: float, *, n: int = 1, now: float | None = None
) -> Count:
    """Count N events of KEY unconditionally (e.g. a failed login); the state after."""
    now = time.time() if now is None else now
    counted = _upsert(_conn(db), key, window, now, n, None)
    assert counted is not None
    _, weight = _position(window, now)
    return Count(counted[1] * weight + counted[0], now)


def peek(
    db: Session | Connection, keys: list[str], window: float, *, now: float | None = None
) -> dict[str, Count]:
    """The state of each of KEYS (a key never counted has estimate 0), in one query."""
    now = time.time() if now is None else now
    bucket, weight = _position(window, now)
    cut = {key: key[:MAX_KEY] for key in keys}
    rows = (
        _conn(db)
        .execute(
            select(_T.c.key, _T.c.bucket, _T.c.count, _T.c.previous, _T.c.last_at).where(
                _T.c.key.in_(list(cut.values()))
            )
        )
        .all()
    )
    found = {row[0]: row for row in rows}
    states: dict[str, Count] = {}
    for key, stored in cut.items():
        row = found.get(stored)
        if row is None:
            states[key] = Count(0.0, None)
            continue
        _, row_bucket, count, previous, last_at = row
        if row_bucket == bucket:
            estimate = previous * weight + count
        elif row_bucket == bucket - 1:
            estimate = count * weight
        else:
            estimate = 0.0
        states[key] = Count(estimate, float(last_at))
    return states


def clear(db: Session | Connection, key: str) -> None:
    """Forget KEY's counts."""
    _conn(db).execute(delete(_T).where(_T.c.key == key[:MAX_KEY]))


def prune(db: Session | Connection, *, now: float | None = None) -> int:
    """Delete counters whose windows are over; the number deleted."""
    now = time.time() if now is None else now
    result = _conn(db).execute(delete(_T).where(_T.c.expires_at < now))
    return int(result.rowcount or 0)


def _maybe_prune(conn: Connection, now: float) -> None:
    global _last_prune
    mono = time.monotonic()
    if mono - _last_prune < PRUNE_EVERY:
        return
    _last_prune = mono
    prune(conn, now=now)
