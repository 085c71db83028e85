"""Reading deliver_sm: delivery receipts and inbound SMS (long ones joined across parts, and
across instances, through the shared state) as the hub's normalized events."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sms.smpp.journal import MoGroup
from connectors.sms.smpp.pdu import (
    ESM_DELIVERY_RECEIPT,
    ESM_INTERMEDIATE_NOTIFICATION,
    ESM_TYPE_MASK,
    ESM_UDHI,
    STAT_WORDS,
    STATES_BY_WORD,
    MessageState,
    ShortMessage,
    Tag,
    tlv,
)
from connectors.sms.smpp.receipts import (
    network_error_code,
    parse_error_code,
    parse_receipt_text,
    parse_smpp_date,
)
from connectors.sms.smpp.settings import SmppSettings
from connectors.sms.smpp.shared_state import SharedSmppState
from connectors.sms.smpp.text import Concat, decode_text, split_udh
from hub.core.phone import parse_number
from hub.ports.sms import (
    DeliveryReason,
    DeliveryReport,
    DeliveryState,
    InboundSms,
    ProviderEvent,
)

log = logging.getLogger("smshub.smpp")


class DeliverSmReader:
    """Turns the SMSC's deliver_sm into events; storing them is the provider's job."""

    def __init__(self, name: str, settings: SmppSettings, state: SharedSmppState) -> None:
        self.name = name
        self.settings = settings
        self.state = state
        self.tz = ZoneInfo(settings.receipt_timezone)

    async def events_for(
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
        event = self.inbound_from_group(group, raw)
        return [event], lambda: self.state.finish_mo(group)

    def inbound_from_group(self, group: MoGroup, raw: dict[str, Any]) -> InboundSms:
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
