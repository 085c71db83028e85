"""Settings of a Microsoft 365 / Outlook.com calendar (Microsoft Graph): the app
registration, the way it signs in, the mailbox and calendar, and the limits of a sync."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import field_validator, model_validator

from hub.ports.calendar import CalendarSettings, NotNegative, between, zone_setting
from hub.ports.calendar import zone_name as calendar_zone_name

GRAPH_URL = "https://graph.microsoft.com/v1.0"
AUTHORITY = "https://login.microsoftonline.com"
# Tenants that are not one organisation: no client credentials there.
_MULTI_TENANTS = frozenset({"common", "organizations", "consumers"})
_UTC_NAMES = ("tzone://microsoft/utc", "utc", "coordinated universal time")


def zone_name(name: str | None) -> str | None:
    """The IANA name for NAME (IANA, or a Windows name such as "Romance Standard Time").

    Microsoft's names for UTC, in any case, give "UTC".
    """
    if name and name.strip().lower() in _UTC_NAMES:
        return "UTC"
    return calendar_zone_name(name)


class GraphSettings(CalendarSettings):
    """Settings of a Microsoft 365 / Outlook.com calendar."""

    type: Literal["graph"] = "graph"
    # The app registration (Entra ID → App registrations) and its directory.
    client_id: str
    tenant_id: str = "common"
    # Client credentials (application permission Calendars.ReadWrite, admin consent)...
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    # ...or a user's refresh token (delegated permission), see device_code_login().
    refresh_token_env: str | None = None
    refresh_token_file: str | None = None
    # The mailbox (user principal name or id); required with client credentials, else "me".
    user: str | None = None
    # A calendar's id (GET /users/{user}/calendars); default: the mailbox's main calendar.
    calendar_id: str | None = None
    graph_base_url: str = GRAPH_URL
    authority: str = AUTHORITY
    # PEM bundle of CAs to trust instead of the system's (a TLS-inspecting proxy, tests).
    ca_file: str | None = None
    # Zone of events whose own zone Graph does not name (default UTC).
    timezone: Annotated[str | None, zone_setting(zone_name)] = None
    timeout: NotNegative = 30.0
    page_size: Annotated[int, between(1, 1000)] = 100
    # The delta range goes this far beyond the window, so a full round is needed that rarely.
    lookahead_days: NotNegative = 7.0
    # 429/503 answers are retried this many times, waiting what Retry-After says, at most
    # max_retry_wait seconds (0 in tests); without Retry-After, 1 s then twice as long each time.
    retries: int = 4
    max_retry_wait: NotNegative = 60.0
    # Never write answers back (and ask only for Calendars.Read with a refresh token).
    read_only: bool = False

    @field_validator("graph_base_url", "authority")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise ValueError(f"{value!r} is not an http(s):// URL")
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> GraphSettings:
        secret = bool(self.client_secret_env or self.client_secret_file)
        refresh = self.has_secret("refresh_token")
        if not secret and not refresh:
            raise ValueError(
                "give client_secret_env (app-only access to a mailbox) or refresh_token_env "
                "(a user's sign-in, see `device_code_login`)"
            )
        if not refresh:
            if self.tenant_id.lower() in _MULTI_TENANTS:
                raise ValueError(
                    "client credentials need tenant_id: your directory's id or domain, "
                    f"not {self.tenant_id!r}"
                )
            if not self.user:
                raise ValueError("client credentials need user: the mailbox whose calendar to read")
        return self

    @property
    def app_only(self) -> bool:
        """True for client credentials (no user signed in)."""
        return not self.has_secret("refresh_token")
