"""smshub_submitted_total for every door, counted once the rows are committed.

Every door ends in ``hub.sending.submit`` (often inside a larger transaction: the group commit of
mail intake, a calendar sync, a campaign); the counts wait in the session until its
transaction commits, and a rollback drops them, so a retried or refused submission is
never counted.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import event
from sqlalchemy.orm import Session

from hub.core.metrics import SUBMITTED

_KEY = "smshub_submitted"


def note_submitted(session: Session, door: str, count: int) -> None:
    """COUNT messages from DOOR were written in SESSION's transaction."""
    if count:
        pending: Counter[str] = session.info.setdefault(_KEY, Counter())
        pending[door] += count


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for door, count in session.info.pop(_KEY, Counter()).items():
        SUBMITTED.labels(source=door).inc(count)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_KEY, None)
