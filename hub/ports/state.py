"""The connector state store: what connectors (and the console's sign-ins) keep between runs,
in one place every instance sees.

One truth, in SQL: a value another instance may need (the part ids of a long SMPP message,
the refresh token Microsoft renewed, a password typed in the console, a sign-in waiting for
its callback) never lives on one machine's disk. The composition root gives connectors a
``StateStore`` (hub/store/state_sql.py keeps it in the ``connector_state`` table); values are
addressed by (namespace, key), plain ones as JSON, secrets encrypted at rest
(hub/store/secretbox.py). Blocking: call it from worker threads.

Namespaces in use: ``calendar-ID`` (a calendar's stored secrets and renewed tokens, deleted
with the calendar), ``console-signin`` (pending OAuth sign-ins), ``mailbox:KEY`` (a
mailbox's OAuth tokens, status and last activity: hub/mail/oauth.py), ``smpp-parts:NAME`` /
``smpp-states:NAME`` / ``smpp-mo:NAME`` / ``smpp-mo-done:NAME`` (an SMPP provider's
long-message bookkeeping).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


def calendar_namespace(calendar_id: int) -> str:
    """Where a stored calendar's secrets and renewed tokens are kept."""
    return f"calendar-{calendar_id}"


@runtime_checkable
class StateStore(Protocol):
    """(namespace, key) → a JSON value or an encrypted secret, optionally expiring.

    An expired entry reads as absent; ``prune`` deletes them. Secrets and plain values
    share the keys of a namespace but are read each by their own methods.
    """

    def get(self, namespace: str, key: str) -> Any:
        """The value, or None when absent or expired."""
        ...

    def put(self, namespace: str, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store VALUE (JSON-able), replacing any; gone after TTL seconds when given."""
        ...

    def take(self, namespace: str, key: str) -> Any:
        """The value, deleted at the same time: of concurrent callers only one gets it."""
        ...

    def delete(self, namespace: str, key: str) -> None: ...

    def items(self, namespace: str, prefix: str = "") -> list[tuple[str, Any]]:
        """(key, value) of NAMESPACE's live plain values whose key starts with PREFIX."""
        ...

    def get_secret(self, namespace: str, key: str) -> str | None:
        """The decrypted secret, None when absent or expired; SecretUnreadable (naming the
        key to set) when this instance's keys cannot decrypt it."""
        ...

    def put_secret(self, namespace: str, key: str, value: str, *, ttl: float | None = None) -> None:
        """Store VALUE encrypted under the first key."""
        ...

    def take_secret(self, namespace: str, key: str) -> str | None:
        """Like take, for a secret."""
        ...

    def delete_namespace(self, namespace: str) -> int:
        """Delete everything in NAMESPACE; how many entries."""
        ...

    def prune(self) -> int:
        """Delete expired entries; how many."""
        ...


@dataclass
class MemoryStateStore:
    """A StateStore in this process only: for a calendar that is not stored (`smshub
    calendar preview`) and for tests of a connector alone. Secrets are kept as given."""

    _data: dict[tuple[str, str], tuple[str, bool, float | None]] = field(default_factory=dict)

    def _live(self, namespace: str, key: str, secret: bool) -> str | None:
        found = self._data.get((namespace, key))
        if found is None or found[1] != secret:
            return None
        if found[2] is not None and found[2] <= time.time():
            return None
        return found[0]

    def _set(self, namespace: str, key: str, text: str, secret: bool, ttl: float | None) -> None:
        self._data[(namespace, key)] = (text, secret, time.time() + ttl if ttl else None)

    def get(self, namespace: str, key: str) -> Any:
        text = self._live(namespace, key, False)
        return None if text is None else json.loads(text)

    def put(self, namespace: str, key: str, value: Any, *, ttl: float | None = None) -> None:
        self._set(namespace, key, json.dumps(value), False, ttl)

    def take(self, namespace: str, key: str) -> Any:
        value = self.get(namespace, key)
        self._data.pop((namespace, key), None)
        return value

    def delete(self, namespace: str, key: str) -> None:
        self._data.pop((namespace, key), None)

    def items(self, namespace: str, prefix: str = "") -> list[tuple[str, Any]]:
        found = []
        for ns, key in sorted(self._data):
            if ns == namespace and key.startswith(prefix):
                text = self._live(ns, key, False)
                if text is not None:
                    found.append((key, json.loads(text)))
        return found

    def get_secret(self, namespace: str, key: str) -> str | None:
        return self._live(namespace, key, True)

    def put_secret(self, namespace: str, key: str, value: str, *, ttl: float | None = None) -> None:
        self._set(namespace, key, value, True, ttl)

    def take_secret(self, namespace: str, key: str) -> str | None:
        value = self.get_secret(namespace, key)
        self._data.pop((namespace, key), None)
        return value

    def delete_namespace(self, namespace: str) -> int:
        doomed = [k for k in self._data if k[0] == namespace]
        for k in doomed:
            del self._data[k]
        return len(doomed)

    def prune(self) -> int:
        now = time.time()
        doomed = [k for k, v in self._data.items() if v[2] is not None and v[2] <= now]
        for k in doomed:
            del self._data[k]
        return len(doomed)
