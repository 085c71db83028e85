"""Accounts, sub-accounts and API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlmodel import Session, col, select

from hub.core.timeutil import utcnow
from hub.errors import AccountDisabled, ConflictError, InvalidInput, NotFound
from hub.store.models import Account, ApiToken, CreditMode

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
TOKEN_PREFIX = "smh_"


def get_account(session: Session, ref: Account | str | int) -> Account:
    """The account named REF (or with id REF; REF itself if it is one); NotFound says how to
    list them."""
    if isinstance(ref, Account):
        return ref
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        account = session.get(Account, int(ref))
    else:
        account = session.exec(select(Account).where(Account.name == ref)).first()
    if account is None:
        raise NotFound(f"no account named {ref!r} (list them with `smshub accounts list`)")
    return account


def create_account(
    session: Session,
    name: str,
    *,
    parent: str | int | None = None,
    credit_mode: str = CreditMode.LIMITED.value,
    region: str | None = None,
    sender: str | None = None,
) -> Account:
    """Create a main account (no parent) or a sub-account."""
    if not NAME_RE.match(name):
        raise InvalidInput(
            f"account name {name!r} must be 1-64 lower-case letters, digits, '.', '_' or '-'"
        )
    if credit_mode not in {m.value for m in CreditMode}:
        raise InvalidInput(f"credit mode must be 'limited' or 'unlimited', not {credit_mode!r}")
    parent_account = get_account(session, parent) if parent is not None else None
    if parent_account is None and credit_mode == CreditMode.UNLIMITED:
        raise InvalidInput(
            "a main account cannot be unlimited: only sub-accounts draw from a parent"
        )
    if session.exec(select(Account).where(Account.name == name)).first():
        raise ConflictError(f"an account named {name!r} already exists")
    if region is not None and (len(region) != 2 or not region.isalpha()):
        raise InvalidInput(f"region {region!r} must be a two-letter country code such as FR")
    account = Account(
        name=name,
        parent_id=parent_account.id if parent_account else None,
        credit_mode=credit_mode,
        default_region=region.upper() if region else None,
        default_sender=sender,
    )
    session.add(account)
    session.flush()
    return account


def ancestors(session: Session, account: Account) -> list[Account]:
    """ACCOUNT followed by its parent, grand-parent, ... up to the main account."""
    chain = [account]
    seen = {account.id}
    while chain[-1].parent_id is not None:
        parent = session.get(Account, chain[-1].parent_id)
        if parent is None or parent.id in seen:
            break
        chain.append(parent)
        seen.add(parent.id)
    return chain


def funding_account(
    session: Session, account: Account, chain: list[Account] | None = None
) -> Account:
    """The account whose balance pays for ACCOUNT's sends; refuses if any in the chain is off.
    CHAIN: ``ancestors(session, account)`` when the caller has it (read once, not again)."""
    chain = ancestors(session, account) if chain is None else chain
    for acc in chain:
        if acc.disabled:
            whose = "is" if acc.id == account.id else f"belongs to {acc.name!r}, which is"
            raise AccountDisabled(
                f"account {account.name!r} {whose} disabled; enable it again before sending "
                f"(`smshub accounts enable {acc.name}`)"
            )
    for acc in chain:
        if acc.credit_mode == CreditMode.LIMITED:
            return acc
    return chain[-1]


def set_disabled(session: Session, ref: str | int, disabled: bool = True) -> Account:
    """Disable (or enable) an account; a disabled account and its sub-accounts cannot send."""
    account = get_account(session, ref)
    account.disabled = disabled
    session.add(account)
    return account


def descendant_ids(session: Session, root: Account) -> set[int]:
    """ROOT's id and the ids of all its sub-accounts, at any depth: what its users may see."""
    assert root.id is not None
    ids = {root.id}
    frontier = [root.id]
    while frontier:
        children = session.exec(
            select(Account.id).where(col(Account.parent_id).in_(frontier))
        ).all()
        frontier = [c for c in children if c is not None and c not in ids]
        ids.update(frontier)
    return ids


@dataclass(frozen=True)
class NewToken:
    token: str  # shown once, never stored
    record: ApiToken


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, ref: str | int, name: str = "") -> NewToken:
    """Create an API token for an account; the plain token is returned once."""
    account = get_account(session, ref)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    assert account.id is not None
    record = ApiToken(
        account_id=account.id, name=name, token_hash=_hash_token(token), prefix=token[:10]
    )
    session.add(record)
    session.flush()
    return NewToken(token=token, record=record)


def revoke_token(session: Session, token_id_or_prefix: str) -> ApiToken:
    """Revoke a token by its id or the prefix shown when it was created."""
    query = select(ApiToken)
    if token_id_or_prefix.isdigit():
        query = query.where(ApiToken.id == int(token_id_or_prefix))
    else:
        query = query.where(ApiToken.prefix == token_id_or_prefix[:10])
    record = session.exec(query).first()
    if record is None:
        raise NotFound(f"no API token {token_id_or_prefix!r} (list them with `smshub tokens list`)")
    record.revoked_at = record.revoked_at or utcnow()
    session.add(record)
    return record


def authenticate(session: Session, token: str) -> Account | None:
    """The account an API token belongs to, or None for an unknown or revoked token."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    record = session.exec(select(ApiToken).where(ApiToken.token_hash == _hash_token(token))).first()
    if record is None or record.revoked_at is not None:
        return None
    return session.get(Account, record.account_id)
