"""What every mail intake transport (IMAP, Graph, Gmail) reads off a raw mail and records
about a refused one, so the transports log, envelope and report mails the same way."""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class FailedMail:
    """A mail refused for good (moved to the Failed folder) and why."""

    when: datetime
    uid: int
    message_id: str
    sender: str
    subject: str
    reply: str


_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.compat32)


def header_facts(raw: bytes) -> tuple[str, str, str, str]:
    """(envelope sender, From, Message-ID, Subject) of a raw mail, for the envelope and logs.

    The envelope sender is Return-Path (set by the delivering server), else From.
    """
    headers = _HEADERS.parsebytes(raw)

    def get(name: str) -> str:
        value = headers.get(name)
        return " ".join(str(value).split()) if value is not None else ""

    from_addr = email.utils.parseaddr(get("From"))[1]
    return_path = email.utils.parseaddr(get("Return-Path"))[1]
    return return_path or from_addr, from_addr, get("Message-ID"), get("Subject")[:200]
