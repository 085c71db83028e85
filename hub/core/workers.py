"""The lifecycle of the hub's background outboxes (mail out, webhooks, answer write-back).

A worker runs rounds: a round does what is due and says whether more may be due at once
(then the next round starts right away); otherwise the worker waits for ``wake()`` (new
work was stored) or ``poll_interval`` seconds. The wake flag is cleared before a round, so
a wake that comes while a round runs is not lost. ``stop(grace)`` starts no new round and
gives the one in flight GRACE seconds (None: as long as it takes) before cancelling it;
what a cancelled round had claimed runs out its lease (hub.store.claims) and is taken again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import ClassVar

log = logging.getLogger("smshub.workers")


class PollingWorker:
    """One background loop of rounds; subclasses implement ``_round``."""

    task_name: ClassVar[str] = "worker"

    def __init__(self, poll_interval: float) -> None:
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        """Look for due work now (some was just stored)."""
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name=self.task_name)

    async def stop(self, grace: float | None = 0) -> None:
        """Start no new round; the one in flight gets GRACE seconds (None: unbounded)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=grace)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None

    async def _round(self) -> bool:
        """Do what is due; True when more may be due right away."""
        raise NotImplementedError

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                more = await self._round()
            except Exception:
                log.exception("%s round failed", self.task_name)
                more = False
            if not more and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
