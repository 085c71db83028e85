"""The one outbound guard for every URL a customer gives (ICS and CalDAV calendars,
webhooks): resolve once, refuse internal addresses, connect to the checked address.

``addresses`` classifies, ``guard`` resolves and checks, ``clients`` builds the HTTP
clients (httpx, niquests) that connect only to what the guard checked.
"""

from hub.errors import LookupFailed, OutboundError, OutboundRefused
from hub.outbound.addresses import address_refusal, host_refusal
from hub.outbound.clients import (
    GuardedBackend,
    GuardedTransport,
    GuardResolver,
    guarded_async_client,
    guarded_session,
)
from hub.outbound.guard import (
    ADD_CHECK_TIMEOUT,
    LOOKUP_TIMEOUT,
    Guard,
    Resolver,
    check_url,
    system_resolver,
    url_host,
)

__all__ = [
    "ADD_CHECK_TIMEOUT",
    "LOOKUP_TIMEOUT",
    "Guard",
    "GuardResolver",
    "GuardedBackend",
    "GuardedTransport",
    "LookupFailed",
    "OutboundError",
    "OutboundRefused",
    "Resolver",
    "address_refusal",
    "check_url",
    "guarded_async_client",
    "guarded_session",
    "host_refusal",
    "system_resolver",
    "url_host",
]
