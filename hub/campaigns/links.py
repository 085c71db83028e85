"""Hosted files and short links: ``PUBLIC_URL/s/CODE`` redirects (or serves a file) and counts.

A short link points either at an outside URL or at a file the hub hosts (PNG, GIF, JPEG or
PDF, recognised by their first bytes, never by their name). Links can be personal: when a
text's URLs are replaced per recipient, each recipient gets their own code, so a click says
which number clicked.

Codes are 8 random base62 characters from ``secrets`` (about 2**47 possibilities): they
cannot be guessed or enumerated, and their length is fixed, so a text's SMS parts can be
counted before the codes exist (see ``preview_text``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import unicodedata
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from email.message import Message as MimePart
from email.parser import BytesParser
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from sqlalchemy import insert
from sqlmodel import Session, col, select

from hub.campaigns.clicks import Agent, new_click
from hub.core.timeutil import as_utc, utcnow
from hub.errors import FileTooLarge, InvalidInput, UnsupportedFile
from hub.inbound.webhooks import LINK_CLICKED, queue_event
from hub.mail.parse.email_policy import PARSE_POLICY
from hub.mail.parse.uuencode import split_uuencoded
from hub.store.db import table
from hub.store.models import HostedFile, LinkClick, ShortLink

if TYPE_CHECKING:
    from hub.core.config import Config

CODE_ALPHABET = string.digits + string.ascii_letters  # base62: safe in URLs and in GSM-7
CODE_LENGTH = 8
DEFAULT_MAX_FILE_SIZE = 5 * 1024 * 1024
MAX_URL_LENGTH = 2000
_CODE_RE = re.compile(rf"^[{re.escape(CODE_ALPHABET)}]{{1,16}}$")
# Per-recipient links are many: one executemany, no RETURNING (nothing reads their ids).
_INSERT_LINKS = insert(table(ShortLink))

# An http(s) URL in running text: up to the first space or character that cannot be in one.
_URL_RE = re.compile(r"https?://[^\s<>\"'`{}|\\^]+", re.IGNORECASE)
# Punctuation that ends a sentence rather than the URL ("see https://x.example/a.").
_TRAILING = ".,;:!?'\"»›)]}"


@dataclass(frozen=True)
class FileType:
    """A type the hub hosts: its MIME type, file extension and leading bytes."""

    content_type: str
    extension: str
    magics: tuple[bytes, ...]


FILE_TYPES = (
    FileType("image/png", ".png", (b"\x89PNG\r\n\x1a\n",)),
    FileType("image/gif", ".gif", (b"GIF87a", b"GIF89a")),
    FileType("image/jpeg", ".jpg", (b"\xff\xd8\xff",)),
    FileType("application/pdf", ".pdf", (b"%PDF-",)),
)
ALLOWED_TYPES = "PNG, GIF, JPEG or PDF"


# -- settings -----------------------------------------------------------------------------------
def max_file_size(config: Config | None) -> int:
    """The largest file the hub hosts, in bytes: ``[links] max_file_size``, default 5 MB."""
    # The [links] section may be absent from older configs: the default applies then.
    section: Any = getattr(config, "links", None)
    return int(getattr(section, "max_file_size", DEFAULT_MAX_FILE_SIZE))


def _base(config: Config) -> str:
    return config.hub.public_url.rstrip("/") + "/s/"


def short_url(config: Config, code: str) -> str:
    """The public address of a short link."""
    return _base(config) + code


def link_length(config: Config) -> int:
    """Characters a short URL takes in a text: the same for every code."""
    return len(_base(config)) + CODE_LENGTH


def _human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"


# -- files --------------------------------------------------------------------------------------
def detect_type(data: bytes) -> FileType | None:
    """The hosted type DATA really is, from its first bytes; None for anything else."""
    for kind in FILE_TYPES:
        if any(data.startswith(magic) for magic in kind.magics):
            return kind
    return None


def safe_name(name: str, kind: FileType) -> str:
    """A display name without any path or control character, ending with the real extension.

    The name only labels the download; the extension is made to match the bytes so that a
    saved file opens as what it is.
    """
    base = PureWindowsPath(PurePosixPath(name or "").name).name
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip(" .")
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = stem[: 255 - len(kind.extension)] or "file"
    return stem + kind.extension


def content_disposition(name: str, inline: bool = True) -> str:
    """A Content-Disposition header value that every browser reads safely (RFC 6266/5987)."""
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "file"
    disposition = "inline" if inline else "attachment"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def check_file(name: str, data: bytes, *, max_size: int) -> FileType:
    """The type of DATA if the hub can host it; refuses other types and files over MAX_SIZE
    (what a preview checks before anything is stored)."""
    label = name or "the file"
    if not data:
        raise UnsupportedFile(f"{label} is empty; send a {ALLOWED_TYPES} file")
    if len(data) > max_size:
        raise FileTooLarge(
            f"{label} is {_human_size(len(data))}; files up to {_human_size(max_size)} "
            "can be hosted (links.max_file_size): send a smaller file"
        )
    kind = detect_type(data)
    if kind is None:
        raise UnsupportedFile(
            f"{label} is not a {ALLOWED_TYPES} file (its content was checked, not its name); "
            "only those types can be sent as links"
        )
    return kind


def host_file(
    session: Session, account_id: int, name: str, data: bytes, *, max_size: int
) -> HostedFile:
    """Store DATA as a hosted file of ACCOUNT_ID; refuses other types and files over MAX_SIZE."""
    kind = check_file(name, data, max_size=max_size)
    hosted = HostedFile(
        account_id=account_id,
        name=safe_name(name, kind),
        content_type=kind.content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
    )
    session.add(hosted)
    session.flush()
    return hosted


def upload(
    session: Session, config: Config, account_id: int, name: str, data: bytes
) -> tuple[HostedFile, ShortLink]:
    """Host a file and give it a short link, with the configured size limit."""
    hosted = host_file(session, account_id, name, data, max_size=max_file_size(config))
    return hosted, file_link(session, account_id, hosted)


def file_link(session: Session, account_id: int, hosted: HostedFile) -> ShortLink:
    """A new short link serving HOSTED."""
    assert hosted.id is not None
    return _new_links(session, account_id, [("", hosted.id)])[0]


# -- links --------------------------------------------------------------------------------------
def validate_target(url: str) -> str:
    """URL if it is an absolute http(s) URL a phone can open; InvalidInput otherwise."""
    url = url.strip()
    if not url or len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        raise InvalidInput(f"{url[:80]!r} must be one http(s) URL of at most 2000 characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise InvalidInput(f"{url[:80]!r} is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise InvalidInput(f"{url[:80]!r} must be an absolute URL starting with https://")
    return url


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def _fresh_codes(session: Session, count: int) -> list[str]:
    """COUNT codes not in use yet (collisions are rare, but over millions of links, not nil)."""
    codes: list[str] = []
    while len(codes) < count:
        wanted = sorted({_new_code() for _ in range(count - len(codes))} - set(codes))
        taken: set[str] = set()
        for start in range(0, len(wanted), 1000):  # bound the statement's parameters
            chunk = wanted[start : start + 1000]
            taken.update(session.exec(select(ShortLink.code).where(col(ShortLink.code).in_(chunk))))
        codes += [code for code in wanted if code not in taken]
    return codes


def _new_links(
    session: Session,
    account_id: int,
    targets: list[tuple[str, int | None]],
    *,
    message_id: str | None = None,
    number: str | None = None,
) -> list[ShortLink]:
    links = [
        ShortLink(
            account_id=account_id,
            code=code,
            target_url=url,
            file_id=file_id,
            message_id=message_id,
            number=number,
        )
        for code, (url, file_id) in zip(_fresh_codes(session, len(targets)), targets, strict=True)
    ]
    session.add_all(links)
    session.flush()
    return links


def shorten(
    session: Session,
    account_id: int,
    url: str,
    *,
    message_id: str | None = None,
    number: str | None = None,
) -> ShortLink:
    """A new short link of ACCOUNT_ID to URL (optionally tied to one message and number)."""
    target = validate_target(url)
    return _new_links(session, account_id, [(target, None)], message_id=message_id, number=number)[
        0
    ]


def find_urls(text: str) -> list[tuple[int, int]]:
    """(start, end) of every http(s) URL in TEXT, without the sentence's closing punctuation."""
    spans = []
    for match in _URL_RE.finditer(text):
        start, end = match.span()
        while end > start and text[end - 1] in _TRAILING:
            # A closing bracket that opened inside the URL belongs to it (…/wiki/Foo_(bar)).
            closer = text[end - 1]
            opener = {")": "(", "]": "[", "}": "{"}.get(closer)
            url = text[start:end]
            if opener and url.count(opener) >= url.count(closer):
                break
            end -= 1
        try:
            host = urlsplit(text[start:end]).hostname
        except ValueError:  # e.g. an unclosed [IPv6 bracket: not a URL a phone can open
            host = None
        if host:
            spans.append((start, end))
    return spans


def _replace(text: str, spans: list[tuple[int, int]], replacements: list[str]) -> str:
    out: list[str] = []
    last = 0
    for (start, end), new in zip(spans, replacements, strict=True):
        out += [text[last:start], new]
        last = end
    out.append(text[last:])
    return "".join(out)


def _spans(config: Config, text: str) -> list[tuple[int, int, str | None]]:
    """The URLs of TEXT that get a link of each recipient's own: ``(start, end, code)``.

    CODE is set for the hub's own short links (``/s/CODE``, a file or a link made before):
    each recipient gets a copy of that link, with a new code of the same length, so a click
    on a hosted file says who clicked too. CODE is None for an outside URL. Unsubscribe links
    (``/u/``, which must stay as they are), own links of another length and URLs over 2000
    characters are left out.
    """
    base = _base(config)
    unsubscribe = config.hub.public_url.rstrip("/") + "/u/"
    spans: list[tuple[int, int, str | None]] = []
    for start, end in find_urls(text):
        url = text[start:end]
        if url.startswith(unsubscribe) or end - start > MAX_URL_LENGTH:
            continue
        if url.startswith(base):
            code = url[len(base) :]
            if len(code) == CODE_LENGTH and _CODE_RE.match(code):
                spans.append((start, end, code))
            continue
        spans.append((start, end, None))
    return spans


def preview_text(config: Config, text: str) -> str:
    """TEXT as ``personalize_links`` will make it, with a placeholder code of the same length.

    Codes are base62 (GSM-7 basic characters) and all the same length, so this counts to
    exactly the same encoding and SMS parts as every recipient's personalised text: count
    and charge on it before creating any link.
    """
    spans = _spans(config, text)
    placeholder = short_url(config, "x" * CODE_LENGTH)
    return _replace(text, [(a, b) for a, b, _ in spans], [placeholder] * len(spans))


@dataclass(frozen=True)
class Personal:
    """One recipient's text to personalise: its number and message id (what a click names)."""

    text: str
    number: str | None
    message_id: str | None


def personalize_many(
    session: Session,
    config: Config,
    account_id: int,
    items: Sequence[Personal],
    *,
    owners: Collection[int] = (),
) -> list[str]:
    """Each item's text with every URL replaced by a short link of that recipient's own.

    Outside URLs get a new link each; the hub's own short links of ACCOUNT_ID or OWNERS (its
    parents) are copied per recipient (same target or file), so a click tells who clicked.
    Own links of other accounts, and unknown codes, are left as they are (they have the same
    length, so the counted parts hold). All the links are written in one statement.
    """
    spans = [_spans(config, item.text) for item in items]
    wanted = {code for found in spans for _, _, code in found if code}
    own: dict[str, tuple[str, int | None]] = {}
    scope = {account_id, *owners}
    listed = sorted(wanted)
    for start in range(0, len(listed), 1000):
        for code, target, file_id in session.exec(
            select(ShortLink.code, ShortLink.target_url, ShortLink.file_id).where(
                col(ShortLink.code).in_(listed[start : start + 1000]),
                col(ShortLink.account_id).in_(scope),
            )
        ).all():
            own[code] = (target, file_id)
    plans: list[list[tuple[int, int, str, int | None]]] = []
    for item, found in zip(items, spans, strict=True):
        plan: list[tuple[int, int, str, int | None]] = []
        for begin, end, own_code in found:
            if own_code is None:
                plan.append((begin, end, item.text[begin:end], None))
            elif own_code in own:
                plan.append((begin, end, *own[own_code]))
        plans.append(plan)
    codes = iter(_fresh_codes(session, sum(len(plan) for plan in plans)))
    now = utcnow()
    rows: list[dict[str, Any]] = []
    texts: list[str] = []
    for item, plan in zip(items, plans, strict=True):
        urls = []
        for _, _, target, file_id in plan:
            code = next(codes)
            urls.append(short_url(config, code))
            rows.append(
                {
                    "account_id": account_id,
                    "code": code,
                    "target_url": target,
                    "file_id": file_id,
                    "message_id": item.message_id,
                    "number": item.number,
                    "created_at": now,
                }
            )
        texts.append(_replace(item.text, [(a, b) for a, b, _, _ in plan], urls))
    if rows:
        session.connection().execute(_INSERT_LINKS, rows)
    return texts


def personalize_links(
    session: Session,
    account_id: int,
    text: str,
    number: str | None,
    message_id: str | None,
    *,
    config: Config,
) -> str:
    """TEXT with every URL replaced by a short link of its own for NUMBER (see
    ``personalize_many``)."""
    return personalize_many(session, config, account_id, [Personal(text, number, message_id)])[0]


def resolve(session: Session, code: str) -> ShortLink | None:
    """The link with CODE, or None (also for strings that cannot be a code)."""
    if not _CODE_RE.match(code):
        return None
    return session.exec(select(ShortLink).where(ShortLink.code == code)).first()


def record_click(
    session: Session,
    config: Config,
    link: ShortLink,
    user_agent: str = "",
    agent: Agent | None = None,
) -> LinkClick:
    """Count a click on LINK and queue the link.clicked webhook, in SESSION's transaction
    (AGENT: USER_AGENT as hub.campaigns.clicks.parse_agent read it, if the caller did already)."""
    click = new_click(link, user_agent, agent)
    session.add(click)
    session.flush()
    hosted = session.get(HostedFile, link.file_id) if link.file_id is not None else None
    queue_event(
        session,
        link.account_id,
        LINK_CLICKED,
        {
            "link_id": link.id,
            "code": link.code,
            "short_url": short_url(config, link.code),
            "target_url": link.target_url or None,
            "file": {"id": hosted.id, "name": hosted.name, "content_type": hosted.content_type}
            if hosted
            else None,
            "message_id": link.message_id,
            "number": link.number,
            "user_agent": click.user_agent,
            "device": click.device_family,
            "os": click.os_family,
            "browser": click.browser_family,
            "bot": click.bot,
            "clicked_at": as_utc(click.clicked_at).isoformat(),
        },
        f"link.clicked.{click.id}",
    )
    return click


def link_view(config: Config, link: ShortLink, clicks: int | None = None) -> dict[str, Any]:
    """A short link as the API and the CLI's --json print it."""
    data: dict[str, Any] = {
        "id": link.id,
        "code": link.code,
        "short_url": short_url(config, link.code),
        "target_url": link.target_url or None,
        "file_id": link.file_id,
        "message_id": link.message_id,
        "number": link.number,
        "created_at": as_utc(link.created_at).isoformat(),
    }
    if clicks is not None:
        data["clicks"] = clicks
    return data


def file_view(config: Config, hosted: HostedFile, link: ShortLink) -> dict[str, Any]:
    """A hosted file and its short link (the answer of POST /v1/files)."""
    return {
        "id": hosted.id,
        "name": hosted.name,
        "url": config.hub.public_url.rstrip("/") + f"/v1/files/{hosted.id}",
        "short_url": short_url(config, link.code),
        "code": link.code,
        "size": hosted.size,
        "content_type": hosted.content_type,
        "sha256": hosted.sha256,
    }


# -- mail attachments ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MailAttachment:
    """A part of a mail that is not its text; LOGO for images the HTML body shows inline."""

    filename: str
    content_type: str
    data: bytes
    logo: bool

    @property
    def label(self) -> str:
        return self.filename or self.content_type


def mail_attachments(raw: bytes, parsed: MimePart | None = None) -> list[MailAttachment]:
    """The attachments of a raw mail with their decoded bytes (PARSED: RAW already parsed,
    as ``ParsedMail.mime`` has it, not to parse it again).

    An image that the HTML body shows (inline, in a multipart/related, or with a Content-ID)
    is a signature logo, not something the writer meant to send: it is marked LOGO.
    """
    message = parsed if parsed is not None else BytesParser(policy=PARSE_POLICY).parsebytes(raw)
    return list(_walk(message, related=False, top=True))


def _walk(part: MimePart, *, related: bool, top: bool = False) -> Iterator[MailAttachment]:
    content_type = part.get_content_type()
    disposition = part.get_content_disposition()
    if content_type == "message/rfc822":
        # An attached mail: never hosted, and its own parts are not ours to look at.
        raw = part.as_bytes()
        yield MailAttachment(_filename(part) or "message.eml", content_type, raw, logo=False)
    elif part.is_multipart():
        inner = related or content_type == "multipart/related"
        yield from _children(part, related=inner)
    elif content_type == "text/plain" and disposition != "attachment":
        yield from _uuencoded(part)
    elif not _is_body(content_type, disposition, top):
        yield _leaf(part, content_type, disposition, related=related)


def _filename(part: MimePart) -> str:
    try:
        return str(part.get_filename() or "").strip()
    except Exception:
        return ""


def _children(part: MimePart, *, related: bool) -> Iterator[MailAttachment]:
    payload = part.get_payload()
    for child in payload if isinstance(payload, list) else []:
        if isinstance(child, MimePart):
            yield from _walk(child, related=related)


def _uuencoded(part: MimePart) -> Iterator[MailAttachment]:
    """The body: files uuencoded in it are attachments too (hub.mail.parse.uuencode)."""
    payload = part.get_payload(decode=True)
    # uuencoded lines are ASCII whatever the charset says.
    text = payload.decode("latin-1") if isinstance(payload, bytes) else ""
    for uu in split_uuencoded(text)[1]:
        yield MailAttachment(uu.filename, uu.content_type, uu.data, logo=False)


def _is_body(content_type: str, disposition: str | None, top: bool) -> bool:
    if not top and content_type == "text/html" and disposition != "attachment":
        return True  # the body (or its other alternative)
    # A single-part mail is its own body.
    return top and content_type.startswith("text/")


def _leaf(
    part: MimePart, content_type: str, disposition: str | None, *, related: bool
) -> MailAttachment:
    data = part.get_payload(decode=True)
    logo = content_type.startswith("image/") and (
        disposition == "inline" or related or part.get("Content-ID") is not None
    )
    return MailAttachment(
        _filename(part), content_type, data if isinstance(data, bytes) else b"", logo=logo
    )


def attach_files(
    session: Session,
    config: Config,
    account_id: int,
    text: str,
    files: list[MailAttachment],
) -> str:
    """Host FILES and return TEXT with one short link per file appended, one per line."""
    limit = max_file_size(config)
    urls = []
    for item in files:
        hosted = host_file(session, account_id, item.filename, item.data, max_size=limit)
        urls.append(short_url(config, file_link(session, account_id, hosted).code))
    return with_links(text, urls)


def with_links(text: str, urls: list[str]) -> str:
    """TEXT followed by URLS, one per line (what ``attach_files`` sends)."""
    return "\n".join([text.rstrip()] + urls if text.strip() else urls)


def check_attachments(
    config: Config, attachments: list[MailAttachment]
) -> tuple[list[MailAttachment], list[str], list[str]]:
    """Sort a mail's attachments: (files to host, problems, left-out logos).

    A problem is a sentence saying why one attachment cannot go by SMS.
    """
    limit = max_file_size(config)
    files: list[MailAttachment] = []
    problems: list[str] = []
    logos: list[str] = []
    for item in attachments:
        kind = detect_type(item.data)
        if item.logo:
            # Left out as before hosting existed: nobody meant to text their signature.
            logos.append(item.label)
        elif kind is None:
            problems.append(f"{item.label} is not a {ALLOWED_TYPES} file")
        elif len(item.data) > limit:
            problems.append(
                f"{item.label} is {_human_size(len(item.data))} (the limit is {_human_size(limit)})"
            )
        else:
            files.append(item)
    return files, problems, logos
