"""Recording that provider calls start, in groups: the line between `claimed` and `submitting`.

A message may become `unknown` after a crash only if its provider call had started, so the
database must know a call starts before it does. One UPDATE per SMS would cost a round trip
each; instead every sender about to call a provider asks here, and the messages asking while
a write is in flight go together in the next one (a group commit, one write at a time). With
a fast gateway that is a few writes per batch; with a slow one it costs nothing noticeable.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine

from hub.sending import outbox

log = logging.getLogger("smshub.dispatch")


class StartMarker:
    """Group commit of `claimed → submitting` for one dispatcher's worker id."""

    def __init__(self, engine: Engine, worker: str) -> None:
        self.engine = engine
        self.worker = worker
        self._pending: dict[str, asyncio.Future[bool]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self, message_id: str) -> bool:
        """Wait until MESSAGE_ID is recorded as started; False if it must not be sent (it
        was cancelled, or its claim was lost) or the write failed (it stays claimed and is
        handed back)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        if self._task is None:
            self._task = asyncio.create_task(self._write_all(), name="mark-started")
        return await future

    async def _write_all(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, {}
                try:
                    started = await asyncio.to_thread(
                        outbox.mark_started, self.engine, self.worker, list(group)
                    )
                except Exception:
                    log.exception("recording the start of %d provider calls failed", len(group))
                    started = set()
                for message_id, future in group.items():
                    if not future.done():
                        future.set_result(message_id in started)
        finally:
            self._task = None
