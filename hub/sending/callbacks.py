"""Provider callbacks (delivery reports, inbound SMS) over HTTP, in the shape of django-anymail.

The base class owns the HTTP handling; each provider's view only implements
``validate_request`` (every validator in the class chain runs) and ``parse_events``.
A bad signature or secret is a 401, a malformed body a 400, and a failure while storing a
500 so the provider retries. A view without a secret is warned about loudly at start.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from hub.errors import BadSignature, CallbackRejected, MalformedCallback
from hub.ports.sms import ProviderEvent

log = logging.getLogger("smshub.callbacks")


@dataclass(frozen=True)
class CallbackRequest:
    """The parts of an HTTP request a callback view may look at."""

    method: str
    url: str  # the full URL as the provider called it (Twilio signs it)
    headers: Mapping[str, str]  # lower-cased names
    query: Mapping[str, str]
    body: bytes
    content_type: str = ""
    _form: dict[str, str] | None = field(default=None, repr=False)

    def form(self) -> dict[str, str]:
        """The url-encoded body as a flat dict (last value wins)."""
        if self._form is None:
            try:
                parsed = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError as exc:
                raise MalformedCallback(f"form body is not UTF-8: {exc}") from exc
            object.__setattr__(self, "_form", {k: v[-1] for k, v in parsed.items()})
        assert self._form is not None
        return self._form

    def param(self, name: str) -> str | None:
        """A value from the query string, else from a url-encoded body."""
        if name in self.query:
            return self.query[name]
        if "x-www-form-urlencoded" in self.content_type:
            return self.form().get(name)
        return None


def secrets_match(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented secret with the expected one."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


EventSink = Callable[[Sequence[ProviderEvent]], Awaitable[None]]


class CallbackView:
    """Base of every provider callback endpoint."""

    #: Short name used in logs ("kannel dlr").
    label = "callback"

    def __init__(self, provider_name: str, secret: str | None) -> None:
        self.provider_name = provider_name
        self.secret = secret

    def warn_if_insecure(self) -> None:
        """Called once at start: a callback without a secret accepts anyone's reports."""
        if not self.secret:
            log.warning(
                "SECURITY: %s callbacks for provider %r have no secret configured; anyone who "
                "can reach the hub can forge delivery reports and inbound SMS. Set the "
                "provider's callback secret in the config.",
                self.label,
                self.provider_name,
            )

    def validate_request(self, request: CallbackRequest) -> None:
        """Raise BadSignature if the request is not from the provider. Override in subclasses."""

    def parse_events(self, request: CallbackRequest) -> list[ProviderEvent]:
        """Turn the request into normalized events; raise MalformedCallback on bad input."""
        raise NotImplementedError

    def success_response(self, events: Sequence[ProviderEvent]) -> tuple[int, str, str]:
        """Status, content type and body answered after the events were stored."""
        return 200, "text/plain", "OK"

    def run_validators(self, request: CallbackRequest) -> None:
        """Run validate_request of every class in the chain, most basic first."""
        for cls in reversed(type(self).__mro__):
            validator = cls.__dict__.get("validate_request")
            if validator is not None:
                validator(self, request)

    async def handle(self, request: CallbackRequest, sink: EventSink) -> tuple[int, str, str]:
        """Validate, parse and store; returns (status, content type, body)."""
        try:
            self.run_validators(request)
            events = self.parse_events(request)
        except CallbackRejected as exc:
            log.warning(
                "rejected %s callback for %s (%d): %s",
                self.label,
                self.provider_name,
                exc.http_status,
                exc,
            )
            return exc.http_status, "text/plain", str(exc)
        try:
            await sink(events)
        except Exception:
            log.exception("storing %s callback for %s failed", self.label, self.provider_name)
            return 500, "text/plain", "could not store the event; please retry"
        return self.success_response(events)


class SharedSecretMixin(CallbackView):
    """A shared secret in the ``X-Smshub-Secret`` header, or ``?secret=`` in the URL for
    gateways that can only call a fixed URL (Kannel)."""

    secret_param = "secret"
    secret_header = "x-smshub-secret"

    def validate_request(self, request: CallbackRequest) -> None:
        if not self.secret:
            return
        given = request.headers.get(self.secret_header) or request.query.get(self.secret_param)
        if not secrets_match(given, self.secret):
            raise BadSignature("the callback secret is missing or wrong")


__all__ = [
    "BadSignature",
    "CallbackRequest",
    "CallbackView",
    "EventSink",
    "MalformedCallback",
    "SharedSecretMixin",
    "secrets_match",
]
