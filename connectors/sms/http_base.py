"""The base of SMS providers that send over HTTP: one client, one flow, one error policy.

On the model of django-anymail's ``AnymailRequestsBackend`` and ``BasePayload``:
:class:`HttpSmsProvider` owns the HTTP clients (``connectors.http_lanes``: one kept-alive
connection per concurrent send) and their lifecycle (``start``/``close``), the flow
``build_request`` → send it → ``parse_response``, and the logging of what was not taken. A
provider (Kannel, Twilio, SMSFactor) fills in only building the request and reading the
answer, and declares ``deduplicates``.

The transport-error policy, written once here for every HTTP provider:

* **The request never left**: ``httpx.ConnectError`` (a failed DNS lookup is one),
  ``ConnectTimeout``, ``PoolTimeout``, and the errors that stop a request before the provider
  has all of it (``WriteError``, ``WriteTimeout``, ``UnsupportedProtocol``,
  ``LocalProtocolError``, ``ProxyError``). The provider cannot have acted on it, so the result
  is TRANSIENT: the dispatcher tries the next provider of the route now and this one later.
* **The request left and no answer came**: ``ReadTimeout``, ``ReadError``,
  ``RemoteProtocolError`` (the connection dropped before a response), and any other HTTP error
  (on the safe side: never send twice what may have gone). The provider may have taken the
  message, so the result is UNKNOWN (the message becomes ``unknown`` and is not sent again),
  unless the provider deduplicates on our id: then sending again is harmless, and it is
  TRANSIENT.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx

from connectors.http_lanes import HttpLanes
from connectors.sms.base import SmsProviderBase
from hub.ports.sms import (
    OutgoingSms,
    ProviderContext,
    ProviderSettings,
    SendOutcome,
    SendResult,
)

#: Failures after which the provider cannot have the whole request.
NOT_SENT_ERRORS: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.ProxyError,
)


def transport_outcome(exc: httpx.HTTPError, deduplicates: bool) -> SendOutcome:
    """The policy of the module docstring: what a failure to get an answer means."""
    if isinstance(exc, NOT_SENT_ERRORS) or deduplicates:
        return SendOutcome.TRANSIENT
    return SendOutcome.UNKNOWN


class HttpProviderSettings(ProviderSettings):
    """The keys every HTTP provider's section has, besides the common ones."""

    # Seconds to wait for the provider: to connect, and for the whole answer.
    connect_timeout: float = 5.0
    timeout: float = 20.0


HttpSettingsT = TypeVar("HttpSettingsT", bound=HttpProviderSettings)


@dataclass(frozen=True)
class HttpClientOptions:
    """What every request of one provider carries."""

    base_url: str = ""
    auth: tuple[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpRequest:
    """One request to a provider's API, as ``build_request`` describes it."""

    method: Literal["GET", "POST"]
    # Absolute, or a path under the client's base_url; never holds a secret (it goes into
    # details and logs): secrets travel in params, form, JSON body or headers.
    url: str
    params: Mapping[str, str] | None = None  # the query string
    data: Mapping[str, str] | None = None  # a form body
    json: Any = None  # a JSON body


def json_or_text(response: httpx.Response) -> Any:
    """The answer's JSON, or its text when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text


class HttpSmsProvider(SmsProviderBase[HttpSettingsT]):
    """Implements hub.ports.sms.SmsProvider for a provider with an HTTP sending API."""

    #: Seconds an idle connection is kept: well under any provider's own idle limit, so a
    #: request never meets a connection the server is closing.
    keepalive_expiry = 5.0

    def __init__(self, settings: HttpSettingsT, ctx: ProviderContext) -> None:
        super().__init__(settings, ctx)
        self._lanes: HttpLanes | None = None
        self._base_url = ""

    # -- what a provider fills in ----------------------------------------------------------
    def client_options(self) -> HttpClientOptions:
        """Base URL, credentials and headers of every request (called by start())."""
        return HttpClientOptions()

    def refuse(self, sms: OutgoingSms) -> SendResult | None:
        """A result without asking the provider (it could not take this SMS), or None."""
        return None

    @abc.abstractmethod
    def build_request(self, sms: OutgoingSms) -> HttpRequest:
        """The request that hands SMS over."""

    @abc.abstractmethod
    def parse_response(self, response: httpx.Response, sms: OutgoingSms) -> SendResult:
        """What the provider's answer (any HTTP status) means for SMS."""

    # -- the flow --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._lanes is not None:
            return
        options = self.client_options()
        self._base_url = options.base_url.rstrip("/")
        self._lanes = HttpLanes(
            self.settings.concurrency,
            timeout=httpx.Timeout(self.settings.timeout, connect=self.settings.connect_timeout),
            keepalive_expiry=self.keepalive_expiry,
            headers={"User-Agent": "smshub", **options.headers},
            base_url=self._base_url,
            auth=options.auth,
        )
        self._lanes.open()

    async def close(self) -> None:
        lanes, self._lanes = self._lanes, None
        if lanes is not None:
            await lanes.aclose()

    async def attempt(self, sms: OutgoingSms) -> SendResult:
        lanes = self._lanes
        if lanes is None:
            raise RuntimeError(f"provider {self.name!r} used before start()")
        refusal = self.refuse(sms)
        if refusal is not None:
            return refusal
        request = self.build_request(sms)
        try:
            async with lanes.borrow() as client:
                response = await client.request(
                    request.method,
                    request.url,
                    params=request.params,
                    data=request.data,
                    json=request.json,
                )
        except httpx.HTTPError as exc:
            return self.transport_failure(exc, request)
        return self.parse_response(response, sms)

    def transport_failure(self, exc: httpx.HTTPError, request: HttpRequest) -> SendResult:
        """The policy of the module docstring, with a detail that says which case it was."""
        outcome = transport_outcome(exc, self.deduplicates)
        where = request.url
        if not where.startswith(("http://", "https://")):
            where = self._base_url + where
        if isinstance(exc, NOT_SENT_ERRORS):
            detail = f"cannot reach {self.label} at {where}: {exc!r}"
        elif outcome == SendOutcome.UNKNOWN:
            detail = (
                f"no answer from {self.label} at {where} ({exc!r}); it may have taken the "
                "message, so it is not sent again"
            )
        else:
            detail = (
                f"no answer from {self.label} at {where} ({exc!r}); sent again, which it recognises"
            )
        return SendResult(outcome, detail=detail)
