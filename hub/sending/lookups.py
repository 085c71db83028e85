"""What the database already knows about submissions' recipients and keys, read in one query.

submit() leaves out numbers on the blacklist or the invalid-number list of the account or
one of its ancestors, and reports idempotency keys already in the outbox as duplicates.
Submissions sharing a transaction (mails taken in together) read these for all of them at
once: one round trip instead of three per submission.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import CompoundSelect, Select, literal_column, null, select, union_all
from sqlmodel import Session

from hub.store.db import member, padded, table
from hub.store.models import BlacklistEntry, InvalidNumber, Message

_BLACKLIST = table(BlacklistEntry).c
_INVALID = table(InvalidNumber).c
_MESSAGES = table(Message).c


def _listed(kind: str, columns: Any) -> Select[Any]:
    """The part for a per-account number list (blacklist, invalid numbers)."""
    return select(
        literal_column(f"'{kind}'").label("kind"),
        columns.account_id,
        columns.number.label("value"),
        null().label("message_id"),
    ).where(
        member(columns.account_id, "accounts"),
        member(columns.number, "numbers"),
    )


# Each part: (kind, account id, value, message id). Built once, compiled once: the lists are
# expanded at execution on SQLite, bound as arrays on PostgreSQL (``member``).
_PARTS = (
    _listed("blacklist", _BLACKLIST),
    _listed("invalid", _INVALID),
    select(
        literal_column("'key'"),
        _MESSAGES.account_id,
        _MESSAGES.idempotency_key,
        _MESSAGES.id,
    ).where(member(_MESSAGES.idempotency_key, "keys")),
)


def lookup_statement(*extra: Select[Any]) -> CompoundSelect[Any]:
    """The lookups in one statement, and EXTRA selects answered in the same round trip:
    each of (kind, account id, value, text), binding lists of its own (see ``ensure``)."""
    return union_all(*_PARTS, *extra)


_LOOKUP = lookup_statement()
# Bound parameters per statement stay far below SQLite's and PostgreSQL's limits.
_CHUNK = 1000


@dataclass
class RecipientLookups:
    """Blacklisted and invalid-listed (account, number) pairs and existing idempotency keys,
    for every pair and key asked so far (with STATEMENT, which may ask more: ``ensure``)."""

    statement: CompoundSelect[Any] = _LOOKUP
    blocked: set[tuple[int, str]] = field(default_factory=set)
    invalid: set[tuple[int, str]] = field(default_factory=set)
    # idempotency key -> id of the message that holds it
    existing: dict[str, str] = field(default_factory=dict)
    _asked_pairs: set[tuple[int, str]] = field(default_factory=set)
    _asked_keys: set[str] = field(default_factory=set)

    def ensure(
        self,
        session: Session,
        accounts: Collection[int],
        numbers: Collection[str],
        keys: Collection[str],
        **extra: list[Any],
    ) -> list[tuple[str, int, str, str]]:
        """Read what was not asked yet about ACCOUNTS x NUMBERS and KEYS (no query if all was
        and there is no EXTRA); returns the rows of the extra selects, read with EXTRA."""
        pairs = {(a, n) for a in accounts for n in numbers} - self._asked_pairs
        new_keys = sorted(set(keys) - self._asked_keys)
        if not pairs and not new_keys and not extra:
            return []
        ask_accounts = sorted({a for a, _ in pairs})
        ask_numbers = sorted({n for _, n in pairs})
        conn = session.connection()
        others: list[tuple[str, int, str, str]] = []
        for start in range(0, max(len(ask_numbers), len(new_keys), 1), _CHUNK):
            params = {
                "accounts": padded(ask_accounts),
                "numbers": padded(ask_numbers[start : start + _CHUNK]),
                "keys": padded(new_keys[start : start + _CHUNK]),
                # The extra lists go with the first chunk only.
                **{name: values if start == 0 else [] for name, values in extra.items()},
            }
            for kind, account_id, value, message_id in conn.execute(self.statement, params):
                if kind == "blacklist":
                    self.blocked.add((account_id, value))
                elif kind == "invalid":
                    self.invalid.add((account_id, value))
                elif kind == "key":
                    self.existing[value] = message_id
                else:
                    others.append((kind, account_id, value, message_id))
        self._asked_pairs |= {(a, n) for a in ask_accounts for n in ask_numbers}
        self._asked_keys.update(new_keys)
        return others

    def is_blocked(self, scope: Iterable[int], number: str) -> bool:
        return any((a, number) in self.blocked for a in scope)

    def is_invalid(self, scope: Iterable[int], number: str) -> bool:
        return any((a, number) in self.invalid for a in scope)

    def taken(self, key: str, message_id: str) -> None:
        """KEY is now used by MESSAGE_ID (written in this transaction)."""
        self.existing[key] = message_id
        self._asked_keys.add(key)

    def untaken(self, key: str) -> None:
        """KEY's message will not be written after all (it was not there before: ``taken``
        is only called for keys found free)."""
        self.existing.pop(key, None)
