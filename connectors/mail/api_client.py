"""Calling a provider's mail API (Microsoft Graph, Gmail) as a mailbox's OAuth sign-in.

One job: a bearer request that survives what these APIs do in normal life. A 401 (the
access token expired or was revoked early) is answered by refreshing the token once and
trying again; the token endpoint refusing the refresh (``invalid_grant``) is recorded by
:class:`MailboxAccess` as a revoked consent and raised as ConsentRevoked. 429 and 503 are
waited out as their ``Retry-After`` asks (capped, a few times), then reported.

The hosts are fixed by the provider; the base URL is only configurable so tests can point
it at their stand-ins. Blocking (httpx's sync client, like the token refresh): the sources
and senders call it from worker threads.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx

from hub.errors import ConnectorError, MailboxAuthError
from hub.mail.oauth import MailboxAccess, fix_hint

log = logging.getLogger("smshub.mail_api")

#: Most waits for one request on 429/503, and the longest single wait honoured.
THROTTLE_TRIES = 3
THROTTLE_MAX_WAIT = 60.0


class MailApiError(ConnectorError):
    """The mail API refused or could not be reached; the message says what to do."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, min(float(response.headers.get("retry-after", "1")), THROTTLE_MAX_WAIT))
    except ValueError:  # an HTTP date: not worth parsing for a short wait
        return 1.0


def _why(response: httpx.Response) -> str:
    """The API's own error text (Graph and Gmail both answer {"error": {..."message"}})."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "")[:200]
    return str(error or "")[:200]


class MailApi:
    """Requests to BASE_URL with the bearer token of ACCESS (``request``); NAME in errors."""

    def __init__(
        self,
        access: MailboxAccess,
        base_url: str,
        name: str,
        *,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.access = access
        self.name = name
        self._sleep = sleep
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, verify=verify, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        url: str | None = None,
    ) -> httpx.Response:
        """The answer (2xx) to METHOD PATH (or the absolute URL of a next/delta link);
        MailApiError with the API's reason otherwise, MailboxAuthError when the sign-in is
        refused for good."""
        if url is not None and not url.startswith(self.base_url + "/"):
            # A next/delta link elsewhere would carry the mailbox's token there.
            raise MailApiError(f"the {self.name} sent a link off its host: {url[:100]!r}")
        renewed = False
        throttled = 0
        while True:
            token = self.access.token(renew=renewed)
            sent = {**(headers or {}), "Authorization": f"Bearer {token}"}
            try:
                response = self._http.request(
                    method, url or path, params=params, json=json, content=content, headers=sent
                )
            except httpx.HTTPError as exc:
                raise MailApiError(
                    f"cannot reach the {self.name} ({type(exc).__name__}); retrying later"
                ) from None
            if response.status_code == 401:
                if not renewed:
                    # Expired (or revoked early): one refresh, then once more.
                    renewed = True
                    continue
                raise MailboxAuthError(
                    f"the {self.name} refused a fresh token of mailbox {self.access.key} "
                    f"({_why(response)}): the sign-in may lack the API's permissions (a "
                    f"mailbox connected for IMAP/SMTP must be connected again); "
                    f"{fix_hint(self.access.key)}"
                )
            if response.status_code in (429, 503) and throttled < THROTTLE_TRIES:
                throttled += 1
                wait = _retry_after(response)
                log.info("%s answered %d: waiting %.0f s", self.name, response.status_code, wait)
                self._sleep(wait)
                continue
            if response.is_success:
                return response
            raise MailApiError(
                f"the {self.name} answered {response.status_code} to {method} "
                f"{path or 'a next page'}: {_why(response)}",
                response.status_code,
            )
