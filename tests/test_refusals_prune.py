"""Refused intake mails are pruned in batches, the oldest first, the recent ones kept."""

from datetime import timedelta

from sqlmodel import select

from hub.core.timeutil import utcnow
from hub.mail.intake import refusals
from hub.sending.accounts import create_account
from hub.store.db import session_scope
from hub.store.models import RefusedIntakeMail


def test_refusals_older_than_the_retention_are_pruned_in_batches(engine, monkeypatch):
    monkeypatch.setattr(refusals, "PRUNE_BATCH", 2)
    with session_scope(engine) as s:
        acc = create_account(s, "acme")
        s.flush()
        for days in (1, 40, 41, 42, 50, 60):
            refused_at = utcnow() - timedelta(days=days)
            s.add(RefusedIntakeMail(account_id=acc.id, door="smtp", refused_at=refused_at))
    assert refusals.prune(engine, timedelta(days=30)) == 5
    assert refusals.prune(engine, timedelta(days=30)) == 0
    with session_scope(engine) as s:
        assert len(s.exec(select(RefusedIntakeMail)).all()) == 1
