"""The JSONL state file of earlier builds, and the records it shares with the state store:
which message each submitted part belongs to, and the parts of long inbound SMS so far."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.sms.smpp.receipts import message_id_variants
from connectors.sms.smpp.text import Concat


@dataclass
class PartRef:
    """What a provider message id (one submit_sm) belongs to."""

    message_id: str
    first_id: str
    index: int  # 0-based part number
    total: int
    at: float  # wall-clock time of the submit

    def record(self, pid: str) -> dict[str, Any]:
        """As the journal and the state store keep it, for provider id PID."""
        return {
            "t": "mt",
            "id": pid,
            "m": self.message_id,
            "f": self.first_id,
            "i": self.index,
            "n": self.total,
            "at": self.at,
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> PartRef:
        return cls(r["m"], r["f"], int(r["i"]), int(r["n"]), float(r["at"]))


#: Seconds a submitted part's id is kept in memory (see SmppState).
RECENT_SECONDS = 600.0


def remember_recent(recent: OrderedDict[str, PartRef], pid: str, ref: PartRef) -> None:
    """Note PID in RECENT, forgetting the ids submitted RECENT_SECONDS before it."""
    recent[pid] = ref
    recent.move_to_end(pid)
    while recent:
        oldest = next(iter(recent.values()))
        if ref.at - oldest.at < RECENT_SECONDS:
            break
        recent.popitem(last=False)


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
            self._index(r["id"], PartRef.from_record(r))
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
                out.write(json.dumps(ref.record(pid)) + "\n")
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
        remember_recent(self.recent, pid, ref)
        if ref.total > 1:
            self._index(pid, ref)
            self._append(ref.record(pid))

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
