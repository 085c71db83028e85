"""A fixed set of kept-alive HTTP connections, one request at a time on each.

Why not one ``httpx.AsyncClient`` with N connections: each time a request starts or ends,
httpcore walks every connection of the pool and asks each idle one whether the server closed
it (two system calls through anyio's socket attributes). With 16 connections to a gateway
that answers in milliseconds, that walk cost more CPU than the rest of the request (found
profiling ``bench/kannel.py``). Here each connection is its own client and pool: a request
borrows a free one (the most recently used, whose connection is warm), so httpcore only ever
looks at the one connection it is about to use. The number of connections, keep-alive and
timeouts are the same as with one shared pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

import httpx


class HttpLanes:
    """SIZE httpx clients of one connection each; ``borrow()`` lends a free one."""

    def __init__(
        self,
        size: int,
        *,
        timeout: httpx.Timeout,
        keepalive_expiry: float,
        headers: Mapping[str, str] | None = None,
        base_url: str = "",
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.size = max(1, size)
        self._timeout = timeout
        self._keepalive_expiry = keepalive_expiry
        self._headers = dict(headers or {})
        self._base_url = base_url
        self._auth = auth
        self._clients: list[httpx.AsyncClient] = []
        # Last in, first out: the busiest connections stay warm, the spare ones expire.
        self._free: asyncio.LifoQueue[httpx.AsyncClient] | None = None

    def open(self) -> None:
        """Create the clients (connections are opened on first use); idempotent."""
        if self._free is not None:
            return
        self._free = asyncio.LifoQueue()
        limits = httpx.Limits(
            max_connections=1, max_keepalive_connections=1, keepalive_expiry=self._keepalive_expiry
        )
        # One TLS context for all (httpx would load the CA bundle once per client).
        tls = httpx.create_ssl_context()
        for _ in range(self.size):
            client = httpx.AsyncClient(
                base_url=self._base_url,
                auth=self._auth,
                timeout=self._timeout,
                limits=limits,
                headers=self._headers,
                verify=tls,
            )
            self._clients.append(client)
            self._free.put_nowait(client)

    async def aclose(self) -> None:
        clients, self._clients, self._free = self._clients, [], None
        for client in clients:
            await client.aclose()

    @property
    def is_open(self) -> bool:
        return self._free is not None

    @contextlib.asynccontextmanager
    async def borrow(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client nobody else is using; waits while all SIZE are busy."""
        if self._free is None:
            raise RuntimeError("HttpLanes used before open()")
        free = self._free
        client = await free.get()
        try:
            yield client
        finally:
            free.put_nowait(client)
