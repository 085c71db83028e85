"""Short message text on the wire: GSM 03.38 septets (unpacked, one per octet), UCS-2, the
data_coding that says which, and the concatenation UDH of long messages. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connectors.sms.smpp.pdu import DATA_CODING_DEFAULT, DATA_CODING_UCS2, PduError
from hub.core.segments import GSM7_BASIC_TABLE, GSM7_ESCAPE, GSM7_EXTENSION_TABLE

# -- GSM 03.38 -------------------------------------------------------------------------------

# The tables are the hub's (hub.core.segments), which also decides what travels as GSM-7.
_GSM7_ENCODE = {ch: code for code, ch in enumerate(GSM7_BASIC_TABLE) if code != GSM7_ESCAPE}
_GSM7_EXT_DECODE = {code: ch for ch, code in GSM7_EXTENSION_TABLE.items()}


def gsm7_encode(text: str) -> bytes:
    """GSM 03.38 septets, one per octet (unpacked), extension characters as ESC + code."""
    out = bytearray()
    for i, ch in enumerate(text):
        code = _GSM7_ENCODE.get(ch)
        if code is not None:
            out.append(code)
            continue
        ext = GSM7_EXTENSION_TABLE.get(ch)
        if ext is None:
            raise PduError(f"character {ch!r} at position {i} is not in the GSM 7-bit alphabet")
        out += bytes([GSM7_ESCAPE, ext])
    return bytes(out)


def gsm7_decode(data: bytes) -> str:
    """Text from unpacked septets; never fails (an unknown code becomes U+FFFD)."""
    out: list[str] = []
    escaped = False
    for octet in data:
        if octet > 0x7F:
            out.append("\ufffd")
            escaped = False
        elif escaped:
            # 23.038: an undefined extension code shows the basic character instead; a
            # second ESC (reserved for a further table) shows as a space.
            if octet == GSM7_ESCAPE:
                out.append(" ")
            else:
                out.append(_GSM7_EXT_DECODE.get(octet, GSM7_BASIC_TABLE[octet]))
            escaped = False
        elif octet == GSM7_ESCAPE:
            escaped = True
        else:
            out.append(GSM7_BASIC_TABLE[octet])
    return "".join(out)


def ucs2_encode(text: str) -> bytes:
    """UTF-16 big-endian: UCS-2 for the BMP, surrogate pairs for emoji."""
    return text.encode("utf-16-be")


def encode_text(text: str, encoding: str) -> tuple[int, bytes]:
    """(data_coding, octets) for text in "GSM-7" or "UCS-2"."""
    if encoding == "GSM-7":
        return DATA_CODING_DEFAULT, gsm7_encode(text)
    if encoding == "UCS-2":
        return DATA_CODING_UCS2, ucs2_encode(text)
    raise PduError(f"unknown encoding {encoding!r}")


def decode_text(data_coding: int, data: bytes) -> str:
    """Text of a received message by its data_coding; undecodable octets become U+FFFD."""
    dcs = data_coding
    if dcs == 0x00 or 0xC0 <= dcs <= 0xDF or (dcs >= 0xF0 and not dcs & 0x04):
        return gsm7_decode(data)
    if dcs == 0x08 or 0xE0 <= dcs <= 0xEF:
        return data.decode("utf-16-be", errors="replace")
    if 0x10 <= dcs <= 0x3F:  # GSM general data coding group: bits 3-2 give the alphabet
        alphabet = (dcs >> 2) & 0x03
        if alphabet == 0:
            return gsm7_decode(data)
        if alphabet == 2:
            return data.decode("utf-16-be", errors="replace")
        return data.decode("latin-1")
    codecs = {0x01: "ascii", 0x03: "latin-1", 0x06: "iso8859-5", 0x07: "iso8859-8"}
    # Binary (0x02, 0x04, 0xF4...) and the rarer alphabets: Latin-1 loses no octet.
    return data.decode(codecs.get(dcs, "latin-1"), errors="replace")


# -- concatenation (UDH) ---------------------------------------------------------------------

IEI_CONCAT_8BIT = 0x00
IEI_CONCAT_16BIT = 0x08


@dataclass(frozen=True)
class Concat:
    """Where a part belongs: reference number, total parts and this part's 1-based number."""

    ref: int
    total: int
    seq: int


def concat_udh(ref: int, total: int, seq: int) -> bytes:
    """A UDH with the 8-bit-reference concatenation element (IEI 0x00)."""
    if not (0 <= ref <= 0xFF and 1 <= seq <= total <= 0xFF):
        raise PduError(f"bad concatenation ref={ref} total={total} seq={seq}")
    return bytes([0x05, IEI_CONCAT_8BIT, 0x03, ref, total, seq])


def split_udh(data: bytes) -> tuple[Concat | None, bytes]:
    """(concatenation info or None, payload after the UDH) of a message that has a UDH."""
    if not data:
        raise PduError("UDH indicator set but the message is empty")
    udhl = data[0]
    if 1 + udhl > len(data):
        raise PduError(f"UDH length {udhl} is longer than the message ({len(data)} octets)")
    header, payload = data[1 : 1 + udhl], data[1 + udhl :]
    concat = None
    pos = 0
    while pos < len(header):
        if pos + 2 > len(header):
            raise PduError("truncated information element in the UDH")
        iei, size = header[pos], header[pos + 1]
        value = header[pos + 2 : pos + 2 + size]
        if len(value) != size:
            raise PduError(f"UDH element 0x{iei:02X} is truncated")
        if iei == IEI_CONCAT_8BIT and size == 3:
            concat = Concat(ref=value[0], total=value[1], seq=value[2])
        elif iei == IEI_CONCAT_16BIT and size == 4:
            concat = Concat(ref=(value[0] << 8) | value[1], total=value[2], seq=value[3])
        pos += 2 + size
    if concat is not None and not 1 <= concat.seq <= concat.total:
        # 23.040: a part number of 0 or past the total means "ignore the element".
        concat = None
    return concat, payload


def concatenated_parts(
    text: str, parts: Sequence[str], encoding: str, ref: int
) -> list[tuple[int, bytes, bool]]:
    """The short_message of each part: (data_coding, octets, has UDH)."""
    if not parts:
        parts = [text]
    coded = [encode_text(part, encoding) for part in parts]
    if len(coded) == 1:
        dcs, octets = coded[0]
        return [(dcs, octets, False)]
    total = len(coded)
    return [
        (dcs, concat_udh(ref, total, i + 1) + octets, True) for i, (dcs, octets) in enumerate(coded)
    ]
