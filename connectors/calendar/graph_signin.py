"""Signing in to Microsoft Graph with MSAL: the app (confidential with a client secret,
public with a user's refresh token), the scopes asked, and the access tokens a calendar's
source uses. Blocking: the source calls it in worker threads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msal
import requests

from connectors.calendar.base import short
from connectors.calendar.graph_settings import GraphSettings
from connectors.calendar.graph_tokens import RenewedTokens
from hub.errors import ConfigError, SourceError
from hub.ports.calendar import SourceContext


def graph_scopes(graph_base_url: str, *, app_only: bool, read_only: bool = False) -> list[str]:
    """The scopes to ask: the resource's ".default" app-only, else the calendar permission."""
    parts = urlsplit(graph_base_url)
    resource = f"{parts.scheme}://{parts.netloc}"
    if app_only:
        return [f"{resource}/.default"]
    return [f"{resource}/{'Calendars.Read' if read_only else 'Calendars.ReadWrite'}"]


def msal_error(result: Mapping[str, Any]) -> str:
    """The first line of an AADSTS error description, with its code."""
    description = str(result.get("error_description") or "").strip().splitlines()
    first = description[0] if description else ""
    return short(f"{result.get('error', 'error')}: {first}".rstrip(": "))


def msal_app(
    client_id: str,
    authority_url: str,
    *,
    secret: str | None,
    ca_file: str | None,
    timeout: float,
) -> msal.ClientApplication:
    """A ConfidentialClientApplication (with SECRET) or PublicClientApplication (blocking)."""
    options: dict[str, Any] = {"timeout": timeout}
    if ca_file:
        options = {"http_client": _PinnedSession(ca_file, timeout)}
    # instance_discovery=False: the authority is the one configured (Microsoft's, a national
    # cloud's, or a stand-in), MSAL must not ask login.microsoftonline.com to vouch for it.
    if secret is not None:
        return msal.ConfidentialClientApplication(
            client_id,
            client_credential=secret,
            authority=authority_url,
            instance_discovery=False,
            **options,
        )
    return msal.PublicClientApplication(
        client_id, authority=authority_url, instance_discovery=False, **options
    )


class _PinnedSession(requests.Session):
    """A requests session that trusts CA_FILE even when REQUESTS_CA_BUNDLE is set.

    requests lets that variable override a session's ``verify`` (it only yields to a
    per-request one), and many machines set it to the system bundle.
    """

    def __init__(self, ca_file: str, timeout: float) -> None:
        super().__init__()
        self.verify = ca_file
        self._timeout = timeout

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


class SignIn:
    """Gets access tokens for one calendar with MSAL (blocking: called in worker threads)."""

    def __init__(self, settings: GraphSettings, ctx: SourceContext, where: str) -> None:
        self.settings = settings
        self.ctx = ctx
        self.where = where
        self.authority_url = f"{settings.authority}/{settings.tenant_id}"
        self.scopes = graph_scopes(
            settings.graph_base_url, app_only=settings.app_only, read_only=settings.read_only
        )
        self._app: msal.ClientApplication | None = None
        self.renewed = RenewedTokens(settings, ctx, where)

    def _secret(self, name: str) -> str | None:
        try:
            return self.ctx.secret(self.settings, name)
        except ConfigError as exc:
            raise SourceError(str(exc)) from None

    def _application(self) -> msal.ClientApplication:
        if self._app is None:
            secret = self._secret("client_secret")
            try:
                self._app = msal_app(
                    self.settings.client_id,
                    self.authority_url,
                    secret=secret,
                    ca_file=self.settings.ca_file,
                    timeout=self.settings.timeout,
                )
            except ValueError as exc:
                # MSAL reads the tenant's OpenID configuration first: a wrong tenant ends here.
                raise SourceError(
                    f"Microsoft does not know the directory {self.settings.tenant_id!r} "
                    f"({self.authority_url}) for {self.where}: {short(str(exc))}"
                ) from None
        return self._app

    def token(self) -> str:
        """A valid access token for Graph; SourceError saying why there is none."""
        try:
            app = self._application()
            if self.settings.app_only:
                assert isinstance(app, msal.ConfidentialClientApplication)
                result = app.acquire_token_for_client(scopes=self.scopes)
            else:
                configured = self._secret("refresh_token") or ""
                result = app.acquire_token_by_refresh_token(
                    self.renewed.newest(configured), scopes=self.scopes
                )
                if "refresh_token" in result:
                    self.renewed.keep(configured, str(result["refresh_token"]))
        except requests.RequestException as exc:
            raise SourceError(
                f"cannot reach the Microsoft sign-in service {self.settings.authority} for "
                f"{self.where}: {short(str(exc))}"
            ) from None
        if "access_token" not in result:
            raise SourceError(
                f"Microsoft refused the credentials for {self.where} "
                f"(app {self.settings.client_id}): {msal_error(result)}"
            )
        return str(result["access_token"])
