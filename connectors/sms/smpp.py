"""SMPP 3.4 provider: an ESME on asyncio streams, bound as a transceiver to one SMSC.

One TCP connection both submits (submit_sm, UDH-concatenated for long texts, receipts
requested) and receives (deliver_sm: delivery receipts and inbound SMS). A supervisor task
connects, binds, keeps the link alive with enquire_link and reconnects with exponential
backoff; while the link is down, send() answers TRANSIENT at once so the dispatcher can fail
over. Requests are matched to responses by sequence number, with at most ``window`` submits
in flight.

Receipts and inbound SMS go to an event sink (the hub's ``handle_events``), and the
deliver_sm is acknowledged only once the sink has stored them: if the process dies in
between, the SMSC delivers again, and the deterministic event keys make that harmless.

A long message goes out as several submit_sm whose ids all map to our message (kept in the
hub's state store, so receipts arriving after a restart, or on another instance's bind,
still resolve); it is delivered when every part is. SMPP has no idempotency key, so
``deduplicates`` is False, and a submit_sm that went out without an answer (timeout, link
lost) is reported UNKNOWN rather than sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from connectors.sms.smpp_pdu import (
    ESM_DELIVERY_RECEIPT,
    ESM_INTERMEDIATE_NOTIFICATION,
    ESM_TYPE_MASK,
    ESM_UDHI,
    STAT_WORDS,
    STATES_BY_WORD,
    BindTransceiver,
    Command,
    Concat,
    MessageState,
    Pdu,
    PduError,
    ShortMessage,
    Status,
    Tag,
    concatenated_parts,
    decode_bind_resp,
    decode_submit_sm_resp,
    decode_text,
    message_id_resp_body,
    message_id_variants,
    network_error_code,
    parse_error_code,
    parse_header,
    parse_receipt_text,
    parse_smpp_date,
    relative_validity,
    split_udh,
    status_name,
    tlv,
)
from hub.core import segments
from hub.core.config import read_secret
from hub.core.phone import is_alphanumeric_sender, parse_number
from hub.errors import ConfigError, ConnectorError
from hub.ports.sms import (
    DeliveryReason,
    DeliveryReport,
    DeliveryState,
    InboundSms,
    OutgoingSms,
    ProviderContext,
    ProviderEvent,
    ProviderSettings,
    SendOutcome,
    SendResult,
)
from hub.ports.state import MemoryStateStore, StateStore
from hub.sending.callbacks import CallbackView

log = logging.getLogger("smshub.smpp")

EventSink = Callable[[Sequence[ProviderEvent]], Awaitable[None]]

# The SMSC is busy, not refusing: back off and try again (or through another provider).
THROTTLE_STATUSES = frozenset({Status.RTHROTTLED, Status.RMSGQFUL})
# Statuses that refuse this message for good; everything not listed (system errors,
# temporary application errors, vendor codes) is treated as temporary, so an unknown code
# costs a few retries instead of a lost message.
PERMANENT_STATUSES: Mapping[int, DeliveryReason] = {
    Status.RINVDSTADR: DeliveryReason.INVALID_NUMBER,
    Status.RINVMSGLEN: DeliveryReason.OTHER,
    Status.RINVCMDLEN: DeliveryReason.OTHER,
    Status.RINVCMDID: DeliveryReason.OTHER,
    Status.RINVPRTFLG: DeliveryReason.OTHER,
    Status.RINVREGDLVFLG: DeliveryReason.OTHER,
    Status.RINVSRCADR: DeliveryReason.OTHER,
    Status.RINVSERTYP: DeliveryReason.OTHER,
    Status.RINVNUMDESTS: DeliveryReason.OTHER,
    Status.RINVDESTFLAG: DeliveryReason.OTHER,
    Status.RINVSUBREP: DeliveryReason.OTHER,
    Status.RINVESMCLASS: DeliveryReason.OTHER,
    Status.RINVSRCTON: DeliveryReason.OTHER,
    Status.RINVSRCNPI: DeliveryReason.OTHER,
    Status.RINVDSTTON: DeliveryReason.OTHER,
    Status.RINVDSTNPI: DeliveryReason.OTHER,
    Status.RINVSCHED: DeliveryReason.OTHER,
    Status.RINVEXPIRY: DeliveryReason.OTHER,
    Status.RINVDFTMSGID: DeliveryReason.OTHER,
    Status.RX_P_APPN: DeliveryReason.OTHER,
    Status.RX_R_APPN: DeliveryReason.OTHER,
    Status.RINVOPTPARSTREAM: DeliveryReason.OTHER,
    Status.ROPTPARNOTALLWD: DeliveryReason.OTHER,
    Status.RINVPARLEN: DeliveryReason.OTHER,
    Status.RMISSINGOPTPARAM: DeliveryReason.OTHER,
    Status.RINVOPTPARAMVAL: DeliveryReason.OTHER,
}


def status_outcome(
    status: int, settings: SmppSettings
) -> tuple[SendOutcome, DeliveryReason | None]:
    """What a submit_sm_resp error means for the message: permanent (with a reason) or not."""
    if status in settings.invalid_number_statuses:
        return SendOutcome.PERMANENT, DeliveryReason.INVALID_NUMBER
    if status in settings.permanent_statuses:
        return SendOutcome.PERMANENT, DeliveryReason.OTHER
    reason = PERMANENT_STATUSES.get(status)
    if reason is not None:
        return SendOutcome.PERMANENT, reason
    return SendOutcome.TRANSIENT, None


class SmppSettings(ProviderSettings):
    """``[providers.NAME]`` with ``type = "smpp"`` (documented in docs/smpp.md)."""

    type: Literal["smpp"] = "smpp"
    host: str
    port: int = Field(2775, ge=1, le=65535)
    system_id: str = Field(max_length=15)
    # The bind password comes from the environment or a file, never from the config itself.
    password_env: str | None = None
    password_file: str | None = None
    system_type: str = Field("", max_length=12)
    address_range: str = Field("", max_length=40)
    # Sender for messages that have none; empty lets the SMSC use the account's default.
    source_addr: str = ""
    # TON/NPI of the sender; unset means guessed (alphanumeric 5/0, "+..." 1/1, else 0/1).
    source_ton: int | None = Field(None, ge=0, le=255)
    source_npi: int | None = Field(None, ge=0, le=255)
    dest_ton: int = Field(1, ge=0, le=255)
    dest_npi: int = Field(1, ge=0, le=255)
    service_type: str = Field("", max_length=5)
    # registered_delivery=1 on every part: a final receipt for each.
    request_receipts: bool = True
    # Hours the SMSC keeps trying a message; unset leaves the SMSC's default.
    validity_hours: float | None = Field(None, gt=0)
    # Submits in flight without a response.
    window: int = Field(10, ge=1, le=1000)
    response_timeout: float = Field(10.0, gt=0)
    connect_timeout: float = Field(5.0, gt=0)
    # Seconds of silence on the link before an enquire_link probes it.
    enquire_link_interval: float = Field(30.0, gt=0)
    # First delay before reconnecting; doubles after each failure up to the maximum.
    reconnect_delay: float = Field(1.0, gt=0)
    reconnect_max_delay: float = Field(60.0, gt=0)
    # First pause after ESME_RTHROTTLED / ESME_RMSGQFUL; doubles while they go on.
    throttle_delay: float = Field(1.0, ge=0)
    throttle_max_delay: float = Field(30.0, ge=0)
    # How long a later part of a long message is retried (throttling, reconnect) before the
    # send is reported unknown (earlier parts went out; resending all would repeat them).
    part_retry_seconds: float = Field(10.0, ge=0)
    # Extra command_status codes (vendor range) that refuse a message for good.
    permanent_statuses: list[int] = []
    invalid_number_statuses: list[int] = []
    # Receipt error codes (err: field or network_error_code TLV) by meaning; GSM MAP codes
    # by default: 1 unknown subscriber, 5 unidentified, 9 illegal subscriber; 6/27 absent,
    # 31 busy, 32 delivery failure, 34 system failure.
    invalid_number_errors: list[int] = [1, 5, 9]
    network_error_errors: list[int] = [6, 27, 31, 32, 34]
    # Region for national numbers in inbound senders (e.g. "FR"); empty: international only.
    region: str = ""
    # Time zone of the dates in receipts.
    receipt_timezone: str = "UTC"
    # Hours the part ids of long messages are kept for their receipts.
    receipt_window_hours: float = Field(72.0, gt=0)
    # Seconds to wait for the missing parts of a long inbound SMS before storing what came.
    mo_concat_timeout: float = Field(3600.0, gt=0)
    # Where earlier builds kept their JSONL state (part ids of long messages, parts of long
    # inbound SMS); empty means DATA_DIR/smpp-NAME.jsonl. Moved into the database at start.
    state_path: str = ""

    @field_validator("receipt_timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class NotBound(ConnectorError, ConnectionError):
    """No bound link to the SMSC right now (the request was not sent)."""


class LinkLost(ConnectorError, ConnectionError):
    """The link closed while a request was waiting for its response (it may have arrived)."""


# -- the state file --------------------------------------------------------------------------


@dataclass
class PartRef:
    """What a provider message id (one submit_sm) belongs to."""

    message_id: str
    first_id: str
    index: int  # 0-based part number
    total: int
    at: float  # wall-clock time of the submit


@dataclass
class MoGroup:
    """The parts of one long inbound SMS received so far."""

    sender: str
    recipient: str
    ref: int
    total: int
    first_at: float
    parts: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # seq -> (dcs, octets)

    @property
    def key(self) -> str:
        return f"{self.sender}|{self.recipient}|{self.ref}|{self.total}"


class SmppState:
    """The JSONL state file of earlier builds (SharedSmppState moves it into the store):
    part ids of long messages and parts of long inbound SMS, kept across restarts.

    A JSONL file written with one ``write()`` per line on an O_APPEND descriptor (a killed
    process leaves whole lines), rewritten compactly at start and when it has grown.
    Single-part ids are kept in memory only, for a few minutes: the hub finds those
    messages by provider id, and the memory only bridges a receipt that overtakes the
    dispatcher's own bookkeeping.
    """

    RECENT_SECONDS = 600.0
    COMPACT_EVERY = 20_000

    def __init__(self, path: Path, receipt_window: float, mo_timeout: float) -> None:
        self.path = path
        self.receipt_window = receipt_window
        self.mo_timeout = mo_timeout
        self.parts: dict[str, PartRef] = {}
        self.by_first: dict[str, list[str | None]] = {}
        self.part_states: dict[str, str] = {}
        self.recent: OrderedDict[str, PartRef] = OrderedDict()
        self.mo_groups: dict[str, MoGroup] = {}
        # Groups already stored: key -> (time, {seq: sha256 of octets}), to recognise a part
        # the SMSC delivers again after we stored the whole message.
        self.mo_done: dict[str, tuple[float, dict[int, str]]] = {}
        self._fd: int | None = None
        self._lines = 0

    # file ----------------------------------------------------------------------------------
    def load(self) -> None:
        """Read the file, drop what is too old, and rewrite it compactly."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            raw = self.path.read_text("utf-8")
        except FileNotFoundError:
            raw = ""
        for line in raw.splitlines():
            try:
                record = json.loads(line)
                self._replay(record)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a torn last line, or a line from a future version
        self.compact()

    def _replay(self, r: dict[str, Any]) -> None:
        kind = r["t"]
        if kind == "mt":
            self._index(r["id"], PartRef(r["m"], r["f"], int(r["i"]), int(r["n"]), float(r["at"])))
        elif kind == "st":
            self.part_states[r["id"]] = r["s"]
        elif kind == "mo":
            group = self.mo_groups.get(r["k"])
            if group is None:
                sender, recipient, ref, total = r["k"].rsplit("|", 3)
                group = MoGroup(sender, recipient, int(ref), int(total), float(r["at"]))
                self.mo_groups[r["k"]] = group
            group.parts[int(r["q"])] = (int(r["c"]), bytes.fromhex(r["d"]))
        elif kind == "mo_done":
            self.mo_groups.pop(r["k"], None)
            hashes = {int(q): h for q, h in r.get("h", {}).items()}
            self.mo_done[r["k"]] = (float(r["at"]), hashes)

    def compact(self) -> None:
        """Rewrite the file with what is still needed (atomically, by rename)."""
        now = time.time()
        self.close()
        for pid in [p for p, ref in self.parts.items() if now - ref.at > self.receipt_window]:
            self._forget(pid)
        self.mo_done = {k: v for k, v in self.mo_done.items() if now - v[0] < self.mo_timeout}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            for pid, ref in self.parts.items():
                out.write(json.dumps(self._mt_record(pid, ref)) + "\n")
                if pid in self.part_states:
                    out.write(json.dumps({"t": "st", "id": pid, "s": self.part_states[pid]}) + "\n")
            for key, group in self.mo_groups.items():
                for seq, (dcs, octets) in group.parts.items():
                    out.write(json.dumps(self._mo_record(key, group, seq, dcs, octets)) + "\n")
            for key, (at, hashes) in self.mo_done.items():
                out.write(json.dumps({"t": "mo_done", "k": key, "at": at, "h": hashes}) + "\n")
        os.replace(tmp, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._lines = 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            raise RuntimeError("SMPP state used before load()")
        os.write(self._fd, (json.dumps(record) + "\n").encode("utf-8"))
        self._lines += 1
        if self._lines >= self.COMPACT_EVERY:
            self.compact()

    @staticmethod
    def _mt_record(pid: str, ref: PartRef) -> dict[str, Any]:
        return {
            "t": "mt",
            "id": pid,
            "m": ref.message_id,
            "f": ref.first_id,
            "i": ref.index,
            "n": ref.total,
            "at": ref.at,
        }

    @staticmethod
    def _mo_record(key: str, group: MoGroup, seq: int, dcs: int, octets: bytes) -> dict[str, Any]:
        return {"t": "mo", "k": key, "q": seq, "c": dcs, "d": octets.hex(), "at": group.first_at}

    # outgoing parts ------------------------------------------------------------------------
    def _index(self, pid: str, ref: PartRef) -> None:
        self.parts[pid] = ref
        ids = self.by_first.setdefault(ref.first_id, [None] * ref.total)
        if 0 <= ref.index < len(ids):
            ids[ref.index] = pid

    def _forget(self, pid: str) -> None:
        ref = self.parts.pop(pid, None)
        self.part_states.pop(pid, None)
        if ref is not None:
            self.by_first.pop(ref.first_id, None)

    def remember(self, pid: str, ref: PartRef) -> None:
        """Record the provider id of one submitted part."""
        self.recent[pid] = ref
        self.recent.move_to_end(pid)
        while self.recent:
            oldest = next(iter(self.recent.values()))
            if ref.at - oldest.at < self.RECENT_SECONDS:
                break
            self.recent.popitem(last=False)
        if ref.total > 1:
            self._index(pid, ref)
            self._append(self._mt_record(pid, ref))

    def lookup(self, pid: str) -> tuple[str, PartRef] | None:
        """(the id as we know it, its part) for a receipt's id, trying hex/decimal spellings."""
        for candidate in [pid, *message_id_variants(pid)]:
            ref = self.parts.get(candidate) or self.recent.get(candidate)
            if ref is not None:
                return candidate, ref
        return None

    def set_part_state(self, pid: str, word: str) -> list[str | None]:
        """Record a part's receipt state; returns the states of all parts of its message."""
        ref = self.parts[pid]
        if self.part_states.get(pid) != word:
            self.part_states[pid] = word
            self._append({"t": "st", "id": pid, "s": word})
        ids = self.by_first.get(ref.first_id, [])
        return [self.part_states.get(p) if p else None for p in ids]

    # incoming parts ------------------------------------------------------------------------
    def add_mo_part(
        self, sender: str, recipient: str, concat: Concat, dcs: int, octets: bytes
    ) -> MoGroup | None:
        """Store one part of a long inbound SMS; None when it repeats an already stored one."""
        key = f"{sender}|{recipient}|{concat.ref}|{concat.total}"
        done = self.mo_done.get(key)
        digest = hashlib.sha256(octets).hexdigest()[:16]
        if done is not None and done[1].get(concat.seq) == digest:
            return None
        group = self.mo_groups.get(key)
        if group is None:
            group = MoGroup(sender, recipient, concat.ref, concat.total, time.time())
            self.mo_groups[key] = group
            # A new message reusing the reference of an old one ends the old one's memory.
            self.mo_done.pop(key, None)
        group.parts[concat.seq] = (dcs, octets)
        self._append(self._mo_record(key, group, concat.seq, dcs, octets))
        return group

    def finish_mo(self, group: MoGroup) -> None:
        """The group's message is stored: drop its parts, remember their digests."""
        self.mo_groups.pop(group.key, None)
        hashes = {q: hashlib.sha256(o).hexdigest()[:16] for q, (_, o) in group.parts.items()}
        self.mo_done[group.key] = (time.time(), hashes)
        self._append({"t": "mo_done", "k": group.key, "at": time.time(), "h": hashes})

    def stale_mo_groups(self, now: float) -> list[MoGroup]:
        return [g for g in self.mo_groups.values() if now - g.first_at >= self.mo_timeout]


class SharedSmppState:
    """Part ids of long messages and parts of long inbound SMS, in the hub's state store, so
    that a receipt for part 2 (or the second half of an inbound SMS) resolves whichever
    instance's bind the SMSC delivers it on, and after a restart. Blocking (the provider
    calls it in worker threads), except ``remember_recent``.

    Single-part ids are kept in memory only, for a few minutes: the hub finds those
    messages by provider id, and the memory only bridges a receipt that overtakes the
    dispatcher's own bookkeeping (it also answers for long ones before the store has them).
    """

    RECENT_SECONDS = SmppState.RECENT_SECONDS

    def __init__(
        self, store: StateStore, name: str, receipt_window: float, mo_timeout: float
    ) -> None:
        self.store = store
        self.receipt_window = receipt_window
        self.mo_timeout = mo_timeout
        self.parts_ns = f"smpp-parts:{name}"
        self.states_ns = f"smpp-states:{name}"
        self.mo_ns = f"smpp-mo:{name}"
        self.done_ns = f"smpp-mo-done:{name}"
        self.recent: OrderedDict[str, PartRef] = OrderedDict()

    # outgoing parts ------------------------------------------------------------------------
    def remember_recent(self, pid: str, ref: PartRef) -> None:
        """Note a submitted part's id in memory (on the event loop, at once)."""
        self.recent[pid] = ref
        self.recent.move_to_end(pid)
        while self.recent:
            oldest = next(iter(self.recent.values()))
            if ref.at - oldest.at < self.RECENT_SECONDS:
                break
            self.recent.popitem(last=False)

    def remember(self, pid: str, ref: PartRef) -> None:
        """Record the provider id of one part of a long message where every instance sees it."""
        if ref.total > 1:
            left = self.receipt_window - (time.time() - ref.at)
            if left > 0:
                self.store.put(self.parts_ns, pid, SmppState._mt_record(pid, ref), ttl=left)

    def lookup(self, pid: str) -> tuple[str, PartRef] | None:
        """(the id as we know it, its part) for a receipt's id, trying hex/decimal spellings."""
        candidates = [pid, *message_id_variants(pid)]
        for candidate in candidates:
            if candidate in self.recent:
                return candidate, self.recent[candidate]
        for candidate in candidates:
            r = self.store.get(self.parts_ns, candidate)
            if isinstance(r, dict):
                return candidate, PartRef(r["m"], r["f"], int(r["i"]), int(r["n"]), float(r["at"]))
        return None

    def set_part_state(self, ref: PartRef, word: str) -> list[str | None]:
        """Record a part's receipt state; the states of all parts of its message."""
        self.store.put(
            self.states_ns, f"{ref.first_id}|{ref.index:05d}", word, ttl=self.receipt_window
        )
        states: list[str | None] = [None] * ref.total
        for key, value in self.store.items(self.states_ns, prefix=f"{ref.first_id}|"):
            index = int(key.rsplit("|", 1)[1])
            if 0 <= index < ref.total:
                states[index] = str(value)
        return states

    # incoming parts ------------------------------------------------------------------------
    def _group(self, key: str) -> MoGroup | None:
        sender, recipient, ref, total = key.rsplit("|", 3)
        found = self.store.items(self.mo_ns, prefix=f"{key}#")
        if not found:
            return None
        first_at = min(float(r["at"]) for _, r in found)
        group = MoGroup(sender, recipient, int(ref), int(total), first_at)
        for part, r in found:
            group.parts[int(part.rsplit("#", 1)[1])] = (int(r["c"]), bytes.fromhex(r["d"]))
        return group

    def add_mo_part(
        self, sender: str, recipient: str, concat: Concat, dcs: int, octets: bytes
    ) -> MoGroup | None:
        """Store one part of a long inbound SMS; None when it repeats an already stored one.
        The group as stored after it (all instances' parts)."""
        key = f"{sender}|{recipient}|{concat.ref}|{concat.total}"
        done = self.store.get(self.done_ns, key)
        digest = hashlib.sha256(octets).hexdigest()[:16]
        if isinstance(done, dict) and done.get("h", {}).get(str(concat.seq)) == digest:
            return None
        if done is not None and not self.store.items(self.mo_ns, prefix=f"{key}#"):
            # A new message reusing the reference of an old one ends the old one's memory.
            self.store.delete(self.done_ns, key)
        record = {"c": dcs, "d": octets.hex(), "at": time.time()}
        # Kept past the wait for the missing parts, so the late ones still join them.
        self.store.put(self.mo_ns, f"{key}#{concat.seq}", record, ttl=self.mo_timeout * 2)
        return self._group(key)

    def is_open(self, key: str) -> bool:
        """True while the group KEY waits for parts (not stored yet)."""
        return bool(self.store.items(self.mo_ns, prefix=f"{key}#"))

    def finish_mo(self, group: MoGroup) -> None:
        """The group's message is stored: drop its parts, remember their digests."""
        hashes = {str(q): hashlib.sha256(o).hexdigest()[:16] for q, (_, o) in group.parts.items()}
        self.store.put(
            self.done_ns, group.key, {"at": time.time(), "h": hashes}, ttl=self.mo_timeout
        )
        for seq in group.parts:
            self.store.delete(self.mo_ns, f"{group.key}#{seq}")

    def stale_mo_groups(self, now: float) -> list[MoGroup]:
        keys = {k.rsplit("#", 1)[0] for k, _ in self.store.items(self.mo_ns)}
        groups = [g for k in sorted(keys) if (g := self._group(k)) is not None]
        return [g for g in groups if now - g.first_at >= self.mo_timeout]

    # the file of earlier builds --------------------------------------------------------------
    def adopt_file(self, path: Path) -> bool:
        """Move what the JSONL state file of an earlier build holds into the store, then
        delete the file; False when there is none."""
        if not path.is_file():
            return False
        old = SmppState(path, self.receipt_window, self.mo_timeout)
        old.load()
        old.close()
        for pid, ref in old.parts.items():
            self.remember(pid, ref)
            if pid in old.part_states:
                self.set_part_state(ref, old.part_states[pid])
        for key, group in old.mo_groups.items():
            for seq, (dcs, octets) in group.parts.items():
                record = {"c": dcs, "d": octets.hex(), "at": group.first_at}
                self.store.put(self.mo_ns, f"{key}#{seq}", record, ttl=self.mo_timeout * 2)
        for key, (at, hashes) in old.mo_done.items():
            done = {"at": at, "h": {str(q): h for q, h in hashes.items()}}
            self.store.put(self.done_ns, key, done, ttl=self.mo_timeout)
        for leftover in (path, path.with_name(path.name + ".tmp")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        log.info(
            "SMPP: moved %d part id(s) and %d unfinished inbound SMS from %s into the "
            "database; file deleted",
            len(old.parts),
            len(old.mo_groups),
            path,
        )
        return True


# -- one TCP connection ----------------------------------------------------------------------


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


# -- the provider ----------------------------------------------------------------------------


@dataclass
class _Attempt:
    """The outcome of one submit_sm."""

    ok: bool
    message_id: str = ""
    permanent: DeliveryReason | None = None
    throttled: bool = False
    # The submit_sm went out but no answer came: the SMSC may have taken it.
    maybe_sent: bool = False
    detail: str = ""


class SmppProvider:
    """Implements hub.ports.sms.SmsProvider over one SMPP 3.4 transceiver bind."""

    settings_model: ClassVar[type[ProviderSettings]] = SmppSettings
    deduplicates = False

    def __init__(self, settings: SmppSettings, ctx: ProviderContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self.name = ctx.name
        self.password = read_secret(settings, "password", f"providers.{self.name}") or ""
        try:
            BindTransceiver(settings.system_id, self.password, settings.system_type).encode()
        except PduError as exc:
            # Found now rather than as a reconnect loop that can never bind.
            raise ConfigError(f"providers.{self.name}: {exc}") from None
        # Where receipts and inbound SMS go; the composition root passes the hub's
        # handle_events through the context, and tests may set it directly.
        self.events: EventSink | None = getattr(ctx, "emit", None)
        # In the hub's state store, so every instance resolves receipts of every part;
        # without one (a provider built alone), in this process only.
        self.state = SharedSmppState(
            getattr(ctx, "store", None) or MemoryStateStore(),
            ctx.name,
            receipt_window=settings.receipt_window_hours * 3600,
            mo_timeout=settings.mo_concat_timeout,
        )
        # Where earlier builds kept that state: moved into the store at start.
        self.legacy_state_path = (
            Path(settings.state_path)
            if settings.state_path
            else ctx.data_dir / f"smpp-{ctx.name}.jsonl"
        )
        self.tz = ZoneInfo(settings.receipt_timezone)
        self.peer = f"{settings.host}:{settings.port}"
        self.smsc_system_id = ""
        self._link: Link | None = None
        self._bound = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._stopping = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ref = random.randrange(256)
        self._throttle_level = 0
        self._throttled_until = 0.0
        self._reconnect_at = 0.0
        self._last_error = ""
        self._last_housekeeping = 0.0
        self.binds = 0  # successful binds so far (reconnects show up here)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start connecting; waits (bounded) for the first bind attempt."""
        if self.events is None:
            log.error(
                "SMPP provider %r has no event sink: receipts and inbound SMS will be refused "
                "(answered ESME_RX_T_APPN) until one is set",
                self.name,
            )
        await asyncio.to_thread(self.state.adopt_file, self.legacy_state_path)
        self._stopping.clear()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"smpp-{self.name}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._first_attempt.wait(),
                self.settings.connect_timeout + self.settings.response_timeout,
            )

    async def close(self) -> None:
        """Unbind politely, stop reconnecting."""
        self._stopping.set()
        link = self._link
        if link is not None and link.usable:
            try:
                await link.request(
                    Command.UNBIND, b"", timeout=min(2.0, self.settings.response_timeout)
                )
            except (ConnectionError, TimeoutError, OSError) as exc:
                log.info("unbind from %s got no answer: %r", self.peer, exc)
            link.close("closed by us")
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def callbacks(self) -> Mapping[str, CallbackView]:
        """None: receipts and inbound SMS arrive over the SMPP link itself."""
        return {}

    @property
    def bound(self) -> bool:
        return self._link is not None and self._link.usable

    @property
    def link(self) -> Link | None:
        """The current connection (None between connections)."""
        return self._link

    async def wait_bound(self, timeout: float) -> None:
        """Wait until a link is bound (raises TimeoutError)."""
        await asyncio.wait_for(self._bound.wait(), timeout)

    # -- connection supervision ------------------------------------------------------------
    async def _supervise(self) -> None:
        delay = self.settings.reconnect_delay
        while not self._stopping.is_set():
            binds = self.binds
            try:
                await self._run_link()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._last_error = _describe(exc)
                log.warning("SMPP %s (%s): %s", self.name, self.peer, self._last_error)
            finally:
                self._bound.clear()
                self._first_attempt.set()
            if self._stopping.is_set():
                break
            if self.binds > binds:
                # The link was up and then lost: start the backoff over from the beginning.
                delay = self.settings.reconnect_delay
            # Jitter keeps a fleet of hubs from hammering a recovering SMSC in step.
            wait = delay * random.uniform(0.8, 1.2)
            self._reconnect_at = time.monotonic() + wait
            log.info("SMPP %s: reconnecting to %s in %.1fs", self.name, self.peer, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            delay = min(delay * 2, self.settings.reconnect_max_delay)

    async def _run_link(self) -> None:
        """Connect, bind, serve until the link closes."""
        s = self.settings
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(s.host, s.port), s.connect_timeout
            )
        except TimeoutError:
            raise ConnectionError(f"no TCP connection within {s.connect_timeout}s") from None
        link = Link(reader, writer, s.window)
        self._link = link
        reader_task = asyncio.create_task(self._read_loop(link), name=f"smpp-{self.name}-read")
        try:
            bind = BindTransceiver(
                system_id=s.system_id,
                password=self.password,
                system_type=s.system_type,
                address_range=s.address_range,
            )
            try:
                resp = await link.request(
                    Command.BIND_TRANSCEIVER, bind.encode(), timeout=s.response_timeout
                )
            except TimeoutError:
                raise ConnectionError(f"no bind response within {s.response_timeout}s") from None
            if resp.status != Status.ROK or resp.command_id != Command.BIND_TRANSCEIVER_RESP:
                raise ConnectionError(
                    f"bind_transceiver as {s.system_id!r} refused: {status_name(resp.status)}"
                )
            self.smsc_system_id = decode_bind_resp(resp.body)
            link.bound = True
            self.binds += 1
            self._last_error = ""
            self._bound.set()
            self._first_attempt.set()
            log.info(
                "SMPP %s: bound to %s (%s) as %r",
                self.name,
                self.peer,
                self.smsc_system_id or "?",
                s.system_id,
            )
            await self._keep_alive(link)
            if not self._stopping.is_set():
                raise ConnectionError(f"link lost: {link.close_reason}")
        finally:
            link.close(link.close_reason or "link ended")
            if self._link is link:
                self._link = None
            reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader_task

    async def _keep_alive(self, link: Link) -> None:
        """enquire_link when the link has been silent; housekeeping on the side."""
        s = self.settings
        while not link.closed.is_set():
            idle = time.monotonic() - link.last_rx
            if idle < s.enquire_link_interval:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        link.closed.wait(), min(s.enquire_link_interval - idle, 60.0)
                    )
                self._housekeeping()
                continue
            try:
                await link.request(Command.ENQUIRE_LINK, b"", timeout=s.response_timeout)
            except TimeoutError:
                link.close(f"no enquire_link_resp within {s.response_timeout}s")
            except ConnectionError:
                pass  # closed meanwhile; the loop condition ends it

    def _housekeeping(self) -> None:
        now = time.time()
        if now - self._last_housekeeping < min(60.0, self.settings.mo_concat_timeout / 4):
            return
        self._last_housekeeping = now
        self._spawn(self._expire_mo(now))

    async def _expire_mo(self, now: float) -> None:
        try:
            stale = await asyncio.to_thread(self.state.stale_mo_groups, now)
        except Exception:
            log.exception("SMPP %s: cannot read unfinished inbound SMS", self.name)
            return
        for group in stale:
            await self._store_incomplete_mo(group)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_loop(self, link: Link) -> None:
        """Read PDUs until the link ends; requests from the SMSC are answered here."""
        try:
            while True:
                pdu = await link.read_pdu()
                if pdu.is_response:
                    link.resolve(pdu)
                elif pdu.command_id == Command.ENQUIRE_LINK:
                    link.respond(Command.ENQUIRE_LINK_RESP, Status.ROK, pdu.sequence)
                elif pdu.command_id == Command.DELIVER_SM:
                    if not link.bound:
                        link.respond(Command.GENERIC_NACK, Status.RINVBNDSTS, pdu.sequence)
                    else:
                        self._spawn(self._handle_deliver_sm(link, pdu))
                elif pdu.command_id == Command.UNBIND:
                    link.respond(Command.UNBIND_RESP, Status.ROK, pdu.sequence)
                    link.close("the SMSC unbound")
                    return
                elif pdu.command_id == Command.ALERT_NOTIFICATION:
                    pass  # no response is defined for it, and we have no use for it
                else:
                    log.warning(
                        "SMPP %s: %s not supported; answered generic_nack", self.name, pdu.name
                    )
                    link.respond(Command.GENERIC_NACK, Status.RINVCMDID, pdu.sequence)
        except asyncio.IncompleteReadError:
            link.close("the SMSC closed the connection")
        except PduError as exc:
            # A bad length cannot be skipped over: the stream is out of step for good.
            link.close(f"framing error: {exc}")
        except (ConnectionError, OSError) as exc:
            link.close(f"connection error: {exc!r}")

    # -- sending ---------------------------------------------------------------------------
    async def send(self, sms: OutgoingSms) -> SendResult:
        """Submit every part; the first part's id is the provider id."""
        if not self.bound:
            return SendResult(SendOutcome.TRANSIENT, detail=self._outage_detail())
        left = self._throttled_until - time.monotonic()
        if left > 0:
            return SendResult(
                SendOutcome.TRANSIENT, detail=f"the SMSC is throttling us; pausing {left:.1f}s"
            )
        try:
            bodies = self._build(sms)
        except PduError as exc:
            return SendResult(
                SendOutcome.PERMANENT, reason=DeliveryReason.OTHER.value, detail=str(exc)
            )
        total = len(bodies)
        first_id = ""
        for index, body in enumerate(bodies):
            deadline = time.monotonic() + self.settings.part_retry_seconds
            while True:
                attempt = await self._submit(body, sms.message_id, index, total, first_id)
                if attempt.ok:
                    break
                where = f"part {index + 1}/{total}: " if total > 1 else ""
                if attempt.permanent is not None:
                    sent = f"; {index} part(s) already went out" if index else ""
                    return SendResult(
                        SendOutcome.PERMANENT,
                        reason=attempt.permanent.value,
                        detail=f"{where}{attempt.detail}{sent}",
                    )
                if index == 0:
                    # Nothing went out for sure: try again later (or through another
                    # provider), unless this one may have gone out.
                    outcome = SendOutcome.UNKNOWN if attempt.maybe_sent else SendOutcome.TRANSIENT
                    return SendResult(outcome, detail=f"{where}{attempt.detail}")
                # Earlier parts went out: retry this part (same UDH, so the phone still
                # joins it) for a while rather than send the whole message again.
                if not await self._wait_to_retry(deadline):
                    return SendResult(
                        SendOutcome.UNKNOWN,
                        detail=f"{where}{attempt.detail}; {index} of {total} parts went out",
                    )
            if index == 0:
                first_id = attempt.message_id
        return SendResult(SendOutcome.ACCEPTED, first_id or None, detail=f"{total} part(s)")

    def _outage_detail(self) -> str:
        detail = f"not bound to SMSC {self.peer}"
        if self._last_error:
            detail += f" ({self._last_error})"
        wait = self._reconnect_at - time.monotonic()
        if wait > 0:
            detail += f"; reconnecting in {wait:.1f}s"
        return detail

    async def _wait_to_retry(self, deadline: float) -> bool:
        """Wait until sending may work again (bound, not throttled); False past the deadline."""
        while True:
            now = time.monotonic()
            if now >= deadline:
                return False
            if not self.bound:
                try:
                    await asyncio.wait_for(self._bound.wait(), deadline - now)
                except TimeoutError:
                    return False
                continue
            pause = self._throttled_until - now
            if pause > 0:
                if now + pause > deadline:
                    return False
                await asyncio.sleep(pause)
                continue
            return True

    def _build(self, sms: OutgoingSms) -> list[bytes]:
        """The submit_sm bodies of a message (several with UDH when it is long), all encoded
        before the first goes out, so a bad field fails the message before any part is sent."""
        s = self.settings
        encoding = segments.count(sms.text).encoding
        parts = segments.split(sms.text)
        self._ref = (self._ref + 1) % 256
        coded = concatenated_parts(sms.text, parts, encoding, self._ref)
        source, ton, npi = self._source(sms.sender)
        validity = relative_validity(s.validity_hours * 3600) if s.validity_hours else ""
        return [
            ShortMessage(
                service_type=s.service_type,
                source_addr=source,
                source_addr_ton=ton,
                source_addr_npi=npi,
                destination_addr=sms.to.removeprefix("+"),
                dest_addr_ton=s.dest_ton,
                dest_addr_npi=s.dest_npi,
                esm_class=ESM_UDHI if udh else 0,
                validity_period=validity,
                registered_delivery=1 if s.request_receipts else 0,
                data_coding=dcs,
                short_message=octets,
            ).encode()
            for dcs, octets, udh in coded
        ]

    def _source(self, sender: str | None) -> tuple[str, int, int]:
        s = self.settings
        addr = sender or s.source_addr
        if not addr:
            ton, npi = 0, 0
        elif is_alphanumeric_sender(addr):
            ton, npi = 5, 0
        elif addr.startswith("+"):
            addr, ton, npi = addr[1:], 1, 1
        else:
            ton, npi = 0, 1
        return (
            addr,
            ton if s.source_ton is None else s.source_ton,
            npi if s.source_npi is None else s.source_npi,
        )

    async def _submit(
        self, body: bytes, message_id: str, index: int, total: int, first_id: str
    ) -> _Attempt:
        link = self._link
        if link is None or not link.usable:
            return _Attempt(False, detail=self._outage_detail())

        noted: list[tuple[str, PartRef]] = []

        def remember(resp: Pdu) -> None:
            if resp.status != Status.ROK or resp.command_id != Command.SUBMIT_SM_RESP:
                return
            pid = decode_submit_sm_resp(resp.body)
            if pid:
                ref = PartRef(message_id, first_id or pid, index, total, time.time())
                self.state.remember_recent(pid, ref)
                noted.append((pid, ref))

        try:
            resp = await link.request(
                Command.SUBMIT_SM,
                body,
                timeout=self.settings.response_timeout,
                windowed=True,
                on_response=remember,
            )
        except TimeoutError:
            # SMPP cannot tell whether the SMSC took it; sending again may send it twice.
            return _Attempt(
                False,
                maybe_sent=True,
                detail=f"no submit_sm_resp within {self.settings.response_timeout}s; "
                "the SMSC may have taken it",
            )
        except LinkLost as exc:
            return _Attempt(
                False,
                maybe_sent=True,
                detail=f"link to {self.peer} lost before submit_sm_resp ({exc}); "
                "the SMSC may have taken it",
            )
        except (ConnectionError, OSError) as exc:
            return _Attempt(False, detail=f"not sent, link to {self.peer} is down: {exc}")
        for pid, ref in noted:
            if ref.total > 1:
                try:
                    await asyncio.to_thread(self.state.remember, pid, ref)
                except Exception as exc:  # sent all the same: only other instances miss it
                    log.warning("SMPP %s: cannot store the id of part %s: %s", self.name, pid, exc)
        return self._classify(link, resp)

    def _classify(self, link: Link, resp: Pdu) -> _Attempt:
        status = resp.status
        if status == Status.ROK and resp.command_id == Command.SUBMIT_SM_RESP:
            self._throttle_level = 0
            pid = decode_submit_sm_resp(resp.body)
            if not pid:
                log.warning("SMPP %s: submit_sm_resp without message_id", self.name)
            return _Attempt(True, message_id=pid)
        name = status_name(status)
        if resp.command_id == Command.GENERIC_NACK:
            name = f"generic_nack {name}"
        if status in THROTTLE_STATUSES:
            self._throttle_level += 1
            pause = min(
                self.settings.throttle_max_delay,
                self.settings.throttle_delay * 2 ** (self._throttle_level - 1),
            )
            self._throttled_until = time.monotonic() + pause
            return _Attempt(False, throttled=True, detail=f"{name}; pausing {pause:.1f}s")
        if status == Status.RINVBNDSTS:
            link.close(f"the SMSC says we are not bound ({name})")
        outcome, reason = status_outcome(status, self.settings)
        if outcome == SendOutcome.PERMANENT:
            return _Attempt(False, permanent=reason, detail=name)
        return _Attempt(False, detail=name)

    # -- receiving -------------------------------------------------------------------------
    async def _handle_deliver_sm(self, link: Link, pdu: Pdu) -> None:
        """Turn a deliver_sm into events, store them, and only then acknowledge it."""
        try:
            sm = ShortMessage.decode(pdu.body, "deliver_sm")
        except PduError as exc:
            log.warning("SMPP %s: malformed deliver_sm refused: %s", self.name, exc)
            link.respond(Command.DELIVER_SM_RESP, Status.RX_P_APPN, pdu.sequence, b"\x00")
            return
        status = Status.ROK
        try:
            events, after = await self._events_for(sm)
            if events:
                if self.events is None:
                    raise RuntimeError("no event sink configured")
                await self.events(events)
            if after is not None:
                await asyncio.to_thread(after)
        except asyncio.CancelledError:
            raise  # closing: leave it unanswered, the SMSC delivers it again
        except Exception:
            log.exception("SMPP %s: storing a deliver_sm failed; asking for redelivery", self.name)
            status = Status.RX_T_APPN
        link.respond(Command.DELIVER_SM_RESP, status, pdu.sequence, message_id_resp_body(""))

    async def _events_for(
        self, sm: ShortMessage
    ) -> tuple[list[ProviderEvent], Callable[[], None] | None]:
        kind = sm.esm_class & ESM_TYPE_MASK
        if kind in (ESM_DELIVERY_RECEIPT, ESM_INTERMEDIATE_NOTIFICATION):
            return await self._receipt_events(sm), None
        if kind == 0:
            return await self._inbound_events(sm)
        log.info("SMPP %s: deliver_sm with esm_class 0x%02X ignored", self.name, sm.esm_class)
        return [], None

    async def _receipt_events(self, sm: ShortMessage) -> list[ProviderEvent]:
        payload = sm.payload()
        # Receipt texts are ASCII whatever data_coding says; Latin-1 keeps ids like "a_b".
        text = (
            decode_text(sm.data_coding, payload)
            if sm.data_coding == 8
            else payload.decode("latin-1")
        )
        fields = parse_receipt_text(text)
        rid_tlv = tlv(sm.tlvs, Tag.RECEIPTED_MESSAGE_ID)
        rid = (rid_tlv.rstrip(b"\x00").decode("latin-1") if rid_tlv else "") or fields.get("id", "")
        state_tlv = tlv(sm.tlvs, Tag.MESSAGE_STATE)
        state: MessageState | None = None
        if state_tlv and len(state_tlv) == 1:
            with contextlib.suppress(ValueError):
                state = MessageState(state_tlv[0])
        if state is None:
            state = STATES_BY_WORD.get(fields.get("stat", "").strip().upper())
        if not rid or state is None:
            log.warning(
                "SMPP %s: delivery receipt without id or state ignored: %r", self.name, text[:200]
            )
            return []
        word = STAT_WORDS[state]
        err = parse_error_code(fields.get("err", ""))
        network = network_error_code(tlv(sm.tlvs, Tag.NETWORK_ERROR_CODE))
        delivery, reason = self._map_state(state, network[1] if network else err)
        detail = f"stat:{word}"
        if err is not None:
            detail += f" err:{fields.get('err', '').strip()}"
        if network is not None:
            detail += f" network_error:{network[0]}/{network[1]}"
        raw = {
            "receipt": text,
            "source_addr": sm.source_addr,
            "destination_addr": sm.destination_addr,
            "tlvs": {f"0x{t:04X}": v.hex() for t, v in sm.tlvs},
        }
        occurred = parse_smpp_date(fields.get("done date", ""), self.tz)

        def report(
            key: str, state_: DeliveryState, pmid: str, mid: str | None, why: str
        ) -> DeliveryReport:
            return DeliveryReport(
                provider=self.name,
                event_key=key,
                state=state_,
                message_id=mid,
                provider_message_id=pmid,
                reason=reason if state_ == DeliveryState.UNDELIVERED else None,
                detail=why,
                occurred_at=occurred,
                raw=raw,
            )

        found = await asyncio.to_thread(self.state.lookup, rid)
        if found is None:
            # Not sent by this process lately: the hub still finds it by provider id.
            return [report(f"{rid}:{word}", delivery, rid, None, detail)]
        pid, ref = found
        if ref.total == 1:
            return [report(f"{pid}:{word}", delivery, pid, ref.message_id, detail)]
        where = f"part {ref.index + 1}/{ref.total} {detail}"
        if delivery == DeliveryState.PENDING:
            return [report(f"{pid}:{word}", delivery, ref.first_id, ref.message_id, where)]
        states = await asyncio.to_thread(self.state.set_part_state, ref, word)
        if delivery == DeliveryState.UNDELIVERED:
            return [report(f"{pid}:{word}", delivery, ref.first_id, ref.message_id, where)]
        if len(states) == ref.total and all(st == "DELIVRD" for st in states):
            key = f"{ref.first_id}:DELIVRD:all"
            why = f"all {ref.total} parts delivered"
            return [report(key, delivery, ref.first_id, ref.message_id, why)]
        return []  # more parts to come

    def _map_state(
        self, state: MessageState, code: int | None
    ) -> tuple[DeliveryState, DeliveryReason | None]:
        if state == MessageState.DELIVERED:
            return DeliveryState.DELIVERED, None
        if state in (MessageState.ENROUTE, MessageState.ACCEPTED):
            return DeliveryState.PENDING, None
        if state == MessageState.EXPIRED:
            return DeliveryState.UNDELIVERED, DeliveryReason.EXPIRED
        if state in (MessageState.UNDELIVERABLE, MessageState.REJECTED) and code:
            if code in self.settings.invalid_number_errors:
                return DeliveryState.UNDELIVERED, DeliveryReason.INVALID_NUMBER
            if code in self.settings.network_error_errors:
                return DeliveryState.UNDELIVERED, DeliveryReason.NETWORK_ERROR
        return DeliveryState.UNDELIVERED, DeliveryReason.OTHER

    async def _inbound_events(
        self, sm: ShortMessage
    ) -> tuple[list[ProviderEvent], Callable[[], None] | None]:
        payload = sm.payload()
        concat: Concat | None = None
        if sm.esm_class & ESM_UDHI:
            concat, payload = split_udh(payload)
        else:
            ref = tlv(sm.tlvs, Tag.SAR_MSG_REF_NUM)
            total = tlv(sm.tlvs, Tag.SAR_TOTAL_SEGMENTS)
            seq = tlv(sm.tlvs, Tag.SAR_SEGMENT_SEQNUM)
            if ref and total and seq and len(ref) == 2 and 1 <= seq[0] <= total[0]:
                concat = Concat(int.from_bytes(ref, "big"), total[0], seq[0])
        sender = self._address(sm.source_addr, sm.source_addr_ton)
        recipient = self._address(sm.destination_addr, sm.dest_addr_ton)
        raw: dict[str, Any] = {
            "source_addr": sm.source_addr,
            "source_addr_ton": sm.source_addr_ton,
            "destination_addr": sm.destination_addr,
            "data_coding": sm.data_coding,
        }
        now = time.time()
        if concat is None or concat.total == 1:
            text = decode_text(sm.data_coding, payload)
            # SMPP gives an MO no id: arrival time makes the key unique, so two identical
            # "OK" replies stay two messages.
            key = _digest(sender, recipient, str(sm.data_coding), payload.hex(), repr(now))
            return [self._inbound(key, sender, recipient, text, now, raw)], None
        group = await asyncio.to_thread(
            self.state.add_mo_part, sender, recipient, concat, sm.data_coding, payload
        )
        if group is None or len(group.parts) < group.total:
            return [], None
        raw["parts"] = group.total
        event = self._inbound_from_group(group, raw)
        return [event], lambda: self.state.finish_mo(group)

    def _inbound_from_group(self, group: MoGroup, raw: dict[str, Any]) -> InboundSms:
        """Join the parts: octets first where the coding agrees, so a septet escape or a
        surrogate pair split across parts by the sender's phone still decodes."""
        seqs = range(1, group.total + 1)
        present = [group.parts.get(q) for q in seqs]
        codings = {p[0] for p in present if p is not None}
        if len(codings) == 1 and all(p is not None for p in present):
            dcs = codings.pop()
            text = decode_text(dcs, b"".join(p[1] for p in present if p is not None))
        else:
            text = "".join(decode_text(p[0], p[1]) if p is not None else "[…]" for p in present)
        # The first part's arrival time is stored with the parts, so a redelivered last
        # part after a crash gives the same key (and the hub stores it once).
        key = _digest(group.key, repr(group.first_at))
        return self._inbound(key, group.sender, group.recipient, text, group.first_at, raw)

    def _inbound(
        self, key: str, sender: str, recipient: str, text: str, at: float, raw: dict[str, Any]
    ) -> InboundSms:
        return InboundSms(
            provider=self.name,
            event_key=f"mo:{key}",
            sender=sender,
            recipient=recipient,
            text=text,
            received_at=datetime.fromtimestamp(at, UTC),
            raw=raw,
        )

    async def _store_incomplete_mo(self, group: MoGroup) -> None:
        """The missing parts never came: store what did, marking the gaps."""
        if self.events is None or not await asyncio.to_thread(self.state.is_open, group.key):
            return
        raw = {"parts": group.total, "received_parts": sorted(group.parts), "incomplete": True}
        event = self._inbound_from_group(group, raw)
        try:
            await self.events([event])
        except Exception:
            log.exception("SMPP %s: storing an incomplete inbound SMS failed", self.name)
            return
        await asyncio.to_thread(self.state.finish_mo, group)
        log.warning(
            "SMPP %s: inbound SMS from %s stored with %d of %d parts",
            self.name,
            group.sender,
            len(group.parts),
            group.total,
        )

    def _address(self, addr: str, ton: int) -> str:
        """E.164 for numbers (national ones read in the configured region), else as sent."""
        digits = addr.removeprefix("+")
        if ton == 5 or not digits.isdigit():
            return addr
        if ton == 1 or addr.startswith("+"):
            return "+" + digits
        if ton == 3 or len(digits) <= 6:
            return digits  # short codes
        info = parse_number(digits, self.settings.region)
        return info.e164 if info.valid and info.e164 else addr


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def _describe(exc: BaseException) -> str:
    """A short reason for logs and send details ("Connection refused", "bind ... refused")."""
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


__all__ = ["Link", "LinkLost", "NotBound", "SmppProvider", "SmppSettings", "SmppState"]
