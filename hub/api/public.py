"""What the public pages (short links ``/s/CODE``, unsubscribe ``/u/CODE``) share: no token,
and a rate per client address counted in SQL, so it holds across every API instance."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fastapi import Request
from sqlmodel import Session

from hub.store import limits as limits_sql

if TYPE_CHECKING:
    from hub.app import Hub


def client_address(request: Request) -> str:
    """REQUEST's client address: the connection's own, never a header it writes."""
    return request.client.host if request.client else ""


def wait_for_rate(session: Session, hub: Hub, kind: str, address: str) -> int | None:
    """None when ADDRESS may make one more KIND request this minute (and it is counted),
    else the whole seconds to wait (at least 1) under links.requests_per_minute."""
    per_minute = hub.config.links.requests_per_minute
    taken = limits_sql.take(session, f"{kind}:addr:{address}", per_minute, 60.0)
    return None if taken.allowed else max(1, math.ceil(taken.retry_after))
