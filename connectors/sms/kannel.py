"""Kannel: sending through smsbox's HTTP ``sendsms``, delivery reports and inbound SMS.

Checked against Kannel 1.4.5 (Debian ``kannel``) with its test SMSC ``fakesmsc``:

* ``GET /cgi-bin/sendsms?username&password&from&to&text&coding&charset&dlr-mask&dlr-url[&smsc]``.
  smsbox 1.4.5 takes only GET (a url-encoded POST answers ``400 Invalid content-type``). Text
  goes as UTF-8 with ``charset=UTF-8``; ``coding=0`` for GSM-7 (Kannel converts to the GSM
  alphabet itself, extension characters included) and ``coding=2`` for UCS-2 (without it,
  non-GSM text arrives as ``?``). Long messages are split by Kannel (``concatenation = true``
  in the sendsms-user), but only into ``max-messages`` parts: what does not fit is *silently
  dropped*, so longer messages are refused here instead (``max_messages`` setting).
* Answers: ``202 0: Accepted for delivery`` or ``202 3: Queued for later delivery``;
  ``403 Authorization failed for sendsms``; ``400`` for a bad request (``Missing receiver
  number, rejected``, ``Sender missing and no global set, rejected``, ``Coding field misformed``,
  ``Number(s) has/have been denied by white- and/or black-lists.``); a 5xx if smsbox cannot
  pass the message on (not seen with fakesmsc: when bearerbox dies smsbox exits, so an outage
  is a refused connection). sendsms returns no message id, and has no idempotency key: a
  sendsms that got no answer (read timeout, dropped connection) may have reached Kannel, so
  the message becomes ``unknown`` rather than sent twice (the policy of ``http_base``).
* Delivery reports: smsbox calls the ``dlr-url`` given per message, after replacing Kannel's
  escape codes (``%d`` type, ``%A`` SMSC reply, ``%F`` SMSC message id, ``%T`` time, ``%i``
  smsc-id). Types: 1 delivered, 2 undelivered, 4 buffered, 8 SMSC success, 16 SMSC reject.
  ``%I`` differs between the reports of one message, so our own id travels in the URL.
  Every other ``%`` in that URL would be read as an escape code: the hub's part of the URL
  (public_url, provider name, secret, ids) must not contain one, which is checked.
* Inbound SMS: an ``sms-service`` whose ``get-url`` is :meth:`KannelProvider.mo_url` (see
  ``MO_QUERY`` for the escape codes). smsbox sends the body of the answer back to the phone
  as a reply SMS (on an error, "Could not fetch content, sorry.") unless the service has
  ``max-messages = 0``, which smsbox checks before anything else; the MO endpoint also answers
  an empty 200, a second guard with ``omit-empty = true``. Without any sms-service smsbox
  answers every MO with "Request Failed", at the owner's expense. Users need in kannel.conf::

      group = sms-service
      keyword = default
      catch-all = true
      get-url = "<KannelProvider.mo_url(), e.g. printed by the hub at start>"
      max-messages = 0
      omit-empty = true

  and, in ``group = smsbox``, ``mo-recode = true`` (UCS-2 MOs then arrive as UTF-8) and
  ``http-request-retry = 10`` / ``http-queue-delay = 5`` so reports and MOs sent while the
  hub restarts are retried (smsbox retries with the same URL, so the same ``%I``: the hub
  stores each MO and each report once).
"""

from __future__ import annotations

import codecs
import logging
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

import httpx
from pydantic import Field, field_validator

from connectors.sms.http_base import HttpProviderSettings, HttpRequest, HttpSmsProvider
from hub.core.config import read_secret, require_secret
from hub.core.phone import parse_number
from hub.errors import ConfigError, MalformedCallback
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

log = logging.getLogger("smshub.kannel")

#: Escape codes of the sms-service ``get-url``: ``%b`` is the message as is (``%a`` would
#: collapse whitespace), ``%c``/``%C`` its coding and charset, ``%I`` Kannel's UUID for the MO
#: (the idempotency key: smsbox retries with the same one), ``%T`` its Unix time.
MO_QUERY = "from=%p&to=%P&text=%b&coding=%c&charset=%C&smsc=%i&id=%I&ts=%T"
#: Escape codes appended to every ``dlr-url`` (after our own parameters).
DLR_QUERY = "type=%d&reply=%A&smsc_id=%F&ts=%T&smsc=%i"

# Characters that need no percent-encoding in a URL: a secret made of them never puts a "%"
# (a Kannel escape code) into the URLs Kannel calls.
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")

# Kannel's DLR types (gw/dlr.h).
DLR_DELIVERED = 1
DLR_UNDELIVERED = 2
DLR_BUFFERED = 4
DLR_SMSC_SUCCESS = 8
DLR_SMSC_REJECT = 16
_DLR_NAMES = {
    DLR_DELIVERED: "delivered",
    DLR_UNDELIVERED: "undelivered",
    DLR_BUFFERED: "buffered",
    DLR_SMSC_SUCCESS: "accepted by the SMSC",
    DLR_SMSC_REJECT: "rejected by the SMSC",
}

# SMPP command_status values Kannel puts in %A as "NACK/0x0000000b/Invalid Destination
# Address" (SMPP 3.4, 5.1.3). Anything not listed is DeliveryReason.OTHER.
_SMPP_REASONS = {
    0x0B: DeliveryReason.INVALID_NUMBER,  # ESME_RINVDSTADR, invalid destination address
    0x14: DeliveryReason.NETWORK_ERROR,  # ESME_RMSGQFUL, message queue full
    0x58: DeliveryReason.NETWORK_ERROR,  # ESME_RTHROTTLED, throughput exceeded
}
_NACK = re.compile(r"NACK/(0x[0-9A-Fa-f]+|\d+)", re.IGNORECASE)
# An SMPP delivery receipt ("id:.. sub:.. dlvrd:.. submit date:.. done date:.. stat:UNDELIV
# err:.. text:..") is what Kannel passes as %A for type 2 reports from an SMPP SMSC.
_RECEIPT_STAT = re.compile(r"\bstat:([A-Za-z]+)", re.IGNORECASE)


class KannelSettings(HttpProviderSettings):
    type: Literal["kannel"] = "kannel"
    # smsbox's sendsms URL, e.g. http://127.0.0.1:13013/cgi-bin/sendsms
    sendsms_url: str
    # A sendsms-user of kannel.conf.
    username: str
    # Environment variable or file holding that user's password (required).
    password_env: str | None = None
    password_file: str | None = None
    # Sender used when a message names none; unset: the sendsms-user's default-sender.
    sender: str | None = None
    # Route every message through this smsc-id (Kannel's `smsc` parameter); unset: Kannel's
    # own routing.
    smsc_id: str | None = None
    # Delivery reports asked for: 1 delivered + 2 undelivered + 4 buffered + 8 SMSC success +
    # 16 SMSC reject; 0 asks for none.
    dlr_mask: int = Field(31, ge=0, le=31)
    # Environment variable or file holding the secret the callback URLs carry as ?secret=...
    # Letters, digits and - . _ ~ only (Kannel reads "%" as an escape code). Unset: anyone
    # can post reports and inbound SMS (warned about at start).
    callback_secret_env: str | None = None
    callback_secret_file: str | None = None
    # The sendsms-user's max-messages in kannel.conf. Kannel silently truncates a message
    # needing more parts; such messages are refused here (and go to the next provider).
    max_messages: int = Field(10, ge=1, le=255)
    # Seconds to wait for smsbox: to connect, and for the whole answer (smsbox on a LAN
    # answers in milliseconds).
    connect_timeout: float = Field(5.0, gt=0)
    timeout: float = Field(10.0, gt=0)

    @field_validator("sendsms_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(
                "must be smsbox's sendsms URL, e.g. http://127.0.0.1:13013/cgi-bin/sendsms"
            )
        return value


def _no_percent(value: str, what: str, where: str) -> None:
    if "%" in value:
        raise ConfigError(
            f"'{where}': {what} contains '%', which Kannel would read as one of its escape "
            f"codes in the callback URLs it calls: {value!r}"
        )


def interpret_sendsms_response(status_code: int, body: str, message_id: str) -> SendResult:
    """Map smsbox's answer to one sendsms request to a SendResult."""
    said = " ".join(body.split())[:200]
    if 200 <= status_code < 300:
        # sendsms gives no id: ours is the reference, and the dlr-url carries it back.
        queued = said.startswith("3:") or "queued" in said.lower()
        if not queued and not said.startswith("0:") and "accepted" not in said.lower():
            log.warning("unexpected success answer from Kannel sendsms: %r", said)
        return SendResult(
            SendOutcome.ACCEPTED,
            message_id,
            detail="Kannel queued it for later delivery" if queued else "",
        )
    # Every refusal is about our setup or Kannel's, not about the phone: TRANSIENT makes the
    # dispatcher try the next provider now and this one later, and the message (with the
    # reason) stays visible instead of being refunded and dropped.
    if status_code == 403:
        detail = (
            f"Kannel refused our credentials (HTTP 403: {said}); check username and "
            "password_env/password_file against the sendsms-user group (and its user-allow-ip)"
        )
    elif 400 <= status_code < 500:
        detail = f"Kannel rejected the request (HTTP {status_code}: {said})"
    elif status_code >= 500:
        detail = f"Kannel could not take the message (HTTP {status_code}: {said})"
    else:
        detail = f"unexpected answer from Kannel sendsms (HTTP {status_code}: {said})"
    return SendResult(SendOutcome.TRANSIENT, detail=detail)


class KannelProvider(HttpSmsProvider[KannelSettings]):
    """Implements hub.ports.sms.SmsProvider for Kannel's smsbox."""

    settings_model = KannelSettings
    label = "Kannel"
    log = logging.getLogger("smshub.kannel")
    # sendsms has no idempotency key: a message a crashed process left in `submitting`, or
    # whose sendsms got no answer, may or may not be at Kannel, so it is marked unknown,
    # never re-sent blindly.
    deduplicates = False

    def __init__(self, settings: KannelSettings, ctx: ProviderContext) -> None:
        super().__init__(settings, ctx)
        where = self.where
        self.password = require_secret(settings, "password", where, "the Kannel sendsms password")
        self.callback_secret = read_secret(settings, "callback_secret", where)
        if self.callback_secret is not None and not _URL_SAFE.match(self.callback_secret):
            raise ConfigError(
                f"'{where}.callback_secret': use only letters, digits and - . _ ~ (it goes "
                "into URLs that Kannel calls, where '%' starts an escape code); e.g. "
                'python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        _no_percent(ctx.public_url, "[hub] public_url", where)
        self.callback_base = f"{ctx.public_url.rstrip('/')}/callbacks/" + urllib.parse.quote(
            self.name, safe=""
        )
        _no_percent(self.callback_base, "the provider name", where)
        # The hub's region, for national numbers in MOs.
        self.region = ctx.default_region

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await super().start()
        self.log.info(
            "Kannel provider %r: sendsms at %s; inbound SMS need an sms-service with "
            "max-messages = 0, omit-empty = true and get-url = %s",
            self.name,
            self.settings.sendsms_url,
            self.mo_url(redact=True),
        )

    def callbacks(self) -> Mapping[str, CallbackView]:
        return {
            "dlr": KannelReportView(self.name, self.callback_secret),
            "mo": KannelInboundView(self.name, self.callback_secret, region=self.region),
        }

    # -- URLs ------------------------------------------------------------------------------
    def _callback_url(self, kind: str, params: Mapping[str, str], escapes: str) -> str:
        query = dict(params)
        if self.callback_secret:
            query = {"secret": self.callback_secret, **query}
        ours = urllib.parse.urlencode(query)
        if "%" in ours:
            # Our ids are hex and the secret is checked at start, so this is a bug.
            raise ValueError(f"a Kannel callback URL would contain '%' ({kind}): {ours!r}")
        return f"{self.callback_base}/{kind}?{ours}{'&' if ours else ''}{escapes}"

    def mo_url(self, redact: bool = False) -> str:
        """The ``get-url`` for kannel.conf's sms-service (escape codes included)."""
        url = self._callback_url("mo", {}, MO_QUERY)
        if redact and self.callback_secret:
            url = url.replace(self.callback_secret, "SECRET")
        return url

    def dlr_url(self, sms: OutgoingSms) -> str:
        """The ``dlr-url`` for one send: our ids, then Kannel's escape codes."""
        return self._callback_url(
            "dlr", {"id": sms.message_id, "key": sms.dedupe_key or sms.message_id}, DLR_QUERY
        )

    def request_params(self, sms: OutgoingSms) -> dict[str, str]:
        """The sendsms query parameters for one SMS."""
        params = {
            "username": self.settings.username,
            "password": self.password,
            "to": sms.to,
            "text": sms.text,
            # UTF-8 in, Kannel converts: to the GSM alphabet (coding 0) or to UCS-2 (coding 2);
            # both arrive exactly (emoji as surrogate pairs) at the SMSC.
            "coding": "2" if sms.encoding == "UCS-2" else "0",
            "charset": "UTF-8",
        }
        sender = sms.sender or self.settings.sender
        if sender:
            params["from"] = sender
        if self.settings.smsc_id:
            params["smsc"] = self.settings.smsc_id
        if self.settings.dlr_mask:
            params["dlr-mask"] = str(self.settings.dlr_mask)
            params["dlr-url"] = self.dlr_url(sms)
        return params

    # -- sending ---------------------------------------------------------------------------
    def refuse(self, sms: OutgoingSms) -> SendResult | None:
        if sms.segments <= self.settings.max_messages:
            return None
        return SendResult(
            SendOutcome.TRANSIENT,
            detail=(
                f"the message needs {sms.segments} parts but Kannel would send only "
                f"{self.settings.max_messages} and drop the rest; raise max-messages in the "
                f"sendsms-user and max_messages in [{self.where}] together"
            ),
        )

    def build_request(self, sms: OutgoingSms) -> HttpRequest:
        # smsbox 1.4.5 takes only GET (see the module docstring).
        return HttpRequest("GET", self.settings.sendsms_url, params=self.request_params(sms))

    def parse_response(self, response: httpx.Response, sms: OutgoingSms) -> SendResult:
        return interpret_sendsms_response(response.status_code, response.text, sms.message_id)


# -- callbacks -----------------------------------------------------------------------------
def _raw_query(request: CallbackRequest) -> dict[str, bytes]:
    """The query string's values as bytes (``%b`` may carry UTF-16BE or binary data, which a
    UTF-8 decoding of the query would mangle); last value wins."""
    query = urllib.parse.urlsplit(request.url).query
    # latin-1 maps each byte to one code point, so .encode gives the exact bytes back.
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, encoding="latin-1")
    return {key: value.encode("latin-1") for key, value in pairs}


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (ValueError, OverflowError, OSError):
        raise MalformedCallback(f"'ts' must be a Unix time (Kannel's %T), not {value!r}") from None


def _smpp_status(reply: str) -> int | None:
    match = _NACK.search(reply)
    if match is None:
        return None
    try:
        return int(match.group(1), 0)
    except ValueError:
        return None


def failure_reason(dlr_type: int, reply: str) -> DeliveryReason:
    """Why a type 2 or 16 report says the message was not delivered, from Kannel's %A."""
    status = _smpp_status(reply)
    if status is not None:
        return _SMPP_REASONS.get(status, DeliveryReason.OTHER)
    stat = _RECEIPT_STAT.search(reply)
    if stat is not None and stat.group(1).upper() == "EXPIRED":
        return DeliveryReason.EXPIRED
    return DeliveryReason.OTHER


class KannelReportView(SharedSecretMixin, CallbackView):
    """smsbox calling a message's dlr-url: one report per request."""

    label = "kannel dlr"

    def parse_events(self, request: CallbackRequest) -> list[ProviderEvent]:
        query = request.query
        message_id = query.get("id", "").strip()
        raw_type = query.get("type", "").strip()
        if not message_id:
            raise MalformedCallback("the report lacks 'id' (our message id in the dlr-url)")
        try:
            dlr_type = int(raw_type)
        except ValueError:
            raise MalformedCallback(
                f"'type' must be a Kannel DLR type (%d in the dlr-url), not {raw_type!r}"
            ) from None
        reply = query.get("reply", "")
        # Bounded so the event key fits its column whatever an SMSC uses as ids.
        smsc_message_id = query.get("smsc_id", "").strip()[:100]
        name = _DLR_NAMES.get(dlr_type, f"type {dlr_type}")
        reason: DeliveryReason | None = None
        if dlr_type == DLR_DELIVERED:
            state = DeliveryState.DELIVERED
        elif dlr_type in (DLR_UNDELIVERED, DLR_SMSC_REJECT):
            state = DeliveryState.UNDELIVERED
            reason = failure_reason(dlr_type, reply)
        else:
            if dlr_type not in _DLR_NAMES:
                # A type added after this was written (1.5 has 32, intermediate): keep it on
                # record, act on nothing.
                log.warning("Kannel report of unknown type %d for message %s", dlr_type, message_id)
            state = DeliveryState.PENDING
        detail = f"Kannel: {name}"
        if reply:
            detail += f" ({reply})"
        # The attempt's key (id.send_seq): a re-send's reports are not taken for the first's.
        key = (query.get("key", "").strip() or message_id)[:100]
        return [
            DeliveryReport(
                provider=self.provider_name,
                event_key=f"{key}:{dlr_type}:{smsc_message_id}",
                state=state,
                message_id=message_id,
                provider_message_id=message_id,
                reason=reason,
                detail=detail,
                occurred_at=_timestamp(query.get("ts")),
                raw={k: v for k, v in query.items() if k != "secret"},
            )
        ]


class KannelInboundView(SharedSecretMixin, CallbackView):
    """smsbox's sms-service get-url: one inbound SMS per request."""

    label = "kannel mo"

    def __init__(self, provider_name: str, secret: str | None, region: str = "FR") -> None:
        super().__init__(provider_name, secret)
        self.region = region

    def success_response(self, events: Sequence[ProviderEvent]) -> tuple[int, str, str]:
        # smsbox would send a non-empty body back to the phone as a reply SMS (unless the
        # sms-service has max-messages = 0): answer nothing at all.
        return 200, "text/plain", ""

    def _number(self, raw: str) -> str:
        info = parse_number(raw, self.region)
        return info.e164 if info.valid and info.e164 else raw

    def parse_events(self, request: CallbackRequest) -> list[ProviderEvent]:
        params = _raw_query(request)
        missing = [k for k in ("from", "text", "id") if k not in params]
        if missing:
            raise MalformedCallback(
                f"the inbound SMS lacks {', '.join(missing)}; the sms-service get-url must end "
                f"with ?{MO_QUERY}"
            )
        sender = params["from"].decode("utf-8", "replace").strip()
        event_key = params["id"].decode("utf-8", "replace").strip()
        if not sender or not event_key:
            raise MalformedCallback("the inbound SMS has an empty 'from' or 'id'")
        if len(event_key) > 255:
            raise MalformedCallback("'id' is longer than 255 characters; use Kannel's %I")
        text = self._decode(params)
        recipient = params.get("to", b"").decode("utf-8", "replace").strip()
        ts = params.get("ts", b"").decode("ascii", "replace").strip()
        raw = {k: v.decode("utf-8", "replace") for k, v in params.items() if k != "secret"}
        sender = self._number(sender)
        recipient = self._number(recipient) if recipient else ""
        if len(sender) > 32 or len(recipient) > 32:
            raise MalformedCallback("'from' and 'to' must be numbers or names of 32 characters")
        return [
            InboundSms(
                provider=self.provider_name,
                event_key=event_key,
                sender=sender,
                recipient=recipient,
                text=text,
                received_at=_timestamp(ts),
                raw=raw,
            )
        ]

    @staticmethod
    def _decode(params: Mapping[str, bytes]) -> str:
        """The text's bytes decoded with the charset Kannel names (%C) for its coding (%c)."""
        data = params["text"]
        coding_raw = params.get("coding", b"0").decode("ascii", "replace").strip() or "0"
        if coding_raw not in {"0", "1", "2"}:
            raise MalformedCallback(
                f"'coding' must be 0 (7-bit), 1 (8-bit) or 2 (UCS-2), not {coding_raw!r}"
            )
        charset = params.get("charset", b"").decode("ascii", "replace").strip()
        if not charset:
            charset = "UTF-16BE" if coding_raw == "2" else "UTF-8"
        if charset.upper() in {"8-BIT", "BINARY"}:
            raise MalformedCallback(
                "a binary (8-bit) inbound SMS is not text; smshub stores text messages only"
            )
        try:
            codecs.lookup(charset)
        except LookupError:
            raise MalformedCallback(f"unknown charset {charset!r} for the inbound SMS") from None
        try:
            return data.decode(charset)
        except UnicodeDecodeError as exc:
            raise MalformedCallback(f"the text is not valid {charset}: {exc}") from None
