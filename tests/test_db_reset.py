"""The per-test database reset (tests/conftest.py): a PostgreSQL database used by one test is
empty for the next, its ids starting again, as TRUNCATE ... RESTART IDENTITY left it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import select

from hub.sending.accounts import create_account
from hub.sending.credits import top_up
from hub.store.db import make_engine, session_scope
from hub.store.models import Account, LedgerEntry
from tests.conftest import _PG_RESET


def _accounts(engine: Engine) -> list[tuple[int | None, str]]:
    with session_scope(engine) as session:
        return [(a.id, a.name) for a in session.exec(select(Account).order_by(Account.id)).all()]


def test_reset_empties_every_table_and_restarts_ids(pg_database: str, pg_resetter: Any) -> None:
    # (SQLite tests each get a fresh copy of the migrated template file: nothing to reset.)
    pg_resetter.execute(_PG_RESET)
    engine = make_engine(pg_database)
    with session_scope(engine) as session:
        create_account(session, "acme", region="FR")
        create_account(session, "globex", parent="acme")
        top_up(session, "acme", 10)
    assert [name for _, name in _accounts(engine)] == ["acme", "globex"]
    engine.dispose()  # the hub's connections are gone before the next test's reset

    pg_resetter.execute(_PG_RESET)

    with session_scope(engine) as session:
        assert session.exec(select(func.count()).select_from(LedgerEntry)).one() == 0
        create_account(session, "initech", region="FR")
    assert _accounts(engine) == [(1, "initech")]
    engine.dispose()
