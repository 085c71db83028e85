"""The hub's one error tree: every message is written for the person who will read it.

Our exception hierarchy (HTTP status the API and the console answer; CLI exit code)::

    * HubError                      400, exit 1
      x ConfigError                 exit 2
      x SchemaError                 exit 3
      x BackupError
      x SecretUnreadable
      x NotFound                    404
      x InvalidInput                422
        + TooLarge                  413
          - FileTooLarge
        + UnsupportedType           415
          - UnsupportedFile
        + MissingField
        + TemplateLimitExceeded
        + NoMarketingWindow
        + OutsideMarketingHours
        + IdempotencyKeyReused
        + OutboundRefused           (also an OutboundError)
        + MimeTooDeep               (hub.mail.parse.structure: names its setting)
      x AccountDisabled             403
      x Forbidden                   403
      x InsufficientCredits         402
      x ConflictError               409
        + IdempotencyKeyBusy
      x TemporaryFailure            503
      x RateLimited
      x DnsTrouble
      x LoginRequired               401 (the console's own answer: a redirect to log in)
      x CsrfFailed                  403 (the console's own answer: a page)
      x CallbackRejected            400 (the answer to the provider)
        + BadSignature              401
        + MalformedCallback         400
      x ReplyRefused
        + ReplyDeferred
      x OutboundError
        + OutboundRefused
        + LookupFailed
      x ConnectorError
        + MailboxAuthError
          - ConsentRevoked
        + PermanentMailError
        + CursorExpired
        + SourceError
        + ImapUnavailable           (connectors.mail.source_base)
        + MailApiError              (connectors.mail.api_client)
        + NotBound, LinkLost        (connectors.sms.smpp.link; also ConnectionError)
        + PduError                  (connectors.sms.smpp.pdu; also ValueError)

Every class is defined here except the few drawn with a module: they build their message
from that module's settings, or belong to one connector. ``http_status`` is the one mapping
from error to HTTP answer, read by the API's error handler (hence the console's pages) and by
provider callbacks; a class that does not set it answers what its parent answers.

Exceptions that never leave their module stay there, outside the tree, as control flow:
``hub.mail.intake.outcome.Rejected`` (an SMTP reply, turned into the session's answer),
``hub.mail.intake.transaction.GroupUnpaid``, ``connectors.mail.imap_source._ConnectionLost``,
``connectors.calendar.google._Conflict`` and ``connectors.calendar.caldav._Gone``.
"""

from __future__ import annotations

import math


class HubError(Exception):
    """Base of every error the hub reports to a user; ``str(err)`` is a one-line explanation."""

    exit_code = 1
    http_status = 400


class ConfigError(HubError):
    """The configuration file or environment is wrong; the message names the key."""

    exit_code = 2


class SchemaError(HubError):
    """The database's schema cannot be used by this build; the message says what to do."""

    exit_code = 3


class BackupError(HubError):
    """A backup or restore that cannot be done; the message says why and what to do."""


class SecretUnreadable(HubError):
    """A secret stored in the database cannot be decrypted with this instance's keys."""


class NotFound(HubError):
    """A named thing (account, message, token) does not exist."""

    http_status = 404


# -- input that cannot be used ----------------------------------------------------------------
class InvalidInput(HubError):
    """Input that cannot be used as given: a number, a text, a date, a file."""

    http_status = 422


class TooLarge(InvalidInput):
    """A file or request over a configured size or count limit; the message names it."""

    http_status = 413


class FileTooLarge(TooLarge):
    """The file is over the hosting limit (links.max_file_size)."""


class UnsupportedType(InvalidInput):
    """A file whose content is of a type the hub does not take (whatever its name says)."""

    http_status = 415


class UnsupportedFile(UnsupportedType):
    """The bytes are not a PNG, GIF, JPEG or PDF (whatever the name says)."""


class MissingField(InvalidInput):
    """A merge field the recipient has no value for."""

    def __init__(self, field_name: str, number: str | None) -> None:
        self.field = field_name
        self.number = number
        who = f" for {number}" if number else ""
        super().__init__(
            f"merge field {field_name!r} is missing{who}: add a {field_name} column to the "
            f'list, or write {{{{ {field_name}|default("...") }}}} in the text'
        )


class TemplateLimitExceeded(InvalidInput):
    """A user's template asks for more work or output than the hub allows (the message
    names the limit); a 422 for the API and the console."""


class NoMarketingWindow(InvalidInput):
    """The rules leave no moment at which a marketing SMS may reach that country."""


class OutsideMarketingHours(InvalidInput):
    """A marketing SMS asked for a moment outside the hours, with outside_hours = "refuse"."""


class IdempotencyKeyReused(InvalidInput):
    """The key was first used with a different request (422)."""


# -- the account or object does not allow it --------------------------------------------------
class AccountDisabled(HubError):
    """The account (or one of its parents) is disabled and cannot send."""

    http_status = 403


class Forbidden(HubError):
    """The caller may not act on this account or object."""

    http_status = 403


class InsufficientCredits(HubError):
    """The account's balance does not cover the send; nothing was charged."""

    http_status = 402


class ConflictError(HubError):
    """The object is in a state that does not allow the operation (e.g. already sending)."""

    http_status = 409


class IdempotencyKeyBusy(ConflictError):
    """The first request with this key is still being handled (409: retry shortly)."""


# -- try again later --------------------------------------------------------------------------
class TemporaryFailure(HubError):
    """A failure a retry can fix (a lookup timed out, a lock was not obtained): doors answer
    "try again later" (SMTP 451) instead of refusing for good."""

    http_status = 503


class RateLimited(HubError):
    """A request over a limit; ``retry_after`` is when a retry can succeed (seconds)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def seconds(self) -> int:
        """RETRY_AFTER rounded up to whole seconds, at least 1 (for Retry-After headers)."""
        return max(1, math.ceil(self.retry_after))


class DnsTrouble(HubError):
    """A lookup that did not get an answer (timeout, server failure): try again later."""


# -- the console's session --------------------------------------------------------------------
class LoginRequired(HubError):
    """No valid session: HTML pages redirect to the login form, fetch calls get 401."""

    http_status = 401

    def __init__(self, next_url: str) -> None:
        super().__init__("log in first")
        self.next_url = next_url


class CsrfFailed(HubError):
    """A form or fetch call without this session's CSRF token (403)."""

    http_status = 403


# -- provider callbacks -----------------------------------------------------------------------
class CallbackRejected(HubError):
    """A provider callback that cannot be accepted; ``http_status`` is the HTTP answer."""

    http_status = 400


class BadSignature(CallbackRejected):
    """The callback's signature or shared secret does not match."""

    http_status = 401


class MalformedCallback(CallbackRejected):
    """The callback's body or query cannot be understood."""

    http_status = 400


# -- e-mail answers to forwarded SMS ----------------------------------------------------------
class ReplyRefused(HubError):
    """The answer cannot be sent; the message says why (it becomes the bounce text)."""


class ReplyDeferred(ReplyRefused):
    """The answer's sender could not be checked now (DNS): the sending server retries."""


# -- customers' URLs --------------------------------------------------------------------------
class OutboundError(HubError):
    """A customer's URL could not be reached through the outbound guard."""


class OutboundRefused(OutboundError, InvalidInput):
    """The URL's host is, or resolves to, an address customers' URLs may not reach.
    ``reason`` is the host and address with what is wrong with it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LookupFailed(OutboundError):
    """The URL's host could not be resolved (no such name, or no answer in time)."""


# -- outside systems: SMS providers, mailboxes, mail APIs, calendars --------------------------
class ConnectorError(HubError):
    """An outside system the hub talks to through a connector failed or refused; the base of
    connectors' own errors."""


class MailboxAuthError(ConnectorError):
    """The mailbox cannot sign in by OAuth; the message says what to do."""


class ConsentRevoked(MailboxAuthError):
    """The provider refused the stored refresh token (invalid_grant)."""


class PermanentMailError(ConnectorError):
    """The mail can never be delivered (e.g. the relay refused the recipient with 5xx)."""


class CursorExpired(ConnectorError):
    """The incremental cursor is no longer valid (Google 410 Gone): do a full sync."""


class SourceError(ConnectorError):
    """The calendar could not be read; the message says why, for the receptionist."""
