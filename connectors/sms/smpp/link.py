"""One TCP connection to the SMSC: framing, sequence numbers and the window of requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from connectors.sms.smpp.pdu import Pdu, parse_header
from hub.errors import ConnectorError

log = logging.getLogger("smshub.smpp")


class NotBound(ConnectorError, ConnectionError):
    """No bound link to the SMSC right now (the request was not sent)."""


class LinkLost(ConnectorError, ConnectionError):
    """The link closed while a request was waiting for its response (it may have arrived)."""


class Link:
    """One connection to the SMSC: framing, sequence numbers and the window of requests."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        window: int,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.window = asyncio.Semaphore(window)
        self.pending: dict[int, tuple[asyncio.Future[Pdu], Callable[[Pdu], None] | None]] = {}
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.bound = False
        self.last_rx = time.monotonic()
        self._sequence = 0

    @property
    def usable(self) -> bool:
        return self.bound and not self.closed.is_set()

    def next_sequence(self) -> int:
        # 1..0x7FFFFFFF, wrapping; 0 is avoided since some SMSCs treat it as "no sequence".
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    def send(self, pdu: Pdu) -> None:
        if self.closed.is_set():
            raise NotBound(self.close_reason or "connection closed")
        self.writer.write(pdu.encode())

    def respond(self, command_id: int, status: int, sequence: int, body: bytes = b"") -> None:
        """Answer a request; a response on a dead link is dropped (the SMSC will retry)."""
        if self.closed.is_set():
            log.info("link closed before 0x%08X seq %d could be answered", command_id, sequence)
            return
        self.writer.write(Pdu(command_id, status, sequence, body).encode())

    async def request(
        self,
        command_id: int,
        body: bytes,
        *,
        timeout: float,
        windowed: bool = False,
        on_response: Callable[[Pdu], None] | None = None,
    ) -> Pdu:
        """Send a request and wait for its response (or generic_nack) by sequence number.

        ``on_response`` runs in the reader as soon as the response arrives, before any
        later PDU is read: a receipt that follows a submit_sm_resp then already finds
        the id it refers to.
        """
        async with self.window if windowed else contextlib.nullcontext():
            if self.closed.is_set():
                raise NotBound(self.close_reason or "connection closed")
            sequence = self.next_sequence()
            future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
            self.pending[sequence] = (future, on_response)
            try:
                self.send(Pdu(command_id, 0, sequence, body))
                await asyncio.wait_for(self.writer.drain(), timeout)
                return await asyncio.wait_for(future, timeout)
            finally:
                self.pending.pop(sequence, None)

    def resolve(self, pdu: Pdu) -> None:
        entry = self.pending.pop(pdu.sequence, None)
        if entry is None:
            log.info("response %s for unknown sequence %d ignored", pdu.name, pdu.sequence)
            return
        future, on_response = entry
        if future.done():
            return
        if on_response is not None:
            try:
                on_response(pdu)
            except Exception:
                log.exception("handling %s failed", pdu.name)
        future.set_result(pdu)

    async def read_pdu(self) -> Pdu:
        header = await self.reader.readexactly(16)
        length, command_id, status, sequence = parse_header(header)
        body = await self.reader.readexactly(length - 16) if length > 16 else b""
        self.last_rx = time.monotonic()
        return Pdu(command_id, status, sequence, body)

    def close(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.bound = False
        self.closed.set()
        for future, _ in self.pending.values():
            if not future.done():
                future.set_exception(LinkLost(reason))
        self.pending.clear()
        self.writer.close()
