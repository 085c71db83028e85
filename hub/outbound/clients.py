"""HTTP clients whose every connection goes through the outbound guard.

* httpx (ICS calendars, webhooks): ``guarded_async_client`` gives an ``httpx.AsyncClient``
  whose transport opens its TCP connections through ``GuardedBackend``: the name of the URL
  is resolved and checked by the guard, and the socket is connected to one of the checked
  addresses. The URL is not rewritten, so the Host header, TLS SNI and certificate checks
  stay those of the name; the connection pool is keyed by the name, so a kept-alive
  connection was also checked when it was opened. Redirects open new connections, checked
  the same way.
* niquests (the ``caldav`` library's HTTP client): ``guarded_session`` gives a
  ``niquests.Session`` whose DNS resolver is ``GuardResolver``; urllib3-future connects to
  exactly what the resolver answers, and the guard answers only checked addresses.

Proxies from the environment (HTTP(S)_PROXY) are not used for guarded requests: a proxy
would resolve the name again, out of the guard's sight.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
import niquests
from niquests.packages.urllib3.contrib.resolver import BaseResolver, ProtocolResolver

from hub.outbound.guard import Guard

_ConnectErrors = (httpcore.ConnectError, httpcore.ConnectTimeout)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses GUARD checked.

    INNER makes the actual connection (httpcore's default; tests give a recording one)."""

    def __init__(self, guard: Guard, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.guard = guard
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.guard.addresses_async(host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                # An IP literal: the inner backend connects without resolving anything.
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except _ConnectErrors as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the outbound guard does not open unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (same pool, TLS and error mapping), connecting through GUARD."""

    def __init__(
        self,
        guard: Guard,
        *,
        verify: bool | str = True,
        inner: httpcore.AsyncNetworkBackend | None = None,
        **kwargs: Any,
    ) -> None:
        # trust_env here only lets SSL_CERT_FILE / SSL_CERT_DIR name the CAs; no proxy.
        super().__init__(verify=verify, proxy=None, **kwargs)
        pool = self._pool
        if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(
            pool, "_network_backend"
        ):
            # Fail loudly rather than connect unguarded if httpx changes how it builds this.
            raise RuntimeError("httpx's transport has no network backend to guard")
        pool._network_backend = GuardedBackend(guard, inner)


def guarded_async_client(
    guard: Guard,
    *,
    verify: bool | str = True,
    inner: httpcore.AsyncNetworkBackend | None = None,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient(**KWARGS)`` whose connections all go through GUARD (no proxy
    from the environment; VERIFY as httpx's)."""
    transport = GuardedTransport(guard, verify=verify, inner=inner)
    return httpx.AsyncClient(transport=transport, trust_env=False, **kwargs)


class GuardResolver(BaseResolver):
    """A urllib3-future resolver answering only the addresses GUARD checked."""

    protocol = ProtocolResolver.CUSTOM
    implementation = "smshub-outbound-guard"

    def __init__(self, guard: Guard) -> None:
        super().__init__(None)
        self.guard = guard

    def recycle(self) -> BaseResolver:
        return GuardResolver(self.guard)

    def close(self) -> None:
        """Nothing to release: each lookup is the guard's."""

    def is_available(self) -> bool:
        return True

    def getaddrinfo(
        self,
        host: bytes | str | None,
        port: str | int | None,
        family: socket.AddressFamily,
        type: socket.SocketKind,
        proto: int = 0,
        flags: int = 0,
        *,
        quic_upgrade_via_dns_rr: bool = False,
    ) -> list[tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]]:
        name = host.decode("ascii") if isinstance(host, bytes) else (host or "localhost")
        number = int(port or 0)
        found = []
        for address in self.guard.addresses(name, number):
            v6 = ":" in address
            kind = socket.AF_INET6 if v6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, kind):
                continue
            target: tuple[Any, ...] = (address, number, 0, 0) if v6 else (address, number)
            found.append((kind, type, proto, "", target))
        if not found:
            raise socket.gaierror(socket.EAI_ADDRFAMILY, f"{name} has no address of that family")
        return found


def guarded_session(guard: Guard) -> niquests.Session:
    """A ``niquests.Session`` whose connections all go through GUARD (HTTP/1.1 and 2: the
    HTTP/3 upgrade finds its own way to the server; no proxy from the environment)."""
    session = niquests.Session(resolver=GuardResolver(guard), disable_http3=True)
    session.trust_env = False
    return session
