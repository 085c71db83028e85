"""Account 'main' with its welcome credits, made by the first start on an empty database;
two instances starting at once on it both start (both databases)."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine
from sqlmodel import select

from hub.app import DEFAULT_ACCOUNT, WELCOME_CREDITS, Hub
from hub.core.config import Config
from hub.sending import credits
from hub.sending.accounts import create_account
from hub.store.db import session_scope
from hub.store.models import Account


def test_the_first_start_makes_the_default_account_once(engine: Engine, config: Config) -> None:
    hub = Hub(config, engine=engine)
    made = hub.ensure_default_account()
    assert made is not None and made.name == DEFAULT_ACCOUNT
    assert hub.ensure_default_account() is None
    with session_scope(engine) as session:
        (account,) = session.exec(select(Account)).all()
        assert account.balance == WELCOME_CREDITS


def test_two_instances_making_it_at_once_both_start(engine: Engine, config: Config) -> None:
    """The other instance's transaction creates the account while this one checks: this one
    waits for it (PostgreSQL: on the name's unique index; SQLite: on the write lock), then
    leaves the account and its credits as they are, and does not fail."""
    hub = Hub(config, engine=engine)
    outcome: list[object] = []

    def second_instance() -> None:
        try:
            outcome.append(hub.ensure_default_account())
        except Exception as exc:  # noqa: BLE001 (the test reports it)
            outcome.append(exc)

    with session_scope(engine) as first:
        create_account(first, DEFAULT_ACCOUNT)
        credits.top_up(first, DEFAULT_ACCOUNT, WELCOME_CREDITS, note="welcome credits")
        first.flush()
        racing = threading.Thread(target=second_instance)
        racing.start()
        time.sleep(0.5)  # the second instance is waiting for this transaction by now
    racing.join(30)
    assert outcome == [None]
    with session_scope(engine) as session:
        (account,) = session.exec(select(Account)).all()
        assert account.balance == WELCOME_CREDITS
