"""Windowed counters in SQL: the one store of limits that must hold across instances."""

from __future__ import annotations

from sqlalchemy import Engine

from hub.store import limits as limits_sql
from hub.store.db import session_scope


def test_take_allows_the_limit_then_refuses_with_a_retry_time(engine: Engine) -> None:
    now = 999_960.0  # the start of a 60 s window
    with session_scope(engine) as s:
        for _ in range(3):
            assert limits_sql.take(s, "k", 3, 60.0, now=now).allowed
        refused = limits_sql.take(s, "k", 3, 60.0, now=now + 1)
    assert not refused.allowed
    # The 3 events leave the sliding window during the next one.
    assert 59 <= refused.retry_after <= 120, refused
    with session_scope(engine) as s:
        # Two windows later nothing is left.
        assert limits_sql.take(s, "k", 3, 60.0, now=now + 121).allowed
        # Another key counts apart.
        assert limits_sql.take(s, "other", 3, 60.0, now=now + 1).allowed


def test_sliding_estimate_weighs_the_previous_window(engine: Engine) -> None:
    now = 999_960.0
    with session_scope(engine) as s:
        for _ in range(4):
            limits_sql.add(s, "k", 60.0, now=now)
        states = limits_sql.peek(s, ["k", "never"], 60.0, now=now + 90)
    # Half of the previous window is still covered.
    assert states["k"].estimate == 2.0
    assert states["k"].last_at == now
    assert states["never"].estimate == 0.0


def test_a_refused_take_counts_nothing_and_prune_drops_old_rows(engine: Engine) -> None:
    now = 999_960.0
    with session_scope(engine) as s:
        assert limits_sql.take(s, "k", 1, 60.0, now=now).allowed
        assert not limits_sql.take(s, "k", 1, 60.0, now=now).allowed
        assert limits_sql.peek(s, ["k"], 60.0, now=now)["k"].estimate == 1.0
        assert limits_sql.prune(s, now=now + 10_000) == 1
        assert limits_sql.peek(s, ["k"], 60.0, now=now)["k"].estimate == 0.0
