"""Statements with IN lists keep a bounded number of SQL texts, whatever the list lengths.

Each SQL text is prepared and kept by every connection (sqlite3 keeps 128 per connection;
a prepared IN of 200 ids is about 35 KB of SQLite's heap): texts that varied with the size
of each group commit or report batch made an idle SQLite hub grow by ~6 MB per 10,000
messages (bench/memory.py). Lists are padded to power-of-two lengths (hub.store.db.padded).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from hub.core.timeutil import utcnow
from hub.sending import outbox
from hub.store import claims
from hub.store.db import padded
from hub.store.models import OutgoingMail


@pytest.fixture
def statements(engine: Engine) -> Iterator[set[str]]:
    seen: set[str] = set()

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if " IN (" in statement:
            seen.add(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_padded_lengths_are_powers_of_two_and_keep_every_value() -> None:
    assert padded([]) == []
    assert padded(["a"]) == ["a"]
    assert padded(["a", "b", "c"]) == ["a", "b", "c", "c"]
    for n in range(1, 600):
        values = list(range(n))
        out = padded(values)
        assert len(out) & (len(out) - 1) == 0 and n <= len(out) < 2 * n
        assert out[:n] == values and set(out) == set(values)


def test_two_hundred_batch_sizes_make_a_few_sql_texts(engine: Engine, statements: set[str]):
    for n in range(1, 201):
        ids = [f"m{i}" for i in range(n)]
        outbox.mark_started(engine, "w", ids)
        outbox.renew(engine, "w", ids)
        outbox.release(engine, "w", ids)
        lease = claims.Lease(until=utcnow() + timedelta(seconds=30), seconds=30)
        claims.renew(engine, OutgoingMail, list(range(n)), lease)
        claims.release(engine, OutgoingMail, list(range(n)), lease)
    # Five statements, lengths 1, 2, 4, ... 256: nine texts each at most.
    assert len(statements) <= 5 * 9, len(statements)
