"""HTML mail bodies to readable plain text, with stdlib ``html.parser`` only.

Block elements become line breaks, paragraphs blank lines, list items ``- `` or ``1. ``
lines, links keep their address when the text does not already show it. The containers
that mail clients use for quoted history and signatures are dropped (Gmail
``gmail_quote``/``gmail_signature``, Apple Mail ``blockquote type=cite``, Thunderbird
``moz-cite-prefix``/``moz-signature``, Yahoo, Proton Mail, Outlook web ``Signature``),
unless they hold a forwarded message. Outlook's own quote separator is plain markup and
is left to the text-level rules of :mod:`hub.mail.parse.body`.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from hub.mail.parse.markers import is_forward_banner
from hub.mail.parse.normalize import normalize_whitespace

_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr"}
)
_INVISIBLE = frozenset({"head", "style", "script", "title", "template", "xml"})
_BLOCKS = frozenset(
    {"div", "section", "article", "header", "footer", "nav", "aside", "address", "center"}
    | {"form", "fieldset", "figure", "main", "table", "tbody", "thead", "tfoot", "tr", "dl"}
    | {"dt", "dd", "blockquote", "pre", "ul", "ol", "li", "body", "html", "caption"}
)
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6"})
# Tags that an opening tag of the same name closes implicitly (HTML's optional end tags).
_SELF_CLOSING_SIBLINGS = frozenset({"p", "li", "dt", "dd", "tr", "td", "th", "option"})

_QUOTE_CLASSES = frozenset(
    {"gmail_quote", "gmail_quote_container", "x_gmail_quote", "moz-cite-prefix"}
    | {"yahoo_quoted", "protonmail_quote"}
)
_SIGNATURE_CLASSES = frozenset(
    {"gmail_signature", "gmail_signature_prefix", "moz-signature"}
    | {"protonmail_signature_block", "x_gmail_signature"}
)
_SIGNATURE_IDS = frozenset({"signature", "ms-outlook-mobile-signature"})
_COLLAPSE = re.compile(r"[ \t\n\r\f]+")


@dataclass
class _Element:
    """An open element; ``drop`` names what its content is when it is to be removed."""

    tag: str
    drop: str | None = None
    mso: bool = False
    href: str | None = None
    link_buffer: _Buffer | None = None
    text_start: int = 0


@dataclass
class _Buffer:
    """Text collected for the document or for one dropped container."""

    kind: str | None
    parts: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.parts)

    def trailing_newlines(self) -> int:
        """How many newlines the text ends with (spaces before them ignored)."""
        count = 0
        for part in reversed(self.parts):
            for char in reversed(part):
                if char == "\n":
                    count += 1
                elif char != " ":
                    return count
        return count if self.parts else -1


@dataclass(frozen=True)
class HtmlText:
    """The text of an HTML body and what was dropped on the way."""

    text: str
    removed_quote: bool = False
    removed_signature: bool = False


class _Converter(HTMLParser):
    """Streaming HTML-to-text conversion; see the module docstring."""

    def __init__(self, *, keep_quotes: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self._keep_quotes = keep_quotes
        self._stack: list[_Element] = []
        self._buffers: list[_Buffer] = [_Buffer(kind=None)]
        self._hidden = 0
        self._pre = 0
        self._lists: list[list[int]] = []
        self.removed: set[str] = set()

    # -- output helpers -------------------------------------------------------------

    @property
    def _out(self) -> _Buffer:
        return self._buffers[-1]

    def _emit(self, text: str) -> None:
        if self._hidden or not text:
            return
        self._out.parts.append(text)

    def _break(self, newlines: int) -> None:
        """Make the text end with at least ``newlines`` line breaks (none at its start)."""
        if self._hidden:
            return
        have = self._out.trailing_newlines()
        if have < 0:
            return
        if have == 0:
            self._rstrip_spaces()
        if have < newlines:
            self._out.parts.append("\n" * (newlines - have))

    def _rstrip_spaces(self) -> None:
        parts = self._out.parts
        while parts and parts[-1].endswith(" "):
            parts[-1] = parts[-1].rstrip(" ")
            if not parts[-1]:
                parts.pop()

    def _at_line_start(self) -> bool:
        return self._out.trailing_newlines() != 0

    def _ends_with_space(self) -> bool:
        parts = self._out.parts
        return bool(parts) and parts[-1].endswith(" ")

    # -- parser callbacks -----------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name.lower(): (value or "") for name, value in attrs}
        if tag in _SELF_CLOSING_SIBLINGS and self._stack and self._stack[-1].tag == tag:
            self._close_top()
        if tag in _VOID:
            if not self._hidden:
                self._void(tag)
            return
        element = _Element(tag=tag)
        self._stack.append(element)
        if tag in _INVISIBLE:
            self._hidden += 1
            return
        element.drop = self._drop_kind(tag, attributes)
        if element.drop is not None:
            self._break(1)
            self._buffers.append(_Buffer(kind=element.drop))
        self._open(element, attributes)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._stack) - 1, -1, -1):
            if self._stack[index].tag == tag:
                while len(self._stack) > index:
                    self._close_top()
                return

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._pre:
            self._emit(data)
            return
        text = _COLLAPSE.sub(" ", data)
        if self._at_line_start() or self._ends_with_space():
            text = text.lstrip(" ")
        self._emit(text)

    def close(self) -> None:
        super().close()
        while self._stack:
            self._close_top()

    # -- element handling -----------------------------------------------------------

    def _drop_kind(self, tag: str, attributes: dict[str, str]) -> str | None:
        classes = set(attributes.get("class", "").split())
        is_cite = tag == "blockquote" and attributes.get("type", "").lower() == "cite"
        if (classes & _QUOTE_CLASSES or is_cite) and not self._keep_quotes:
            return "quote"
        if classes & _SIGNATURE_CLASSES or attributes.get("data-smartmail") == "gmail_signature":
            return "signature"
        if attributes.get("id", "").lower() in _SIGNATURE_IDS:
            return "signature"
        return None

    def _void(self, tag: str) -> None:
        if tag == "br":
            self._rstrip_spaces()
            self._emit("\n")
        elif tag == "hr":
            self._break(2)

    def _open(self, element: _Element, attributes: dict[str, str]) -> None:
        tag = element.tag
        if tag == "p":
            # Outlook writes every line as <p class=MsoNormal>: those are lines, not paragraphs.
            element.mso = attributes.get("class", "").startswith("Mso")
            self._break(1 if element.mso else 2)
        elif tag in _PARAGRAPHS:
            self._break(2)
        elif tag in ("ul", "ol"):
            self._break(1)
            self._lists.append([0 if tag == "ol" else -1])
        elif tag == "li":
            self._break(1)
            self._emit(self._bullet())
        elif tag in ("td", "th"):
            if not self._at_line_start():
                self._emit(" ")
        elif tag == "pre":
            self._break(1)
            self._pre += 1
        elif tag in _BLOCKS:
            self._break(1)
        elif tag == "a":
            element.href = attributes.get("href", "")
            element.link_buffer = self._out
            element.text_start = len(self._out.parts)

    def _bullet(self) -> str:
        if not self._lists:
            return "- "
        counter = self._lists[-1]
        if counter[0] < 0:
            return "- "
        counter[0] += 1
        return f"{counter[0]}. "

    def _close_top(self) -> None:
        element = self._stack.pop()
        tag = element.tag
        if tag in _INVISIBLE:
            self._hidden -= 1
            return
        if tag == "a":
            self._link_address(element)
        elif tag == "p":
            self._break(1 if element.mso else 2)
        elif tag in _PARAGRAPHS:
            self._break(2)
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._break(1)
        elif tag == "pre":
            self._pre -= 1
            self._break(1)
        elif tag in _BLOCKS:
            self._break(1)
        if element.drop is not None:
            self._finish_dropped(element.drop)

    def _link_address(self, element: _Element) -> None:
        href = (element.href or "").strip()
        if element.link_buffer is not self._out or not re.match(r"https?://", href, re.I):
            return
        shown = "".join(self._out.parts[element.text_start :]).strip()
        if not shown or _bare_url(href).startswith(_bare_url(shown)):
            return
        self._emit(f" ({href})")

    def _finish_dropped(self, kind: str) -> None:
        """Discard a quote or signature container, unless it holds a forwarded message."""
        dropped = self._buffers.pop()
        content = normalize_whitespace(dropped.text())
        if kind == "quote" and (_starts_with_forward(content) or self._follows_forward()):
            self._break(1)
            self._emit(content)
            self._break(1)
            return
        if content:
            self.removed.add(kind)

    def _follows_forward(self) -> bool:
        lines = [line for line in self._out.text().split("\n") if line.strip()]
        return bool(lines) and is_forward_banner(lines[-1])


def _starts_with_forward(text: str) -> bool:
    first = next((line for line in text.split("\n") if line.strip()), "")
    return is_forward_banner(first)


def _bare_url(text: str) -> str:
    """A URL or link text without scheme, ``www.`` and trailing slash, for comparison."""
    text = re.sub(r"^(https?://)?(www\.)?", "", text.strip().lower())
    return text.rstrip("/")


def html_to_text(markup: str, *, keep_quotes: bool = False) -> HtmlText:
    """Convert an HTML mail body to normalized plain text."""
    converter = _Converter(keep_quotes=keep_quotes)
    try:
        converter.feed(markup)
        converter.close()
    except Exception:
        # html.parser rarely gives up, but a mail must never be lost to its markup.
        return HtmlText(text=_strip_tags(markup))
    text = normalize_whitespace(converter._buffers[0].text())
    return HtmlText(
        text=text,
        removed_quote="quote" in converter.removed,
        removed_signature="signature" in converter.removed,
    )


def _strip_tags(markup: str) -> str:
    """Last-resort conversion for markup that even ``html.parser`` rejects."""
    markup = re.sub(r"(?is)<(head|style|script)\b.*?</\1\s*>", "", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</(p|div|li|tr)\s*>", "\n", markup)
    return normalize_whitespace(html.unescape(re.sub(r"<[^>]*>", "", markup)))
