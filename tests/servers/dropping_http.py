"""An HTTP server that takes whole requests and never answers them: a provider that fails
after our request reached it (for the HTTP providers' transport-error policy).

Real sockets on 127.0.0.1, in the test's event loop. Each mode decides what happens once a
whole request (headers and Content-Length body) has arrived:

* ``close``: the connection is closed cleanly (the client sees the server disconnect);
* ``reset``: the connection is reset (RST, through SO_LINGER 0);
* ``silent``: nothing, until the client gives up (a read timeout) or the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Literal

Mode = Literal["close", "reset", "silent"]


class DroppingHttpServer:
    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.requests: list[bytes] = []  # every whole request received
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> DroppingHttpServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        self.requests.append(head + body)
        if self.mode == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        elif self.mode == "close":
            writer.close()
        else:
            with contextlib.suppress(ConnectionError):
                await reader.read()  # until the client hangs up
            writer.close()
