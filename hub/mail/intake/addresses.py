"""Intake addresses and SMTP users: which mail may send on which account."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

from sqlmodel import Session, col, select

from hub.errors import ConflictError, InvalidInput
from hub.mail.intake.passwords import DUMMY_HASH, hash_password, verify_password
from hub.mail.parse.address import split_address
from hub.ports.mail import MailLogin
from hub.sending.accounts import get_account
from hub.store.models import Account, IntakeAddress, IntakeKind, MailUser

# What an address the SMTP listener can receive is made of: printable ASCII without spaces
# (the listener does not offer SMTPUTF8, so RCPT TO is ASCII).
_RECEIVABLE = re.compile(r"[!-~]+")


def receivable_address(address: str) -> str:
    """ADDRESS if mail can reach it through the listener; raises InvalidInput naming the
    first character that cannot be in it (an invisible one, such as a zero-width space,
    would make the address look like another one and never receive mail)."""
    if _RECEIVABLE.fullmatch(address):
        return address
    position, char = next((i, c) for i, c in enumerate(address) if not _RECEIVABLE.match(c))
    name = unicodedata.name(char, "a control character")
    written = address.encode("ascii", "backslashreplace").decode()
    raise InvalidInput(
        f"'{written}' cannot receive mail: character {position + 1} is U+{ord(char):04X} "
        f"({name}); intake addresses are plain ASCII without spaces (write an "
        "internationalized domain in its xn-- form)"
    )


def pin_hash(pin: str) -> str:
    """How a subject PIN is stored."""
    return hashlib.sha256(pin.strip().encode()).hexdigest()


def add_intake_address(
    session: Session,
    account: str | int,
    address: str,
    *,
    allowed_senders: list[str] | None = None,
    require_auth: bool = False,
    pin: str | None = None,
    confirm: bool = True,
    reply_mailbox: str = "",
    sender: str | None = None,
) -> IntakeAddress:
    """Register ADDRESS (``sms@hub.example.com``, or ``*@sms.example.com`` for numbers in
    the address) for ACCOUNT."""
    acc = get_account(session, account)
    receivable_address(address.strip())
    kind = IntakeKind.SUBJECT
    if address.startswith("*@"):
        kind = IntakeKind.NUMBER_ADDRESS
        local, domain = "", split_address("x" + address[1:])[1]
    else:
        local, domain = split_address(address)
    clash = session.exec(
        select(IntakeAddress).where(
            IntakeAddress.domain == domain,
            col(IntakeAddress.local_part).in_([local, ""]),
        )
    ).first()
    if clash is not None:
        raise ConflictError(
            f"{address} is already an intake address (or its domain is a number-in-address "
            "domain); each address belongs to one account"
        )
    for entry in allowed_senders or []:
        if "@" not in entry:
            raise InvalidInput(f"allowed sender {entry!r} must be an address or @domain")
    assert acc.id is not None
    record = IntakeAddress(
        account_id=acc.id,
        kind=kind.value,
        local_part=local,
        domain=domain,
        allowed_senders="\n".join(s.strip().lower() for s in allowed_senders or []),
        require_auth=require_auth,
        pin_hash=pin_hash(pin) if pin else None,
        confirm=confirm,
        reply_mailbox=reply_mailbox,
        sender=sender,
    )
    session.add(record)
    session.flush()
    return record


def find_intake(session: Session, address: str) -> IntakeAddress | None:
    """The intake address a RCPT TO names, or None (then it must be refused: no relay)."""
    try:
        local, domain = split_address(receivable_address(address))
    except InvalidInput:
        return None
    rows = session.exec(
        select(IntakeAddress).where(
            IntakeAddress.domain == domain, col(IntakeAddress.local_part).in_([local, ""])
        )
    ).all()
    return best_match(rows, local)


def best_match(rows: Iterable[IntakeAddress], local: str) -> IntakeAddress | None:
    """Among an address's candidate ROWS (same domain), the address itself, else its
    domain's number-in-address entry."""
    rows = list(rows)
    exact = [r for r in rows if r.local_part == local]
    matches = exact or rows
    return matches[0] if matches else None


def number_domains(session: Session) -> list[str]:
    """Domains whose local parts are phone numbers."""
    return list(
        session.exec(
            select(IntakeAddress.domain).where(
                IntakeAddress.kind == IntakeKind.NUMBER_ADDRESS.value
            )
        ).all()
    )


def sender_allowed(intake: IntakeAddress, from_addr: str | None) -> bool:
    """True if FROM_ADDR is on the intake address's allowed-senders list."""
    if not from_addr:
        return False
    from_addr = from_addr.lower()
    domain = from_addr.rpartition("@")[2]
    for entry in intake.allowed_senders.split():
        if entry == from_addr or (entry.startswith("@") and entry[1:] == domain):
            return True
    return False


def add_mail_user(session: Session, account: str | int, username: str, password: str) -> MailUser:
    """Create an SMTP AUTH login for ACCOUNT."""
    if len(password) < 10:
        raise InvalidInput("the password must have at least 10 characters")
    acc = get_account(session, account)
    if session.exec(select(MailUser).where(MailUser.username == username)).first():
        raise ConflictError(f"an SMTP user named {username!r} already exists")
    assert acc.id is not None
    user = MailUser(account_id=acc.id, username=username, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def check_login(session: Session, username: str, password: str) -> MailLogin | None:
    """The login if USERNAME/PASSWORD are right and the user and account are enabled."""
    user = session.exec(select(MailUser).where(MailUser.username == username)).first()
    # One scrypt run whether the user exists, is disabled or not: the time of the answer
    # must not tell which user names exist.
    right = verify_password(password, user.password_hash if user is not None else DUMMY_HASH)
    if user is None or user.disabled or not right:
        return None
    account = session.get(Account, user.account_id)
    if account is None or account.disabled:
        return None
    assert user.id is not None
    return MailLogin(user_id=user.id, username=user.username, account_id=user.account_id)
