"""Reply-To addresses that route an e-mail answer back to one SMS conversation.

``reply+<inbound id>.<signature>@<reply domain>``: the signature (HMAC with a key the hub
generates once and keeps in the database) means nobody can guess an address that sends SMS
on someone else's account.
"""

from __future__ import annotations

import hashlib
import hmac

from sqlmodel import Session

from hub.store.keys import generated_key

_KEY = "reply_signing_key"
PREFIX = "reply+"


def _key(session: Session) -> bytes:
    return generated_key(session, _KEY)


def _sign(key: bytes, inbound_id: int) -> str:
    return hmac.new(key, f"inbound:{inbound_id}".encode(), hashlib.sha256).hexdigest()[:16]


def reply_address(session: Session, inbound_id: int, domain: str) -> str:
    """The Reply-To for a forwarded inbound SMS."""
    return f"{PREFIX}{inbound_id}.{_sign(_key(session), inbound_id)}@{domain}"


def is_reply_address(address: str, domain: str) -> bool:
    """True if ADDRESS has the reply form on DOMAIN (its signature is checked separately)."""
    local, _, dom = address.strip("<>").rpartition("@")
    return bool(domain) and dom.lower() == domain.lower() and local.lower().startswith(PREFIX)


def inbound_id_from(session: Session, address: str) -> int | None:
    """The inbound SMS a reply address answers, or None if the address is forged."""
    local = address.strip("<>").rpartition("@")[0]
    token = local[len(PREFIX) :]
    ident, _, signature = token.partition(".")
    if not ident.isdigit():
        return None
    if not hmac.compare_digest(_sign(_key(session), int(ident)), signature.lower()):
        return None
    return int(ident)
