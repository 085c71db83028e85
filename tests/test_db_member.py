"""db.member (= ANY(array) on PostgreSQL, an expanding IN on SQLite) finds what IN finds."""

from __future__ import annotations

import random
import time

import pytest
from sqlalchemy import Engine, bindparam, select, text, update
from sqlalchemy.exc import StatementError

from hub.sending.accounts import create_account
from hub.store.db import member, padded, read_scope, session_scope, table
from hub.store.models import Account

ACCOUNTS = table(Account).c
_BY_MEMBER = select(ACCOUNTS.id, ACCOUNTS.name).where(
    member(ACCOUNTS.id, "ids"), member(ACCOUNTS.name, "names")
)
_BY_IN = select(ACCOUNTS.id, ACCOUNTS.name).where(
    ACCOUNTS.id.in_(bindparam("ids", expanding=True)),
    ACCOUNTS.name.in_(bindparam("names", expanding=True)),
)


def test_member_finds_what_an_in_list_finds(engine: Engine) -> None:
    with session_scope(engine) as session:
        for i in range(40):
            create_account(session, f"acc{i:02d}")
    ids = list(range(1, 46))  # some ids of no account
    # And what a PostgreSQL array's text form must quote or escape (member binds that text).
    odd = ['a"b', "back\\slash", "c,d", "{e}", " f ", "NULL", "tab\tnew\nline", "é€😀", ""]
    with session_scope(engine) as session:
        session.add_all(Account(name=name) for name in odd)  # past create_account's rules
    names = [f"acc{i:02d}" for i in range(45)] + ["nobody", "o'brien", *odd]
    rng = random.Random(20)
    with read_scope(engine) as session:
        conn = session.connection()
        for _ in range(200):
            some_ids = rng.sample(ids, rng.randint(0, len(ids)))
            some_names = rng.choices(names, k=rng.randint(0, 60))  # duplicates too
            for pad in (False, True):
                params = {
                    "ids": padded(some_ids) if pad else some_ids,
                    "names": padded(some_names) if pad else some_names,
                }
                got = sorted(conn.execute(_BY_MEMBER, params).all())
                assert got == sorted(conn.execute(_BY_IN, params).all())


def test_member_takes_ints_and_strings_only(engine: Engine) -> None:
    """Anything else would need its own text form in the array: refused, not guessed."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite binds each value of the list itself")
    with read_scope(engine) as session, pytest.raises(StatementError, match="ints and strings"):
        session.execute(_BY_MEMBER, {"ids": [1.5], "names": ["x"]})


def test_member_in_an_update(engine: Engine) -> None:
    with session_scope(engine) as session:
        for i in range(5):
            create_account(session, f"acc{i}")
    with session_scope(engine) as session:
        changed = session.execute(
            update(table(Account)).where(member(ACCOUNTS.id, "ids")).values(disabled=True),
            {"ids": [2, 4, 4, 99]},
        )
        assert changed.rowcount == 2  # type: ignore[attr-defined]
        session.execute(
            update(table(Account)).where(member(ACCOUNTS.id, "ids")).values(disabled=True),
            {"ids": []},
        )
    with read_scope(engine) as session:
        disabled = session.execute(select(ACCOUNTS.id).where(ACCOUNTS.disabled)).scalars()
        assert sorted(disabled) == [2, 4]


def test_read_scope_runs_without_a_transaction_on_postgresql(engine: Engine) -> None:
    """On PostgreSQL at READ COMMITTED each read has its own snapshot in a transaction or not:
    read_scope skips the BEGIN and ROLLBACK (each statement then has its own now())."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps its transaction: it holds the scope's snapshot")
    with read_scope(engine) as session:
        session.execute(select(1)).all()  # connected: the server's default level is known
    with read_scope(engine) as session:
        first = session.execute(text("SELECT CURRENT_TIMESTAMP")).scalar()
        time.sleep(0.01)
        second = session.execute(text("SELECT CURRENT_TIMESTAMP")).scalar()
        assert session.execute(select(ACCOUNTS.id)).all() == []
    assert first != second
