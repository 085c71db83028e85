"""Who runs the periodic jobs: this instance's view of the scheduler's leader lock, and on
PostgreSQL the name of the instance holding it (whichever instance is asked)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, text

from hub.core.metrics import LEADER

# The PostgreSQL advisory lock the scheduler role's instances compete for ("smshub").
LOCK_KEY = 0x736D73687562

# A bigint advisory lock shows in pg_locks as classid (high 32 bits), objid (low 32 bits),
# objsubid 1; application_name is the holder's [hub] instance_id (hub.store.db.make_engine).
_HOLDER = text(
    """
    SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.classid = :hi AND l.objid = :lo
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    """
)


@dataclass
class Leadership:
    """Updated by the scheduler's leader lock each time it is tried."""

    leading: bool = False
    checked_at: float | None = None

    def record(self, leading: bool) -> None:
        self.leading = leading
        self.checked_at = time.monotonic()
        LEADER.set(1 if leading else 0)


def current_leader(engine: Engine) -> str | None:
    """The instance id holding the leader lock (PostgreSQL), None when nobody holds it."""
    with engine.connect() as conn:
        row = conn.execute(_HOLDER, {"hi": LOCK_KEY >> 32, "lo": LOCK_KEY & 0xFFFFFFFF}).first()
    return (row[0] or "an instance without a name") if row else None
