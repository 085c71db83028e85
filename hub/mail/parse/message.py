"""Parse a raw mail into the fields the hub needs, robustly (stdlib ``email`` only).

Headers are read raw and decoded here (RFC 2047 words, undeclared 8-bit bytes, wrong
charsets) instead of through ``email.policy.default``'s header objects, which raise or
give up on the malformed headers that real mail carries. Malformed header lines are
dropped before parsing so that the headers after them are not taken for the body.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from functools import lru_cache
from typing import NamedTuple

from hub.errors import InvalidInput
from hub.mail.parse.body import BodyOptions, extract_text
from hub.mail.parse.charset import decode_bytes, decode_words, unescape_surrogates
from hub.mail.parse.email_policy import PARSE_POLICY
from hub.mail.parse.normalize import unflow
from hub.mail.parse.structure import MimeTooDeep, broken_structure, parse_bytes
from hub.mail.parse.subject import FORWARD_PREFIXES, strip_prefixes
from hub.mail.parse.uuencode import UuFile, split_uuencoded


class Attachment(NamedTuple):
    """A part that is not the text body: (filename, content_type, size in bytes)."""

    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class ParsedMail:
    """A mail reduced to what the hub uses; ``text`` is the SMS body."""

    message_id: str | None
    from_addr: str | None
    from_display: str
    to: list[str]
    cc: list[str]
    reply_to: list[str]
    subject: str
    date: datetime | None
    in_reply_to: str | None
    references: list[str]
    text: str
    html_only: bool
    attachments: list[Attachment]
    authentication_results: list[str]
    warnings: list[str]
    body: str = ""
    """The decoded body part the text came from, before any cleanup."""
    body_type: str | None = None
    """``text/plain``, ``text/html`` or None when the mail has no text part."""
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    mime: Message | None = field(default=None, repr=False, compare=False)
    """The MIME tree of the raw bytes exactly as given (None when the headers had to be
    repaired first), for readers of other parts (``hub.campaigns.links``) not to parse it again; for
    a BROKEN mail, its headers only (its parts are not to be read)."""
    broken: str | None = None
    """Why the mail's MIME structure cannot be read (parts nested too deep, a multipart whose
    boundary is not found), or None. Such a mail has headers but no text: refuse it."""

    def get_header(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), unfolded and decoded."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]


_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")
_OBS_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]+:")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_LINE_END = re.compile(r"[\r\n]+")
_MSG_ID = re.compile(r"<([^<>\s]+)>")
_PLAIN_ID = re.compile(r"[!-~]*")
# Control characters in decoded header text (an encoded word can carry a NUL): a space,
# as no reader shows them and PostgreSQL refuses NUL in text.
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# In a body, the same but line breaks and tabs.
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Longest message id kept as written: ids are keys in the database (255 characters with the
# account's prefix); a longer one is kept as its hash.
_ID_LIMIT = 200


def parse_mail(
    raw: bytes, options: BodyOptions | None = None, max_depth: int | None = None
) -> ParsedMail:
    """Parse ``raw`` (RFC 5322 bytes) and extract its SMS text; never fails on bad headers.

    A mail whose MIME structure cannot be read (parts nested deeper than MAX_DEPTH, default
    ``structure.depth_limit()``; a multipart whose boundary is not found) comes back with
    its headers, no text and ``broken`` saying why."""
    warnings: list[str] = []
    repaired = _repair_headers(raw, warnings)
    broken: str | None = None
    try:
        message = parse_bytes(repaired, max_depth)
    except MimeTooDeep as exc:
        broken = str(exc)
    except Exception as exc:  # the stdlib parser is lenient; this is a last resort
        raise InvalidInput(f"the mail cannot be parsed: {exc}") from exc
    else:
        broken = broken_structure(message)
    if broken is not None:
        # The headers still say who wrote and what the mail is (for the refusal); the body
        # is left unread.
        message = BytesParser(policy=PARSE_POLICY).parsebytes(repaired, headersonly=True)
    raw_items = [(name, _unfold(value)) for name, value in message.raw_items()]
    first: dict[str, str] = {}
    for name, value in raw_items:
        first.setdefault(name.lower(), value)  # a repeated singular header: the first wins

    date = _date(first.get("date"), warnings)
    from_display, from_addr = _first_address(first.get("from"))
    subject = _LINE_END.sub(" ", _header_text(first.get("subject", ""))).strip()
    text, body, body_type, attachments = "", "", None, []
    if broken is None:
        plain, html = _find_body(message)
        body, body_type = _body_text(plain, html, warnings)
        uuencoded: list[UuFile] = []
        if body_type == "text/plain":
            body, uuencoded = split_uuencoded(body)
        prefixes = strip_prefixes(subject)[1]
        extracted = extract_text(
            body,
            html=body_type == "text/html",
            options=options,
            forward=bool(prefixes) and prefixes[0].lower() in FORWARD_PREFIXES,
        )
        text = extracted.text
        warnings.extend(extracted.warnings)
        attachments = _attachments(message, {id(plain), id(html)})
        attachments += [Attachment(f.filename, f.content_type, len(f.data)) for f in uuencoded]
        warnings.extend(f"attachment {a.filename or a.content_type} ignored" for a in attachments)
    return ParsedMail(
        message_id=_msg_id(first.get("message-id")),
        from_addr=from_addr,
        from_display=from_display,
        to=_addresses(raw_items, "to"),
        cc=_addresses(raw_items, "cc"),
        reply_to=_addresses(raw_items, "reply-to"),
        subject=subject,
        date=date,
        in_reply_to=_msg_id(first.get("in-reply-to")),
        references=_references(first.get("references")),
        text=text,
        html_only=body_type == "text/html",
        attachments=attachments,
        authentication_results=[
            value for name, value in raw_items if name.lower() == "authentication-results"
        ],
        warnings=list(dict.fromkeys(warnings)),
        body=body,
        body_type=body_type,
        headers=tuple((name, _header_text(value)) for name, value in raw_items),
        mime=message if repaired == raw or broken is not None else None,
        broken=broken,
    )


# -- headers ---------------------------------------------------------------------------


def _repair_headers(raw: bytes, warnings: list[str]) -> bytes:
    """Drop header lines that are neither ``Name: value`` nor a continuation.

    Python's parser would end the header block at such a line and read every later
    header as body text. A bad line followed by more body-like lines is taken for a
    missing blank line instead, and the body starts there.
    """
    raw = raw.lstrip(b"\r\n")
    end = _HEADER_END.search(raw)
    head, rest = (raw[: end.start()], raw[end.start() :]) if end else (raw, b"")
    lines = head.splitlines(keepends=True)
    kept: list[bytes] = []
    for index, line in enumerate(lines):
        # RFC 5322's obsolete syntax allows blanks before the colon ("From  : a@b"); the
        # parser would not know the name.
        line = _OBS_HEADER_NAME.sub(rb"\1:", line, count=1)
        if _HEADER_LINE.match(line) or line[:1] in (b" ", b"\t"):
            kept.append(line)
            continue
        if index == 0 and line.startswith(b"From "):
            continue  # mbox separator
        following = lines[index + 1] if index + 1 < len(lines) else b""
        shown = line.decode("ascii", errors="replace").strip()
        if following and _HEADER_LINE.match(following):
            warnings.append(f"ignored a malformed header line: {shown!r}")
            continue
        warnings.append(f"the header block has no blank line before the body at {shown!r}")
        newline = b"\r\n" if line.endswith(b"\r\n") else b"\n"
        return b"".join(kept) + newline + b"".join(lines[index:]) + rest
    return b"".join(kept) + rest


def _unfold(value: str) -> str:
    if "\n" not in value and "\r" not in value:
        return value.strip()  # most headers are one line
    return _LINE_END.sub("", _FOLD.sub("", value)).strip()


def _header_text(value: str) -> str:
    if len(value) > 256:
        return _decode_header(value)
    return _decoded_header(value)


def _decode_header(value: str) -> str:
    return _HEADER_CONTROL.sub(" ", decode_words(unescape_surrogates(_unfold(value))))


# Most header values come again and again (senders, relays, MIME headers): short ones are
# decoded once.
_decoded_header = lru_cache(maxsize=1024)(_decode_header)


def _lower_domain(address: str) -> str:
    local, at, domain = address.strip().rpartition("@")
    return f"{local}@{domain.lower()}" if at else address.strip()


def _parse_addresses(values: list[str]) -> list[tuple[str, str]]:
    """(display name, address) pairs; names decoded after parsing so commas stay quoted."""
    key = tuple(values)
    if sum(map(len, key)) > 1024:
        return list(_address_pairs(key))
    return list(_kept_address_pairs(key))


def _address_pairs(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    pairs = email.utils.getaddresses([unescape_surrogates(_unfold(v)) for v in values])
    return tuple(
        (_HEADER_CONTROL.sub(" ", decode_words(name)).strip(), _lower_domain(addr))
        for name, addr in pairs
        if addr and not _HEADER_CONTROL.search(addr)
    )


# Mail keeps coming from the same senders to the same addresses, and the stdlib address
# parser is slow: short values are parsed once.
_kept_address_pairs = lru_cache(maxsize=512)(_address_pairs)


def _addresses(raw_items: list[tuple[str, str]], name: str) -> list[str]:
    values = [value for key, value in raw_items if key.lower() == name]
    return [address for _, address in _parse_addresses(values)]


def _first_address(value: str | None) -> tuple[str, str | None]:
    if value is None:
        return "", None
    pairs = _parse_addresses([value])
    if not pairs:
        return decode_words(unescape_surrogates(value)).strip(), None
    return pairs[0]


def _msg_id(value: str | None) -> str | None:
    if value is None:
        return None
    match = _MSG_ID.search(value)
    cleaned = match.group(1) if match else value.strip().strip("<>").strip()
    return _stored_id(cleaned) or None


def _references(value: str | None) -> list[str]:
    if not value:
        return []
    found = _MSG_ID.findall(value)
    ids = found or [part.strip("<>") for part in value.split() if part.strip("<>")]
    return [_stored_id(i) for i in ids]


def _stored_id(value: str) -> str:
    """A message id as it can be stored and looked up: undecodable bytes (which the parser
    keeps as lone surrogates) and control characters escaped, since no database takes them
    (a Message-ID with the bytes FF FE made every try fail with 451); a very long id hashed.
    The same id always gives the same value, so duplicates are still found."""
    if not _PLAIN_ID.fullmatch(value):
        try:
            data = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no byte stands for
            data = value.encode("utf-8", "backslashreplace")
        value = _CONTROL.sub(
            lambda m: f"\\x{ord(m.group()):02x}", data.decode("utf-8", "backslashreplace")
        )
    if len(value) > _ID_LIMIT:
        value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value


def _date(value: str | None, warnings: list[str]) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        warnings.append(f"unreadable Date header: {value!r}")
        return None
    # "-0000" means "UTC, local zone unknown" (RFC 5322 section 3.3).
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# -- body ------------------------------------------------------------------------------


def _is_attachment(part: Message) -> bool:
    if part.get_content_disposition() == "attachment":
        return True
    try:
        return part.get_filename() is not None and not part.is_multipart()
    except Exception:  # a broken filename parameter still names an attachment
        return True


def _find_body(part: Message) -> tuple[Message | None, Message | None]:
    """The text/plain and text/html parts that carry the readable body (either may be None)."""
    if _is_attachment(part):
        return None, None
    content_type = part.get_content_type()
    if content_type == "message/rfc822":
        return None, None  # a mail attached to the mail is an attachment, not the body
    if part.is_multipart():
        children = _children(part)
        if content_type == "multipart/alternative":
            plain = html = None
            for child in children:
                child_plain, child_html = _find_body(child)
                plain = plain or child_plain
                html = html or child_html
            return plain, html
        if content_type == "multipart/related":
            children = _related_root_first(part, children)
        # mixed, related, signed, report and unknown multiparts: the first part with text
        for child in children:
            child_plain, child_html = _find_body(child)
            if child_plain is not None or child_html is not None:
                return child_plain, child_html
        return None, None
    if content_type == "text/html":
        return None, part
    if content_type == "text/plain" or content_type.startswith("multipart/"):
        # A multipart without a boundary is parsed as one opaque part: read it as text.
        return part, None
    return None, None


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    if not isinstance(payload, list):
        return []
    return [child for child in payload if isinstance(child, Message)]


def _related_root_first(part: Message, children: list[Message]) -> list[Message]:
    start = part.get_param("start")
    if isinstance(start, str):
        for child in children:
            if str(child.get("content-id") or "").strip() == start.strip():
                return [child, *[c for c in children if c is not child]]
    return children


def _decoded_part(part: Message, warnings: list[str]) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    decoded = decode_bytes(data, part.get_content_charset())
    if decoded.warning:
        warnings.append(decoded.warning)
    text = _BODY_CONTROL.sub("", decoded.text)
    if part.get_content_type() == "text/plain" and (
        str(part.get_param("format") or "").lower() == "flowed"
    ):
        text = unflow(text, delsp=str(part.get_param("delsp") or "").lower() == "yes")
    return text


def _body_text(
    plain: Message | None, html: Message | None, warnings: list[str]
) -> tuple[str, str | None]:
    if plain is not None:
        text = _decoded_part(plain, warnings)
        # Some senders put an empty text/plain next to the real HTML body.
        if text.strip() or html is None:
            return text, "text/plain"
    if html is not None:
        return _decoded_part(html, warnings), "text/html"
    warnings.append("the mail has no text part")
    return "", None


def _attachments(message: Message, body_ids: set[int]) -> list[Attachment]:
    found: list[Attachment] = []
    _collect_attachments(message, body_ids, found)
    return found


def _collect_attachments(part: Message, body_ids: set[int], found: list[Attachment]) -> None:
    content_type = part.get_content_type()
    if content_type == "message/rfc822" or (part.is_multipart() and _is_attachment(part)):
        found.append(Attachment(_filename(part), content_type, _size(part)))
        return
    if part.is_multipart():
        for child in _children(part):
            _collect_attachments(child, body_ids, found)
        return
    if id(part) in body_ids:
        return
    if content_type in ("text/plain", "text/html") and not _is_attachment(part):
        return  # the other alternative of the body, not something attached
    found.append(Attachment(_filename(part), content_type, _size(part)))


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name:
        return decode_words(unescape_surrogates(str(name))).strip()
    if part.get_content_type() == "message/rfc822":
        for inner in _children(part):
            subjects = [v for k, v in inner.raw_items() if k.lower() == "subject"]
            subject = _header_text(subjects[0]).strip() if subjects else ""
            return f"{subject or 'message'}.eml"
    return ""


def _size(part: Message) -> int:
    """Decoded size of a leaf part; serialized size (CRLF) of an attached mail."""
    whole = part.is_multipart()
    if part.get_content_type() == "message/rfc822":
        part, whole = next(iter(_children(part)), part), True
    if whole:
        try:
            return len(part.as_bytes(policy=policy.SMTP))
        except Exception:  # serializing a broken attached mail must not lose the mail
            return 0
    payload = part.get_payload(decode=True)
    return len(payload) if isinstance(payload, bytes) else 0
