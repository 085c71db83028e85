"""SMS encoding and segment counting (GSM 03.38 7-bit default alphabet versus UCS-2).

A text goes out in GSM-7 when every character is in the basic set or the extension
table (extension characters cost an ESC septet plus their own), otherwise in UCS-2,
counted in UTF-16 code units so astral characters (emoji) cost two. One part holds
160 septets / 70 units; once concatenated, each part loses room to the UDH and holds
153 septets / 67 units. A part boundary never falls inside an escape pair or a
surrogate pair, so a part may end a unit short of its capacity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# The default alphabet in code order (0x00-0x7F); 0x1B is the escape to the extension
# table, not a character, hence the placeholder that is dropped below. 0x09 is the
# capital Ç as in the ETSI table (some old mappings wrongly used ç).
GSM7_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(GSM7_BASIC_TABLE) == 128
GSM7_ESCAPE = 0x1B
# The extension table: each character and its code after the escape.
GSM7_EXTENSION_TABLE: dict[str, int] = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

GSM7_BASIC: frozenset[str] = frozenset(GSM7_BASIC_TABLE.replace("\x1b", ""))
GSM7_EXTENSION: frozenset[str] = frozenset(GSM7_EXTENSION_TABLE)

SINGLE_GSM7 = 160
MULTI_GSM7 = 153
SINGLE_UCS2 = 70
MULTI_UCS2 = 67


@dataclass(frozen=True)
class SegmentInfo:
    """How a text travels: its encoding, part count, size and the room left in the last part."""

    encoding: str
    segments: int
    characters: int
    length: int
    remaining: int

    def to_dict(self) -> dict[str, str | int]:
        """The fields as a plain dict (for JSON)."""
        return {
            "encoding": self.encoding,
            "segments": self.segments,
            "characters": self.characters,
            "length": self.length,
            "remaining": self.remaining,
        }


_GSM7_CHARS = GSM7_BASIC | GSM7_EXTENSION


def is_gsm7(text: str) -> bool:
    """True when every character of text fits the GSM 7-bit basic set or extension table."""
    return set(text) <= _GSM7_CHARS


def _gsm7_cost(ch: str) -> int:
    return 2 if ch in GSM7_EXTENSION else 1


def _ucs2_cost(ch: str) -> int:
    # Python strings hold code points; beyond the BMP a code point is a surrogate pair.
    return 2 if ord(ch) > 0xFFFF else 1


def _plan(text: str) -> tuple[str, int, list[tuple[str, int]]]:
    """Encoding, total length and the parts as (text, length), packed greedily."""
    if is_gsm7(text):
        encoding, cost, single, multi = GSM7, _gsm7_cost, SINGLE_GSM7, MULTI_GSM7
    else:
        encoding, cost, single, multi = UCS2, _ucs2_cost, SINGLE_UCS2, MULTI_UCS2
    costs = [cost(ch) for ch in text]
    total = sum(costs)
    if not text:
        return encoding, 0, []
    if total <= single:
        return encoding, total, [(text, total)]
    parts: list[tuple[str, int]] = []
    start = 0
    used = 0
    # Characters are indivisible units here, so an escape or surrogate pair that would
    # straddle the boundary moves whole into the next part.
    for i, c in enumerate(costs):
        if used + c > multi:
            parts.append((text[start:i], used))
            start, used = i, 0
        used += c
    parts.append((text[start:], used))
    return encoding, total, parts


# Text made only of the basic set (most reminders and alerts): one septet per character, so
# its length is len(text) and no pair can straddle a boundary. One precompiled match is ~10x
# cheaper than building the set of its characters.
_GSM7_BASIC_ONLY = re.compile("[" + re.escape("".join(sorted(GSM7_BASIC))) + "]*")


def _part_lengths(text: str) -> tuple[str, int, list[int]]:
    """As ``_plan`` without building the parts' texts: counted per distinct character, and
    packed one character at a time only when a two-unit character may meet a boundary."""
    chars = set(text)
    if chars <= _GSM7_CHARS:
        encoding, single, multi = GSM7, SINGLE_GSM7, MULTI_GSM7
        wide = chars & GSM7_EXTENSION
    else:
        encoding, single, multi = UCS2, SINGLE_UCS2, MULTI_UCS2
        wide = {ch for ch in chars if ord(ch) > 0xFFFF}
    total = len(text) + sum(text.count(ch) for ch in wide)
    if not text:
        return encoding, 0, []
    if total <= single:
        return encoding, total, [total]
    if wide:
        return encoding, total, [length for _, length in _plan(text)[2]]
    return encoding, total, _fixed_parts(total, single, multi)


@lru_cache(maxsize=1024)
def _basic_count(total: int) -> SegmentInfo:
    """``count`` of a text of TOTAL basic-set characters (all such texts count alike; the
    info is immutable, so texts of one length share it)."""
    return _count(total, GSM7, total, _fixed_parts(total, SINGLE_GSM7, MULTI_GSM7))


def _fixed_parts(total: int, single: int, multi: int) -> list[int]:
    """The part lengths of TOTAL one-unit characters."""
    if total <= single:
        return [total] if total else []
    full, last = divmod(total, multi)
    return [multi] * full + ([last] if last else [])


def count(text: str) -> SegmentInfo:
    """Encoding, number of parts, length and room left for text; empty text is 0 parts."""
    if _GSM7_BASIC_ONLY.fullmatch(text):
        return _basic_count(len(text))
    encoding, total, parts = _part_lengths(text)
    return _count(len(text), encoding, total, parts)


def _count(characters: int, encoding: str, total: int, parts: list[int]) -> SegmentInfo:
    single = SINGLE_GSM7 if encoding == GSM7 else SINGLE_UCS2
    multi = MULTI_GSM7 if encoding == GSM7 else MULTI_UCS2
    if not parts:
        remaining = single
    elif len(parts) == 1:
        remaining = single - total
    else:
        # Room in the last part only: septets lost at earlier boundaries (a pair pushed
        # to the next part) cannot be used by text appended at the end.
        remaining = multi - parts[-1]
    return SegmentInfo(
        encoding=encoding,
        segments=len(parts),
        characters=characters,
        length=total,
        remaining=remaining,
    )


def split(text: str) -> list[str]:
    """The parts of text as they go on the wire; joining them gives text back."""
    return [part for part, _ in _plan(text)[2]]
