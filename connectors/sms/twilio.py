"""Twilio Programmable Messaging: sending over the REST API, status callbacks and inbound SMS.

What this module relies on, from Twilio's documentation and its helper library:

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, HTTP Basic auth (Account SID, auth
  token), form-encoded ``To``, ``Body``, ``From`` or ``MessagingServiceSid``, and
  ``StatusCallback``. A success is HTTP 201 with a JSON Message whose ``sid`` ("SM...") we keep;
  its initial ``status`` is ``queued`` (or ``accepted`` through a Messaging Service).
* A refusal is a JSON ``{"code", "message", "more_info", "status"}`` with the HTTP status, e.g.
  400 with code 21211 (invalid 'To' number), 21614 (not a mobile number), 21610 (the recipient
  answered STOP), 21408 (no permission for that region), 429 with 20429 (too many requests).
* Status callbacks and inbound SMS are form POSTs (``MessageSid``, ``MessageStatus``,
  ``ErrorCode``, ``From``, ``To``, ``Body``, ``NumMedia``, ...) signed with
  ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL + each POST parameter name and
  value, sorted by name)). Twilio's RequestValidator accepts the URL with and without an
  explicit default port, because Twilio is not consistent about it; so do we. Twilio adds
  parameters without notice, so every received parameter is signed over, not a fixed list.
* Twilio documents no idempotency key for creating a Message (the ``I-Twilio-Idempotency-Token``
  header in its docs is one Twilio puts on its own webhooks), so sends are not deduplicated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import httpx

from connectors.sms.http_base import (
    HttpClientOptions,
    HttpProviderSettings,
    HttpRequest,
    HttpSmsProvider,
    json_or_text,
)
from hub.core.config import require_secret
from hub.errors import BadSignature, ConfigError, MalformedCallback
from hub.ports.sms import (
    DeliveryReason,
    DeliveryReport,
    DeliveryState,
    InboundSms,
    OutgoingSms,
    ProviderContext,
    ProviderEvent,
    SendOutcome,
    SendResult,
)
from hub.sending.callbacks import CallbackRequest, CallbackView

log = logging.getLogger("smshub.twilio")

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")


class TwilioSettings(HttpProviderSettings):
    type: Literal["twilio"] = "twilio"
    # API root; only tests point it elsewhere.
    base_url: str = "https://api.twilio.com"
    # The account's SID ("AC" and 32 hex digits), from the Twilio console.
    account_sid: str
    # Environment variable or file holding the account's auth token (required: it
    # authenticates our requests and signs Twilio's callbacks).
    auth_token_env: str | None = None
    auth_token_file: str | None = None
    # Our Twilio number (E.164) or registered alphanumeric sender ID...
    from_number: str | None = None
    # ...or a Messaging Service that picks the sender (one of the two is required).
    messaging_service_sid: str | None = None
    # Send as the message's own sender (an alphanumeric sender ID registered at Twilio) when
    # it names one; false always sends from from_number / the Messaging Service.
    use_message_sender: bool = True
    # Ask Twilio for delivery reports at PUBLIC_URL/callbacks/NAME/dlr.
    status_callback: bool = True


_INVALID_NUMBER_CODES = frozenset({21211, 21614})
_OPTED_OUT_CODES = frozenset({21610})
# Refusals that are about our account or configuration rather than this recipient: another
# provider of the route may take the message now, and this one again once it is fixed.
_CONFIG_HINTS: dict[int, str] = {
    20003: "Twilio refused our credentials; check account_sid and auth_token_env/_file",
    20404: "Twilio does not know this account or resource; check account_sid and base_url",
    21408: "the Twilio account has no permission to send to this region (geo permissions)",
    21606: "the 'From' number cannot send SMS for this account; check from_number",
    21212: "the 'From' number or sender ID is invalid; check from_number",
    21612: "Twilio cannot connect this 'From' and 'To' pair",
}

# ErrorCode of failed/undelivered status callbacks (Twilio error dictionary).
_DLR_REASONS: dict[int, DeliveryReason] = {
    30001: DeliveryReason.NETWORK_ERROR,  # queue overflow
    30002: DeliveryReason.OTHER,  # account suspended
    30003: DeliveryReason.NETWORK_ERROR,  # unreachable handset (off, out of coverage)
    30004: DeliveryReason.OTHER,  # message blocked (by the recipient)
    30005: DeliveryReason.INVALID_NUMBER,  # unknown destination handset
    30006: DeliveryReason.INVALID_NUMBER,  # landline or unreachable carrier
    30007: DeliveryReason.OTHER,  # carrier filtering
    30008: DeliveryReason.OTHER,  # unknown error
    30009: DeliveryReason.NETWORK_ERROR,  # missing segment
    30036: DeliveryReason.EXPIRED,  # validity period expired
    21211: DeliveryReason.INVALID_NUMBER,
    21614: DeliveryReason.INVALID_NUMBER,
    21610: DeliveryReason.OPTED_OUT,  # recipient opted out: as when the send is refused
}
_DELIVERED = frozenset({"delivered", "read"})
_FAILED = frozenset({"undelivered", "failed", "canceled"})


def interpret_error(status_code: int, body: Any) -> SendResult:
    """Map a non-2xx answer to ``Messages.json`` to a SendResult."""
    code: int | None = None
    said = ""
    if isinstance(body, dict):
        try:
            code = int(body["code"]) if body.get("code") is not None else None
        except (TypeError, ValueError):
            code = None
        said = str(body.get("message") or "")
    label = f"Twilio error {code}" if code is not None else f"Twilio HTTP {status_code}"
    detail = f"{label}: {said}" if said else label
    if code in _INVALID_NUMBER_CODES:
        return SendResult(
            SendOutcome.PERMANENT, reason=DeliveryReason.INVALID_NUMBER, detail=detail
        )
    if code in _OPTED_OUT_CODES:
        return SendResult(SendOutcome.PERMANENT, reason=DeliveryReason.OPTED_OUT, detail=detail)
    if code is not None and code in _CONFIG_HINTS:
        return SendResult(SendOutcome.TRANSIENT, detail=f"{_CONFIG_HINTS[code]} ({detail})")
    if status_code == 429 or code == 20429:
        return SendResult(SendOutcome.TRANSIENT, detail=f"Twilio is rate limiting us ({detail})")
    if status_code in (401, 403):
        return SendResult(SendOutcome.TRANSIENT, detail=f"{_CONFIG_HINTS[20003]} ({detail})")
    # 5xx, and refusals we do not know: never lose the message, let the route go on.
    return SendResult(SendOutcome.TRANSIENT, detail=detail)


class TwilioProvider(HttpSmsProvider[TwilioSettings]):
    """Implements hub.ports.sms.SmsProvider for Twilio Programmable Messaging."""

    settings_model = TwilioSettings
    label = "Twilio"
    log = log
    # Twilio documents no idempotency key for creating Messages: a message a crashed process
    # left in `submitting` may have gone out, so it is marked unknown, never re-sent blindly.
    deduplicates = False

    def __init__(self, settings: TwilioSettings, ctx: ProviderContext) -> None:
        super().__init__(settings, ctx)
        where = self.where
        if not _ACCOUNT_SID.match(settings.account_sid):
            raise ConfigError(
                f"'{where}.account_sid': {settings.account_sid!r} is not a Twilio Account SID "
                "('AC' followed by 32 hexadecimal digits, shown in the Twilio console)"
            )
        if not settings.from_number and not settings.messaging_service_sid:
            raise ConfigError(
                f"'{where}': set from_number (a Twilio number or sender ID) or "
                "messaging_service_sid, so Twilio knows what to send from"
            )
        self.auth_token = require_secret(settings, "auth_token", where, "the Twilio auth token")

    def client_options(self) -> HttpClientOptions:
        return HttpClientOptions(
            base_url=self.settings.base_url,
            auth=(self.settings.account_sid, self.auth_token),
            headers={"Accept": "application/json"},
        )

    def callbacks(self) -> Mapping[str, CallbackView]:
        public = self.ctx.public_url.rstrip("/")
        return {
            "dlr": TwilioStatusView(self.name, self.auth_token, public_url=public),
            "mo": TwilioInboundView(self.name, self.auth_token, public_url=public),
        }

    def status_callback_url(self, sms: OutgoingSms) -> str:
        """Where Twilio reports on SMS; our message id rides along so that a report that
        outruns the dispatcher's bookkeeping still finds its message."""
        base = f"{self.ctx.public_url.rstrip('/')}/callbacks/{quote(self.name)}/dlr"
        return f"{base}?mid={quote(sms.message_id)}"

    def request_form(self, sms: OutgoingSms) -> dict[str, str]:
        """The form fields of one ``Messages.json`` request."""
        form = {"To": sms.to, "Body": sms.text}
        if sms.sender and self.settings.use_message_sender:
            form["From"] = sms.sender
        elif self.settings.from_number:
            form["From"] = self.settings.from_number
        if self.settings.messaging_service_sid:
            form["MessagingServiceSid"] = self.settings.messaging_service_sid
        if self.settings.status_callback:
            form["StatusCallback"] = self.status_callback_url(sms)
        return form

    def build_request(self, sms: OutgoingSms) -> HttpRequest:
        path = f"/2010-04-01/Accounts/{self.settings.account_sid}/Messages.json"
        return HttpRequest("POST", path, data=self.request_form(sms))

    def parse_response(self, response: httpx.Response, sms: OutgoingSms) -> SendResult:
        body = json_or_text(response)
        if not response.is_success:
            return interpret_error(response.status_code, body)
        if isinstance(body, dict) and body.get("sid"):
            return SendResult(
                SendOutcome.ACCEPTED, str(body["sid"]), detail=f"Twilio: {body.get('status', '')}"
            )
        return SendResult(
            SendOutcome.TRANSIENT,
            detail=f"Twilio answered without a message sid: {str(body)[:200]!r}",
        )


def compute_signature(auth_token: str, url: str, params: Mapping[str, list[str]]) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(token, URL + sorted name+value pairs)).

    A name given several times contributes each distinct value once, in sorted order: that is
    what Twilio's published test vector for repeated parameters requires (twilio-python's and
    twilio-php's RequestValidator tests).
    """
    data = url
    for name in sorted(params):
        for value in sorted(set(params[name])):
            data += name + value
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _port_variants(url: str) -> list[str]:
    """The URL as given, without its default port, and with it (as Twilio's validator does)."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    bare = urlunsplit(parts._replace(netloc=f"{prefix}{host}"))
    with_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{parts.port or default}"))
    variants = [url, bare, with_port]
    return list(dict.fromkeys(variants))


class TwilioSignatureMixin(CallbackView):
    """Checks ``X-Twilio-Signature`` in constant time.

    The signature covers the URL *Twilio* called, which behind a reverse proxy or TLS
    terminator is not the URL this process sees (other scheme, host, port, or a path prefix the
    proxy strips). So the URL is rebuilt from the configured public URL, this route's path and
    the query string exactly as received, never from the request's own Host header (which a
    proxy rewrites, and which the caller controls).
    """

    signature_header = "x-twilio-signature"
    kind = ""

    def __init__(self, provider_name: str, secret: str | None, *, public_url: str) -> None:
        super().__init__(provider_name, secret)
        self.public_url = public_url.rstrip("/")

    def signed_url(self, request: CallbackRequest) -> str:
        query = urlsplit(request.url).query
        base = f"{self.public_url}/callbacks/{quote(self.provider_name)}/{self.kind}"
        return f"{base}?{query}" if query else base

    def validate_request(self, request: CallbackRequest) -> None:
        if not self.secret:
            return
        given = request.headers.get(self.signature_header)
        if not given:
            raise BadSignature("the X-Twilio-Signature header is missing")
        params: dict[str, list[str]] = {}
        if request.method == "POST" and "x-www-form-urlencoded" in request.content_type:
            try:
                params = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                raise BadSignature("the form body is not UTF-8, so it cannot be Twilio's") from None
        given_bytes = given.strip().encode("utf-8")
        ok = False
        for url in _port_variants(self.signed_url(request)):
            expected = compute_signature(self.secret, url, params).encode("utf-8")
            # Every variant is compared (no early exit), each in constant time.
            ok |= hmac.compare_digest(expected, given_bytes)
        if not ok:
            raise BadSignature(
                "the X-Twilio-Signature does not match; check the auth token and that "
                "hub.public_url is the URL Twilio calls"
            )


def _required(request: CallbackRequest, *names: str) -> dict[str, str]:
    values = {name: request.param(name) for name in names}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise MalformedCallback(f"Twilio callback lacks {', '.join(missing)}")
    return {name: str(value) for name, value in values.items()}


class TwilioStatusView(TwilioSignatureMixin, CallbackView):
    """Twilio's StatusCallback for the messages we send."""

    label = "twilio dlr"
    kind = "dlr"

    def parse_events(self, request: CallbackRequest) -> list[ProviderEvent]:
        fields = _required(request, "MessageSid", "MessageStatus")
        sid, status = fields["MessageSid"], fields["MessageStatus"].strip().lower()
        raw_code = (request.param("ErrorCode") or "").strip()
        code: int | None = None
        if raw_code:
            try:
                code = int(raw_code)
            except ValueError:
                raise MalformedCallback(f"ErrorCode is not a number: {raw_code!r}") from None
        reason: DeliveryReason | None = None
        if status in _DELIVERED:
            state = DeliveryState.DELIVERED
        elif status in _FAILED:
            state = DeliveryState.UNDELIVERED
            reason = _DLR_REASONS.get(code, DeliveryReason.OTHER) if code else DeliveryReason.OTHER
        else:
            # queued, accepted, scheduled, sending, sent, and whatever Twilio adds later.
            state = DeliveryState.PENDING
        detail = f"Twilio: {status}" + (f" (error {code})" if code else "")
        form = request.form() if "x-www-form-urlencoded" in request.content_type else {}
        return [
            DeliveryReport(
                provider=self.provider_name,
                event_key=f"{sid}:{status}",
                state=state,
                message_id=request.query.get("mid") or None,
                provider_message_id=sid,
                reason=reason,
                detail=detail,
                raw={**request.query, **form},
            )
        ]


class TwilioInboundView(TwilioSignatureMixin, CallbackView):
    """Twilio's incoming-message webhook; answers an empty TwiML document (no auto-reply)."""

    label = "twilio mo"
    kind = "mo"

    def parse_events(self, request: CallbackRequest) -> list[ProviderEvent]:
        fields = _required(request, "MessageSid", "From", "To")
        form = request.form() if "x-www-form-urlencoded" in request.content_type else {}
        return [
            InboundSms(
                provider=self.provider_name,
                event_key=fields["MessageSid"],
                sender=fields["From"],
                recipient=fields["To"],
                # An MMS may carry media only (NumMedia > 0, empty Body).
                text=request.param("Body") or "",
                raw={**request.query, **form},
            )
        ]

    def success_response(self, events: Sequence[ProviderEvent]) -> tuple[int, str, str]:
        return 200, "text/xml", '<?xml version="1.0" encoding="UTF-8"?><Response/>'
