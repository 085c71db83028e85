"""Decoding bytes and header words whose declared charset cannot be trusted.

Real mail lies about its charset: windows-1252 text labelled iso-8859-1 (``’``, ``€``
and ``œ`` live in the bytes 0x80–0x9F that iso-8859-1 calls control characters), UTF-8
labelled us-ascii or not labelled at all, labels that Python does not know. The rules,
as browsers do it (WHATWG Encoding): us-ascii, iso-8859-1 and windows-1252 labels are
read as windows-1252, after trying UTF-8 when the bytes are valid UTF-8; a UTF-8 label
on invalid UTF-8 falls back to windows-1252; legacy labels map to their superset.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass

_LATIN_LABELS = frozenset(
    {"us-ascii", "ascii", "ansi_x3.4-1968", "iso-8859-1", "iso8859-1", "iso_8859-1"}
    | {"latin1", "latin-1", "l1", "windows-1252", "cp1252", "x-cp1252"}
)
_UTF8_LABELS = frozenset({"utf-8", "utf8", "unicode-1-1-utf-8", "x-unknown", "unknown-8bit"})
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "iso-8859-9": "cp1254",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
}
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class Decoded:
    """Decoded text and, when the declared charset was not usable, why."""

    text: str
    warning: str | None = None


def _cp1252(data: bytes) -> str:
    """windows-1252 where defined; its five undefined bytes read as iso-8859-1."""
    text = data.decode("cp1252", errors="surrogateescape")
    return _ESCAPED_BYTE.sub(lambda m: chr(ord(m.group()) - 0xDC00), text)


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode_bytes(data: bytes, charset: str | None) -> Decoded:
    """Decode ``data`` declared as ``charset`` (None: undeclared), never raising."""
    label = (charset or "").strip().strip("\"'").lower()
    label = label.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*fr
    if not label or label in _LATIN_LABELS:
        if data.isascii():
            return Decoded(data.decode("ascii"))
        as_utf8 = _utf8(data)
        return Decoded(as_utf8 if as_utf8 is not None else _cp1252(data))
    if label in _UTF8_LABELS:
        as_utf8 = _utf8(data)
        if as_utf8 is not None:
            return Decoded(as_utf8)
        return Decoded(_cp1252(data), f"text declared {label} is not; read as windows-1252")
    codec_name = _SUPERSETS.get(label, label)
    try:
        # Python also knows "codecs" such as base64 or rot13 that are no charsets.
        if not getattr(codecs.lookup(codec_name), "_is_text_encoding", True):
            raise LookupError(codec_name)
        return Decoded(data.decode(codec_name, errors="replace"))
    except (LookupError, ValueError, UnicodeError):
        as_utf8 = _utf8(data)
        fallback = "utf-8" if as_utf8 is not None else "windows-1252"
        text = as_utf8 if as_utf8 is not None else _cp1252(data)
        return Decoded(text, f"unknown charset {label!r}; read as {fallback}")


def unescape_surrogates(value: str) -> str:
    """Turn the undecodable bytes that the ``email`` parser smuggles as surrogates into text.

    Headers with raw 8-bit bytes (no RFC 2047) are common from scripts and old clients.
    """
    if not _ESCAPED_BYTE.search(value):
        return value
    data = value.encode("utf-8", errors="surrogateescape")
    return decode_bytes(data, None).text


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    if encoding in "bB":
        padded = payload + "=" * (-len(payload) % 4)
        try:
            return base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            return None
    raw = payload.replace("_", " ").encode("ascii", errors="replace")
    return _Q_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)


def decode_words(value: str) -> str:
    """Decode the RFC 2047 encoded words in a header value; plain text passes through.

    Whitespace between adjacent encoded words is dropped (RFC 2047 section 6.2), and the
    bytes of adjacent words in one charset are joined before decoding, since some mailers
    split a multi-byte character across two words.
    """
    out: list[str] = []
    pending: bytearray = bytearray()
    pending_charset: str | None = None
    position = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset is not None:
            out.append(decode_bytes(bytes(pending), pending_charset).text)
        pending, pending_charset = bytearray(), None

    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        charset, encoding, payload = match.groups()
        data = _word_bytes(encoding, payload)
        if data is None:
            # Undecodable word: keep it as written rather than lose it.
            flush()
            out.append(between + match.group())
            position = match.end()
            continue
        adjacent = pending_charset is not None and not between.strip()
        if not adjacent or charset.lower() != pending_charset:
            flush()
            if not adjacent:
                out.append(between)
        pending.extend(data)
        pending_charset = charset.lower()
        position = match.end()
    flush()
    out.append(value[position:])
    return "".join(out)
