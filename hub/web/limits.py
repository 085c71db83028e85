"""Bounds of the HTTP server: the time a client may take to send a request, and how many
connections are served at once.

uvicorn times out idle keep-alive connections only: a client that sends half a request line
(or headers one byte a minute, or a body that never ends) holds its connection, and a
task, for ever; a few thousand of them exhaust the process (slowloris). Here each request,
from its first byte (or the connection's start) to the last byte of its body, must arrive
within ``[http] request_timeout`` seconds, else the connection is answered 408 and closed.
The time the hub itself takes to answer is not counted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from hub.core.config import Config

_TIMEOUT_BODY = b"the request was not received in time (http.request_timeout)\n"
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n" % len(_TIMEOUT_BODY)
) + _TIMEOUT_BODY


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for receiving each whole request."""

    request_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._request_deadline is None:
            self._request_deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._request_deadline is not None:
            self._request_deadline.cancel()
            self._request_deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends anything is a request that never arrives.
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._arm()  # the first bytes of a new request
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._disarm()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _expired(self) -> None:
        self._request_deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            return  # the whole request is in: the hub is answering it
        if cycle is None or cycle.response_complete:
            # The request line or headers are not complete: nothing answered yet.
            self.transport.write(_TIMEOUT_RESPONSE)
        self.logger.info("closed a connection whose request was not received in time")
        self.transport.close()


def server_config(app: Any, config: Config, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of the hub's HTTP server (OVERRIDES: host, port, ...)."""
    protocol = type(
        "HubH11Protocol", (BoundedH11Protocol,), {"request_timeout": config.http.request_timeout}
    )
    options: dict[str, Any] = {
        "host": config.http.host,
        "port": config.http.port,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "off",
        "http": protocol,
        # Past this many connections (or requests in progress), uvicorn answers 503.
        "limit_concurrency": config.http.max_connections,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
