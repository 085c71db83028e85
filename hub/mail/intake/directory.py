"""The intake addresses a group of mails names, with their accounts, kept a few seconds.

Each group commit used to read its recipients' intake addresses and accounts again (the
dearest query of the group). They change seldom, so what was read is kept for TTL seconds
and each group's session gets the accounts back without a query: a change to an intake
address (allowed senders, PIN, removal) or to an account (disabled, sender, region) reaches
the intake within TTL seconds. Balances are never taken from here: every charge is an
atomic UPDATE. A mail to an address removed meanwhile fails its INSERT, and the group
drops what it kept (``forget``) before the mail is taken again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import bindparam, or_, select
from sqlmodel import Session, col

from hub.errors import InvalidInput
from hub.mail.intake.addresses import best_match, split_address
from hub.store.models import Account, IntakeAddress, IntakeKind

# Built once (the domains are expanded at execution): no statement to build per group.
_DIRECTORY = (
    select(IntakeAddress, Account)
    .join(Account, col(Account.id) == col(IntakeAddress.account_id))
    .where(
        or_(
            col(IntakeAddress.domain).in_(bindparam("domains", expanding=True)),
            col(IntakeAddress.kind) == IntakeKind.NUMBER_ADDRESS.value,
        )
    )
)


def _domains(recipients: Iterable[str]) -> set[str]:
    found = set()
    for address in recipients:
        try:
            found.add(split_address(address)[1])
        except InvalidInput:
            continue
    return found


class IntakeDirectory:
    """Intake addresses by domain (every number-in-address domain among them) and their
    accounts, as read for the DOMAINS asked."""

    def __init__(
        self, rows: Iterable[tuple[IntakeAddress, Account]], domains: Iterable[str]
    ) -> None:
        self.domains = frozenset(domains)
        self.accounts: dict[int, Account] = {}
        self.by_domain: dict[str, list[IntakeAddress]] = {}
        for intake, account in rows:
            self.by_domain.setdefault(intake.domain, []).append(intake)
            if account.id is not None:
                self.accounts[account.id] = account
        self.number_domains = [
            intake.domain
            for domain_rows in self.by_domain.values()
            for intake in domain_rows
            if intake.kind == IntakeKind.NUMBER_ADDRESS.value
        ]

    @classmethod
    def load(cls, session: Session, domains: Iterable[str]) -> IntakeDirectory:
        domains = sorted(set(domains))
        rows = session.execute(_DIRECTORY, {"domains": domains}).all()
        return cls(((intake, account) for intake, account in rows), domains)

    def find(self, address: str) -> IntakeAddress | None:
        """As ``find_intake``, from what was read."""
        try:
            local, domain = split_address(address)
        except InvalidInput:
            return None
        rows = self.by_domain.get(domain, [])
        return best_match((r for r in rows if r.local_part in (local, "")), local)

    def attached(self, session: Session) -> IntakeDirectory:
        """This directory with its accounts in SESSION (no query); held by the result, they
        stay in the session's identity map, which keeps only what is referenced."""
        copy = IntakeDirectory((), self.domains)
        copy.by_domain, copy.number_domains = self.by_domain, self.number_domains
        copy.accounts = {
            account_id: session.merge(account, load=False)
            for account_id, account in self.accounts.items()
        }
        return copy


class DirectoryCache:
    """The latest directory, for TTL seconds (used by one thread: the group commit's)."""

    TTL = 5.0

    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._kept: IntakeDirectory | None = None
        self._until = 0.0

    def directory(self, session: Session, recipients: Iterable[str]) -> IntakeDirectory:
        """The directory of RECIPIENTS' domains, with its accounts in SESSION."""
        domains = _domains(recipients)
        kept, now = self._kept, time.monotonic()
        if kept is not None and now < self._until and domains <= kept.domains:
            return kept.attached(session)
        if kept is not None and now < self._until:
            domains |= kept.domains  # a new domain: read it with those kept
        fresh = IntakeDirectory.load(session, domains)
        self._kept, self._until = fresh, now + self.ttl
        return fresh

    def forget(self) -> None:
        self._kept = None
