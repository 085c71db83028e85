"""A local stand-in for Twilio Programmable Messaging, following its documented wire format.

A real HTTP server (stdlib, in a thread) answering
``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` as Twilio does: HTTP Basic auth,
form-encoded parameters, 201 with a JSON Message resource, and errors as
``{"code", "message", "more_info", "status"}`` (20003 authentication, 21211 invalid 'To',
21602 body required, 21603 'From' required, 21610 unsubscribed recipient, 21614 not a mobile
number, 21408 region not permitted, 20429 too many requests). It records what it was asked to
send, can be told to fail, and posts status callbacks and inbound SMS signed with
``X-Twilio-Signature`` exactly as Twilio's RequestValidator checks them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest

from tests.servers._util import BackgroundServer

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-test-auth-token"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")

# Messages from Twilio's error dictionary (twilio.com/docs/errors/CODE).
ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21408: (
        400,
        "Permission to send an SMS has not been enabled for the region indicated by "
        "the 'To' number: {to}.",
    ),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number {to} is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
}


def compute_signature(auth_token: str, url: str, params: Mapping[str, list[str]]) -> str:
    """X-Twilio-Signature as twilio-python's RequestValidator computes it."""
    data = url
    for name in sorted(set(params)):
        for value in sorted(set(params[name])):
            data += name + value
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def error_body(code: int, **values: str) -> tuple[int, dict[str, Any]]:
    status, message = ERRORS[code]
    return status, {
        "code": code,
        "message": message.format(**values),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@dataclass
class TwilioFake:
    """State of the fake Twilio API; the server thread reads it under `lock`."""

    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    # Every Message created, as its form fields plus "Sid" and "Status".
    messages: list[dict[str, str]] = field(default_factory=list)
    # number -> Twilio error code to answer for it
    number_errors: dict[str, int] = field(default_factory=dict)
    # (HTTP status, body) answered instead of the normal answer, first first
    failures: list[tuple[int, Any]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- scripting -----------------------------------------------------------------------
    def fail_next(self, http_status: int = 500, body: Any = None, times: int = 1) -> None:
        """Answer the next TIMES requests with HTTP_STATUS (and a Twilio error BODY)."""
        if body is None and http_status == 429:
            body = error_body(20429)[1]
        with self.lock:
            self.failures.extend([(http_status, body)] * times)

    def fail_number(self, number: str, code: int) -> None:
        """Refuse messages to NUMBER with Twilio error CODE."""
        assert code in ERRORS, code
        with self.lock:
            self.number_errors[number] = code

    # -- the API -------------------------------------------------------------------------
    def handle(self, path: str, headers: Mapping[str, str], raw: bytes) -> tuple[int, Any]:
        """Answer one POST: (HTTP status, JSON body)."""
        with self.lock:
            if self.failures:
                return self.failures.pop(0)
            match = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)/Messages\.json", path)
            if match is None:
                return error_body(20404)
            if not self._authenticated(headers.get("authorization", "")):
                return error_body(20003)
            if match.group(1) != self.account_sid:
                return error_body(20404)
            if "application/x-www-form-urlencoded" not in headers.get("content-type", ""):
                return error_body(21602)
            form = {k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
            to = form.get("To", "")
            if not form.get("Body"):
                return error_body(21602)
            if not form.get("From") and not form.get("MessagingServiceSid"):
                return error_body(21603)
            if not E164.match(to):
                return error_body(21211, to=to)
            if len(form["Body"]) > 1600:
                return error_body(21617)
            if to in self.number_errors:
                return error_body(self.number_errors[to], to=to)
            sid = "SM" + secrets.token_hex(16)
            status = "accepted" if form.get("MessagingServiceSid") else "queued"
            self.messages.append({**form, "Sid": sid, "Status": status})
            now = format_datetime(datetime.now(UTC))
            return 201, {
                "account_sid": self.account_sid,
                "api_version": "2010-04-01",
                "body": form["Body"],
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": status,
                "to": to,
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            }

    def _authenticated(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == self.account_sid and hmac.compare_digest(password, self.auth_token)

    # -- callbacks -----------------------------------------------------------------------
    def message(self, sid: str) -> dict[str, str]:
        with self.lock:
            return next(m for m in self.messages if m["Sid"] == sid)

    async def post_signed(
        self,
        client: httpx.AsyncClient,
        url: str,
        params: Mapping[str, str],
        *,
        deliver_to: str | None = None,
        signature: str | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        """POST PARAMS form-encoded, signed for URL (the one Twilio was given).

        DELIVER_TO sends it elsewhere (the hub's address behind a proxy) while the signature
        still covers URL; SIGNATURE or TOKEN forge a wrong one.
        """
        signed = signature or compute_signature(
            token or self.auth_token, url, {k: [v] for k, v in params.items()}
        )
        return await client.post(
            deliver_to or url,
            content=urlencode(params),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signed,
                "User-Agent": "TwilioProxy/1.1",
            },
        )

    def status_params(self, sid: str, status: str, error_code: int | None = None) -> dict[str, str]:
        """The form of a status callback (twilio.com "Track outbound message status")."""
        message = self.message(sid)
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": message.get("From", "+15005550006"),
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": message["To"],
        }
        if message.get("MessagingServiceSid"):
            params["MessagingServiceSid"] = message["MessagingServiceSid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return params

    async def send_status(
        self,
        client: httpx.AsyncClient,
        sid: str,
        status: str,
        error_code: int | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Post a status callback for message SID to the StatusCallback it was created with."""
        url = self.message(sid)["StatusCallback"]
        return await self.post_signed(
            client, url, self.status_params(sid, status, error_code), **kwargs
        )

    def inbound_params(self, sender: str, to: str, body: str) -> dict[str, str]:
        """The form of an incoming-message webhook (twilio.com "webhook request")."""
        sid = "SM" + secrets.token_hex(16)
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "Body": body,
            "From": sender,
            "FromCountry": "FR",
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": to,
            "ToCountry": "FR",
        }

    async def send_inbound(
        self, client: httpx.AsyncClient, url: str, sender: str, to: str, body: str, **kwargs: Any
    ) -> httpx.Response:
        """Post an incoming SMS to URL (the number's messaging webhook)."""
        return await self.post_signed(client, url, self.inbound_params(sender, to, body), **kwargs)


class _Handler(BaseHTTPRequestHandler):
    fake: TwilioFake

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: pytest shows what matters."""

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body = self.fake.handle(self.path.split("?")[0], headers, raw)
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if body is not None else "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def twilio_fake() -> Iterator[TwilioFake]:
    """A running fake Twilio API; its base URL is ``twilio_fake.url``."""
    fake = TwilioFake()
    handler = type("TwilioHandler", (_Handler,), {"fake": fake})
    with BackgroundServer(handler) as server:
        fake.url = server.url
        yield fake
