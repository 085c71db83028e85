"""The SMPP provider's memory in the hub's state store, shared by every instance."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from pathlib import Path

from connectors.sms.smpp.journal import MoGroup, PartRef, SmppState, remember_recent
from connectors.sms.smpp.receipts import message_id_variants
from connectors.sms.smpp.text import Concat
from hub.ports.state import StateStore

log = logging.getLogger("smshub.smpp")


class SharedSmppState:
    """Part ids of long messages and parts of long inbound SMS, in the hub's state store, so
    that a receipt for part 2 (or the second half of an inbound SMS) resolves whichever
    instance's bind the SMSC delivers it on, and after a restart. Blocking (the provider
    calls it in worker threads), except ``remember_recent``.

    Single-part ids are kept in memory only, for a few minutes: the hub finds those
    messages by provider id, and the memory only bridges a receipt that overtakes the
    dispatcher's own bookkeeping (it also answers for long ones before the store has them).
    """

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
        remember_recent(self.recent, pid, ref)

    def remember(self, pid: str, ref: PartRef) -> None:
        """Record the provider id of one part of a long message where every instance sees it."""
        if ref.total > 1:
            left = self.receipt_window - (time.time() - ref.at)
            if left > 0:
                self.store.put(self.parts_ns, pid, ref.record(pid), ttl=left)

    def lookup(self, pid: str) -> tuple[str, PartRef] | None:
        """(the id as we know it, its part) for a receipt's id, trying hex/decimal spellings."""
        candidates = [pid, *message_id_variants(pid)]
        for candidate in candidates:
            if candidate in self.recent:
                return candidate, self.recent[candidate]
        for candidate in candidates:
            r = self.store.get(self.parts_ns, candidate)
            if isinstance(r, dict):
                return candidate, PartRef.from_record(r)
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
