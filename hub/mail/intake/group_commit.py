"""Group commit: work items that arrive together run as one batch (one transaction)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger("smshub.group_commit")

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Entry(Generic[Item, Result]):
    """An item and whoever waits for its result: a thread (FUTURE) or a coroutine (WAITER,
    resolved in its LOOP)."""

    item: Item
    future: Future[Result] | None = None
    waiter: asyncio.Future[Result] | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def abandoned(self) -> bool:
        # A coroutine cancelled before its batch started (an SMTP client that hung up):
        # nobody is left to answer, so its item is not run.
        return self.waiter is not None and self.waiter.cancelled()


class GroupCommit(Generic[Item, Result]):
    """Runs the items that are waiting as one batch, one batch at a time, on a thread of its
    own; every caller gets its own result.

    ``submit`` blocks the calling thread until its result; ``submit_async`` (the event loop)
    waits without a thread of its own, and the results of a batch reach each event loop in
    one wake-up.

    A batch costs much the same for one item as for several, so before starting one it waits
    up to LINGER seconds while fewer items wait than there are active sources (callers that
    submitted in the last ACTIVE seconds, such as the SMTP connections, until they ``leave``):
    those whose item was in the previous batch are about to send the next one. With a single
    source it never waits (PostgreSQL's commit_delay and commit_siblings, in small).
    """

    # A source sending mail after mail comes back within milliseconds; one quiet for longer
    # is not waited for.
    ACTIVE = 0.1
    # Seconds the thread stays when there is nothing to do, before it ends.
    IDLE = 1.0

    def __init__(
        self,
        run: Callable[[list[Item]], list[Result]],
        max_batch: int = 64,
        linger: float = 0.0,
        name: str = "group-commit",
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.run = run
        # Called on the thread when it ends for want of work (to let go of a connection).
        self.on_idle = on_idle
        self.max_batch = max_batch
        self.linger = linger
        self.name = name
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.pending: list[_Entry[Item, Result]] = []
        self.thread: threading.Thread | None = None
        # The thread waits (idle, or lingering) for WAKE_AT items: only then is it woken.
        self.waiting = False
        self.wake_at = 1
        # source -> when it last submitted (time.monotonic)
        self.sources: dict[Hashable, float] = {}

    def submit(self, item: Item, source: Hashable | None = None) -> Result:
        return self.submit_many([item], source)[0]

    def submit_many(self, items: list[Item], source: Hashable | None = None) -> list[Result]:
        """Submit ITEMS at once (in one batch, up to MAX_BATCH) and wait for their results."""
        futures: list[Future[Result]] = [Future() for _ in items]
        self._enqueue(
            [_Entry(item, future=future) for item, future in zip(items, futures, strict=True)],
            source,
        )
        return [future.result() for future in futures]

    async def submit_async(self, item: Item, source: Hashable | None = None) -> Result:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Result] = loop.create_future()
        self._enqueue([_Entry(item, waiter=waiter, loop=loop)], source)
        return await waiter

    def leave(self, source: Hashable) -> None:
        """SOURCE sends nothing more (an SMTP connection said QUIT): batches do not wait for
        it."""
        with self.lock:
            self.sources.pop(source, None)

    def _enqueue(self, entries: list[_Entry[Item, Result]], source: Hashable | None) -> None:
        with self.lock:
            self.pending += entries
            if source is not None and self.linger:
                self.sources[source] = time.monotonic()
            if self.waiting and len(self.pending) >= self.wake_at:
                self.arrived.notify()
            if self.thread is None:
                self.thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self.thread.start()

    def _serve(self) -> None:
        try:
            while True:
                with self.lock:
                    if self.pending or self._wait(self.IDLE, 1) or self.pending:
                        batch = self._take()
                    else:
                        batch = []
                if batch:
                    self._run_batch([entry for entry in batch if not entry.abandoned()])
                    continue
                # Nothing to do for a while: let go of what is held, then end, unless work
                # came meanwhile (this thread still counts as running, so none was started).
                if self.on_idle is not None:
                    try:
                        self.on_idle()
                    except Exception:
                        log.exception("%s: letting go when idle failed", self.name)
                with self.lock:
                    if not self.pending:
                        self.thread = None
                        return
        except BaseException:
            with self.lock:  # never leave items waiting for a thread that is gone
                self.thread = None
            raise

    def _wait(self, timeout: float, items: int) -> bool:
        """Wait (lock held) until ITEMS wait or TIMEOUT; False on timeout."""
        self.waiting, self.wake_at = True, items
        try:
            return self.arrived.wait(timeout)
        finally:
            self.waiting = False

    def _expected(self, now: float) -> int:
        """Items worth waiting for: one per active source (lock held)."""
        for source, seen in list(self.sources.items()):
            if seen < now - self.ACTIVE:
                del self.sources[source]
        return min(len(self.sources), self.max_batch)

    def _take(self) -> list[_Entry[Item, Result]]:
        """The next batch (lock held), after the linger wait."""
        if self.linger:
            deadline = time.monotonic() + self.linger
            while (now := time.monotonic()) < deadline and len(self.pending) < (
                expected := self._expected(now)
            ):
                self._wait(deadline - now, expected)
        taken = self.pending[: self.max_batch]
        del self.pending[: self.max_batch]
        return taken

    def _run_batch(self, batch: list[_Entry[Item, Result]]) -> None:
        if not batch:
            return
        try:
            results = self.run([entry.item for entry in batch])
        except BaseException as exc:  # every caller gets the failure, none waits forever
            outcomes: list[tuple[Any, BaseException | None]] = [(None, exc)] * len(batch)
        else:
            outcomes = [(result, None) for result in results]
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = defaultdict(list)
        for entry, (result, error) in zip(batch, outcomes, strict=True):
            if entry.future is not None:
                if error is None:
                    entry.future.set_result(result)
                else:
                    entry.future.set_exception(error)
            elif entry.loop is not None:
                by_loop[entry.loop].append((entry.waiter, result, error))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass


def _settle(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Resolve waiters in their event loop (one wake-up for a whole batch)."""
    for waiter, result, error in settled:
        if waiter.done():
            continue
        if error is None:
            waiter.set_result(result)
        else:
            waiter.set_exception(error)
