"""Mail parsing for the e-mail doors: headers, SMS text, subject grammar, number addresses.

Pure functions over bytes and strings: no network, no database, no phone-number
normalization (numbers are returned as written; :mod:`hub.core.phone` normalizes them).
"""

from __future__ import annotations

from hub.mail.parse.address import numbers_from_addresses
from hub.mail.parse.body import (
    DEFAULT_DISCLAIMER_PATTERNS,
    DEFAULT_SIGNATURE_PATTERNS,
    BodyOptions,
    ExtractedText,
    extract_text,
)
from hub.mail.parse.htmltext import HtmlText, html_to_text
from hub.mail.parse.message import Attachment, ParsedMail, parse_mail
from hub.mail.parse.normalize import normalize_whitespace, unflow
from hub.mail.parse.reply import extract_reply_text
from hub.mail.parse.subject import (
    DEFAULT,
    FORWARD_PREFIXES,
    REPLY_PREFIXES,
    SubjectGrammar,
    SubjectParts,
    parse_subject,
    strip_prefixes,
)

DEFAULT_GRAMMAR = DEFAULT

__all__ = [
    "DEFAULT",
    "DEFAULT_DISCLAIMER_PATTERNS",
    "DEFAULT_GRAMMAR",
    "DEFAULT_SIGNATURE_PATTERNS",
    "FORWARD_PREFIXES",
    "REPLY_PREFIXES",
    "Attachment",
    "BodyOptions",
    "ExtractedText",
    "HtmlText",
    "ParsedMail",
    "SubjectGrammar",
    "SubjectParts",
    "extract_reply_text",
    "extract_text",
    "html_to_text",
    "normalize_whitespace",
    "numbers_from_addresses",
    "parse_mail",
    "parse_subject",
    "strip_prefixes",
    "unflow",
]
