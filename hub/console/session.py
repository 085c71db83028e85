"""Signed session cookies for the web console (HMAC-SHA256).

The cookie carries the user id, a CSRF token and an expiry, plus a fingerprint of the
user's password hash and session epoch: changing the password, or disabling the user (which
raises the epoch, and is checked on every request), ends every session for good. Logging out
ends one session: its id (a digest of its random CSRF token) goes in a small SQL table that
every instance reads, until the cookie would have expired anyway (then it is pruned).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session

from hub.core.config import Config
from hub.core.timeutil import utcnow
from hub.store.db import sql
from hub.store.keys import generated_key
from hub.store.models import RevokedSession

_KEY = "console_session_key"


def session_key(session: Session) -> bytes:
    """The signing key, generated once and shared by every instance through the database."""
    return generated_key(session, _KEY)


def login_fingerprint(password_hash: str, epoch: int) -> str:
    """A short digest of the stored hash and the user's session epoch: a new password or
    epoch invalidates old cookies."""
    return hashlib.sha256(f"{epoch}\n{password_hash}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SessionData:
    user_id: int
    csrf: str
    expires: int
    fingerprint: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(key: bytes, data: SessionData) -> str:
    """The cookie value for DATA."""
    body = _b64(
        json.dumps(
            {"u": data.user_id, "c": data.csrf, "e": data.expires, "f": data.fingerprint},
            separators=(",", ":"),
        ).encode()
    )
    signature = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def decode(key: bytes, value: str, now: float | None = None) -> SessionData | None:
    """The session in VALUE, or None when it is forged, malformed or expired."""
    body, _, signature = value.partition(".")
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not signature or not hmac.compare_digest(expected, signature):
        return None
    try:
        raw = json.loads(_unb64(body))
        data = SessionData(
            user_id=int(raw["u"]), csrf=str(raw["c"]), expires=int(raw["e"]), fingerprint=raw["f"]
        )
    except (ValueError, KeyError, TypeError):
        return None
    if data.expires < (time.time() if now is None else now):
        return None
    return data


def new_session(user_id: int, password_hash: str, epoch: int, hours: float) -> SessionData:
    """A fresh session (new CSRF token) for a user who just logged in."""
    return SessionData(
        user_id=user_id,
        csrf=secrets.token_urlsafe(24),
        expires=int(time.time() + hours * 3600),
        fingerprint=login_fingerprint(password_hash, epoch),
    )


def session_id(data: SessionData) -> str:
    """The id under which a session is revoked: a digest of its random token, so the table
    holds nothing that would open or forge a session."""
    return hashlib.sha256(data.csrf.encode()).hexdigest()


def revoke(session: Session, data: SessionData) -> None:
    """End the session DATA on every instance; prune revocations of expired cookies (an
    expired cookie is refused by its own expiry), so the table stays as small as the
    number of sessions logged out in the last ``session_hours``."""
    session.execute(
        sql("DELETE FROM console_revoked_sessions WHERE expires_at < :now"), {"now": utcnow()}
    )
    session.execute(
        sql(
            "INSERT INTO console_revoked_sessions (id, expires_at) VALUES (:id, :at) "
            "ON CONFLICT (id) DO NOTHING"
        ),
        {"id": session_id(data), "at": datetime.fromtimestamp(data.expires, UTC)},
    )


def is_revoked(session: Session, data: SessionData) -> bool:
    """True when the session DATA was ended by logout."""
    return session.get(RevokedSession, session_id(data)) is not None


def secure_cookies(config: Config) -> bool:
    """Whether the console's cookies are marked Secure (console.secure_cookies; "auto":
    when the hub's public URL is https)."""
    mode = config.console.secure_cookies
    return mode == "always" or (mode == "auto" and config.hub.public_url.startswith("https:"))
