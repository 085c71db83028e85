"""The mail ports: what a mail source is given and must offer, and what a mail sender does.

A mail source (``connectors/mail``: an IMAP mailbox, a provider's mail API) reads mail and
hands each one to a :class:`MailIntake` as a :class:`MailEnvelope`; the intake answers with
an SMTP reply line (:class:`IntakeAnswer`) that says what to do with the mail: ``2xx`` file
it as processed, ``5xx`` as failed, ``4xx`` leave it and try again. The hub's intake policy
(:mod:`hub.mail.intake.policy`) implements :class:`MailIntake`; a source never sees more of
it. A :class:`MailSender` delivers the mail the hub writes (confirmations, answers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class MailLogin:
    """The SMTP AUTH user a mail came with (the connection's, never the mail's)."""

    user_id: int
    username: str
    account_id: int


@dataclass(frozen=True)
class MailEnvelope:
    """A mail as a door received it."""

    raw: bytes
    mail_from: str
    rcpt_to: list[str]
    login: MailLogin | None = None
    source: str = "smtp"
    # The connection: the client's address and HELO name (SMTP). Only the address makes a
    # relay trusted, and the hub's own SPF check needs all three.
    peer: str = ""
    helo: str = ""
    # The authserv-ids of the mailbox server, whose verdicts count for mail read from it
    # (IMAP: the mailbox server is the relay).
    authserv_ids: tuple[str, ...] = ()


class IntakeAnswer(Protocol):
    """What the intake answered about one mail."""

    @property
    def reply(self) -> str:
        """One ASCII SMTP reply line: 2xx taken (or already), 4xx try later, 5xx refused."""
        ...

    @property
    def duplicate(self) -> bool:
        """A 2xx for a mail taken in before (nothing new was queued)."""
        ...


#: Called in the event loop for each newly accepted mail (e.g. to wake the dispatcher).
OnAccepted = Callable[[IntakeAnswer], object]


class MailIntake(Protocol):
    """The intake as a mail source sees it: blocking, so sources call it from a thread."""

    @property
    def max_message_size(self) -> int:
        """The largest mail taken in, in bytes (a bigger one is refused with 552 5.3.4)."""
        ...

    def take(self, env: MailEnvelope) -> IntakeAnswer:
        """Take one mail in: its SMS are committed before a 2xx comes back."""
        ...


def oversize_reply(size: int, limit: int) -> str | None:
    """The 552 for a mail of SIZE bytes over LIMIT (the SMTP door's rule), else None."""
    if size <= limit:
        return None
    return f"552 5.3.4 the mail is {size} bytes; the limit is {limit} bytes"


@runtime_checkable
class MailSource(Protocol):
    """Reads one mailbox and hands its mail to a :class:`MailIntake`.

    Built with ``(settings, intake, password, on_accepted=..., access=...)``; ``intake`` is
    None for a source that is only asked to ``check()`` its mailbox."""

    label: str

    async def start(self) -> None:
        """Run the background loop until ``stop()``."""
        ...

    async def stop(self) -> None:
        """Stop the loop and release what the source holds; idempotent."""
        ...

    async def run_once(self) -> dict[str, Any]:
        """One pass (not while the loop runs); returns its counts."""
        ...

    def wake(self) -> None:
        """Look at the mailbox now (thread-safe)."""
        ...

    def status(self) -> dict[str, Any]:
        """What the source is doing, for status pages and the CLI."""
        ...

    def check(self) -> str:
        """Sign in and read the folder, changing nothing; a sentence (blocking)."""
        ...

    def discard(self) -> None:
        """Release what a source never started holds."""
        ...


@runtime_checkable
class MailSender(Protocol):
    """Delivers one mail (SMTP relay, IMAP APPEND, ...)."""

    async def send(self, message: EmailMessage) -> None:
        """Deliver MESSAGE or raise; a raised error is retried later."""
        ...
