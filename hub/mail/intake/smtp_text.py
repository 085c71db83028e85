"""SMTP reply text: whatever a reply quotes (a subject, a file name, an address) goes out as
one line of printable ASCII.

A server that does not offer SMTPUTF8 may answer in ASCII only (RFC 5321 section 2.4), and
aiosmtpd turns a reply it cannot encode into ``500 Error: (UnicodeEncodeError)``: for a mail
whose SMS were already committed, the sender's server then bounced a mail that was sent.
Every reply builder goes through ``smtp_line``; accents are dropped (``déplacé`` reads
``deplace``), anything else that is not printable ASCII is escaped (``\\u200b``, ``\\x00``),
so the sender still sees which character was meant and no control character reaches the
client's terminal or our logs raw.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# RFC 5321 section 4.5.3.1.5: a reply line is at most 512 octets with its CRLF.
MAX_LINE = 510

_PRINTABLE = re.compile(r"[ -~]*")
# Characters NFKD does not decompose but that have an obvious ASCII reading in the
# languages the hub's users write (French first).
_READINGS = {
    "œ": "oe",
    "Œ": "OE",
    "æ": "ae",
    "Æ": "AE",
    "ß": "ss",
    "ø": "o",
    "Ø": "O",
    "đ": "d",
    "Đ": "D",
    "ł": "l",
    "Ł": "L",
    "‘": "'",
    "’": "'",
    "‚": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "«": '"',
    "»": '"',
    "‹": "<",
    "›": ">",
    "–": "-",
    "—": "-",
    "‐": "-",
    "‑": "-",
    "−": "-",
    "•": "*",
    "€": "EUR",
}
# Invisible or structural characters: always escaped, never dropped, so that an address
# with a zero-width space does not read like the one without.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def ascii_text(text: str) -> str:
    """TEXT as one line of printable ASCII: runs of white space become one space, accented
    letters lose their accents, other characters are escaped (``\\u2192``, ``\\x00``; a byte
    kept undecoded by ``surrogateescape`` shows as ``\\xff``)."""
    if _PRINTABLE.fullmatch(text):
        return text
    pieces = [ch if " " <= ch <= "~" else " " if ch.isspace() else _reading(ch) for ch in text]
    return " ".join("".join(pieces).split())


@lru_cache(maxsize=4096)
def _reading(ch: str) -> str:
    """The ASCII for one character that is not printable ASCII."""
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if ch in _READINGS:
        return _READINGS[ch]
    if unicodedata.category(ch) not in _ESCAPED_CATEGORIES:
        decomposed = unicodedata.normalize("NFKD", ch)
        plain = "".join(c for c in decomposed if " " <= c <= "~")
        # Only when what is left out are accents: "½" is not "12".
        rest = [c for c in decomposed if not " " <= c <= "~"]
        if plain and all(unicodedata.category(c) == "Mn" for c in rest):
            return plain
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def smtp_line(reply: str) -> str:
    """REPLY ("550 5.6.0 why") as a valid SMTP reply line: printable ASCII, one line, at
    most MAX_LINE characters (cut with "...")."""
    line = ascii_text(reply)
    if len(line) > MAX_LINE:
        line = line[: MAX_LINE - 3] + "..."
    return line


def shown(value: str, limit: int = 200) -> str:
    """VALUE (an address, a name) as it may be quoted in a reply or a log line: printable
    ASCII, cut at LIMIT characters."""
    text = ascii_text(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
