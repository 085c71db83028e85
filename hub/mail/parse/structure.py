"""The MIME structure of a mail, read with bounded work, and what makes it unreadable.

The stdlib parser nests one generator per MIME level and tests every line against every
open boundary: a multipart nested 2,000 deep ended in RecursionError (answered 451, so the
sender's server retried it for days), and one nested 900 deep with many lines took seconds
of CPU per try. Here the parser stops as soon as a part lies deeper than the limit, before
reading further. A multipart whose boundary is missing or never found is parsed by the
stdlib as one opaque part; it is reported as broken rather than read as an attachment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from email import errors
from email.feedparser import BytesFeedParser
from email.message import Message
from typing import Any

from hub.errors import InvalidInput
from hub.mail.parse.email_policy import PARSE_POLICY

# Levels of parts inside parts (a multipart/alternative in a multipart/mixed is 2); real mail
# rarely goes beyond 5. The hub's setting of the same name is smtp.max_mime_depth.
MAX_MIME_DEPTH = 20
DEPTH_SETTING = "smtp.max_mime_depth"

# The limit for parse_mail calls that do not give one: a door sets it from its config for
# the mails it reads (``mime_depth``), without every layer in between passing it on.
_depth_limit: ContextVar[int] = ContextVar("mime_depth_limit", default=MAX_MIME_DEPTH)


class MimeTooDeep(InvalidInput):
    """A mail whose MIME parts are nested deeper than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"MIME parts nested deeper than {limit} ({DEPTH_SETTING})")
        self.limit = limit


@contextmanager
def mime_depth(limit: int) -> Iterator[None]:
    """Within this block, mails are parsed with LIMIT levels of MIME nesting at most."""
    token = _depth_limit.set(limit)
    try:
        yield
    finally:
        _depth_limit.reset(token)


def depth_limit() -> int:
    """The nesting limit in force (``mime_depth``, else MAX_MIME_DEPTH)."""
    return _depth_limit.get()


class _BoundedParser(BytesFeedParser):
    """The stdlib's parser, refusing a part nested deeper than LIMIT as it reaches it.

    ``_parsegen`` is the stdlib's generator for one part (it calls itself for each subpart
    and for an attached message): counting its active calls is counting MIME levels.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(policy=PARSE_POLICY)
        self._limit = limit
        self._level = -1

    def _parsegen(self) -> Iterator[Any]:
        self._level += 1
        try:
            if self._level > self._limit:
                raise MimeTooDeep(self._limit)
            yield from super()._parsegen()  # type: ignore[misc]
        finally:
            self._level -= 1


def parse_bytes(data: bytes, limit: int | None = None) -> Message:
    """DATA parsed as ``BytesParser(policy=PARSE_POLICY)`` does; raises MimeTooDeep when a
    part is nested deeper than LIMIT (default: ``depth_limit()``)."""
    parser = _BoundedParser(depth_limit() if limit is None else limit)
    parser.feed(data)
    message: Message = parser.close()
    return message


def broken_structure(message: Message) -> str | None:
    """Why MESSAGE's MIME structure cannot be read, or None: a multipart without a boundary,
    or whose boundary is never found in its body. (A missing closing boundary is common in
    real mail and harmless: the parts before it are complete.)"""
    for part in message.walk():
        for defect in part.defects:
            if isinstance(defect, errors.NoBoundaryInMultipartDefect):
                return (
                    f"the MIME structure is broken: the {part.get_content_type()} part has no "
                    "boundary parameter (boundary not found), so its parts cannot be told apart"
                )
            if isinstance(defect, errors.StartBoundaryNotFoundDefect):
                return (
                    f"the MIME structure is broken: the boundary {part.get_boundary()!r} of the "
                    f"{part.get_content_type()} part is not found in its body"
                )
    return None
