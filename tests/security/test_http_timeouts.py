"""Half-sent HTTP requests are timed out (before: a client sending half a request line, or
a body that never ends, held its connection for ever), and connections are bounded."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from hub.web.limits import server_config


@pytest.fixture
async def served(hub: Any) -> AsyncIterator[int]:
    """The hub's API behind its real uvicorn server, request_timeout 1 s; yields the port."""
    hub.config.http.request_timeout = 1.0
    server = uvicorn.Server(server_config(hub.api, hub.config, host="127.0.0.1", port=0))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    await task


def _hold(port: int, data: bytes) -> tuple[float, bytes]:
    """Send DATA (an incomplete request), then wait; (seconds until closed, what came back)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        start = time.monotonic()
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except TimeoutError:
            pass
        return time.monotonic() - start, received


@pytest.mark.parametrize(
    "partial",
    [
        b"",
        b"GET /healthz HT",
        b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Slow: 1",
        b'POST /v1/messages HTTP/1.1\r\nHost: hub\r\nContent-Length: 100\r\n\r\n{"to":',
    ],
    ids=["nothing", "half a request line", "half the headers", "half the body"],
)
async def test_half_sent_requests_are_cut_while_others_are_served(served, partial) -> None:
    slow = asyncio.create_task(asyncio.to_thread(_hold, served, partial))
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served}") as http:
        started = time.monotonic()
        r = await http.get("/healthz")
        assert r.status_code == 200
        assert time.monotonic() - started < 1.0
    waited, answer = await slow
    assert waited < 3.0, waited
    if b"/v1/messages" not in partial:
        assert answer.startswith(b"HTTP/1.1 408"), answer


async def test_a_whole_request_is_not_cut_by_the_deadline(served) -> None:
    # Keep-alive: the second request on one connection gets its own deadline.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served}") as http:
        for _ in range(3):  # 2.1 s on one connection, each request well within 1 s
            assert (await http.get("/healthz")).status_code == 200
            await asyncio.sleep(0.7)


def test_limits_come_from_the_config(config) -> None:
    uv = server_config(object(), config)
    assert uv.limit_concurrency == config.http.max_connections == 1000
    assert uv.http.request_timeout == config.http.request_timeout == 30.0  # type: ignore[union-attr]
