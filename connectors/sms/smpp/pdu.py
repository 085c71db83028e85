"""SMPP 3.4 wire format: PDU framing, the few PDUs an ESME needs, TLVs, GSM 03.38, UDH, receipts.

Pure functions and dataclasses only (no I/O), so every encoder can be checked by a round
trip. Text travels "unpacked": data_coding 0 carries one GSM 03.38 septet per octet (the
SMSC packs them for the air interface), with 0x1B escaping to the extension table;
data_coding 8 carries UTF-16 big-endian (UCS-2 plus surrogate pairs, which is what
handsets and SMSCs do with emoji).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hub.errors import ConnectorError

HEADER = struct.Struct(">IIII")
HEADER_SIZE = HEADER.size
# The spec sets no maximum; real PDUs stay far below this, so anything larger is a framing
# error (or garbage on the port) rather than a message worth buffering.
MAX_PDU_SIZE = 64 * 1024
RESPONSE_BIT = 0x80000000
MAX_SEQUENCE = 0x7FFFFFFF
INTERFACE_VERSION = 0x34


class PduError(ConnectorError, ValueError):
    """A PDU (or a value to put in one) that does not follow SMPP 3.4."""


class Command(enum.IntEnum):
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


class Status(enum.IntEnum):
    """command_status values of SMPP 3.4 (section 5.1.3)."""

    ROK = 0x00
    RINVMSGLEN = 0x01
    RINVCMDLEN = 0x02
    RINVCMDID = 0x03
    RINVBNDSTS = 0x04
    RALYBND = 0x05
    RINVPRTFLG = 0x06
    RINVREGDLVFLG = 0x07
    RSYSERR = 0x08
    RINVSRCADR = 0x0A
    RINVDSTADR = 0x0B
    RINVMSGID = 0x0C
    RBINDFAIL = 0x0D
    RINVPASWD = 0x0E
    RINVSYSID = 0x0F
    RCANCELFAIL = 0x11
    RREPLACEFAIL = 0x13
    RMSGQFUL = 0x14
    RINVSERTYP = 0x15
    RINVNUMDESTS = 0x33
    RINVDLNAME = 0x34
    RINVDESTFLAG = 0x40
    RINVSUBREP = 0x42
    RINVESMCLASS = 0x43
    RCNTSUBDL = 0x44
    RSUBMITFAIL = 0x45
    RINVSRCTON = 0x48
    RINVSRCNPI = 0x49
    RINVDSTTON = 0x50
    RINVDSTNPI = 0x51
    RINVSYSTYP = 0x53
    RINVREPFLAG = 0x54
    RINVNUMMSGS = 0x55
    RTHROTTLED = 0x58
    RINVSCHED = 0x61
    RINVEXPIRY = 0x62
    RINVDFTMSGID = 0x63
    RX_T_APPN = 0x64
    RX_P_APPN = 0x65
    RX_R_APPN = 0x66
    RQUERYFAIL = 0x67
    RINVOPTPARSTREAM = 0xC0
    ROPTPARNOTALLWD = 0xC1
    RINVPARLEN = 0xC2
    RMISSINGOPTPARAM = 0xC3
    RINVOPTPARAMVAL = 0xC4
    RDELIVERYFAILURE = 0xFE
    RUNKNOWNERR = 0xFF


def status_name(status: int) -> str:
    """ESME_Rxxx name of a command_status, or its hex value for vendor codes."""
    try:
        return f"ESME_{Status(status).name}"
    except ValueError:
        return f"0x{status:08X}"


class Tag(enum.IntEnum):
    """The optional parameter tags this connector reads or writes."""

    RECEIPTED_MESSAGE_ID = 0x001E
    USER_MESSAGE_REFERENCE = 0x0204
    SAR_MSG_REF_NUM = 0x020C
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    MESSAGE_STATE = 0x0427


class MessageState(enum.IntEnum):
    """Values of the message_state TLV, with the receipt text's ``stat:`` names below."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8


# The 7-character stat: words of the receipt text (SMPP 3.4 appendix B), by state.
STAT_WORDS: dict[MessageState, str] = {
    MessageState.ENROUTE: "ENROUTE",
    MessageState.DELIVERED: "DELIVRD",
    MessageState.EXPIRED: "EXPIRED",
    MessageState.DELETED: "DELETED",
    MessageState.UNDELIVERABLE: "UNDELIV",
    MessageState.ACCEPTED: "ACCEPTD",
    MessageState.UNKNOWN: "UNKNOWN",
    MessageState.REJECTED: "REJECTD",
}
STATES_BY_WORD = {word: state for state, word in STAT_WORDS.items()}

# esm_class bits: the message type (bits 5-2) and the UDH indicator (bit 6).
ESM_TYPE_MASK = 0x3C
ESM_DELIVERY_RECEIPT = 0x04
ESM_INTERMEDIATE_NOTIFICATION = 0x20
ESM_UDHI = 0x40

DATA_CODING_DEFAULT = 0x00  # the SMSC default alphabet: GSM 03.38 here
DATA_CODING_UCS2 = 0x08


# -- framing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pdu:
    """One PDU: the header fields and the undecoded body."""

    command_id: int
    status: int
    sequence: int
    body: bytes = b""

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def name(self) -> str:
        try:
            return Command(self.command_id).name.lower()
        except ValueError:
            return f"command 0x{self.command_id:08X}"

    def encode(self) -> bytes:
        if not 0 <= self.sequence <= MAX_SEQUENCE:
            raise PduError(f"sequence number {self.sequence} is out of range")
        length = HEADER_SIZE + len(self.body)
        if length > MAX_PDU_SIZE:
            raise PduError(f"PDU of {length} octets is larger than {MAX_PDU_SIZE}")
        return HEADER.pack(length, self.command_id, self.status, self.sequence) + self.body


def parse_header(header: bytes) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number) of a 16-octet header."""
    if len(header) != HEADER_SIZE:
        raise PduError(f"a PDU header is {HEADER_SIZE} octets, got {len(header)}")
    length, command_id, status, sequence = HEADER.unpack(header)
    if not HEADER_SIZE <= length <= MAX_PDU_SIZE:
        raise PduError(f"command_length {length} is out of range")
    return length, command_id, status, sequence


def decode_pdu(data: bytes) -> Pdu:
    """A whole PDU from its octets; the length in the header must match."""
    length, command_id, status, sequence = parse_header(data[:HEADER_SIZE])
    if length != len(data):
        raise PduError(f"command_length says {length} octets but the PDU has {len(data)}")
    return Pdu(command_id, status, sequence, bytes(data[HEADER_SIZE:]))


# -- field helpers ---------------------------------------------------------------------------


def c_string(value: str, max_size: int, name: str) -> bytes:
    """A C-Octet String field: ASCII plus the terminating NUL, at most max_size octets."""
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise PduError(f"{name} {value!r} must be ASCII") from None
    if b"\x00" in raw:
        raise PduError(f"{name} must not contain NUL")
    if len(raw) + 1 > max_size:
        raise PduError(f"{name} {value!r} is longer than {max_size - 1} characters")
    return raw + b"\x00"


class Reader:
    """Reads the fields of a PDU body in order; every read is bounds-checked."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def _fail(self, message: str) -> PduError:
        return PduError(f"{self.what}: {message} at offset {self.pos}")

    def c_string(self, max_size: int, name: str) -> str:
        end = self.data.find(b"\x00", self.pos, self.pos + max_size)
        if end < 0:
            raise self._fail(f"{name} is not NUL-terminated within {max_size} octets")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        # Peers put Latin-1 in addresses now and then; never fail a whole PDU over it.
        return raw.decode("latin-1")

    def u8(self, name: str) -> int:
        if self.pos >= len(self.data):
            raise self._fail(f"{name} is missing")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def octets(self, size: int, name: str) -> bytes:
        if self.pos + size > len(self.data):
            raise self._fail(f"{name} needs {size} octets, {len(self.data) - self.pos} left")
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        return raw

    def rest(self) -> bytes:
        raw = self.data[self.pos :]
        self.pos = len(self.data)
        return raw

    def at_end(self) -> bool:
        return self.pos >= len(self.data)


Tlvs = tuple[tuple[int, bytes], ...]


def encode_tlvs(tlvs: Iterable[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for tag, value in tlvs:
        if not 0 <= tag <= 0xFFFF or len(value) > 0xFFFF:
            raise PduError(f"TLV 0x{tag:04X} does not fit its tag or length field")
        out += struct.pack(">HH", tag, len(value)) + value
    return bytes(out)


def decode_tlvs(data: bytes, what: str) -> Tlvs:
    reader = Reader(data, what)
    tlvs = []
    while not reader.at_end():
        tag, size = struct.unpack(">HH", reader.octets(4, "TLV header"))
        tlvs.append((tag, reader.octets(size, f"TLV 0x{tag:04X} value")))
    return tuple(tlvs)


def tlv(tlvs: Sequence[tuple[int, bytes]], tag: int) -> bytes | None:
    """The value of the first TLV with this tag, or None."""
    for t, value in tlvs:
        if t == tag:
            return value
    return None


# -- PDUs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BindTransceiver:
    """bind_transceiver: one connection both submits and receives (SMPP 3.4 4.1.5)."""

    system_id: str
    password: str
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def encode(self) -> bytes:
        return (
            c_string(self.system_id, 16, "system_id")
            + c_string(self.password, 9, "password")
            + c_string(self.system_type, 13, "system_type")
            + bytes([self.interface_version, self.addr_ton, self.addr_npi])
            + c_string(self.address_range, 41, "address_range")
        )

    @classmethod
    def decode(cls, body: bytes) -> BindTransceiver:
        r = Reader(body, "bind_transceiver")
        return cls(
            system_id=r.c_string(16, "system_id"),
            password=r.c_string(9, "password"),
            system_type=r.c_string(13, "system_type"),
            interface_version=r.u8("interface_version"),
            addr_ton=r.u8("addr_ton"),
            addr_npi=r.u8("addr_npi"),
            address_range=r.c_string(41, "address_range"),
        )


def decode_bind_resp(body: bytes) -> str:
    """The SMSC's system_id from a bind_*_resp (the body may be empty on an error)."""
    if not body:
        return ""
    return Reader(body, "bind_resp").c_string(16, "system_id")


def decode_submit_sm_resp(body: bytes) -> str:
    """The message_id of a submit_sm_resp (absent when the status is an error)."""
    if not body:
        return ""
    return Reader(body, "submit_sm_resp").c_string(65, "message_id")


@dataclass(frozen=True)
class ShortMessage:
    """The body shared by submit_sm and deliver_sm (SMPP 3.4 4.4.1 and 4.6.1)."""

    source_addr: str = ""
    destination_addr: str = ""
    short_message: bytes = b""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    tlvs: Tlvs = field(default=())

    def encode(self) -> bytes:
        if len(self.short_message) > 254:
            raise PduError(f"short_message of {len(self.short_message)} octets is over 254")
        for name in ("schedule_delivery_time", "validity_period"):
            value = getattr(self, name)
            if value and len(value) != 16:
                raise PduError(f"{name} {value!r} must be 16 characters (or empty)")
        return (
            c_string(self.service_type, 6, "service_type")
            + bytes([self.source_addr_ton, self.source_addr_npi])
            + c_string(self.source_addr, 21, "source_addr")
            + bytes([self.dest_addr_ton, self.dest_addr_npi])
            + c_string(self.destination_addr, 21, "destination_addr")
            + bytes([self.esm_class, self.protocol_id, self.priority_flag])
            + c_string(self.schedule_delivery_time, 17, "schedule_delivery_time")
            + c_string(self.validity_period, 17, "validity_period")
            + bytes(
                [
                    self.registered_delivery,
                    self.replace_if_present_flag,
                    self.data_coding,
                    self.sm_default_msg_id,
                    len(self.short_message),
                ]
            )
            + self.short_message
            + encode_tlvs(self.tlvs)
        )

    @classmethod
    def decode(cls, body: bytes, what: str = "short message PDU") -> ShortMessage:
        r = Reader(body, what)
        service_type = r.c_string(6, "service_type")
        source_ton, source_npi = r.u8("source_addr_ton"), r.u8("source_addr_npi")
        # 21 is the 3.4 limit for submit_sm; deliver_sm allows 21 too, but some SMSCs send
        # longer alphanumeric MO senders, and the data_sm limit (65) costs nothing here.
        source_addr = r.c_string(65, "source_addr")
        dest_ton, dest_npi = r.u8("dest_addr_ton"), r.u8("dest_addr_npi")
        destination_addr = r.c_string(65, "destination_addr")
        esm_class, protocol_id, priority = r.u8("esm_class"), r.u8("protocol_id"), r.u8("prio")
        schedule = r.c_string(17, "schedule_delivery_time")
        validity = r.c_string(17, "validity_period")
        registered, replace = r.u8("registered_delivery"), r.u8("replace_if_present_flag")
        data_coding, default_id = r.u8("data_coding"), r.u8("sm_default_msg_id")
        sm_length = r.u8("sm_length")
        short_message = r.octets(sm_length, "short_message")
        tlvs = decode_tlvs(r.rest(), what)
        return cls(
            source_addr=source_addr,
            destination_addr=destination_addr,
            short_message=short_message,
            service_type=service_type,
            source_addr_ton=source_ton,
            source_addr_npi=source_npi,
            dest_addr_ton=dest_ton,
            dest_addr_npi=dest_npi,
            esm_class=esm_class,
            protocol_id=protocol_id,
            priority_flag=priority,
            schedule_delivery_time=schedule,
            validity_period=validity,
            registered_delivery=registered,
            replace_if_present_flag=replace,
            data_coding=data_coding,
            sm_default_msg_id=default_id,
            tlvs=tlvs,
        )

    def payload(self) -> bytes:
        """The message octets: short_message, or the message_payload TLV when it is empty."""
        if self.short_message:
            return self.short_message
        return tlv(self.tlvs, Tag.MESSAGE_PAYLOAD) or b""


def message_id_resp_body(message_id: str) -> bytes:
    """Body of a submit_sm_resp / deliver_sm_resp (deliver_sm_resp's message_id is unused)."""
    return c_string(message_id, 65, "message_id")


def relative_validity(seconds: float) -> str:
    """A relative validity_period ("YYMMDDhhmmss000R") for a duration in seconds."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    years, days = divmod(days, 365)
    months, days = divmod(days, 30)
    if years > 99:
        raise PduError("validity period is too long")
    return f"{years:02d}{months:02d}{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"
