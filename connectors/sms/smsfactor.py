"""SMSFactor (api.smsfactor.com): sending over its JSON API, delivery reports and replies.

What the SMSFactor documentation (dev.smsfactor.com) says, and what this module relies on:

* ``POST /send`` with ``Authorization: Bearer TOKEN`` and ``Accept: application/json`` (the API
  answers XML unless asked for JSON) and the body
  ``{"sms": {"message": {"text", "pushtype", "sender", "unicode"}, "recipients": {"gsm":
  [{"gsmsmsid", "value"}]}}}``; numbers are international without the "+" (``33612345678``);
  ``gsmsmsid`` is "an id of your choice to link it to its delivery report".
* Every answer carries a request ``status``: 1 OK, -1 authentication error, -2 XML error,
  -3 not enough credits, -4 incorrect date delay, -5 resource not found, -6 JSON error,
  -7 data error, -8 campaign under moderation (it *will* be sent; the docs warn that retrying
  sends it twice), -99 unknown error. A success carries the campaign ``ticket`` and counters of
  what was filtered out (``invalid``, ``npai``, ``blacklisted``, ``duplicated``, and in newer
  docs ``not_allowed``, ``flood``, ``country_limit``) next to ``sent``.
* Delivery reports (a "DLR" webhook) are a POST with a raw JSON body ``{"date", "status",
  "destination", "message_id" (our gsmsmsid), "campaign_id" (the ticket), "country_code"}``
  where ``status`` is 0 NOT_SENT, 1 SENT, 2 NOT_DELIVERED, 3 DELIVERED, 4 NOT_ALLOWED,
  5 INVALID_DESTINATION, 6 INVALID_SENDER, 7 ROUTE_NOT_AVAILABLE, 9 REJECTED, 11 NETWORK_ERROR,
  12 EXPIRED.
* Replies (an "MO" webhook) are a POST with ``{"date", "message", "from", "account_id",
  "last_message_id"}``. This shape is documented on SMSFactor's sister platform (SMSUP, same
  API and servers); SMSFactor's own page for it was not in the stored docs. It names no
  message id and not the number that was texted, so the event key is derived from its content
  and the recipient is the configured ``inbound_number``.

What the docs do not say: the HTTP status codes that go with negative request statuses (this
module reads the JSON ``status`` whatever the HTTP code), any idempotency key (``gsmsmsid`` only
labels reports), whether webhook URLs keep their query string (they are documented as plain
URLs; we rely on it for the callback secret), and how the optional ``X-SMSFactor-Signature``
webhook header is computed, which is why callbacks are protected by our own secret instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import httpx

from connectors.sms.callback_json import json_object
from connectors.sms.http_base import (
    HttpClientOptions,
    HttpProviderSettings,
    HttpRequest,
    HttpSmsProvider,
    json_or_text,
)
from hub.core.config import read_secret, require_secret
from hub.errors import MalformedCallback
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
from hub.sending.callbacks import CallbackRequest, CallbackView, SharedSecretMixin

log = logging.getLogger("smshub.smsfactor")


class SmsFactorSettings(HttpProviderSettings):
    type: Literal["smsfactor"] = "smsfactor"
    # API root; only tests point it elsewhere.
    base_url: str = "https://api.smsfactor.com"
    # Environment variable or file holding the API token (required).
    token_env: str | None = None
    token_file: str | None = None
    # Sender used when a message names none; empty lets SMSFactor choose (a short code that
    # can receive replies).
    sender: str | None = None
    # SMSFactor's push type for every message: "alert" (any time) or "marketing".
    pushtype: Literal["alert", "marketing"] = "alert"
    # Environment variable or file holding the secret that must appear as ?secret=... in the
    # webhook URLs configured at SMSFactor. Unset: anyone can post reports (warned at start).
    callback_secret_env: str | None = None
    callback_secret_file: str | None = None
    # Our number as stored on inbound SMS: SMSFactor's reply webhook does not say which
    # number was texted.
    inbound_number: str = ""


# Request statuses from "Getting started" on dev.smsfactor.com, with what they mean for us.
# Every refusal that is about our account or our request (not about the recipient) is
# TRANSIENT: the dispatcher then tries the next provider of the route now and this one again
# later, and after max_attempts fails the message with a refund. Such a problem is fixed by
# the operator, not by dropping the message.
_REQUEST_ERRORS: dict[int, str] = {
    -1: "SMSFactor refused the API token (authentication error); check token_env/token_file",
    -2: "SMSFactor could not read the request (XML error)",
    -3: "the SMSFactor account has not enough credits; top it up at SMSFactor",
    -4: "SMSFactor refused the sending date (incorrect date delay)",
    -5: "SMSFactor answered 'resource not found'; check base_url",
    -6: "SMSFactor could not read the request (JSON error)",
    -7: "SMSFactor refused the request data (data error)",
    -99: "SMSFactor reported an unknown error",
}
_MODERATION = -8

# Delivery report statuses (dev.smsfactor.com, "Delivery reports").
_DLR_STATES: dict[int, tuple[DeliveryState, DeliveryReason | None, str]] = {
    0: (DeliveryState.PENDING, None, "NOT_SENT"),
    1: (DeliveryState.PENDING, None, "SENT"),
    2: (DeliveryState.UNDELIVERED, DeliveryReason.OTHER, "NOT_DELIVERED"),
    3: (DeliveryState.DELIVERED, None, "DELIVERED"),
    4: (DeliveryState.UNDELIVERED, DeliveryReason.OTHER, "NOT_ALLOWED"),
    5: (DeliveryState.UNDELIVERED, DeliveryReason.INVALID_NUMBER, "INVALID_DESTINATION"),
    6: (DeliveryState.UNDELIVERED, DeliveryReason.OTHER, "INVALID_SENDER"),
    # A route that is down now may be up later: re-sent within the report window.
    7: (DeliveryState.UNDELIVERED, DeliveryReason.NETWORK_ERROR, "ROUTE_NOT_AVAILABLE"),
    9: (DeliveryState.UNDELIVERED, DeliveryReason.OTHER, "REJECTED"),
    11: (DeliveryState.UNDELIVERED, DeliveryReason.NETWORK_ERROR, "NETWORK_ERROR"),
    12: (DeliveryState.UNDELIVERED, DeliveryReason.EXPIRED, "EXPIRED"),
}
_DLR_BY_NAME = {name: code for code, (_, _, name) in _DLR_STATES.items()}


def _international(number: str) -> str:
    """E.164 as SMSFactor writes it: country code and number, no '+'."""
    return number.removeprefix("+")


def _e164(number: str) -> str:
    """A number from a webhook in our E.164 form (SMSFactor omits the '+')."""
    number = number.strip()
    return "+" + number if number.isdigit() else number


def _count(body: Mapping[str, Any], key: str) -> int:
    try:
        return int(body.get(key) or 0)
    except (TypeError, ValueError):
        return 0


def _request_refused(status: int, said: str) -> SendResult:
    """A request status other than 1 (OK) and -8 (moderation)."""
    detail = _REQUEST_ERRORS.get(status, f"SMSFactor refused the request (status {status})")
    return SendResult(SendOutcome.TRANSIENT, detail=f"{detail}: {said}" if said else detail)


def _filtered_out(body: Mapping[str, Any]) -> SendResult:
    """Accepted as a request, but our one recipient was filtered out before sending."""
    if _count(body, "invalid") or _count(body, "npai"):
        return SendResult(
            SendOutcome.PERMANENT,
            reason=DeliveryReason.INVALID_NUMBER,
            detail="SMSFactor rejected the number as invalid (or on its NPAI list)",
        )
    if _count(body, "blacklisted"):
        return SendResult(
            SendOutcome.PERMANENT,
            reason=DeliveryReason.OPTED_OUT,
            detail="the number is on the SMSFactor account's blacklist (it answered STOP)",
        )
    if _count(body, "not_allowed"):
        # A country not enabled on this account: another provider of the route may serve it.
        return SendResult(
            SendOutcome.TRANSIENT,
            detail="SMSFactor does not allow this destination country on this account",
        )
    if _count(body, "flood") or _count(body, "country_limit"):
        return SendResult(
            SendOutcome.TRANSIENT,
            detail="SMSFactor held the message back (anti-flood or monthly country limit)",
        )
    return SendResult(
        SendOutcome.TRANSIENT,
        detail=f"SMSFactor sent nothing and gave no reason: {json.dumps(body)[:200]}",
    )


def interpret_send_response(status_code: int, body: Any) -> SendResult:
    """Map one answer of ``POST /send`` (for one recipient) to a SendResult."""
    if status_code == 429:
        return SendResult(SendOutcome.TRANSIENT, detail="SMSFactor is rate limiting us (HTTP 429)")
    if status_code >= 500:
        return SendResult(
            SendOutcome.TRANSIENT, detail=f"SMSFactor is unavailable (HTTP {status_code})"
        )
    if not isinstance(body, dict) or "status" not in body:
        return SendResult(
            SendOutcome.TRANSIENT,
            detail=f"unexpected answer from SMSFactor (HTTP {status_code}): {str(body)[:200]}",
        )
    try:
        status = int(body["status"])
    except (TypeError, ValueError):
        status = -99
    ticket = str(body["ticket"]) if body.get("ticket") not in (None, "") else None
    if status == _MODERATION:
        # Documented as "will be sent once moderated; do not retry or it is sent twice".
        return SendResult(
            SendOutcome.ACCEPTED, ticket, detail="held for moderation by SMSFactor; will be sent"
        )
    if status != 1:
        return _request_refused(
            status, str(body.get("details") or body.get("message") or "").strip()
        )
    if "sent" in body and _count(body, "sent") <= 0:
        return _filtered_out(body)
    if ticket is None:
        return SendResult(SendOutcome.TRANSIENT, detail="SMSFactor answered OK but gave no ticket")
    return SendResult(SendOutcome.ACCEPTED, ticket)


class SmsFactorProvider(HttpSmsProvider[SmsFactorSettings]):
    """Implements hub.ports.sms.SmsProvider for SMSFactor's HTTP API."""

    settings_model = SmsFactorSettings
    label = "SMSFactor"
    log = log
    # SMSFactor has no idempotency key (gsmsmsid only labels reports), so a message a crashed
    # process left in `submitting` may or may not have gone out: it must be marked unknown,
    # never re-sent blindly.
    deduplicates = False

    def __init__(self, settings: SmsFactorSettings, ctx: ProviderContext) -> None:
        super().__init__(settings, ctx)
        self.token = require_secret(settings, "token", self.where, "the SMSFactor API token")
        self.callback_secret = read_secret(settings, "callback_secret", self.where)

    def client_options(self) -> HttpClientOptions:
        return HttpClientOptions(
            base_url=self.settings.base_url,
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
        )

    def callbacks(self) -> Mapping[str, CallbackView]:
        return {
            "dlr": SmsFactorReportView(self.name, self.callback_secret),
            "mo": SmsFactorInboundView(
                self.name, self.callback_secret, inbound_number=self.settings.inbound_number
            ),
        }

    def request_body(self, sms: OutgoingSms) -> dict[str, Any]:
        """The JSON body of ``POST /send`` for one SMS."""
        # The message's own type decides (SMSFactor applies its marketing rules to those);
        # the setting is the floor for accounts that send everything as marketing.
        pushtype = "marketing" if "marketing" in (sms.type, self.settings.pushtype) else "alert"
        message: dict[str, Any] = {"text": sms.text, "pushtype": pushtype}
        sender = sms.sender or self.settings.sender
        if sender:
            message["sender"] = sender
        if sms.encoding == "UCS-2":
            # Without it SMSFactor sends GSM-7 and characters outside it are lost.
            message["unicode"] = 1
        return {
            "sms": {
                "message": message,
                # gsmsmsid comes back as the report's message_id: reports then find the
                # message even before the dispatcher has recorded the ticket.
                "recipients": {
                    "gsm": [{"gsmsmsid": sms.message_id, "value": _international(sms.to)}]
                },
            }
        }

    def build_request(self, sms: OutgoingSms) -> HttpRequest:
        return HttpRequest("POST", "/send", json=self.request_body(sms))

    def parse_response(self, response: httpx.Response, sms: OutgoingSms) -> SendResult:
        return interpret_send_response(response.status_code, json_or_text(response))


def _parse_date(value: Any) -> datetime | None:
    """An ISO date with an offset; None when absent or without one (then we use our clock)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise MalformedCallback(f"'date' is not an ISO 8601 date: {value!r}") from exc
    # The docs show dates both with and without an offset and name no time zone for the
    # latter; a guessed zone would be worse than the time we received it.
    return parsed if parsed.tzinfo is not None else None


def _dlr_status(value: Any) -> int:
    if isinstance(value, bool):
        raise MalformedCallback(f"'status' must be a number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "_")
        if text.lstrip("-").isdigit():
            return int(text)
        if text in _DLR_BY_NAME:
            return _DLR_BY_NAME[text]
    raise MalformedCallback(f"'status' must be a delivery report code, not {value!r}")


class SmsFactorReportView(SharedSecretMixin, CallbackView):
    """SMSFactor's DLR webhook: one report per request."""

    label = "smsfactor dlr"

    def parse_events(self, request: CallbackRequest) -> list[ProviderEvent]:
        body = json_object(request)
        missing = [k for k in ("status", "campaign_id") if body.get(k) in (None, "")]
        if missing:
            raise MalformedCallback(f"delivery report lacks {', '.join(missing)}")
        code = _dlr_status(body["status"])
        known = _DLR_STATES.get(code)
        if known is None:
            # A code added after this was written: keep it on record, act on nothing; the
            # report window then settles the message as dr_unavailable if nothing else comes.
            log.warning("SMSFactor delivery report with unknown status %r: %s", code, body)
            state, reason, name = DeliveryState.PENDING, None, f"status {code}"
        else:
            state, reason, name = known
        campaign = str(body["campaign_id"])
        destination = str(body.get("destination") or "")
        return [
            DeliveryReport(
                provider=self.provider_name,
                # One recipient per campaign, so campaign and status identify the report.
                event_key=f"{campaign}:{destination}:{code}",
                state=state,
                message_id=str(body["message_id"]) if body.get("message_id") else None,
                provider_message_id=campaign,
                reason=reason,
                detail=f"SMSFactor: {name}",
                occurred_at=_parse_date(body.get("date")),
                raw=body,
            )
        ]


class SmsFactorInboundView(SharedSecretMixin, CallbackView):
    """SMSFactor's MO webhook: a reply to one of our messages."""

    label = "smsfactor mo"

    def __init__(self, provider_name: str, secret: str | None, inbound_number: str = "") -> None:
        super().__init__(provider_name, secret)
        self.inbound_number = inbound_number

    def parse_events(self, request: CallbackRequest) -> list[ProviderEvent]:
        body = json_object(request)
        sender = body.get("from")
        text = body.get("message")
        if not sender or not isinstance(sender, str | int):
            raise MalformedCallback("reply lacks 'from' (the number that wrote)")
        if text is None or not isinstance(text, str):
            raise MalformedCallback("reply lacks 'message' (its text)")
        date = body.get("date")
        # No message id in this webhook: the same reply posted twice has the same content.
        digest = hashlib.sha256(f"{sender}|{date}|{text}".encode()).hexdigest()[:32]
        return [
            InboundSms(
                provider=self.provider_name,
                event_key=f"mo:{digest}",
                sender=_e164(str(sender)),
                recipient=self.inbound_number,
                text=text,
                received_at=_parse_date(date),
                raw=body,
            )
        ]
