"""The SMS text of a mail body: quoted history, signatures and disclaimers removed.

Order of work on a body (plain text, or HTML converted to text first):

1. whitespace normalized (:func:`~hub.mail.parse.normalize.normalize_whitespace`);
2. the body is cut at the first marker (:mod:`hub.mail.parse.markers`). Quoted history
   ("On … wrote:", "-----Original Message-----", an Outlook "From:/Sent:" block) and
   everything below it is removed; a forwarded message ("Begin forwarded message:",
   "---------- Forwarded message ---------", or an Outlook block when the subject says
   ``Fwd:``/``TR:``/``WG:``) is kept verbatim, since forwarding it is what the sender asked;
3. remaining ``>`` lines are removed; if nothing is left above the quote, the text the
   sender wrote below it (bottom-posting) is used;
4. the signature is removed: everything from the RFC 3676 ``-- `` line down, and every
   line matching one of ``signature_patterns`` ("Sent from my iPhone", …);
5. every paragraph starting with one of ``disclaimer_patterns`` is removed.

In reply mode (:func:`extract_text` with ``reply=True``) a forwarded message and the
first ``>`` line are cut like quoted history: only what the sender wrote above them is
kept (or, when that is empty, what they wrote below the quote).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from hub.errors import ConfigError
from hub.mail.parse.htmltext import html_to_text
from hub.mail.parse.markers import (
    Marker,
    ends_like_attribution,
    find_marker,
    is_attribution,
    split_inline_attribution,
)
from hub.mail.parse.normalize import normalize_whitespace

DEFAULT_SIGNATURE_PATTERNS: tuple[str, ...] = (
    # "Sent from my iPhone", never "Sent from my desk, which is easier": a device name has
    # no comma or sentence inside it.
    r"sent from my [^,;:!?]{1,40}\.?",
    r"sent from (mail|outlook|yahoo mail|gmail|aol|proton ?mail)\b.{0,60}",
    # "Sent from Acompli", "Sent from TypeApp<http://www.typeapp.com/…>": one word, a link.
    r"sent from [a-z][\w.-]{1,30}(\s*<[^>\s]+>|\s*\([^)\s]+\))?",
    r"sent with [a-z][\w .-]{1,30}(\s*<[^>\s]+>|\s*\([^)\s]+\))?",
    r"get outlook for (ios|android)\s*(<[^>\s]+>)?",
    r"отправлено (с|из) .{1,60}",
    r"wysłane z .{1,60}",
    r"(skickat|sendt) fra?n? min .{1,40}",
    r"lähetetty .{1,40}(sta|stä)",
    r"enviado do meu .{1,40}",
    r"sent with proton ?mail.{0,60}",
    r"obtenir outlook pour (ios|android).{0,60}",
    r"envoy[ée] de mon .{1,60}",
    r"envoy[ée] depuis .{1,60}",
    r"envoy[ée] (à|a) partir de .{1,60}",
    r"von meinem .{1,40} gesendet\.?",
    r"gesendet von .{1,60}",
    r"enviado desde mi .{1,60}",
    r"inviato da .{1,60}",
    r"verzonden (met|vanaf) .{1,60}",
)
"""Lines removed as mobile or webmail signatures (whole line, case-insensitive)."""

DEFAULT_DISCLAIMER_PATTERNS: tuple[str, ...] = (
    r"this e-?mail and any (files|attachments)",
    r"this (e-?mail|message|communication)( and any attachments?)?"
    r" (is|are|may be|may contain|contains?) (strictly )?(confidential|privileged|intended)",
    r"the information (contained )?in this (e-?mail|message|communication)",
    r"confidentiality notice",
    r"disclaimer\s*:",
    r"caution\s*:\s*this (e-?mail|message) originated from outside",
    r"ce (message|courriel|mail|e-?mail) et (toutes )?(les|ses) pi[èe]ces jointes",
    r"ce (courriel|message|e-?mail)\b.{0,80}\bconfidenti",
    r"avis de confidentialit[ée]",
    r"diese (e-?mail|nachricht) (enthält|kann) vertrauliche",
    r"please consider the environment before printing",
    r"pensez [àa] l'environnement avant d'imprimer",
)
"""Paragraphs removed as legal disclaimers (matched at the paragraph start)."""

# Outlook writes "[cid:image001.png@01DB…]" and Gmail "[image: logo.png]" in the text
# alternative where the HTML shows an inline image (usually a signature logo).
# "[" is excluded inside so that an unclosed "[cid:" costs one scan, not one per "[".
_IMAGE_PLACEHOLDER = re.compile(r"\[(cid:[^\[\]\s]+|image: [^\[\]\n]*)\]")
_DECORATION = re.compile(r"^[\s*_=~#-]*")
_DECORATION_ONLY = re.compile(r"^[\s*_=~#-]{3,}$")
_SIGNATURE_DELIMITER = re.compile(r"^\s*--\s*$")
_ARROWS = re.compile(r"^>{2,}(\s*>+)*\s.*<{2,}\s*$")
# A mailing-list footer: a rule, then "<list> mailing list" (Mailman's own footer).
_LIST_FOOTER = re.compile(r"^.{1,80}\bmailing list$", re.IGNORECASE)
_RULE = re.compile(r"^_{10,}$")


@dataclass(frozen=True)
class BodyOptions:
    """What to remove from a body; patterns are case-insensitive regular expressions."""

    signature_patterns: Sequence[str] = DEFAULT_SIGNATURE_PATTERNS
    disclaimer_patterns: Sequence[str] = DEFAULT_DISCLAIMER_PATTERNS
    strip_quotes: bool = True

    def __post_init__(self) -> None:
        # Freeze to tuples so the options hash (compiled patterns are cached) and so a bad
        # pattern from a config file is reported here, naming the pattern.
        for name in ("signature_patterns", "disclaimer_patterns"):
            patterns = tuple(getattr(self, name))
            object.__setattr__(self, name, patterns)
            _compile(patterns, name)


@dataclass(frozen=True)
class ExtractedText:
    """The text of a body and what was removed or changed to get it."""

    text: str
    warnings: list[str] = field(default_factory=list)


@lru_cache(maxsize=64)
def _compile(patterns: tuple[str, ...], name: str) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise ConfigError(f"{name}: invalid regular expression {pattern!r}: {exc}") from exc
    return tuple(compiled)


_DEFAULT_OPTIONS = BodyOptions()


def extract_text(
    body: str,
    *,
    html: bool = False,
    options: BodyOptions | None = None,
    forward: bool = False,
    reply: bool = False,
) -> ExtractedText:
    """Extract the text to send from a decoded mail body (see the module docstring).

    ``forward`` says the mail was forwarded (its subject starts with ``Fwd:``, ``TR:``…),
    so an Outlook separator introduces the forwarded message rather than quoted history;
    ``reply`` keeps only the new text above any quote or forward.
    """
    options = options or _DEFAULT_OPTIONS
    warnings: list[str] = []
    if html:
        converted = html_to_text(body, keep_quotes=not (options.strip_quotes or reply))
        text = converted.text
        warnings.append("converted HTML to text")
        if converted.removed_quote:
            warnings.append("removed quoted history")
        if converted.removed_signature:
            warnings.append("removed a signature")
    else:
        text = normalize_whitespace(_IMAGE_PLACEHOLDER.sub("", body))
    lines = _split_inline_attributions(text.split("\n"))
    kept: list[str] = []
    if options.strip_quotes or reply:
        lines, kept = _cut_history(lines, forward=forward, reply=reply, warnings=warnings)
    lines = _remove_signature(lines, options, warnings)
    own = _remove_disclaimers("\n".join(lines), options, warnings)
    result = normalize_whitespace("\n\n".join(part for part in (own, "\n".join(kept)) if part))
    return ExtractedText(text=result, warnings=_unique(warnings))


def _cut_history(
    lines: list[str], *, forward: bool, reply: bool, warnings: list[str]
) -> tuple[list[str], list[str]]:
    """Split ``lines`` into the sender's own text and a kept forwarded message."""
    own, below, kept = _split_at_marker(lines, forward=forward, reply=reply, warnings=warnings)
    unquoted = [
        line
        for index, line in enumerate(own)
        if not _is_quoted(line) and not _introduces_quote(own, index)
    ]
    if len(unquoted) != len(own):
        warnings.append("removed quoted history")
    return _with_text_below(unquoted, below, warnings), kept


def _split_at_marker(
    lines: list[str], *, forward: bool, reply: bool, warnings: list[str]
) -> tuple[list[str], list[str], list[str]]:
    """(the lines above the first history marker, the quote's lines below it when it is a
    ``>`` quote, a kept forwarded message)."""
    found = find_marker(lines)
    if reply:
        # An answer keeps only what is above the first quoted line, even without a header.
        first_quoted = next((i for i, line in enumerate(lines) if _is_quoted(line)), None)
        if first_quoted is not None and (found is None or first_quoted < found[0]):
            found = (first_quoted, 0, Marker.QUOTE)
    if found is None:
        return lines, [], []
    index, span, kind = found
    if kind is Marker.FORWARD or (kind is Marker.SEPARATOR and forward):
        # A forward is what the sender chose to pass on, in an answer too.
        warnings.append("kept a forwarded message")
        return lines[:index], [], lines[index:]
    warnings.append("removed quoted history")
    return lines[:index], lines[index + span :] if kind is Marker.QUOTE else [], []


def _with_text_below(unquoted: list[str], below: list[str], warnings: list[str]) -> list[str]:
    """UNQUOTED (the text above the quote) with what the sender wrote BELOW it."""
    wrote_above = any(line.strip() for line in unquoted)
    after = _interleaved(below)
    if after:
        # Text under the quote: "Regards" below it, or the whole answer (bottom-posting).
        unquoted = unquoted + after
        if not wrote_above:
            warnings.append("took the text written below the quote")
    elif not wrote_above and below:
        # Nothing above the quote: the sender wrote below it (bottom-posting).
        unquoted = _bottom_posted(below)
        if any(line.strip() for line in unquoted):
            warnings.append("took the text written below the quote")
    return unquoted


def _bottom_posted(lines: list[str]) -> list[str]:
    """The lines a bottom-poster wrote between and after ``>`` blocks."""
    return [line for line in lines if not _is_quoted(line) and not is_attribution(line)]


def _interleaved(below: list[str]) -> list[str]:
    """What the sender wrote below the ``>`` block that follows an attribution ("Regards"
    under the quote): the text after the last ``>`` line, set apart by a blank line, up to
    the next marker. A line right under a ``>`` line is the quote's own wrapped tail, and
    an attribution followed by unmarked text introduces a quote without ``>``: neither is
    the sender's."""
    start = next((i for i, line in enumerate(below) if line.strip()), None)
    if start is None or not _is_quoted(below[start]):
        return []
    last = max(i for i, line in enumerate(below) if _is_quoted(line))
    rest = below[last + 1 :]
    first = next((i for i, line in enumerate(rest) if line.strip()), None)
    if first is None or first == 0:
        return []
    found = find_marker(rest, first)
    return [""] + rest[first : found[0] if found else len(rest)]


def _introduces_quote(lines: list[str], index: int) -> bool:
    """A "Name wrote:" line (no date, so no marker) right above a ``>`` block."""
    if not ends_like_attribution(lines[index]):
        return False
    following = next((line for line in lines[index + 1 :] if line.strip()), "")
    return _is_quoted(following)


def _is_quoted(line: str) -> bool:
    """A ``>`` quote line; not ``>>> http://… <<<``, an arrow drawn around a link."""
    return line.startswith(">") and not _ARROWS.match(line)


def _split_inline_attributions(lines: list[str]) -> list[str]:
    """Put an attribution written on the answer's own line ("reply On Wed, … wrote:") on
    a line of its own, so that the answer before it is kept."""
    out: list[str] = []
    for line in lines:
        split = None if _is_quoted(line) else split_inline_attribution(line)
        out.extend(split if split else (line,))
    return out


def _remove_signature(lines: list[str], options: BodyOptions, warnings: list[str]) -> list[str]:
    """Cut at the signature: a ``-- `` line, a mailing-list footer, or a mobile signature
    line ("Sent from my iPhone"), below which clients put only the quoted message."""
    patterns = _compile(tuple(options.signature_patterns), "signature_patterns")
    for index, line in enumerate(lines):
        stripped = line.strip()
        if (
            _SIGNATURE_DELIMITER.match(line)
            or any(p.fullmatch(stripped) for p in patterns)
            or (_RULE.match(stripped) and _footer_follows(lines, index))
        ):
            warnings.append("removed a signature")
            return _strip_trailing_rules(lines[:index])
    return _strip_trailing_rules(lines)


def _footer_follows(lines: list[str], index: int) -> bool:
    following = next((line.strip() for line in lines[index + 1 :] if line.strip()), "")
    return bool(_LIST_FOOTER.match(following))


def _strip_trailing_rules(lines: list[str]) -> list[str]:
    """Rules and blank lines left at the end once the quote below them was cut."""
    end = len(lines)
    while end and (not lines[end - 1].strip() or _DECORATION_ONLY.match(lines[end - 1])):
        end -= 1
    return lines[:end]


def _remove_disclaimers(text: str, options: BodyOptions, warnings: list[str]) -> str:
    patterns = _compile(tuple(options.disclaimer_patterns), "disclaimer_patterns")
    paragraphs = re.split(r"\n[ \t]*\n", text)
    kept = []
    removed = False
    for paragraph in paragraphs:
        lead = _DECORATION.sub("", paragraph, count=1)
        if any(p.match(lead) for p in patterns):
            removed = True
            continue
        kept.append(paragraph)
    if not removed:
        return text
    warnings.append("removed a legal disclaimer")
    # Banners of asterisks or dashes framed the disclaimer; alone they mean nothing.
    return "\n\n".join(p for p in kept if not _DECORATION_ONLY.match(p))


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
