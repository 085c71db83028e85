"""The one shape of a calendar source: what every source repeated, written once.

As django-anymail's ``BasePayload``: the base owns the flow, each source fills in what
differs. ``CalendarSourceBase`` keeps the settings and the context, says "no files kept"
unless the source keeps some, refuses to write a note on a read-only calendar before the
source is asked (``_annotate`` is the source's), and reads a secret as a ``SourceError``
for the receptionist. ``ThreadedSource`` adds what a source built on a blocking library
needs: every call in a worker thread, one at a time, within a deadline, the library's
errors turned into ``SourceError`` by the source's ``_translate``.

Also here: the short form of a server's message (the cursor codec is in ``cursor``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from hub.errors import ConfigError, SourceError
from hub.ports.calendar import (
    CalendarEvent,
    CalendarSettings,
    SourceContext,
    StateFile,
    SyncResult,
    SyncWindow,
)

S = TypeVar("S", bound=CalendarSettings)
T = TypeVar("T")


class CalendarSourceBase(Generic[S]):
    """Base of the calendar sources (implements hub.ports.calendar.CalendarSource with what
    each source fills in: ``sync``, ``_annotate``, ``close``)."""

    settings_model: ClassVar[type[CalendarSettings]]

    def __init__(self, settings: S, ctx: SourceContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self.name = ctx.name

    @classmethod
    def state_files(cls, settings: Any, ctx: SourceContext) -> list[StateFile]:
        """Nothing: a source that keeps files says which (the hub deletes them with the
        calendar)."""
        return []

    @property
    def read_only(self) -> bool:
        """True when no note may be written on the calendar (its ``read_only`` setting)."""
        return False

    async def sync(self, window: SyncWindow, cursor: str | None) -> SyncResult:
        raise NotImplementedError

    async def annotate(self, event: CalendarEvent, note: str) -> bool:
        """Write NOTE on EVENT (``_annotate``); False, asking nothing, when read-only."""
        if self.read_only:
            return False
        return await self._annotate(event, note)

    async def _annotate(self, event: CalendarEvent, note: str) -> bool:
        raise NotImplementedError

    async def close(self) -> None:
        return None

    def _secret(self, name: str) -> str | None:
        """The secret NAME (SourceError naming the setting when it cannot be read)."""
        try:
            return self.ctx.secret(self.settings, name)
        except ConfigError as exc:
            raise SourceError(str(exc)) from None


class ThreadedSource(CalendarSourceBase[S]):
    """A source on a blocking library: ``_call`` runs one call at a time in a worker thread
    (the library is not thread-safe, and a call abandoned at its deadline may still be
    running: the next one waits for it), within ``_deadline()`` seconds when there is one."""

    def __init__(self, settings: S, ctx: SourceContext) -> None:
        super().__init__(settings, ctx)
        self._lock = threading.Lock()

    async def _call(self, fn: Callable[..., T], *args: Any, what: str) -> T:
        """FN(*ARGS) in a worker thread; SourceError (``_too_slow``) past the deadline."""

        def locked() -> T:
            with self._lock:
                self._before_call()
                return self._translate(fn, *args)

        deadline = self._deadline()
        if deadline is None:
            return await asyncio.to_thread(locked)
        try:
            return await asyncio.wait_for(asyncio.to_thread(locked), deadline)
        except TimeoutError:
            raise SourceError(self._too_slow(what, deadline)) from None

    def _deadline(self) -> float | None:
        """Seconds a call may take (None: each request has its own timeout only)."""
        return None

    def _too_slow(self, what: str, deadline: float) -> str:
        return f"{self.name}: could not {what} within {deadline:g} s (sync_timeout)"

    def _before_call(self) -> None:
        """Run in the worker thread, holding the lock, before each call."""

    def _translate(self, fn: Callable[..., T], *args: Any) -> T:
        """Run FN, turning the library's errors into SourceError (the source's words)."""
        return fn(*args)


def short(text: object, limit: int = 300) -> str:
    """TEXT on one line, cut at LIMIT characters (a server's message, for a person)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
