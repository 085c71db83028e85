"""Small helpers shared by the real-server fixtures in ``tests/servers`` and the tests' own
in-process HTTP servers.

The servers are external processes, so waiting for them is done by polling with a short sleep
and a deadline (there is nothing to ``await`` on): :func:`wait_until` in synchronous code and
:func:`wait_until_async` inside a running event loop (where a blocking sleep would also stall
whatever the test is running in that loop, e.g. the hub itself).

:class:`BackgroundServer` is the one way the tests and fakes run a stdlib HTTP server of their
own (a fake API, a webhook receiver, a published calendar) in a thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

T = TypeVar("T")

#: How long to sleep between two polls. Short, because the servers answer in milliseconds.
POLL_INTERVAL = 0.05


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS picks it when binding to port 0).

    Another process could take it before the server binds it; the window is tiny and the
    fixtures report a clear "address already in use" error (with the server's log) if it
    ever happens.
    """
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports (all sockets are held open together, so the OS cannot
    hand out the same port twice)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def port_is_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _timeout_message(what: str, timeout: float, details: Callable[[], str] | None) -> str:
    message = f"timed out after {timeout:g}s waiting for {what}"
    if details is not None:
        message += "\n" + details()
    return message


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = POLL_INTERVAL,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that value.

    Raises :class:`TimeoutError` naming ``what`` after ``timeout`` seconds; ``details`` is
    called then to add context (a log tail, what was received so far...).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(_timeout_message(what, timeout, details))
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = POLL_INTERVAL,
    details: Callable[[], str] | None = None,
) -> T:
    """:func:`wait_until` for async tests: sleeps with ``asyncio.sleep`` so the event loop
    (and the hub running in it) keeps working while we wait. ``predicate`` must be quick and
    non-blocking (reading a small file is fine)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(_timeout_message(what, timeout, details))
        await asyncio.sleep(interval)


class BackgroundServer:
    """A ThreadingHTTPServer on a free loopback port, serving in a daemon thread.

    Use it as a context manager, or call :meth:`start` and :meth:`close` where a helper object
    starts its server when it is built. ``server_class`` is another ThreadingHTTPServer
    (a subclass with a deeper ``request_queue_size``, say). ``port`` and ``url``
    (``http://127.0.0.1:PORT``, no trailing slash) are known before it starts.
    """

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        *,
        server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer,
    ) -> None:
        # TCP_NODELAY on each connection, as real servers (and asyncio's) set it. The stdlib
        # handler writes a response's headers, then its body: with Nagle's algorithm on, a
        # small body waits for the ACK of the headers, which a keep-alive client delays by
        # ~40 ms. Every small answer of a fake then took 40 ms more than the fake's work.
        if not handler.disable_nagle_algorithm:
            handler = type(handler.__name__, (handler,), {"disable_nagle_algorithm": True})
        self.server = server_class(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=lambda: self.server.serve_forever(poll_interval=POLL_INTERVAL), daemon=True
        )

    def start(self) -> BackgroundServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
