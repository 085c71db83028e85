"""Lines that mark where quoted history or a forwarded message begins in a mail body.

Collected from the mail clients that office staff and their correspondents actually use
(Outlook desktop, web and mobile, Gmail web and Android, Apple Mail and iOS, Thunderbird,
Samsung and Android mail, Yahoo, Zoho, Yandex, Mail.ru, Orange), in English, French,
German, Spanish, Italian, Dutch, Portuguese, the Nordic languages, Finnish, Polish, Russian
and Vietnamese; measured on the answer corpus in ``tests/data/replies``.

Three kinds of marker:

- an **attribution** line (:func:`is_attribution`): "On <date>, <name> wrote:" and its
  translations, a date followed by the quoted person's address ("2014-10-17 11:28 GMT+03:00
  Name <addr>:", Gmail's Russian "ср, 30 апр. 2025 г. в 15:19, Name <addr>:"), or a banner
  "---- Name wrote ----"; a date (a digit) or an address is required, so that an ordinary
  sentence ending in "wrote:" is never taken for one;
- a **separator** or header block: "-----Original Message-----" in any language, or the
  "From:/Sent:/To:/Subject:" block Outlook writes above the quoted message (two header
  names of different kinds within a few lines, so that "Date: Wednesday" alone in an
  appointment is text);
- a **forward** banner ("---------- Forwarded message ---------", "Begin forwarded message:").
"""

from __future__ import annotations

import re
from enum import Enum

_I = re.IGNORECASE

# What the quoted person did, in every language of the corpus ("wrote", "a écrit"...).
_WROTE = (
    r"(wrote|sent|a\s+[ée]crit|schrieb|escribi[óo]|ha\s+scritto|schreef"
    r"|het\s+volgende\s+geschreven|escreveu|skrev|kirjoitti|napisa[łl](\s*\(a\)|a)?"
    r"|написал(\s*\(а\)|а)?|đã\s+viết|pisze|írta|yazdı|έγραψε|napsal(\s*\(a\)|a)?)"
)
_ADDRESS = r"[^\s<>()\[\]]+@[^\s<>()\[\]]+"
# "… wrote:" (the colon may be missing when the line names an address).
_ENDS_WROTE = re.compile(rf"\b{_WROTE}\s*:$", _I)
_ENDS_WROTE_NO_COLON = re.compile(rf"{_ADDRESS}.*\b{_WROTE}$", _I)
_ADDRESS_WROTE = re.compile(rf"<\s*{_ADDRESS}\s*>\s*{_WROTE}\s*:$", _I)
# The words attributions begin with: a line starting so is an attribution of its own.
_ATTRIBUTION_START = re.compile(r"^(on|le|am|el|il giorno|il|op|em|den|w dniu|dnia)\s", _I)
# What Gmail leaves on the last line of a wrapped attribution: "> wrote:", ">:".
_WRAPPED_TAIL = re.compile(rf"^>\s*({_WROTE}\s*)?:$", _I)
# "<date> <name> <addr>:" — Gmail in many languages, Yandex, Mail.ru, Japanese clients.
_ENDS_ADDRESS_COLON = re.compile(rf"[<(\[]?\s*{_ADDRESS}\s*[>)\]]?\s*:$", _I)
# "2011/4/7 Name <addr>" — Gmail's old form, without the colon.
_DATE_THEN_ADDRESS = re.compile(rf"^\d{{4}}[/.-]\d{{1,2}}[/.-]\d{{1,2}}\b.*<\s*{_ADDRESS}\s*>$")
# "---- Name wrote ----" (Android), "---- On <date> <name> wrote ----" (Zoho).
_WROTE_BANNER = re.compile(rf"^-{{2,}}\s*(.{{1,250}}\s)?{_WROTE}\s*:?\s*-{{2,}}$", _I)
_DIGIT = re.compile(r"\d")
_MAX_ATTRIBUTION = 300

# An attribution written on the same line as the answer ("reply On Wed, … wrote:"):
# where it starts. The words are those attributions begin with.
_INLINE_START = re.compile(
    r"(?:\s+|-{2,}\s*)(?=(on|le|am|el|il giorno|il|op|em|den|w dniu|dnia)\s.*\d)", _I
)

_ORIGINAL_MESSAGE = re.compile(
    r"^[-=_*\s]*(original message|reply message|message d'origine|ursprüngliche nachricht"
    r"|antwort nachricht|mensaje original|messaggio originale|oorspronkelijk bericht"
    r"|mensagem original|oprindelig meddelelse|oprindelig besked|opprinnelig melding"
    r"|ursprungligt meddelande|alkuperäinen viesti|исходное сообщение"
    r"|wiadomość oryginalna|oryginalna wiadomość)\s*[-=_*\s]*$",
    _I,
)
_SEPARATOR_HAS_RULE = re.compile(r"-{2,}|={2,}")
# French webmails (Orange, SFR, Free) introduce the quote with "Message du 03/12/24 10:12".
_MESSAGE_DU = re.compile(r"^[-=>\s]*message du\b.{0,40}\d", _I)
_RULE = re.compile(r"^[_=-]{10,}$")

# Header names of the block Outlook (and others) write above a quoted or forwarded
# message, by kind; ":" may have a space (French) or a no-break space before it.
_HEADER_KINDS = {
    "from": r"from|de|von|van|da|fra|från|od|от|lähettäjä|feladó",
    "date": r"sent|date|envoy[ée](\s+le)?|gesendet|datum|verzonden|inviato|enviad[oa](\s+el)?"
    r"|enviada em|fecha|data|skickat|sendt|dato|wysłano|отправлено|дата|lähetetty",
    "to": r"to|à|a|an|aan|para|till|til|do|кому|vastaanottaja|destinataire",
    "subject": r"subject|objet|sujet|betreff|onderwerp|oggetto|asunto|assunto|ämne|emne"
    r"|temat|тема|aihe",
    "cc": r"cc|copie\s+à|kopie|копия",
}
_HEADER_LINE = {
    kind: re.compile(rf"^\*?({names})\s*\*?\s*:\*?(\s|$)", _I)
    for kind, names in _HEADER_KINDS.items()
}
_BLOCK_STARTS = ("from", "date")

_FORWARDED = (
    re.compile(
        r"^-{2,}\s*(forwarded message|message transf[ée]r[ée]|weitergeleitete nachricht"
        r"|mensaje reenviado|messaggio inoltrato|doorgestuurd bericht|mensagem encaminhada"
        r"|videresendt meddelelse|vidarebefordrat meddelande|пересылаемое сообщение)"
        r"\s*-{2,}$",
        _I,
    ),
    re.compile(
        r"^(begin forwarded message|d[ée]but du message r[ée]exp[ée]di[ée]"
        r"|anfang der weitergeleiteten nachricht|inicio del mensaje reenviado"
        r"|inizio messaggio inoltrato)\s*:$",
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
    """Whether ``line`` introduces quoted history ("On <date>, <name> wrote:" and kin)."""
    line = line.strip().lstrip(">").strip()
    if not line or len(line) > _MAX_ATTRIBUTION:
        return False
    if _WROTE_BANNER.match(line):
        return True
    if not _DIGIT.search(line):
        # "Name <addr> wrote:" without a date still names the quoted person's address.
        return bool(_ADDRESS_WROTE.search(line))
    return bool(
        _ENDS_WROTE.search(line)
        or _ENDS_WROTE_NO_COLON.search(line)
        or _ENDS_ADDRESS_COLON.search(line)
        or _DATE_THEN_ADDRESS.match(line)
    )


def ends_like_attribution(line: str) -> bool:
    """Whether ``line`` ends as an attribution does ("Marc Slemko wrote:"), date or not:
    one only when a quote follows it."""
    line = line.strip()
    return len(line) <= _MAX_ATTRIBUTION and bool(_ENDS_WROTE.search(line))


def split_inline_attribution(line: str) -> tuple[str, str] | None:
    """(answer, attribution) when an answer and its attribution share one line."""
    for match in _INLINE_START.finditer(line):
        head, tail = line[: match.start()].rstrip(" -"), line[match.end() :]
        if head.strip() and is_attribution(tail):
            return head, tail
    return None


def is_forward_banner(line: str) -> bool:
    """Whether ``line`` announces a forwarded message ("Begin forwarded message:")."""
    line = line.strip()
    return any(p.match(line) for p in _FORWARDED)


def _header_kind(line: str) -> str | None:
    line = line.strip()
    return next((kind for kind, p in _HEADER_LINE.items() if p.match(line)), None)


def _is_header_block(lines: list[str], start: int) -> bool:
    """Whether a "From:"/"Date:" line at ``start`` heads a block of mail headers: another
    header of a different kind follows within four lines."""
    first = _header_kind(lines[start])
    if first not in _BLOCK_STARTS:
        return False
    following = {_header_kind(line) for line in lines[start + 1 : start + 5]}
    return bool(following - {None, first})


def _next_nonblank(lines: list[str], start: int, limit: int = 3) -> int | None:
    """Index of the first non-blank line at or after ``start``, looking ``limit`` lines ahead."""
    for index in range(start, min(start + limit, len(lines))):
        if lines[index].strip():
            return index
    return None


def _wrapped_attribution(lines: list[str], index: int) -> int:
    """How many lines (2 or 3) an attribution wrapped from ``index`` spans, or 0.

    Gmail wraps at 78 columns, putting the address or "wrote:" on the next lines. Lines are
    joined only when they are not quotes or attributions of their own, so a sentence
    starting with "On" just above a real header stays in the text.
    """
    joined = lines[index].strip()
    if not _DIGIT.search(joined):
        return 0  # every wrapped form starts with the date
    for span in (2, 3):
        if index + span > len(lines):
            return 0
        following = lines[index + span - 1].strip()
        if not following or (following.startswith(">") and not _WRAPPED_TAIL.match(following)):
            return 0
        if _ATTRIBUTION_START.match(following) and is_attribution(following):
            return 0
        joined = f"{joined} {following}"
        if is_attribution(joined):
            return span
    return 0


def find_marker(lines: list[str], start: int = 0) -> tuple[int, int, Marker] | None:
    """The first marker at or after ``start``: (first line, lines it spans, kind).

    A wrapped attribution spans two or three lines; a "From:/Sent:" block is reported from
    its "From:" line (its length is 1: what follows is the quoted or forwarded message).
    """
    for index in range(start, len(lines)):
        line = lines[index].strip()
        if not line or line.startswith(">"):
            continue
        if is_attribution(line):
            return index, 1, Marker.QUOTE
        span = _wrapped_attribution(lines, index)
        if span:
            return index, span, Marker.QUOTE
        if is_forward_banner(line):
            return index, 1, Marker.FORWARD
        if (_ORIGINAL_MESSAGE.match(line) and _SEPARATOR_HAS_RULE.search(line)) or (
            _MESSAGE_DU.match(line)
        ):
            return index, 1, Marker.SEPARATOR
        if _RULE.match(line):
            following = _next_nonblank(lines, index + 1)
            if following is not None and _is_header_block(lines, following):
                return index, 1, Marker.SEPARATOR
        if _is_header_block(lines, index):
            return index, 1, Marker.SEPARATOR
    return None
