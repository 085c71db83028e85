"""Who may read ``/metrics``: the one check of the api port's and the ops port's scrapes.

With ``[http] metrics_token_env`` (or ``metrics_token_file``) set, a scrape must send
``Authorization: Bearer <token>``; without a token, only clients on this machine are
answered. The client address is the connection's own, never a header the client writes.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

METRICS_NEEDS_TOKEN = (
    "send 'Authorization: Bearer <token>' with the metrics token "
    "(the one named by [http] metrics_token_env or metrics_token_file)\n"
)
METRICS_LOCAL_ONLY = (
    "/metrics answers only clients on this machine (127.0.0.1, ::1); to scrape it from "
    "elsewhere set [http] metrics_token_env (or metrics_token_file) and send "
    "'Authorization: Bearer <token>'\n"
)


def is_loopback(host: str | None) -> bool:
    """True when HOST (a client address) is 127.0.0.0/8 or ::1 (also as ::ffff:127.x.y.z)."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def bearer_matches(authorization: str | None, token: str) -> bool:
    """True when AUTHORIZATION is 'Bearer TOKEN' (the token compared in constant time)."""
    scheme, _, presented = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Header values arrive decoded as latin-1: encoding back gives the bytes that were sent.
    return hmac.compare_digest(presented.strip().encode("latin-1"), token.encode("utf-8"))


def metrics_refusal(request: Request, token: str | None) -> Response | None:
    """The answer refusing REQUEST's scrape (401 without the right TOKEN, 403 from another
    machine when no token is configured), or None when it may read the metrics."""
    if token is not None:
        if not bearer_matches(request.headers.get("authorization"), token):
            return PlainTextResponse(
                METRICS_NEEDS_TOKEN, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
    elif not is_loopback(request.client.host if request.client else None):
        return PlainTextResponse(METRICS_LOCAL_ONLY, status_code=403)
    return None
