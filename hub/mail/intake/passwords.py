"""Password hashes for SMTP AUTH users (scrypt from the standard library)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1
# Checked instead when a user name does not exist, so that an unknown user costs exactly
# one scrypt run, like a known one (the time of an answer must not tell which names exist).
# The hash of 32 random bytes that were thrown away: no password matches it.
DUMMY_HASH = (
    "scrypt$16384$8$1$73d1899066b55ea6a6b4568bf2588f26$57127472ffd7d8fbe9b9ac10547d3de365b0ffc2"
    "e38d5fe7e6f71030ec9a39ead0564f56e45ef5b1618753a731baa61950caf17b3cd1f8de44bb3563ca76f0a5"
)


def hash_password(password: str) -> str:
    """A salted scrypt hash, as ``scrypt$n$r$p$salt$hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True if PASSWORD matches STORED (compared in constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(candidate.hex(), digest)
