"""The hub's error hierarchy: every message is written for the person who will read it."""

from __future__ import annotations


class HubError(Exception):
    """Base of every error the hub reports to a user; ``str(err)`` is a one-line explanation."""

    exit_code = 1


class ConfigError(HubError):
    """The configuration file or environment is wrong; the message names the key."""

    exit_code = 2


class SecretUnreadable(HubError):
    """A secret stored in the database cannot be decrypted with this instance's keys."""


class NotFound(HubError):
    """A named thing (account, message, token) does not exist."""


class InvalidInput(HubError):
    """Input that cannot be used as given: a number, a text, a date, a file."""


class TooLarge(InvalidInput):
    """A file or request over a configured size or count limit; the message names it."""


class UnsupportedType(InvalidInput):
    """A file whose content is of a type the hub does not take (whatever its name says)."""


class AccountDisabled(HubError):
    """The account (or one of its parents) is disabled and cannot send."""


class InsufficientCredits(HubError):
    """The account's balance does not cover the send; nothing was charged."""


class Forbidden(HubError):
    """The caller may not act on this account or object."""


class ConflictError(HubError):
    """The object is in a state that does not allow the operation (e.g. already sending)."""


class CallbackRejected(HubError):
    """A provider callback that cannot be accepted; ``status`` is the HTTP answer."""

    status = 400


class BadSignature(CallbackRejected):
    """The callback's signature or shared secret does not match."""

    status = 401


class MalformedCallback(CallbackRejected):
    """The callback's body or query cannot be understood."""

    status = 400


class TemporaryFailure(HubError):
    """A failure a retry can fix (a lookup timed out, a lock was not obtained): doors answer
    "try again later" (SMTP 451) instead of refusing for good."""
