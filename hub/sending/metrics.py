"""smshub_submitted_total for every door, counted once the rows are committed.

Every door ends in ``hub.sending.submit`` (often inside a larger transaction: the group commit of
mail intake, a calendar sync, a campaign); the counts wait in the session for its transaction's
commit (``hub.store.db.after_commit``), and a rollback drops them, so a retried or refused
submission is never counted.
"""

from __future__ import annotations

from functools import partial

from sqlalchemy.orm import Session

from hub.core.metrics import SUBMITTED
from hub.store.db import after_commit


def note_submitted(session: Session, door: str, count: int) -> None:
    """COUNT messages from DOOR were written in SESSION's transaction."""
    if count:
        after_commit(session, partial(SUBMITTED.labels(source=door).inc, count))
