"""The SMPP 3.4 connector: pure encoders (round trips), then against a real SMSC.

The SMSC is smpp34's Rust server scripted by tests/servers/smpp_server.py, reached through a
proxy that records the PDUs and breaks the link on demand. Protocol tests drive the provider
directly with a list as event sink; end-to-end tests run a whole hub (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from connectors.sms.smpp import (
    PartRef,
    SmppProvider,
    SmppSettings,
    SmppState,
    receipts,
    status_outcome,
)
from connectors.sms.smpp import pdu as wire
from connectors.sms.smpp import text as sms_text
from connectors.sms.smpp.text import Concat
from hub.core import segments
from hub.core.timeutil import utcnow
from hub.ports.sms import (
    DeliveryReason,
    DeliveryReport,
    DeliveryState,
    InboundSms,
    OutgoingSms,
    ProviderContext,
    ProviderEvent,
    SendOutcome,
)
from hub.ports.state import MemoryStateStore, StateStore
from hub.sending import submit as sending
from hub.store.db import session_scope
from hub.store.models import InboundMessage, Message, MessageEvent
from tests.conftest import MakeHub, make_config, require_server
from tests.servers.smpp_server import IMPORT_ERROR, LinkProxy, Smsc

GSM_CHARS = [c for c in segments.GSM7_BASIC_TABLE if c != "\x1b"] + list(
    segments.GSM7_EXTENSION_TABLE
)
UCS2_EXTRA = ["ç", "ж", "中", "😀", "🏽", "\u2713", "\U0001f1eb"]
gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=500)
any_text = st.text(alphabet=st.sampled_from(GSM_CHARS + UCS2_EXTRA), max_size=400)


# -- pure encoders ---------------------------------------------------------------------------


@given(gsm_text)
def test_gsm7_unpacked_round_trip_and_septet_count(text):
    octets = sms_text.gsm7_encode(text)
    assert sms_text.gsm7_decode(octets) == text
    assert len(octets) == segments.count(text).length
    assert all(o < 0x80 for o in octets)


@given(gsm_text)
def test_gsm7_agrees_with_an_independent_codec(text):
    if IMPORT_ERROR is not None:
        require_server("gsm0338 (independent GSM 03.38 codec)", str(IMPORT_ERROR))
    assert sms_text.gsm7_encode(text) == text.encode("gsm03.38")


def test_gsm7_refuses_characters_outside_the_alphabet_and_decodes_leniently():
    with pytest.raises(wire.PduError, match="position 1"):
        sms_text.gsm7_encode("aç")
    # 23.038: unknown extension code -> the basic character; ESC ESC -> space; 8-bit -> U+FFFD
    assert sms_text.gsm7_decode(bytes([0x1B, 0x41, 0x1B, 0x1B, 0x80])) == "A \ufffd"
    assert sms_text.gsm7_decode(bytes([0x1B, 0x65, 0x09])) == "€Ç"


@given(any_text, st.integers(0, 255))
def test_udh_split_and_reassembly_give_the_text_back(text, ref):
    info = segments.count(text)
    parts = sms_text.concatenated_parts(text, segments.split(text), info.encoding, ref)
    assert len(parts) == max(1, info.segments)
    expected = segments.split(text) or [""]
    payloads = []
    for i, (dcs, octets, has_udh) in enumerate(parts, 1):
        assert dcs == (0 if info.encoding == segments.GSM7 else 8)
        assert len(octets) <= (160 if dcs == 0 else 140)
        if has_udh:
            concat, payload = sms_text.split_udh(octets)
            assert concat == Concat(ref, len(parts), i)
            assert len(payload) <= (153 if dcs == 0 else 134)
        else:
            payload = octets
        # every part decodes on its own: no escape or surrogate pair is cut
        assert sms_text.decode_text(dcs, payload) == expected[i - 1]
        payloads.append(payload)
    assert sms_text.decode_text(parts[0][0], b"".join(payloads)) == text


def test_udh_parsing_knows_16_bit_references_and_rejects_bad_lengths():
    concat, rest = sms_text.split_udh(bytes([6, 0x08, 4, 0x12, 0x34, 3, 2]) + b"xy")
    assert (concat, rest) == (Concat(0x1234, 3, 2), b"xy")
    with pytest.raises(wire.PduError):
        sms_text.split_udh(bytes([9, 0, 3, 1, 2, 1]))
    assert sms_text.split_udh(bytes([5, 0, 3, 1, 2, 0]) + b"z") == (None, b"z")  # seq 0: ignore


addr = st.text(alphabet=st.sampled_from("0123456789+ABCxyz "), max_size=20)
tlv_list = st.lists(st.tuples(st.integers(0x1400, 0x3FFF), st.binary(max_size=20)), max_size=3)


@settings(max_examples=50)  # each example also runs smpp34's decoder
@given(
    source=addr,
    dest=addr,
    message=st.binary(max_size=254),
    esm=st.integers(0, 255),
    dcs=st.integers(0, 255),
    registered=st.integers(0, 1),
    tlvs=tlv_list,
)
def test_short_message_pdu_round_trip_and_independent_decoder(
    source, dest, message, esm, dcs, registered, tlvs
):
    sm = wire.ShortMessage(
        source_addr=source,
        destination_addr=dest,
        short_message=message,
        source_addr_ton=5,
        dest_addr_ton=1,
        dest_addr_npi=1,
        esm_class=esm,
        registered_delivery=registered,
        data_coding=dcs,
        validity_period="000002000000000R",
        tlvs=tuple(tlvs),
    )
    pdu = wire.Pdu(wire.Command.SUBMIT_SM, 0, 7, sm.encode())
    data = pdu.encode()
    assert wire.decode_pdu(data) == pdu
    assert wire.ShortMessage.decode(pdu.body) == sm
    if IMPORT_ERROR is None:
        import smpp34

        theirs = smpp34.decode(data)
        assert isinstance(theirs, smpp34.SubmitSm)
        assert (theirs.source_addr, theirs.destination_addr) == (source, dest)
        assert (theirs.esm_class, theirs.data_coding, theirs.short_message) == (esm, dcs, message)
        assert [(t.tag, t.value) for t in theirs.tlvs] == tlvs


def test_framing_rejects_bad_lengths_and_fields():
    with pytest.raises(wire.PduError, match="out of range"):
        wire.parse_header(wire.HEADER.pack(8, 0x15, 0, 1))
    with pytest.raises(wire.PduError, match="says 20"):
        wire.decode_pdu(wire.HEADER.pack(20, 0x15, 0, 1))
    with pytest.raises(wire.PduError, match="ASCII"):
        wire.ShortMessage(source_addr="Café").encode()
    with pytest.raises(wire.PduError, match="longer than 20"):
        wire.ShortMessage(destination_addr="1" * 21).encode()
    with pytest.raises(wire.PduError, match="over 254"):
        wire.ShortMessage(short_message=b"x" * 255).encode()
    with pytest.raises(wire.PduError, match="missing at offset 7"):
        wire.ShortMessage.decode(b"\x00\x01\x01123\x00")
    bind = wire.BindTransceiver("smshub", "s3cret", "HUB")
    assert wire.BindTransceiver.decode(bind.encode()) == bind
    with pytest.raises(wire.PduError, match="password"):
        wire.BindTransceiver("smshub", "far-too-long").encode()


@given(
    mid=st.text(alphabet=st.sampled_from("0123456789abcdefXYZ-_"), min_size=1, max_size=40),
    stat=st.sampled_from(sorted(wire.STATES_BY_WORD)),
    err=st.from_regex(r"[0-9]{3}", fullmatch=True),
    text=st.text(alphabet=st.characters(codec="ascii"), max_size=20),
)
def test_receipt_text_round_trip(mid, stat, err, text):
    fields = receipts.parse_receipt_text(
        receipts.format_receipt_text(mid, stat, err=err, submit_date="2401151200", text=text)
    )
    assert (fields["id"], fields["stat"], fields["err"]) == (mid, stat, err)
    assert fields["submit date"] == "2401151200"
    assert fields["text"] == text[:20]


def test_receipt_parsing_tolerates_real_world_variants():
    fields = receipts.parse_receipt_text(
        "id:0A1B2C sub:001 dlvrd:000 submit_date:2401151200 done_date:240115120133 "
        "stat:UNDELIV err:001 Text:stat:DELIVRD id:fake"
    )
    assert fields["id"] == "0A1B2C"
    assert fields["stat"] == "UNDELIV"
    assert fields["done date"] == "240115120133"
    assert fields["text"] == "stat:DELIVRD id:fake"
    when = receipts.parse_smpp_date(fields["done date"], UTC)
    assert when is not None and (when.hour, when.second) == (12, 33)
    # receipts in decimal for submit_sm_resp ids in hex, and the other way round
    assert {"3039", "74565"} <= set(receipts.message_id_variants("12345"))


def test_relative_validity_period():
    assert wire.relative_validity(48 * 3600) == "000002000000000R"
    assert wire.relative_validity(90) == "000000000130000R"


def test_state_file_keeps_parts_and_inbound_fragments_across_restarts(tmp_path):
    path = tmp_path / "state.jsonl"
    state = SmppState(path, receipt_window=3600, mo_timeout=3600)
    state.load()
    now = time.time()
    for i, pid in enumerate(["p1", "p2", "p3"]):
        state.remember(pid, PartRef("ours", "p1", i, 3, now))
    state.remember("old", PartRef("older", "old", 0, 2, now - 7200))
    state.remember("single", PartRef("one", "single", 0, 1, now))
    assert state.set_part_state("p1", "DELIVRD") == ["DELIVRD", None, None]
    state.add_mo_part("+33612345678", "+33700000000", Concat(9, 2, 1), 0, b"abc")
    state.close()

    again = SmppState(path, receipt_window=3600, mo_timeout=3600)
    again.load()
    assert again.lookup("p3") == ("p3", PartRef("ours", "p1", 2, 3, now))
    assert again.lookup("old") is None  # past the receipt window
    assert again.lookup("single") is None  # single parts live in memory only
    assert again.set_part_state("p2", "DELIVRD") == ["DELIVRD", "DELIVRD", None]
    group = again.add_mo_part("+33612345678", "+33700000000", Concat(9, 2, 2), 0, b"def")
    assert group is not None and sorted(group.parts) == [1, 2]
    again.finish_mo(group)
    # the SMSC delivering the last part again (our ack was lost) adds nothing
    assert again.add_mo_part("+33612345678", "+33700000000", Concat(9, 2, 2), 0, b"def") is None
    again.close()


# -- against the SMSC ------------------------------------------------------------------------


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    if IMPORT_ERROR is not None:
        require_server("the SMPP test SMSC (PyPI smpp34 + gsm0338)", str(IMPORT_ERROR))
    server = Smsc()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(smsc: Smsc) -> AsyncIterator[LinkProxy]:
    link = LinkProxy(smsc.port)
    await link.start()
    yield link
    await link.stop()


def smpp_section(port: int, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    password = tmp_path / "smpp-password"
    password.write_text("s3cret\n")
    return {
        "type": "smpp",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "smshub",
        "password_file": str(password),
        "system_type": "HUB",
        "response_timeout": 1.0,
        "connect_timeout": 1.0,
        "reconnect_delay": 0.05,
        "reconnect_max_delay": 0.2,
        "throttle_delay": 0.05,
        "throttle_max_delay": 0.1,
        "part_retry_seconds": 1.0,
        "region": "FR",
        **overrides,
    }


class Sink:
    """An event sink that keeps what it got (and can be told to fail or wait)."""

    def __init__(self) -> None:
        self.events: list[ProviderEvent] = []
        self.fail = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, events: Sequence[ProviderEvent]) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise RuntimeError("database is down")
        self.events.extend(events)


# The hub's state store of each test (by its tmp_path): a provider started again in the
# same test finds what the previous one stored, as it would in the database.
_STORES: dict[Path, StateStore] = {}


@asynccontextmanager
async def provider_on(
    port: int, tmp_path: Path, store: StateStore | None = None, **overrides: Any
) -> AsyncIterator[tuple[SmppProvider, Sink]]:
    section = smpp_section(port, tmp_path, **overrides)
    ctx = ProviderContext(
        name="smpp",
        public_url="http://hub.test",
        data_dir=tmp_path,
        store=store or _STORES.setdefault(tmp_path, MemoryStateStore()),
    )
    provider = SmppProvider(SmppSettings.model_validate(section), ctx)
    sink = Sink()
    provider.events = sink
    await provider.start()
    try:
        yield provider, sink
    finally:
        await provider.close()


def sms(text: str, to: str = "+33612345678", mid: str = "m1", sender: str | None = None):
    info = segments.count(text)
    return OutgoingSms(mid, to, text, sender, info.encoding, info.segments, f"{mid}.0")


async def test_binds_as_transceiver_keeps_alive_and_unbinds_on_close(smsc, proxy, tmp_path):
    async with provider_on(proxy.port, tmp_path, enquire_link_interval=0.1) as (provider, _):
        assert provider.bound and provider.smsc_system_id == "SMSCSIM"
        bind = await proxy.wait_seen(lambda s: s.command_id == wire.Command.BIND_TRANSCEIVER)
        assert wire.BindTransceiver.decode(bind.body) == wire.BindTransceiver(
            "smshub", "s3cret", "HUB", 0x34
        )
        await smsc.wait_for(lambda: smsc.bound_system_ids == ["smshub"])
        # our keep-alive, answered by the SMSC
        probe = await proxy.wait_seen(
            lambda s: s.direction == "up" and s.command_id == wire.Command.ENQUIRE_LINK
        )
        await proxy.wait_seen(
            lambda s: (
                s.command_id == wire.Command.ENQUIRE_LINK_RESP and s.sequence == probe.sequence
            )
        )
        # the SMSC's keep-alive, answered by us
        proxy.inject_to_client(wire.Command.ENQUIRE_LINK, 0x7FFF0001)
        answer = await proxy.wait_seen(lambda s: s.sequence == 0x7FFF0001 and s.direction == "up")
        assert (answer.command_id, answer.status) == (wire.Command.ENQUIRE_LINK_RESP, 0)
        # a request we do not support gets generic_nack, the link stays up
        proxy.inject_to_client(wire.Command.QUERY_SM, 0x7FFF0002, b"x\x00\x00\x00\x00")
        nack = await proxy.wait_seen(lambda s: s.sequence == 0x7FFF0002 and s.direction == "up")
        assert (nack.command_id, nack.status) == (wire.Command.GENERIC_NACK, wire.Status.RINVCMDID)
        assert provider.bound
    unbind = await proxy.wait_seen(lambda s: s.command_id == wire.Command.UNBIND)
    assert unbind.direction == "up"
    # (smpp34 answers unbind by closing the connection rather than with unbind_resp; the
    # provider takes either as the end of the session.)
    assert provider.link is None and not provider.bound


async def test_window_limits_submits_in_flight(smsc, proxy, tmp_path):
    async with provider_on(proxy.port, tmp_path, window=4) as (provider, _):
        smsc.hold = True
        sends = [asyncio.create_task(provider.send(sms(f"n°{i}", mid=f"m{i}"))) for i in range(9)]
        await smsc.wait_for(lambda: len(smsc.held) >= 4)
        # Give an over-eager client the chance to send a fifth one (one short wait, no loop).
        await asyncio.sleep(0.1)
        assert smsc.max_held == 4
        smsc.release()  # answers those four and stops holding: the other five follow
        results = await asyncio.gather(*sends)
        assert [r.outcome for r in results] == [SendOutcome.ACCEPTED] * 9
        assert smsc.max_held == 4
        ids = [r.provider_message_id for r in results]
        assert len(set(ids)) == 9 and set(ids) == {s.message_id for s in smsc.submits}


async def test_receipt_is_acknowledged_only_after_the_sink_stored_it(smsc, proxy, tmp_path):
    async with provider_on(proxy.port, tmp_path) as (provider, sink):
        result = await provider.send(sms("hello"))
        sink.gate = asyncio.Event()
        receipt = asyncio.create_task(smsc.send_receipt(result.provider_message_id))
        await asyncio.wait_for(sink.entered.wait(), 5)
        assert not any(s.command_id == wire.Command.DELIVER_SM_RESP for s in proxy.seen)
        assert not receipt.done()
        sink.gate.set()
        assert await receipt == 0
        [report] = sink.events
        assert isinstance(report, DeliveryReport)
        assert (report.state, report.message_id, report.provider_message_id) == (
            DeliveryState.DELIVERED,
            "m1",
            result.provider_message_id,
        )
        # a sink that fails: temporary error, so the SMSC delivers it again
        sink.gate, sink.fail = None, 1
        assert await smsc.send_receipt(result.provider_message_id) == wire.Status.RX_T_APPN
        assert await smsc.send_receipt(result.provider_message_id) == 0
        assert [e.event_key for e in sink.events] == [report.event_key] * 2  # same key: stored once


async def test_receipt_states_and_error_codes_map_to_reasons(smsc, proxy, tmp_path):
    async with provider_on(proxy.port, tmp_path, network_error_errors=[27]) as (provider, sink):
        ids = []
        for i in range(5):
            ids.append((await provider.send(sms(f"t{i}", mid=f"m{i}"))).provider_message_id)
        await smsc.send_receipt(ids[0], "UNDELIV", err="001")
        await smsc.send_receipt(ids[1], "UNDELIV", err="027", with_tlvs=False)
        await smsc.send_receipt(ids[2], "EXPIRED")
        await smsc.send_receipt(ids[3], "REJECTD", err="099")
        await smsc.send_receipt(ids[4], "ENROUTE")
        await smsc.send_receipt("not-ours", "DELIVRD")
        got = [
            (e.message_id, e.state, e.reason) for e in sink.events if isinstance(e, DeliveryReport)
        ]
        assert got == [
            ("m0", DeliveryState.UNDELIVERED, DeliveryReason.INVALID_NUMBER),
            ("m1", DeliveryState.UNDELIVERED, DeliveryReason.NETWORK_ERROR),
            ("m2", DeliveryState.UNDELIVERED, DeliveryReason.EXPIRED),
            ("m3", DeliveryState.UNDELIVERED, DeliveryReason.OTHER),
            ("m4", DeliveryState.PENDING, None),
            (None, DeliveryState.DELIVERED, None),
        ]
        assert sink.events[-1].provider_message_id == "not-ours"  # type: ignore[union-attr]
        assert sink.events[0].occurred_at is not None  # type: ignore[union-attr]


async def test_long_message_receipts_survive_a_restart(smsc, proxy, tmp_path):
    text = "x" * 152 + "€" + "y" * 150 + "[" + "z" * 60
    async with provider_on(proxy.port, tmp_path) as (provider, sink):
        result = await provider.send(sms(text, mid="long"))
        [received] = smsc.received()
        assert received.text == text and len(received.parts) == 3
        assert result.provider_message_id == received.message_ids[0]
        await smsc.send_receipt(received.message_ids[0])
        assert sink.events == []
    # The SMSC has seen the first session unbind: else a receipt could still go to it (it
    # answered ESME_RSYSERR once, on a loaded machine), not to the restarted provider's.
    await smsc.wait_for(lambda: not smsc.sessions)
    async with provider_on(proxy.port, tmp_path) as (provider, sink):
        await smsc.send_receipt(received.message_ids[2])
        assert sink.events == []
        await smsc.send_receipt(received.message_ids[1])
        [report] = sink.events
        assert isinstance(report, DeliveryReport)
        assert (report.state, report.message_id, report.provider_message_id) == (
            DeliveryState.DELIVERED,
            "long",
            received.message_ids[0],
        )


async def test_half_open_link_is_detected_and_replaced(smsc, proxy, tmp_path):
    overrides = {"enquire_link_interval": 0.1, "response_timeout": 0.3}
    async with provider_on(proxy.port, tmp_path, **overrides) as (provider, _):
        link = provider.link
        assert link is not None
        proxy.stalled = True  # bytes go nowhere, nobody closes anything
        await asyncio.wait_for(link.closed.wait(), 3)
        assert "enquire_link" in link.close_reason
        proxy.stalled = False
        proxy.cut()
        await provider.wait_bound(3)
        assert provider.binds == 2
        assert (await provider.send(sms("back"))).outcome == SendOutcome.ACCEPTED


async def test_outage_and_refused_bind_make_sends_fail_fast_with_the_reason(tmp_path):
    from tests.servers._util import free_port

    # Nothing listens: the outage must not make send() wait.
    async with provider_on(free_port(), tmp_path) as (provider, _):
        started = time.monotonic()
        result = await provider.send(sms("hi"))
        assert time.monotonic() - started < 0.2
        assert result.outcome == SendOutcome.TRANSIENT
        assert "not bound" in result.detail and "Connection refused" in result.detail

    # An SMSC that refuses our password: the reason reaches the message's detail.
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length, _, _, sequence = wire.parse_header(await reader.readexactly(16))
        await reader.readexactly(length - 16)
        resp = wire.Pdu(wire.Command.BIND_TRANSCEIVER_RESP, wire.Status.RINVPASWD, sequence)
        writer.write(resp.encode())
        await reader.read()  # until the provider hangs up
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        async with provider_on(port, tmp_path) as (provider, _):
            result = await provider.send(sms("hi"))
            assert result.outcome == SendOutcome.TRANSIENT
            assert "bind_transceiver as 'smshub' refused: ESME_RINVPASWD" in result.detail
    finally:
        server.close()


async def test_later_part_is_retried_through_throttling(smsc, proxy, tmp_path):
    text = "Bonjour, " * 30
    async with provider_on(proxy.port, tmp_path, throttle_delay=0.05) as (provider, _):
        smsc.script = [0, wire.Status.RTHROTTLED]
        result = await provider.send(sms(text, mid="long"))
        assert result.outcome == SendOutcome.ACCEPTED
        [received] = smsc.received()
        assert received.text == text
        assert result.provider_message_id == received.message_ids[0]


async def test_link_lost_with_a_submit_in_flight_is_unknown_not_resent(smsc, proxy, tmp_path):
    async with provider_on(proxy.port, tmp_path) as (provider, _):
        smsc.hold = True
        sending_it = asyncio.create_task(provider.send(sms("maybe")))
        await smsc.wait_for(lambda: len(smsc.held) == 1)
        proxy.cut()  # the SMSC got it, its answer is lost with the link
        result = await sending_it
        assert result.outcome == SendOutcome.UNKNOWN
        assert "may have taken it" in result.detail


async def test_incomplete_inbound_sms_is_stored_after_the_timeout(smsc, proxy, tmp_path):
    overrides = {"mo_concat_timeout": 0.2, "enquire_link_interval": 0.05}
    async with provider_on(proxy.port, tmp_path, **overrides) as (provider, sink):
        got = asyncio.Event()
        store = provider.events

        async def remember(events: Sequence[ProviderEvent]) -> None:
            assert store is not None
            await store(events)
            got.set()

        provider.events = remember
        text = "a" * 150 + "b" * 150 + "c" * 10
        assert await smsc.send_mo("33612345678", "33700000000", text, part_octets=150, order=[0, 2])
        await asyncio.wait_for(got.wait(), 3)
        [inbound] = sink.events
        assert isinstance(inbound, InboundSms)
        assert inbound.text == "a" * 150 + "[…]" + "c" * 10
        assert inbound.raw["incomplete"] is True


async def test_command_status_codes_map_to_outcomes(smsc, proxy, tmp_path):
    overrides = {"throttle_delay": 30.0, "invalid_number_statuses": [0x0A]}
    async with provider_on(proxy.port, tmp_path, **overrides) as (provider, _):
        smsc.script = [
            wire.Status.RINVDSTADR,
            wire.Status.RINVSRCADR,
            wire.Status.RINVESMCLASS,
            wire.Status.RSYSERR,
            wire.Status.RMSGQFUL,
        ]
        got = []
        for i in range(6):
            result = await provider.send(sms("x", mid=f"m{i}"))
            got.append((result.outcome, result.reason, result.detail.split(";")[0]))
        assert got == [
            (SendOutcome.PERMANENT, "invalid_number", "ESME_RINVDSTADR"),
            (SendOutcome.PERMANENT, "invalid_number", "ESME_RINVSRCADR"),  # configured
            (SendOutcome.PERMANENT, "other", "ESME_RINVESMCLASS"),
            (SendOutcome.TRANSIENT, None, "ESME_RSYSERR"),
            (SendOutcome.TRANSIENT, None, "ESME_RMSGQFUL"),
            # paused after the SMSC's "queue full": refused here, nothing goes out
            (SendOutcome.TRANSIENT, None, "the SMSC is throttling us"),
        ]
        assert smsc.submits == [] and smsc.script == []
    # a field SMPP cannot carry fails the message before anything goes out
    async with provider_on(proxy.port, tmp_path) as (provider, _):
        bad = await provider.send(sms("a" * 200, sender="Café"))
        assert (bad.outcome, bad.reason) == (SendOutcome.PERMANENT, "other")
        assert "ASCII" in bad.detail
        assert smsc.submits == []


def test_vendor_status_codes_are_transient_unless_configured():
    config = SmppSettings(
        type="smpp", host="smsc.test", system_id="smshub", permanent_statuses=[0x401]
    )
    assert status_outcome(0x400, config) == (SendOutcome.TRANSIENT, None)
    assert status_outcome(0x401, config) == (SendOutcome.PERMANENT, DeliveryReason.OTHER)
    assert status_outcome(wire.Status.RTHROTTLED, config) == (SendOutcome.TRANSIENT, None)
    assert status_outcome(wire.Status.RINVDSTADR, config) == (
        SendOutcome.PERMANENT,
        DeliveryReason.INVALID_NUMBER,
    )


# -- end to end through the hub --------------------------------------------------------------


@asynccontextmanager
async def smpp_hub(
    make_hub: MakeHub, db_url, tmp_path, engine, port, **overrides: Any
) -> AsyncIterator[Any]:

    config = make_config(
        db_url,
        tmp_path,
        providers={"smpp": smpp_section(port, tmp_path, **overrides)},
        routing={"default": ["smpp"]},
        # retries wait for the test (make_due), so a drain never re-sends on its own
        dispatcher={"retry_backoff_seconds": 60.0},
    )
    hub = await make_hub(config=config, start=False)
    hub.providers["smpp"].events = hub.handle_events  # type: ignore[attr-defined]
    await hub.start(background=False)
    try:
        yield hub
    finally:
        await hub.stop()


def submit(hub: Any, text: str, *numbers: str, sender: str | None = None) -> list[str]:
    result = sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(
            account="acme", recipients=list(numbers or ["0612345678"]), text=text, sender=sender
        ),
    )
    return [r.message_id for r in result.recipients if r.message_id]


def message(engine: Any, mid: str) -> Message:
    with session_scope(engine) as s:
        found = s.get(Message, mid)
        assert found is not None
        s.expunge(found)
        return found


def event_statuses(engine: Any, mid: str) -> list[str]:
    with session_scope(engine) as s:
        rows = s.exec(
            select(MessageEvent.status)
            .where(MessageEvent.message_id == mid)
            .order_by(col(MessageEvent.id))
        ).all()
    return list(rows)


def make_due(engine: Any, mid: str) -> None:
    with session_scope(engine) as s:
        row = s.get(Message, mid)
        assert row is not None
        row.due_at = utcnow()
        s.add(row)


async def test_gsm7_and_ucs2_messages_are_sent_and_receipts_deliver_them(
    db_url, tmp_path, engine, account, smsc, proxy, make_hub
):
    gsm = "Rdv lundi 10h {salle B} ~ 5€ @ Dr Müller"
    ucs2 = "Merci 😀 à bientôt ✓ — Зоя"
    async with smpp_hub(make_hub, db_url, tmp_path, engine, proxy.port) as hub:
        [gsm_id] = submit(hub, gsm, sender="Clinique")
        [ucs2_id] = submit(hub, ucs2, "+41791234567")
        await hub.dispatcher.drain()
        subs = await smsc.wait_submits(2)
        by_dest = {s.destination_addr: s for s in subs}
        first, second = by_dest["33612345678"], by_dest["41791234567"]
        assert (first.data_coding, first.esm_class, first.registered_delivery) == (0, 0, 1)
        assert (first.dest_addr_ton, first.dest_addr_npi) == (1, 1)
        assert (first.source_addr, first.source_addr_ton) == ("Clinique", 5)
        assert (second.data_coding, second.esm_class, second.registered_delivery) == (8, 0, 1)
        assert sorted(r.text for r in smsc.received()) == sorted([gsm, ucs2])
        sent = message(engine, gsm_id)
        assert (sent.status, sent.provider, sent.provider_message_id) == (
            "sent",
            "smpp",
            first.message_id,
        )
        assert message(engine, ucs2_id).provider_message_id == second.message_id
        assert await smsc.send_receipt(first.message_id) == 0
        # deliver_sm_resp came after the hub stored it: no waiting needed here
        assert message(engine, gsm_id).status == "delivered"
        assert event_statuses(engine, gsm_id) == ["sent", "delivered"]
        assert await smsc.send_receipt(second.message_id, "EXPIRED") == 0
        expired = message(engine, ucs2_id)
        assert (expired.status, expired.reason) == ("undelivered", "expired")


async def test_long_messages_are_reassembled_and_delivered_when_all_parts_are(
    db_url, tmp_path, engine, account, smsc, proxy, make_hub
):
    # An escape pair (€, [) right at the 153-septet boundaries must move whole.
    text = "a" * 152 + "€" + "b" * 150 + "[" + "c" * 60
    async with smpp_hub(make_hub, db_url, tmp_path, engine, proxy.port) as hub:
        [mid] = submit(hub, text)
        [other] = submit(hub, "word " * 40, "0698765432")
        await hub.dispatcher.drain()
        await smsc.wait_submits(5)
        received = {r.destination_addr: r for r in smsc.received()}
        three, two = received["33612345678"], received["33698765432"]
        assert three.text == text
        assert [p.udh[1:] if p.udh else None for p in three.parts] == [(3, 1), (3, 2), (3, 3)]
        assert all(p.esm_class == 0x40 and p.registered_delivery == 1 for p in three.parts)
        first, second, third = three.message_ids
        assert message(engine, mid).provider_message_id == first
        assert await smsc.send_receipt(third) == 0
        assert await smsc.send_receipt(first) == 0
        assert message(engine, mid).status == "sent"
        assert await smsc.send_receipt(second) == 0
        assert message(engine, mid).status == "delivered"
        # one part not delivered: the whole message is not
        await smsc.send_receipt(two.message_ids[0])
        await smsc.send_receipt(two.message_ids[1], "UNDELIV", err="001")
        failed = message(engine, other)
        assert (failed.status, failed.reason) == ("undelivered", "invalid_number")
        assert "part 2/2" in (failed.detail or "")


async def test_inbound_sms_single_and_concatenated_are_stored(
    db_url, tmp_path, engine, account, smsc, proxy, make_hub
):
    async with smpp_hub(make_hub, db_url, tmp_path, engine, proxy.port) as hub:
        [mid] = submit(hub, "Votre rdv est demain. Répondez OUI ou NON")
        await hub.dispatcher.drain()
        await smsc.wait_submits(1)
        assert await smsc.send_mo("33612345678", "33700000000", "OUI") == [0]
        # Cut in the middle of an emoji's surrogate pair, parts out of order.
        long_ucs2 = "Oui merci 😀 " * 12
        statuses = await smsc.send_mo(
            "33612345678", "33700000000", long_ucs2, part_octets=134, order=[1, 0, 2]
        )
        assert statuses == [0, 0, 0]
        # GSM, cut between an escape and its character.
        long_gsm = "x" * 152 + "€" + "y" * 40
        assert await smsc.send_mo("33612345678", "33700000000", long_gsm, part_octets=153, ref=7)
        with session_scope(engine) as s:
            rows = s.exec(select(InboundMessage).order_by(col(InboundMessage.id))).all()
            got = [(r.sender, r.recipient, r.text, r.reply_to_message_id) for r in rows]
        assert got == [
            ("+33612345678", "+33700000000", "OUI", mid),
            ("+33612345678", "+33700000000", long_ucs2, mid),
            ("+33612345678", "+33700000000", long_gsm, mid),
        ]


async def test_throttling_is_retried_later_and_invalid_number_fails_for_good(
    db_url, tmp_path, engine, account, smsc, proxy, make_hub
):
    # No pause here (the pause itself is checked above): the retry is the dispatcher's.
    async with smpp_hub(make_hub, db_url, tmp_path, engine, proxy.port, throttle_delay=0.0) as hub:
        smsc.script = [wire.Status.RTHROTTLED]
        [mid] = submit(hub, "bonjour")
        await hub.dispatcher.drain()
        queued = message(engine, mid)
        assert (queued.status, queued.attempts) == ("queued", 1)
        assert "ESME_RTHROTTLED" in (queued.detail or "")
        assert smsc.submits == []
        make_due(engine, mid)
        await hub.dispatcher.drain()
        assert message(engine, mid).status == "sent"
        assert [r.text for r in smsc.received()] == ["bonjour"]

        smsc.script = [wire.Status.RINVDSTADR]
        [bad] = submit(hub, "x", "0698765432")
        await hub.dispatcher.drain()
        failed = message(engine, bad)
        assert (failed.status, failed.reason) == ("failed", "invalid_number")
        assert "ESME_RINVDSTADR" in (failed.detail or "")


async def test_connection_loss_fails_fast_then_reconnects_and_continues(
    db_url, tmp_path, engine, account, smsc, proxy, make_hub
):
    async with smpp_hub(make_hub, db_url, tmp_path, engine, proxy.port) as hub:
        provider = hub.providers["smpp"]
        [first] = submit(hub, "avant")
        await hub.dispatcher.drain()
        assert message(engine, first).status == "sent"
        link = provider.link
        proxy.refusing = True
        proxy.cut()
        await asyncio.wait_for(link.closed.wait(), 3)
        # send() does not wait for the link: the dispatcher can fail over at once
        started = time.monotonic()
        down = await provider.send(sms("probe", mid="probe"))
        assert time.monotonic() - started < 0.2
        assert down.outcome == SendOutcome.TRANSIENT
        [second] = submit(hub, "pendant")
        await hub.dispatcher.drain()
        during = message(engine, second)
        assert during.status == "queued" and "not bound" in (during.detail or "")
        proxy.refusing = False
        await provider.wait_bound(5)
        make_due(engine, second)
        await hub.dispatcher.drain()
        assert message(engine, second).status == "sent"
        assert [r.text for r in smsc.received()] == ["avant", "pendant"]
        assert smsc.bound_system_ids == ["smshub", "smshub"]
        # receipts flow on the new link too
        sub = smsc.submits[-1]
        assert await smsc.send_receipt(sub.message_id) == 0
        assert message(engine, second).status == "delivered"
