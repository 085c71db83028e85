"""Webhook signatures: each post carries ``Smshub-Signature: v1=<hex HMAC-SHA256(secret,
f"{timestamp}.{body}")>`` with the ``Smshub-Webhook-Timestamp`` header (unix seconds); a
receiver checks it with ``verify_signature``. Endpoints' secrets are made here too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "Smshub-Signature"
ID_HEADER = "Smshub-Webhook-Id"
TIMESTAMP_HEADER = "Smshub-Webhook-Timestamp"
TYPE_HEADER = "Smshub-Event-Type"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def sign(secret: str, timestamp: int | str, body: str | bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` keyed with the whole secret string."""
    message = str(timestamp).encode("ascii") + b"." + _as_bytes(body)
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int | str, body: str | bytes) -> str:
    """The value of the Smshub-Signature header."""
    return f"v1={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: str | bytes,
    header: str,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """True if HEADER signs BODY at TIMESTAMP with SECRET and TIMESTAMP is within TOLERANCE
    seconds of now (0 turns the age check off).

    BODY must be the raw request body, byte for byte, not re-serialized JSON. HEADER may hold
    several space- or comma-separated ``v1=`` signatures; one match is enough.
    """
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    if tolerance and abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    expected = sign(secret, ts, body).encode("ascii")
    for part in header.replace(",", " ").split():
        scheme, _, value = part.partition("=")
        if scheme == "v1" and hmac.compare_digest(value.encode("utf-8"), expected):
            return True
    return False
