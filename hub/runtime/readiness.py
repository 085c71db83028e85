"""Readiness of one instance: the database, the schema and each loop its roles run.

Each check answers ``{"status": "ok" | "fail", ...}`` within a few seconds; the instance
is ready when every check is ok. Nothing in an answer names the database's host or name
(a probe's body ends up in dashboards and load-balancer logs): errors are told by kind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from hub.core.metrics import READY
from hub.store.db import is_sqlite
from hub.store.leadership import Leadership, current_leader

Check = dict[str, Any]
Probe = Callable[[], Awaitable[Check]]

# How long one check may take before it counts as failed.
CHECK_TIMEOUT = 5.0
# A scheduled job this late means the scheduler's loop is stuck.
JOB_GRACE = timedelta(minutes=2)


def ok(**details: Any) -> Check:
    return {"status": "ok", **details}


def failed(reason: str, **details: Any) -> Check:
    return {"status": "fail", "reason": reason, **details}


@dataclass
class Readiness:
    """The checks of one instance; ``probe()`` runs them all, concurrently."""

    engine: Engine
    instance: str
    roles: Sequence[str]
    head: str
    checks: dict[str, Probe] = field(default_factory=dict)

    def add(self, name: str, probe: Probe) -> None:
        self.checks[name] = probe

    async def probe(self) -> tuple[bool, dict[str, Any]]:
        names = ["database", *self.checks]
        results = await asyncio.gather(
            self._timed(self._database()), *(self._timed(p()) for p in self.checks.values())
        )
        checks = dict(zip(names, results, strict=True))
        ready = all(c["status"] == "ok" for c in checks.values())
        READY.set(1 if ready else 0)
        body = {
            "status": "ready" if ready else "not ready",
            "instance": self.instance,
            "roles": sorted(self.roles),
            "checks": checks,
        }
        return ready, body

    @staticmethod
    async def _timed(check: Awaitable[Check]) -> Check:
        try:
            return await asyncio.wait_for(check, CHECK_TIMEOUT)
        except TimeoutError:
            return failed(f"no answer within {CHECK_TIMEOUT:g} s")
        except Exception as exc:
            # The kind only: messages of database drivers carry host and database names.
            return failed(f"check raised {type(exc).__name__}")

    async def _database(self) -> Check:
        """Reachable, and at the schema revision this build needs (or a newer one)."""
        started = time.monotonic()
        try:
            revision = await asyncio.to_thread(self._revision)
        except Exception as exc:
            return failed(f"database unreachable ({type(exc).__name__})")
        took = round(time.monotonic() - started, 3)
        if revision == self.head:
            return ok(schema=revision, seconds=took)
        return failed(
            f"schema at revision {revision}, this version needs {self.head}: "
            "run `smshub db upgrade`",
            schema=revision,
            seconds=took,
        )

    def _revision(self) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        return row[0] if row else None


# -- probes of the roles' loops ---------------------------------------------------------------
def task_probe(
    get_task: Callable[[], asyncio.Future[Any] | None],
    *,
    last_beat: Callable[[], float | None] | None = None,
    stale_after: float = 120.0,
) -> Probe:
    """A loop running as a task (or a worker's future): alive, and (with LAST_BEAT, a
    monotonic time) showing progress within STALE_AFTER seconds."""

    async def probe() -> Check:
        task = get_task()
        if task is None:
            return failed("not started")
        if task.done():
            return failed("stopped")
        if last_beat is None:
            return ok()
        beat = last_beat()
        age = None if beat is None else round(time.monotonic() - beat, 1)
        if age is not None and age > stale_after:
            return failed(f"no progress for {age:g} s", last_progress_seconds=age)
        return ok(last_progress_seconds=age)

    return probe


def smtp_probe(server: asyncio.Server, host: str, port: int) -> Probe:
    """The SMTP listener accepts a connection and greets with 220 (then QUIT)."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)

    async def probe() -> Check:
        if not server.is_serving():
            return failed("listener closed")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target, port), CHECK_TIMEOUT / 2
            )
        except (OSError, TimeoutError) as exc:
            return failed(f"does not accept connections ({type(exc).__name__})")
        try:
            greeting = await asyncio.wait_for(reader.readline(), CHECK_TIMEOUT / 2)
            writer.write(b"QUIT\r\n")
            await writer.drain()
        except (OSError, TimeoutError):
            greeting = b""
        finally:
            writer.close()
        if not greeting.startswith(b"220"):
            return failed("accepts connections but sends no 220 greeting")
        return ok(port=port)

    return probe


def imap_probe(source: Any) -> Probe:
    """An IMAP source's loop runs and is not backing off after a failure."""

    async def probe() -> Check:
        task = getattr(source, "_task", None)
        if task is None or task.done():
            return failed("loop not running")
        if source.state == "backoff":
            # The reason stays in the log and `smshub mail status`: it names the server.
            return failed("cannot read the mailbox; reconnecting (see the log)", state="backoff")
        return ok(state=source.state)

    return probe


def scheduler_probe(scheduler: Any, engine: Engine, leadership: Leadership) -> Probe:
    """APScheduler runs and no job is overdue; tells whether this instance leads and, on
    PostgreSQL, which instance does."""

    async def probe() -> Check:
        if not scheduler.running:
            return failed("scheduler stopped")
        now = datetime.now(UTC)
        late = [
            job.id
            for job in scheduler.get_jobs()
            if job.next_run_time is not None and job.next_run_time < now - JOB_GRACE
        ]
        details: dict[str, Any] = {"leading": leadership.leading}
        if is_sqlite(engine):
            details["leader"] = "this instance" if leadership.leading else None
        else:
            details["leader"] = await asyncio.to_thread(current_leader, engine)
        if late:
            return failed(f"jobs overdue: {', '.join(sorted(late))}", **details)
        return ok(**details)

    return probe
