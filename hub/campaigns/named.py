"""An account's named things (contact lists, message templates): found by their name as
stored (lower case), and a NotFound that says how to see them when there is none."""

from __future__ import annotations

from typing import TypeVar

from sqlmodel import Session, select

from hub.errors import NotFound
from hub.store.models import Account, ContactList, MessageTemplate

Named = TypeVar("Named", ContactList, MessageTemplate)


def find_named(session: Session, model: type[Named], account_id: int, name: str) -> Named | None:
    """The account's MODEL row named NAME (case-insensitive), or None."""
    return session.exec(
        select(model).where(model.account_id == account_id, model.name == name.strip().lower())
    ).first()


def get_named(
    session: Session, model: type[Named], account: Account, name: str, *, kind: str, hint: str
) -> Named:
    """ACCOUNT's MODEL row named NAME; NotFound names the KIND of thing and gives HINT (how
    to see or make them)."""
    assert account.id is not None
    found = find_named(session, model, account.id, name)
    if found is None:
        raise NotFound(f"account {account.name!r} has no {kind} named {name!r} ({hint})")
    return found
