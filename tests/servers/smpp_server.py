"""A real SMPP 3.4 SMSC for the tests, and a TCP proxy in front of it that can break the link.

The SMSC is ``smpp34`` (PyPI): a Rust/tokio SMPP 3.4 server with its own codec, session
state machine (it refuses submit_sm before a bind with generic_nack ESME_RINVBNDSTS and drops
a connection whose command_length is invalid) and asyncio bindings. It runs in the test's
event loop; :class:`Smsc` scripts it: it records every submit_sm, answers them (accept with a
message id, reject with a command_status, or hold them unanswered to observe the client's
window), sends delivery receipts and inbound SMS as deliver_sm, and reassembles what arrived
with an independent GSM 03.38 codec (``gsm0338``, PyPI) so the connector's own encoder is
not used to check itself.

Why not something else (checked on Debian 12 / Python 3.11):
- Kannel's ``drive_smpp`` (kannel-extras) is an SMSC-side load driver for bearerbox: it only
  handles bind_transmitter/bind_receiver (no bind_transceiver), leaves the message_id out of
  submit_sm_resp, sends no delivery receipts, and panics unless a bearerbox smsbox port is
  there to connect to.
- Kannel's own ``smsc = smpp`` is a client; opensmppbox is not packaged in Debian.
- PyPI ``smpp-server`` is Python 2, ``smppy`` decodes text itself (no raw PDUs, no
  receipts), ``aiosmpplib``/``smpplib``/``naz`` are client-only.

:class:`LinkProxy` sits between the connector and the SMSC: it frames the byte stream into
PDUs (recording them, so tests can check what went over the wire), can cut every connection
(a network failure, not a polite unbind), refuse new ones (an outage), black-hole the link
(a half-open TCP connection) and inject PDUs towards the client (an SMSC's enquire_link).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.servers._util import free_port

try:  # the fixtures report a missing package through tests.conftest.require_server
    import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
    import smpp34
except ImportError as exc:  # pragma: no cover - depends on the environment
    IMPORT_ERROR: ImportError | None = exc
else:
    IMPORT_ERROR = None

HEADER = struct.Struct(">IIII")
ENQUIRE_LINK = 0x00000015
UNBIND = 0x00000006
RESPONSE = 0x80000000
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427


@dataclass
class Submitted:
    """One submit_sm as the SMSC received it."""

    session_id: str
    source_addr: str
    source_addr_ton: int
    source_addr_npi: int
    destination_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    message_id: str = ""
    status: int = 0  # what the SMSC answered (0 = accepted)

    @property
    def udh(self) -> tuple[int, int, int] | None:
        """(ref, total, seq) of an 8-bit concatenation UDH, else None."""
        sm = self.short_message
        if not self.esm_class & 0x40:
            return None
        udhl = sm[0]
        pos = 1
        while pos < 1 + udhl:
            iei, size = sm[pos], sm[pos + 1]
            if iei == 0x00 and size == 3:
                return sm[pos + 2], sm[pos + 3], sm[pos + 4]
            pos += 2 + size
        return None

    @property
    def payload(self) -> bytes:
        """The message octets after the UDH."""
        if self.esm_class & 0x40:
            return self.short_message[1 + self.short_message[0] :]
        return self.short_message


def decode(data_coding: int, octets: bytes) -> str:
    """Text of octets in data_coding 0 (GSM 03.38, one septet per octet) or 8 (UTF-16BE)."""
    if data_coding == 0:
        return octets.decode("gsm03.38")
    if data_coding == 8:
        return octets.decode("utf-16-be")
    raise AssertionError(f"unexpected data_coding {data_coding}")


@dataclass
class Received:
    """A whole message as the SMSC got it (parts joined by their UDH)."""

    destination_addr: str
    source_addr: str
    text: str
    parts: list[Submitted] = field(default_factory=list)

    @property
    def message_ids(self) -> list[str]:
        return [p.message_id for p in self.parts]


class Smsc:
    """The smpp34 SMSC, scripted (see the module docstring)."""

    def __init__(self, system_id: str = "SMSCSIM") -> None:
        if IMPORT_ERROR is not None:
            raise RuntimeError(f"the test SMSC needs smpp34 and gsm0338: {IMPORT_ERROR}")
        self.system_id = system_id
        self.port = free_port()
        self.server = smpp34.Server(host="127.0.0.1", port=self.port, system_id=system_id)
        self.sessions: dict[str, Any] = {}
        self.bound_system_ids: list[str] = []
        self.submits: list[Submitted] = []
        # command_status to answer the next submits with, in order (0 accepts).
        self.script: list[int] = []
        # While True, submits are kept unanswered in `held` (to watch the client's window).
        self.hold = False
        self.held: list[tuple[Any, Submitted]] = []
        self.max_held = 0
        self._ids = itertools.count(0x5A000001)
        self._changed = asyncio.Condition()
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.server.start()
        self._pump = asyncio.create_task(self._run(), name="smsc-pump")

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await self.server.stop()

    async def _run(self) -> None:
        while True:
            event = await self.server.next()
            if isinstance(event, smpp34.Esme):
                self.sessions[event.session_id] = event
                self.bound_system_ids.append(event.system_id)
            elif isinstance(event, smpp34.Unbound):
                self.sessions.pop(event.session_id, None)
            elif isinstance(event, smpp34.SubmitSmEvent):
                self._on_submit(event)
            async with self._changed:
                self._changed.notify_all()

    def _on_submit(self, event: Any) -> None:
        record = Submitted(
            session_id=event.session_id,
            source_addr=event.source_addr,
            source_addr_ton=event.source_addr_ton,
            source_addr_npi=event.source_addr_npi,
            destination_addr=event.destination_addr,
            dest_addr_ton=event.dest_addr_ton,
            dest_addr_npi=event.dest_addr_npi,
            esm_class=event.esm_class,
            data_coding=event.data_coding,
            registered_delivery=event.registered_delivery,
            short_message=bytes(event.short_message),
        )
        if self.hold:
            self.held.append((event, record))
            self.max_held = max(self.max_held, len(self.held))
            return
        self._answer(event, record)

    def _answer(self, event: Any, record: Submitted) -> None:
        status = self.script.pop(0) if self.script else 0
        record.status = status
        if status:
            event.reject(status)
        else:
            record.message_id = f"{next(self._ids):x}"
            event.accept(message_id=record.message_id)
            self.submits.append(record)

    def release(self) -> None:
        """Answer every held submit and stop holding."""
        self.hold = False
        held, self.held = self.held, []
        for event, record in held:
            self._answer(event, record)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until predicate() holds (re-checked on every SMSC event)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_submits(self, count: int, timeout: float = 5.0) -> list[Submitted]:
        await self.wait_for(lambda: len(self.submits) >= count, timeout)
        return self.submits

    def received(self) -> list[Received]:
        """Accepted submits as whole messages, parts joined in UDH order and decoded."""
        out: list[Received] = []
        groups: dict[tuple[str, int, int], list[Submitted]] = {}
        for sub in self.submits:
            udh = sub.udh
            if udh is None:
                text = decode(sub.data_coding, sub.payload)
                out.append(Received(sub.destination_addr, sub.source_addr, text, [sub]))
                continue
            ref, total, _ = udh
            group = groups.setdefault((sub.destination_addr, ref, total), [])
            group.append(sub)
            if len(group) == total:
                group.sort(key=lambda s: s.udh[2] if s.udh else 0)
                assert [s.udh[2] if s.udh else 0 for s in group] == list(range(1, total + 1))
                assert len({s.data_coding for s in group}) == 1
                text = decode(group[0].data_coding, b"".join(s.payload for s in group))
                out.append(Received(sub.destination_addr, sub.source_addr, text, list(group)))
                del groups[(sub.destination_addr, ref, total)]
        return out

    async def _session_for(self, message_id: str | None) -> Any:
        """The session that submitted message_id if still bound, else the newest one (the
        bind event may still be on its way from the server: wait for it)."""
        for sub in reversed(self.submits):
            if sub.message_id == message_id and sub.session_id in self.sessions:
                return self.sessions[sub.session_id]
        await self.wait_for(lambda: bool(self.sessions))
        return list(self.sessions.values())[-1]

    async def send_receipt(
        self,
        message_id: str,
        stat: str = "DELIVRD",
        *,
        err: str = "000",
        state: int | None = None,
        with_tlvs: bool = True,
        receipt_id: str | None = None,
    ) -> int:
        """A delivery receipt as deliver_sm (esm_class 0x04); returns deliver_sm_resp's status."""
        sub = next((s for s in self.submits if s.message_id == message_id), None)
        states = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5}
        states |= {"ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8}
        rid = receipt_id or message_id
        text = (
            f"id:{rid} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
            f"submit date:2401151200 done date:2401151201 stat:{stat} err:{err} text:"
        )
        tlvs = []
        if with_tlvs:
            tlvs = [
                smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, rid.encode() + b"\x00"),
                smpp34.Tlv(TLV_MESSAGE_STATE, bytes([state or states[stat]])),
            ]
        esme = await self._session_for(message_id)
        resp = await esme.deliver_sm(
            sub.source_addr if sub else "",
            text.encode("ascii"),
            source_addr=sub.destination_addr if sub else "",
            source_addr_ton=1,
            source_addr_npi=1,
            esm_class=0x04,
            tlvs=tlvs,
        )
        return int(resp.command_status)

    async def send_mo(
        self,
        source_addr: str,
        destination_addr: str,
        text: str,
        *,
        part_octets: int | None = None,
        ref: int = 0x42,
        order: Sequence[int] | None = None,
    ) -> list[int]:
        """An inbound SMS as deliver_sm (esm_class 0); cut into UDH parts of part_octets
        octets when given (anywhere, even inside an escape or a surrogate pair, as a phone
        may); returns the deliver_sm_resp status of each part, in sending order."""
        try:
            octets = text.encode("gsm03.38")
            data_coding = 0
        except UnicodeEncodeError:
            octets = text.encode("utf-16-be")
            data_coding = 8
        size = part_octets or len(octets) or 1
        chunks = [octets[i : i + size] for i in range(0, len(octets), size)] or [b""]
        total = len(chunks)
        bodies = []
        for seq, chunk in enumerate(chunks, 1):
            udh = bytes([5, 0, 3, ref, total, seq]) if total > 1 else b""
            bodies.append((udh + chunk, 0x40 if udh else 0))
        esme = await self._session_for(None)
        statuses = []
        for index in order or range(total):
            body, esm_class = bodies[index]
            resp = await esme.deliver_sm(
                destination_addr,
                body,
                source_addr=source_addr,
                source_addr_ton=1,
                source_addr_npi=1,
                dest_addr_ton=1,
                dest_addr_npi=1,
                esm_class=esm_class,
                data_coding=data_coding,
            )
            statuses.append(int(resp.command_status))
        return statuses


@dataclass
class Seen:
    """One PDU that went through the proxy."""

    direction: str  # "up" (client -> SMSC) or "down" (SMSC -> client)
    command_id: int
    status: int
    sequence: int
    body: bytes


class LinkProxy:
    """A TCP proxy that frames PDUs and can fail in the ways networks do (module docstring)."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = free_port()
        self.seen: list[Seen] = []
        self.refusing = False
        self.stalled = False
        self._server: asyncio.Server | None = None
        self._conns: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._injected: set[int] = set()
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def cut(self) -> None:
        """Reset every open connection (no unbind, like a network failure)."""
        for client, upstream in self._conns:
            for writer in (client, upstream):
                writer.transport.abort()
        self._conns.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._conns.append((writer, up_writer))
        for args in ((reader, up_writer, "up"), (up_reader, writer, "down")):
            task = asyncio.create_task(self._pipe(*args))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str
    ) -> None:
        try:
            while True:
                header = await reader.readexactly(16)
                length, command_id, status, sequence = HEADER.unpack(header)
                body = await reader.readexactly(length - 16)
                self.seen.append(Seen(direction, command_id, status, sequence, body))
                async with self._changed:
                    self._changed.notify_all()
                if direction == "up" and command_id & RESPONSE and sequence in self._injected:
                    self._injected.discard(sequence)
                    continue  # the answer to a PDU we injected: the SMSC never asked
                if not self.stalled:
                    writer.write(header + body)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    def inject_to_client(self, command_id: int, sequence: int, body: bytes = b"") -> None:
        """Write a PDU to the client as if the SMSC had sent it; its answer is kept here."""
        if not self._conns:
            raise AssertionError("no client connection to inject into")
        client, _ = self._conns[-1]
        self._injected.add(sequence)
        client.write(HEADER.pack(16 + len(body), command_id, 0, sequence) + body)

    async def wait_seen(self, predicate: Callable[[Seen], bool], timeout: float = 5.0) -> Seen:
        """The first PDU (seen so far or later) that matches predicate."""

        def match() -> Seen | None:
            return next((s for s in self.seen if predicate(s)), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: match() is not None), timeout)
        found = match()
        assert found is not None
        return found
