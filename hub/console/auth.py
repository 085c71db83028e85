"""Who is looking at a console page: session login, CSRF and the accounts a user may see.

A console user is an account user (``smshub mail user``: the same login works for SMTP
AUTH). The user sees their own account and its sub-accounts, never anything above or
beside it, exactly as an API token of that account would.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
import hmac
import weakref
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from hub.core import i18n
from hub.errors import CsrfFailed, Forbidden, LoginRequired, NotFound
from hub.sending.accounts import descendant_ids
from hub.store.db import read_scope, session_scope
from hub.store.models import Account, MailUser
from hub.web.deps import HubDep
from hub.web.edge import row_id_or_none

from . import session as cookies

COOKIE = "smshub_session"
LOGIN_CSRF_COOKIE = "smshub_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class ConsoleUser:
    user_id: int
    username: str
    account_id: int
    account_name: str
    # The user's account and all its sub-accounts.
    scope: frozenset[int]
    csrf: str
    # The console language the user chose (None: the browser's).
    language: str | None = None

    def account(self, session: Session, ref: str | int | None = None) -> Account:
        """REF (name or id; default: the user's own account) if the user may see it.

        An account outside the user's scope is reported as not found, so names of other
        customers' accounts cannot be probed.
        """
        if ref is None or ref == "":
            ref = self.account_id
        if isinstance(ref, int) or str(ref).isdigit():
            # An id beyond the database's integers is no account (not an overflow).
            number = row_id_or_none(ref)
            account = session.get(Account, number) if number is not None else None
        else:
            account = session.exec(select(Account).where(Account.name == ref)).first()
        if account is None or account.id not in self.scope:
            raise NotFound(f"no account {ref!r} among yours")
        return account

    def accounts(self, session: Session) -> list[Account]:
        """Every account the user may see, their own first, then by name."""
        rows = session.exec(
            select(Account).where(col(Account.id).in_(self.scope)).order_by(col(Account.name))
        ).all()
        return sorted(rows, key=lambda a: a.id != self.account_id)

    def require(self, account_id: int) -> None:
        """Refuse a row that belongs to an account outside the user's scope."""
        if account_id not in self.scope:
            raise Forbidden("that belongs to an account you cannot see")


# Keyed by the engine itself (weakly), not its id(): an id can come back for a new engine.
_keys: weakref.WeakKeyDictionary[Engine, bytes] = weakref.WeakKeyDictionary()


def signing_key(engine: Engine) -> bytes:
    """The session signing key of ENGINE's database (read once per process)."""
    key = _keys.get(engine)
    if key is None:
        with session_scope(engine) as session:
            key = cookies.session_key(session)
        _keys[engine] = key
    return key


def _load_user(engine: Engine, value: str) -> ConsoleUser | None:
    data = cookies.decode(signing_key(engine), value)
    if data is None:
        return None
    with read_scope(engine) as session:
        user = session.get(MailUser, data.user_id)
        if user is None or user.disabled or cookies.is_revoked(session, data):
            return None
        if not hmac.compare_digest(
            cookies.login_fingerprint(user.password_hash, user.session_epoch), data.fingerprint
        ):
            return None
        account = session.get(Account, user.account_id)
        if account is None or account.disabled:
            return None
        return ConsoleUser(
            user_id=data.user_id,
            username=user.username,
            account_id=user.account_id,
            account_name=account.name,
            scope=frozenset(descendant_ids(session, account)),
            csrf=data.csrf,
            language=user.language,
        )


def end_session(engine: Engine, value: str) -> None:
    """Revoke the session in the cookie VALUE on the server (logout): the cookie no longer
    opens the console on any instance, even if a copy of it was kept."""
    data = cookies.decode(signing_key(engine), value)
    if data is not None:
        with session_scope(engine) as session:
            cookies.revoke(session, data)


async def _posted_csrf(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        # Starlette caches the parsed form, so the route's Form() fields still see it.
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def current_user(request: Request, hub: HubDep) -> ConsoleUser:
    """The logged-in user; unsafe methods must also carry the session's CSRF token."""
    value = request.cookies.get(COOKIE)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not value:
        raise LoginRequired(target)
    user = await asyncio.to_thread(_load_user, hub.engine, value)
    if user is None:
        raise LoginRequired(target)
    if request.method not in _SAFE_METHODS and not hmac.compare_digest(
        await _posted_csrf(request), user.csrf
    ):
        raise CsrfFailed()
    # The page's texts (and the flash messages the route writes) in the user's language.
    request.state.language = i18n.set_language(
        i18n.console_language(user.language, request.headers.get("accept-language"))
    )
    return user


User = Annotated[ConsoleUser, Depends(current_user)]
