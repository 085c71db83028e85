"""Whitespace normalization and RFC 3676 (format=flowed) unwrapping of mail text."""

from __future__ import annotations

import re
import unicodedata

# Spaces that look like a space to the reader but defeat line trimming and matching.
_SPACE_LIKE = re.compile("[\u00a0\u2007\u202f\u2000-\u200a\u3000]")
# Invisible characters that mail clients and copy-paste leave behind; they cost SMS
# segments (they force UCS-2) and nobody meant to send them.
# Control characters (NUL, escape, C1 codes) are dropped too: no phone shows them, and
# PostgreSQL refuses NUL in text.
_INVISIBLE = re.compile(
    "[\u200b\u200c\u2060\ufeff\u00ad\u200e\u200f\x00-\x08\x0e-\x1f\x7f\x80-\x84\x86-\x9f]"
)
_LINE_BREAKS = re.compile("\r\n|[\r\u2028\u2029\x85\x0b\x0c]")
_BLANK_RUNS = re.compile("\n{3,}")


def _is_emoji_part(char: str, *, before: bool) -> bool:
    """Whether ``char`` may sit on that side of a zero-width joiner inside an emoji sequence."""
    category = unicodedata.category(char)
    if category == "So":
        return True
    # Skin-tone modifiers (Sk) and the emoji variation selector precede a joiner, never follow.
    return before and (category == "Sk" or char == "\ufe0f")


def _drop_stray_joiners(text: str) -> str:
    """Remove U+200D except between emoji, where it builds one glyph (👩‍💻, 🏳️‍🌈)."""
    if "\u200d" not in text:
        return text
    out: list[str] = []
    for index, char in enumerate(text):
        if char == "\u200d":
            before = text[index - 1] if index > 0 else ""
            after = text[index + 1] if index + 1 < len(text) else ""
            if not (
                before
                and after
                and _is_emoji_part(before, before=True)
                and _is_emoji_part(after, before=False)
            ):
                continue
        out.append(char)
    return "".join(out)


def normalize_whitespace(text: str) -> str:
    """Normalize line breaks and spaces, drop invisible characters, collapse blank runs.

    CRLF/CR and Unicode line separators become LF; non-breaking and other fixed-width
    spaces become plain spaces; zero-width characters are removed (a joiner between
    emoji is kept); trailing spaces are trimmed per line; three or more newlines become
    two; leading and trailing blank lines are removed. The function is idempotent.
    """
    text = _LINE_BREAKS.sub("\n", text)
    text = _SPACE_LIKE.sub(" ", text)
    text = _INVISIBLE.sub("", text)
    text = _drop_stray_joiners(text)
    # Per line rather than a "[ \t]+$" regex, which is quadratic on long runs of spaces.
    text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
    text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip("\n")


_QUOTE_PREFIX = re.compile(r"^>+")


def unflow(text: str, *, delsp: bool = False) -> str:
    """Join the soft line breaks of a ``format=flowed`` body (RFC 3676 section 4).

    A line ending in a space continues on the next line of the same quote depth; the
    signature separator ``-- `` never flows; one leading space (space-stuffing) is removed.
    """
    out: list[str] = []
    pending: str | None = None
    pending_depth = 0
    for line in text.replace("\r\n", "\n").split("\n"):
        match = _QUOTE_PREFIX.match(line)
        depth = len(match.group()) if match else 0
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]
        if pending is not None and depth != pending_depth:
            # A flowed line followed by a different quote depth is a broken flow: end it.
            out.append(_with_quote(pending, pending_depth))
            pending = None
        flowed = content.endswith(" ") and content != "-- "
        if flowed and delsp:
            content = content[:-1]
        joined = content if pending is None else pending + content
        if flowed:
            pending, pending_depth = joined, depth
        else:
            out.append(_with_quote(joined, depth))
            pending = None
    if pending is not None:
        out.append(_with_quote(pending, pending_depth))
    return "\n".join(out)


def _with_quote(content: str, depth: int) -> str:
    """Put the quote markers back in front of an unwrapped line."""
    if depth == 0:
        return content
    return ">" * depth + (" " + content if content else "")
