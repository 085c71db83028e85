"""One login throttle for the console and SMTP AUTH, kept in SQL (holds across instances).

Failed logins are counted per user name and per client address over 15 minutes. Past
``max_failed_logins`` failures, each further try waits 2^(n - max) seconds (capped at
``login_max_delay``) after the last failure and is answered "try again in N s" without
the password being checked. Growing delays rather than a lockout: a guesser gets a few
tries a minute, while anyone who can name a user cannot lock that user out. A user name's
failures slow only addresses that have failed themselves, so the real user typing the
right password from their own desk always gets in, however hard someone else guesses.

The password check (scrypt, tens of milliseconds) runs in the caller's worker thread,
never on the event loop, and costs the same for unknown users (see check_login).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from sqlalchemy import Engine

from hub.mail.intake.addresses import MailLogin, check_login
from hub.store import limits as limits_sql
from hub.store.db import read_scope, session_scope

WINDOW = 900.0


@dataclass(frozen=True)
class LoginAttempt:
    """The login when the password was right; else ``retry_after`` > 0 when the try was
    refused unchecked (throttled), 0 for a plain wrong user name or password."""

    login: MailLogin | None
    retry_after: float = 0.0

    @property
    def throttled(self) -> bool:
        return self.retry_after > 0

    @property
    def seconds(self) -> int:
        """RETRY_AFTER in whole seconds, rounded up."""
        return max(1, math.ceil(self.retry_after))


def _keys(username: str, address: str) -> tuple[str, str]:
    # User names are whatever a client sends (any length, any bytes): hashed into the key.
    name = hashlib.sha256(username.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]
    return f"login:user:{name}", f"login:addr:{address}"


class LoginThrottle:
    """Checks logins through the throttle (blocking: call from a worker thread)."""

    def __init__(self, engine: Engine, free_failures: int, max_delay: float) -> None:
        self.engine = engine
        self.free_failures = free_failures
        self.max_delay = max_delay

    def _delay(self, failures: float) -> float:
        over = math.floor(failures + 1e-9) - self.free_failures
        return 0.0 if over < 0 else min(self.max_delay, 2.0**over)

    def wait(self, username: str, address: str, now: float | None = None) -> float:
        """Seconds before a try for USERNAME from ADDRESS may be checked (0: now)."""
        now = time.time() if now is None else now
        user_key, addr_key = _keys(username, address)
        with read_scope(self.engine) as session:
            states = limits_sql.peek(session, [user_key, addr_key], WINDOW, now=now)
        waits = [0.0]
        by_address = states[addr_key]
        if by_address.last_at is not None and by_address.estimate > 0:
            waits.append(by_address.last_at + self._delay(by_address.estimate) - now)
            by_user = states[user_key]
            # Only an address that failed itself waits for the user name's failures.
            if by_user.last_at is not None:
                waits.append(by_user.last_at + self._delay(by_user.estimate) - now)
        return max(waits)

    def failed(self, username: str, address: str, now: float | None = None) -> None:
        """Count a failed login of USERNAME from ADDRESS."""
        with session_scope(self.engine) as session:
            for key in _keys(username, address):
                limits_sql.add(session, key, WINDOW, now=now)

    def attempt(
        self, username: str, password: str, address: str, now: float | None = None
    ) -> LoginAttempt:
        """Check USERNAME/PASSWORD from ADDRESS through the throttle."""
        now = time.time() if now is None else now
        wait = self.wait(username, address, now)
        if wait > 0:
            return LoginAttempt(None, wait)
        with read_scope(self.engine) as session:
            login = check_login(session, username, password)
        if login is None:
            self.failed(username, address, now)
        return LoginAttempt(login)
