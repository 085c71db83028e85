"""Lines that mark where quoted history or a forwarded message begins in a mail body.

Collected from the mail clients that office staff actually use (Outlook desktop and web,
Gmail, Apple Mail and iOS, Thunderbird, Samsung and Android mail, Yahoo), in English,
French, German, Spanish, Italian, Dutch and Portuguese.
"""

from __future__ import annotations

import re
from enum import Enum

_I = re.IGNORECASE

# "On <date>, <name> wrote:" and its translations. A digit is required (the date) so
# that an ordinary sentence starting with "On" or "Le" is never taken for a header.
_ATTRIBUTIONS = tuple(
    re.compile(pattern, _I)
    for pattern in (
        r"^on\b.{4,300}\bwrote\s*:$",
        r"^le\b.{4,300}\ba\s+[ée]crit\s*:$",
        r"^am\b.{4,300}\bschrieb\b.{0,300}:$",
        r"^el\b.{4,300}\bescribi[óo]\s*:$",
        r"^il\b.{4,300}\bha\s+scritto\s*:$",
        r"^op\b.{4,300}\b(schreef\b.{0,300}|het volgende geschreven\s*):$",
        r"^em\b.{4,300}\bescreveu\s*:$",
    )
)
_DIGIT = re.compile(r"\d")

# Separators that Outlook and Android put above a quoted *or* forwarded message.
_ORIGINAL_MESSAGE = re.compile(
    r"^-{2,}\s*(original message|message d'origine|ursprüngliche nachricht|mensaje original"
    r"|messaggio originale|oorspronkelijk bericht|mensagem original)\s*-{2,}$",
    _I,
)
_UNDERSCORES = re.compile(r"^_{10,}$")
_HEADER_FROM = re.compile(r"^\*?(from|de|von|van|da|fra|från|od)\s*:\*?\s*\S", _I)
_HEADER_SENT = re.compile(
    r"^\*?(sent|date|envoy[ée]|gesendet|datum|verzonden|inviato|enviado|fecha|data|skickat"
    r"|sendt)\s*:\*?",
    _I,
)
_FORWARDED = (
    re.compile(
        r"^-{2,}\s*(forwarded message|message transf[ée]r[ée]|weitergeleitete nachricht"
        r"|mensaje reenviado|messaggio inoltrato|doorgestuurd bericht|mensagem encaminhada)"
        r"\s*-{2,}$",
        _I,
    ),
    re.compile(
        r"^(begin forwarded message|d[ée]but du message r[ée]exp[ée]di[ée]"
        r"|anfang der weitergeleiteten nachricht|inicio del mensaje reenviado)\s*:$",
        _I,
    ),
)


class Marker(Enum):
    """What a marker line starts."""

    QUOTE = "quote"
    """Quoted history: an attribution line ("On … wrote:")."""
    SEPARATOR = "separator"
    """An Outlook-style separator or header block: quoted history, or a forward."""
    FORWARD = "forward"
    """An explicit forwarded-message banner."""


def is_attribution(line: str) -> bool:
    """Whether ``line`` is an "On <date>, <name> wrote:" header in a known language."""
    line = line.strip()
    return bool(_DIGIT.search(line)) and any(p.match(line) for p in _ATTRIBUTIONS)


def is_forward_banner(line: str) -> bool:
    """Whether ``line`` announces a forwarded message ("Begin forwarded message:")."""
    line = line.strip()
    return any(p.match(line) for p in _FORWARDED)


def _is_header_block(lines: list[str], start: int) -> bool:
    """Whether a "From: …" line at ``start`` is followed closely by a "Sent:"/"Date:" line."""
    if not _HEADER_FROM.match(lines[start].strip()):
        return False
    following = lines[start + 1 : start + 5]
    return any(_HEADER_SENT.match(line.strip()) for line in following)


def _next_nonblank(lines: list[str], start: int, limit: int = 3) -> int | None:
    """Index of the first non-blank line at or after ``start``, looking ``limit`` lines ahead."""
    for index in range(start, min(start + limit, len(lines))):
        if lines[index].strip():
            return index
    return None


def find_marker(lines: list[str], start: int = 0) -> tuple[int, int, Marker] | None:
    """The first marker at or after ``start``: (first line, lines it spans, kind).

    An attribution wrapped over two lines (Gmail wraps at 78 columns) spans two lines;
    a "From:/Sent:" block is reported from its "From:" line (its length is 1: what
    follows is the quoted or forwarded message itself).
    """
    for index in range(start, len(lines)):
        line = lines[index].strip()
        if not line or line.startswith(">"):
            continue
        if is_attribution(line):
            return index, 1, Marker.QUOTE
        if index + 1 < len(lines):
            following_line = lines[index + 1].strip()
            # Join only when the next line is not a quote or a header of its own, so a
            # sentence starting with "On" just above a real header stays in the text.
            if (
                not following_line.startswith(">")
                and not is_attribution(following_line)
                and is_attribution(f"{line} {following_line}")
            ):
                return index, 2, Marker.QUOTE
        if is_forward_banner(line):
            return index, 1, Marker.FORWARD
        if _ORIGINAL_MESSAGE.match(line):
            return index, 1, Marker.SEPARATOR
        if _UNDERSCORES.match(line):
            following = _next_nonblank(lines, index + 1)
            if following is not None and _is_header_block(lines, following):
                return index, 1, Marker.SEPARATOR
        if _is_header_block(lines, index):
            return index, 1, Marker.SEPARATOR
    return None
