"""Writing the dispatcher's outcomes while it goes on sending.

The dispatcher hands over each claimed batch's outcomes once the batch is sent; they are
written in a worker thread, one transaction at a time, and batches finished during a write
go together in the next one. The senders never wait for the database, and a fast gateway
makes for fewer, bigger transactions rather than more of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from hub.sending import outbox
from hub.sending.outbox import Outcome

log = logging.getLogger("smshub.dispatch")


class OutcomeWriter:
    """Group commit of outcomes for one dispatcher (at most one write in flight)."""

    def __init__(
        self,
        engine: Engine,
        worker: str,
        written: Callable[[Sequence[Outcome]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.worker = worker
        # Told of each group once its write is over, successful or not.
        self.written = written
        self._pending: list[Outcome] = []
        self._task: asyncio.Task[None] | None = None
        self._error: Exception | None = None

    def add(self, outcomes: Sequence[Outcome]) -> None:
        self._pending.extend(outcomes)
        if self._task is None:
            self._task = asyncio.create_task(self._write_all(), name="record-outcomes")

    async def _write_all(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, []
                try:
                    await asyncio.to_thread(outbox.record_outcomes, self.engine, self.worker, group)
                except Exception as exc:
                    # Those messages stay in `submitting` and are settled by reconcile; the
                    # next groups are still written (the database may be back by then).
                    log.exception("recording the outcomes of %d messages failed", len(group))
                    self._error = self._error or exc
                if self.written is not None:
                    self.written(group)
        finally:
            self._task = None

    async def flush(self) -> None:
        """Wait until everything added so far is written; raises the first write error since
        the last flush."""
        while self._task is not None:
            await asyncio.shield(self._task)
        error, self._error = self._error, None
        if error is not None:
            raise error
