"""Intake addresses found lately, so that RCPT TO to them is answered on the event loop.

Each RCPT TO used to cost a hop to a worker thread and a query. Only RCPT TO reads this
cache: the mail itself is checked against the database in the transaction that takes it in,
so an address removed or changed meanwhile takes no mail that it should not (its RCPT may
still get a 250 for TTL seconds, and the mail then its 5xx). Unknown addresses are not
remembered: each one is looked up.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from hub.errors import InvalidInput
from hub.mail.intake.addresses import split_address


@dataclass(frozen=True)
class KnownIntake:
    """An intake address as RCPT TO needs it."""

    # The owning account, then its parent, ...: the accounts whose SMTP users may use it.
    owners: tuple[int, ...]


class RcptCache:
    """Intake addresses (local part, domain) found in the last TTL seconds."""

    TTL = 5.0

    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._known: dict[tuple[str, str], tuple[float, KnownIntake]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(address: str) -> tuple[str, str] | None:
        try:
            return split_address(address)
        except InvalidInput:
            return None

    def get(self, address: str) -> KnownIntake | None:
        key = self._key(address)
        if key is None:
            return None
        with self._lock:
            entry = self._known.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, address: str, known: KnownIntake) -> None:
        key = self._key(address)
        if key is None:
            return
        with self._lock:
            if len(self._known) > 10_000:  # many addresses seen once: start again
                self._known.clear()
            self._known[key] = (time.monotonic() + self.ttl, known)
