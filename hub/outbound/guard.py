"""The outbound guard: every URL a customer gives is resolved once, checked, and reached at
the address that was checked.

``Guard.addresses(host, port)`` is the one lookup of a connection: it resolves HOST with a
deadline, refuses it when any address is not public (see ``hub.outbound.addresses``), and
returns the addresses the connection may then use, and only those. The HTTP clients of
``hub.outbound.clients`` call it where they would otherwise resolve the name themselves,
so DNS rebinding (a public answer for the check, 127.0.0.1 for the connection) has no
second lookup to act on; a redirect to another host is a new connection, checked again.

Only the hub's administrator may let a URL reach private addresses (``allow_private``: the
``private_ok`` of a calendar or webhook, set from the CLI or config, never the console); even
then the name is resolved once and the connection pinned to that answer.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

from hub.errors import InvalidInput, LookupFailed, OutboundRefused
from hub.outbound.addresses import host_refusal, parse_address

# Seconds a lookup may take at a fetch; an add-time check waits less (a form is waiting).
LOOKUP_TIMEOUT = 10.0
ADD_CHECK_TIMEOUT = 2.0

# (host, port) -> the addresses it resolves to, as getaddrinfo gives them.
Resolver = Callable[[str, int], Sequence[str]]

# Lookups run here so that a deadline can be kept (getaddrinfo itself has none); a few
# threads: a hung resolver must not take the hub's other worker threads.
_LOOKUPS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="outbound-dns")


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses HOST resolves to (getaddrinfo), each once, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def default_port(scheme: str) -> int:
    return 443 if scheme.lower() in ("https", "webcals", "wss") else 80


@dataclass(frozen=True)
class Guard:
    """The checks of one kind of fetch: ALLOW_PRIVATE (the administrator's ``private_ok``)
    lets private targets through, TIMEOUT bounds each lookup, RESOLVER is the lookup itself
    (None: ``system_resolver``; tests give their own)."""

    allow_private: bool = False
    timeout: float = LOOKUP_TIMEOUT
    resolver: Resolver | None = None

    def _lookup(self, host: str, port: int) -> list[str]:
        future = _LOOKUPS.submit(self.resolver or system_resolver, host, port)
        try:
            found = list(future.result(timeout=self.timeout))
        except FutureTimeout:
            future.cancel()
            raise LookupFailed(f"DNS lookup of {host} timed out after {self.timeout:g} s") from None
        except OSError as exc:  # socket.gaierror
            raise LookupFailed(f"DNS lookup of {host} failed: {exc.strerror or exc}") from None
        if not found:
            raise LookupFailed(f"DNS lookup of {host} found no address")
        return found

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses a connection to HOST:PORT may use (blocking): an IP literal as it
        is, a name resolved once. OutboundRefused when the host or any address is refused,
        LookupFailed when the name cannot be resolved."""
        literal = parse_address(host)
        if literal is not None:
            found = [str(literal)]
        else:
            try:
                found = self._lookup(host, port)
            except LookupFailed:
                # *.localhost names this machine even when no resolver knows it.
                if not self.allow_private and (why := host_refusal(host)):
                    raise OutboundRefused(why) from None
                raise
        if not self.allow_private:
            why = host_refusal(host, found if literal is None else ())
            if why is not None:
                raise OutboundRefused(why)
        return found

    async def addresses_async(self, host: str, port: int) -> list[str]:
        """``addresses`` for the event loop (the lookup runs in a worker thread)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.addresses, host, port)


def url_host(url: str) -> tuple[str, int]:
    """(host, port) of URL; InvalidInput when it has no host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"{url!r} is not a valid URL: {exc}") from None
    if not parts.hostname:
        raise InvalidInput(f"{url!r} has no host name")
    return parts.hostname, port or default_port(parts.scheme)


def check_url(url: str, guard: Guard | None = None) -> None:
    """Refuse now (OutboundRefused) a URL whose host is, or already resolves to, an address
    the guard refuses: for forms and commands that save a URL fetched later. A name that
    does not resolve (yet) is accepted: every fetch checks it again. Blocking, with a short
    deadline."""
    guard = guard or Guard(timeout=ADD_CHECK_TIMEOUT)
    host, port = url_host(url)
    try:
        guard.addresses(host, port)
    except LookupFailed:
        return
