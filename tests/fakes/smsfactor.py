"""A local stand-in for the SMSFactor API, following its documented wire format.

A real HTTP server (stdlib, in a thread) answering ``POST /send`` as dev.smsfactor.com
describes it: Bearer token, JSON only when asked with ``Accept: application/json`` (XML
otherwise), request statuses (1 OK, -1 authentication, -3 credits, -6 JSON, -7 data error, ...),
the campaign ``ticket`` and the filtered-out counters. It records what it was asked to send,
can be told to fail, and posts DLR and MO webhooks in the documented JSON shape.

Where the docs are silent (the HTTP status of an error, the wording of ``details``, how a
number that is not a number is treated), the choices are marked "not documented".
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from tests.servers._util import BackgroundServer

TOKEN = "sf-test-token"

# What the fake does with a number: filter it out under one of the documented counters.
FILTERS = ("invalid", "npai", "blacklisted", "duplicated", "not_allowed", "flood", "country_limit")


@dataclass
class SentSms:
    """One recipient of one campaign, as the fake received it."""

    ticket: str
    to: str
    text: str
    sender: str | None
    pushtype: str
    unicode: int
    gsmsmsid: str | None


@dataclass
class Failure:
    """An answer the fake gives instead of the normal one, `times` times."""

    http_status: int
    body: Any
    times: int = 1


@dataclass
class SmsFactorFake:
    """State of the fake SMSFactor API; the server thread reads it under `lock`."""

    token: str = TOKEN
    credits: int = 1000
    sent: list[SentSms] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # number (as SMSFactor writes it, no '+') -> one of FILTERS
    filtered: dict[str, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    # Webhook URLs as configured in the SMSFactor account ("DLR", "MO").
    webhooks: dict[str, str] = field(default_factory=dict)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _tickets: Iterator[int] = field(default_factory=lambda: itertools.count(14672468))

    # -- scripting -----------------------------------------------------------------------
    def fail_next(self, http_status: int = 500, body: Any = None, times: int = 1) -> None:
        """Answer the next TIMES requests with HTTP_STATUS and BODY (an outage, a 429...)."""
        with self.lock:
            self.failures.append(Failure(http_status, body, times))

    def filter_number(self, number: str, counter: str = "invalid") -> None:
        """Make SMSFactor filter NUMBER out as COUNTER (invalid, blacklisted, ...)."""
        assert counter in FILTERS, counter
        with self.lock:
            self.filtered[number.removeprefix("+")] = counter

    # -- the API -------------------------------------------------------------------------
    def handle_send(self, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        """Answer one ``POST /send``: (HTTP status, JSON body)."""
        with self.lock:
            if self.failures:
                failure = self.failures[0]
                failure.times -= 1
                if failure.times <= 0:
                    self.failures.pop(0)
                return failure.http_status, failure.body
            auth = headers.get("authorization", "")
            if auth != f"Bearer {self.token}":
                # Not documented: the HTTP status of an authentication error.
                return 401, {"status": -1, "message": "Authentication error", "details": ""}
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return 200, {"status": -6, "message": "JSON error", "details": "invalid JSON"}
            self.requests.append(body)
            problem = _check_shape(body)
            if problem:
                return 200, {"status": -7, "message": "Data error", "details": problem}
            message = body["sms"]["message"]
            recipients = body["sms"]["recipients"]["gsm"]
            counters = dict.fromkeys(FILTERS, 0)
            ticket = str(next(self._tickets))
            accepted = []
            for gsm in recipients:
                number = str(gsm["value"])
                # Not documented: a value that is not a number; treated as invalid.
                reason = self.filtered.get(number) or (None if number.isdigit() else "invalid")
                if reason:
                    counters[reason] += 1
                    continue
                accepted.append(
                    SentSms(
                        ticket=ticket,
                        to=number,
                        text=message["text"],
                        sender=message.get("sender"),
                        pushtype=message.get("pushtype", "alert"),
                        unicode=int(message.get("unicode", 0)),
                        gsmsmsid=gsm.get("gsmsmsid"),
                    )
                )
            if len(accepted) > self.credits:
                return 200, {"status": -3, "message": "Not enough credits", "details": ""}
            self.credits -= len(accepted)
            self.sent.extend(accepted)
            return 200, {
                "status": 1,
                "message": "OK",
                "ticket": ticket,
                "cost": len(accepted),
                "credits": self.credits,
                "total": len(recipients),
                "sent": len(accepted),
                **counters,
            }

    # -- webhooks ------------------------------------------------------------------------
    def dlr_body(self, sms: SentSms, status: int) -> dict[str, Any]:
        """A delivery report as SMSFactor posts it (raw JSON body)."""
        body: dict[str, Any] = {
            "date": datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
            "status": status,
            "destination": sms.to,
            "campaign_id": sms.ticket,
            "country_code": "FR",
        }
        if sms.gsmsmsid is not None:
            body["message_id"] = sms.gsmsmsid
        return body

    async def post_dlr(
        self, client: httpx.AsyncClient, sms: SentSms, status: int, *, url: str | None = None
    ) -> httpx.Response:
        """Post a delivery report for SMS to the DLR webhook (or URL) through CLIENT."""
        return await client.post(url or self.webhooks["DLR"], json=self.dlr_body(sms, status))

    async def post_mo(
        self,
        client: httpx.AsyncClient,
        sender: str,
        text: str,
        *,
        last_message_id: str | None = None,
        url: str | None = None,
        date: str | None = None,
    ) -> httpx.Response:
        """Post a reply as SMSFactor's MO webhook does (a retry repeats the same DATE)."""
        body = {
            "date": date or datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
            "message": text,
            "from": sender.removeprefix("+"),
            "account_id": "1234",
            "last_message_id": last_message_id,
        }
        return await client.post(url or self.webhooks["MO"], json=body)


def _check_shape(body: Any) -> str:
    """What is wrong with a ``POST /send`` body, or '' (fields from dev.smsfactor.com)."""
    sms = body.get("sms") if isinstance(body, dict) else None
    if not isinstance(sms, dict):
        return "sms is required"
    message = sms.get("message")
    if not isinstance(message, dict):
        return "sms.message is required"
    if not isinstance(message.get("text"), str) or not message["text"]:
        return "text is required"
    if message.get("pushtype", "alert") not in ("alert", "marketing"):
        return "pushtype must be alert or marketing"
    if "sender" in message and not isinstance(message["sender"], str):
        return "sender must be a string"
    if message.get("unicode", 0) not in (0, 1):
        return "unicode must be 0 or 1"
    recipients = sms.get("recipients")
    gsm = recipients.get("gsm") if isinstance(recipients, dict) else None
    if not isinstance(gsm, list) or not gsm:
        return "recipients.gsm is required"
    for item in gsm:
        if not isinstance(item, dict) or not item.get("value"):
            return "value is required for every recipient"
    return ""


_XML = "<?xml version='1.0' encoding='UTF-8'?><response><status>{}</status></response>"


class _Handler(BaseHTTPRequestHandler):
    fake: SmsFactorFake

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: pytest shows what matters."""

    def _answer(self, status: int, body: Any) -> None:
        wants_json = "application/json" in self.headers.get("Accept", "")
        if body is None:
            payload, ctype = b"", "text/plain"
        elif isinstance(body, str | bytes):
            payload = body.encode() if isinstance(body, str) else body
            ctype = "text/html"
        elif wants_json:
            payload, ctype = json.dumps(body).encode(), "application/json"
        else:
            # The API "expects and returns XML by default".
            payload = _XML.format(body.get("status")).encode()
            ctype = "application/xml"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0] != "/send":
            self._answer(404, {"status": -5, "message": "Resource not found"})
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._answer(*self.fake.handle_send(headers, raw))


@pytest.fixture
def smsfactor_fake() -> Iterator[SmsFactorFake]:
    """A running fake SMSFactor API; its base URL is ``smsfactor_fake.url``."""
    fake = SmsFactorFake()
    handler = type("SmsFactorHandler", (_Handler,), {"fake": fake})
    with BackgroundServer(handler) as server:
        fake.url = server.url
        yield fake
