"""The leader lock: periodic jobs run on the instance holding a PostgreSQL advisory lock."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from sqlalchemy import Engine, text

from hub.store.db import is_sqlite
from hub.store.leadership import LOCK_KEY, Leadership


class LeaderLock:
    """Held on a dedicated connection until this instance stops (``release``) or dies."""

    def __init__(self, engine: Engine, leadership: Leadership | None = None) -> None:
        self.engine = engine
        self._conn: Any = None
        # What /readyz and the smshub_scheduler_leader gauge show.
        self.leadership = leadership or Leadership()
        # The jobs try the lock from worker threads, sometimes two at once (jobs due at the
        # same moment): unserialized, each would open its own session and the one that lost
        # to the other would record this instance as not leading and skip its run.
        self._mutex = threading.Lock()
        # Set by release: a try still under way in a worker thread at the stop takes nothing.
        self._released = False

    def acquire(self) -> bool:
        """True if this instance leads (always true on SQLite, which has one instance)."""
        with self._mutex:
            leading = self._acquire()
            self.leadership.record(leading)
            return leading

    def release(self) -> None:
        """Let the lock go for good (this instance is stopping): another instance leads at
        its next try, not only once this process has exited."""
        with self._mutex:
            self._released = True
            conn, self._conn = self._conn, None
            self.leadership.record(False)
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            conn.commit()
            conn.close()
        except Exception:
            # Its session is gone already, and the lock with it.
            with contextlib.suppress(Exception):
                conn.invalidate()

    def _acquire(self) -> bool:
        if self._released:
            return False
        if is_sqlite(self.engine):
            return True
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                # Ended at once: a session left idle in a transaction for the instance's
                # life would be ended by idle_in_transaction_session_timeout, lock and all.
                self._conn.commit()
                return True
            except Exception:
                # Its session is gone (and the lock with it): drop the connection for good,
                # rather than leave it to the pool, whose reset on it would fail.
                with contextlib.suppress(Exception):
                    self._conn.invalidate()
                self._conn = None
        conn = self.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
        conn.commit()
        if got:
            self._conn = conn
            return True
        conn.close()
        return False
