"""Connecting a Google or Microsoft 365 calendar from the console: the shared OAuth sign-in
(hub/ports/oauth_flow.py: authorization code + PKCE, state bound to user and account) asking the
calendar scopes, then the user's choice of calendar.

The refresh token waits in the hub's state store (encrypted, expiring) while the user
chooses a calendar, so the callback and the choice may land on any instance; it ends
encrypted in the database with the calendar (its ``stored_secrets``); the client secret
stays where the config file says and the calendar names the same place.

Blocking (requests, MSAL): call these from a worker thread.
"""

from __future__ import annotations

import secrets
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from hub.core.config import Config, GoogleOAuthSection
from hub.errors import InvalidInput
from hub.ports import oauth_flow
from hub.ports.oauth_flow import (
    PROVIDERS,
    SIGNIN_NAMESPACE,
    STATE_SECONDS,
    TIMEOUT,
    Started,
    missing_keys,
    section,
    sign,
    signer_key,
    unsign,
)
from hub.ports.state import StateStore

__all__ = [
    "PROVIDERS",
    "STATE_SECONDS",
    "Started",
    "missing_keys",
    "sign",
    "signer_key",
    "unsign",
]

SOURCE_TYPES = {"google": "google", "microsoft": "graph"}
CALLBACK_PATH = "/console/calendars/oauth/callback"
GOOGLE_SCOPE = "https://www.googleapis.com/auth/calendar.events"
GOOGLE_API = "https://www.googleapis.com/"
# Defaults of the connectors' settings: left out of a calendar's settings when unchanged.
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
GRAPH_URL = "https://graph.microsoft.com/v1.0"
# How long the refresh token of a sign-in waits for the user's choice of calendar.
CHOICE_SECONDS = 3600
PAGE = "the Calendars page"


def setup_hint(config: Config, provider: str) -> str:
    """What to set for PROVIDER's button, as a sentence ("" when nothing is missing)."""
    return oauth_flow.setup_hint(config, provider, CALLBACK_PATH)


def redirect_uri(config: Config) -> str:
    """Where providers send the browser back; register exactly this with the OAuth client."""
    return oauth_flow.redirect_uri(config, CALLBACK_PATH)


@dataclass
class Connected:
    refresh_token: str
    # (id, name, primary) of the signed-in user's calendars; empty when they could not be read.
    calendars: list[tuple[str, str, bool]] = field(default_factory=list)


def _graph_scope(config: Config) -> str:
    parts = urlsplit(config.calendar_oauth.microsoft.graph_url)
    return f"{parts.scheme}://{parts.netloc}/Calendars.ReadWrite"


def start(
    config: Config,
    key: bytes,
    store: StateStore,
    user_id: int,
    account_id: int,
    provider: str,
    name: str,
) -> Started:
    """The provider's consent page for a new calendar NAME of ACCOUNT_ID; the sign-in's
    verifier waits in STORE for the answer."""
    scopes = [GOOGLE_SCOPE] if provider == "google" else [_graph_scope(config)]
    data = {"u": user_id, "a": account_id, "n": name}
    return oauth_flow.start(config, key, store, provider, data, scopes, CALLBACK_PATH)


def read_state(key: bytes, state: str, cookie: str) -> dict[str, Any]:
    """The signed STATE of a sign-in answer, checked against the browser's COOKIE;
    InvalidInput when it is not genuine. Then (its user and account checked) take_flow."""
    return oauth_flow.read_state(key, state, cookie, PAGE)


def take_flow(store: StateStore, data: dict[str, Any]) -> dict[str, Any]:
    """DATA (read_state's) with the PKCE verifier added as "v", the scopes as "s", taken from
    STORE: an answer is used once; InvalidInput when it was, or is too old."""
    return oauth_flow.take_flow(store, data, PAGE)


def keep_token(store: StateStore, refresh_token: str) -> str:
    """Keep a sign-in's REFRESH_TOKEN in STORE while the user chooses the calendar; the id
    to find it with (take_token)."""
    token_id = secrets.token_urlsafe(16)
    store.put_secret(SIGNIN_NAMESPACE, f"token-{token_id}", refresh_token, ttl=CHOICE_SECONDS)
    return token_id


def take_token(store: StateStore, token_id: str) -> str:
    """The refresh token kept as TOKEN_ID, removed from STORE; InvalidInput when it is no
    longer there (expired, or the calendar was created already)."""
    token = store.take_secret(SIGNIN_NAMESPACE, f"token-{token_id}")
    if token is None:
        raise InvalidInput("this sign-in has expired or was used; connect the calendar again")
    return token


def give_back_token(store: StateStore, token_id: str, refresh_token: str) -> None:
    """Put back a token taken for a calendar that could not be created (the choice may be
    made again)."""
    store.put_secret(SIGNIN_NAMESPACE, f"token-{token_id}", refresh_token, ttl=CHOICE_SECONDS)


def exchange(
    config: Config, provider: str, state: str, data: dict[str, Any], query: dict[str, str]
) -> Connected:
    """Trade the code of QUERY for tokens and list the user's calendars."""
    token = oauth_flow.exchange_code(config, provider, state, data, query, CALLBACK_PATH)
    access = str(token.get("access_token", ""))
    found = (
        _google_calendars(config, access)
        if provider == "google"
        else _graph_calendars(config, access)
    )
    return Connected(str(token["refresh_token"]), found)


def _google_calendars(config: Config, access_token: str) -> list[tuple[str, str, bool]]:
    root = config.calendar_oauth.google.api_url or GOOGLE_API
    base = root if root.rstrip("/").endswith("/calendar/v3") else root.rstrip("/") + "/calendar/v3"
    try:
        answer = httpx.get(
            base.rstrip("/") + "/users/me/calendarList",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=TIMEOUT,
        )
        answer.raise_for_status()
        items = answer.json().get("items", [])
    except (httpx.HTTPError, ValueError, AttributeError):
        return []
    found = [
        (str(i["id"]), str(i.get("summary") or i["id"]), bool(i.get("primary")))
        for i in items
        if isinstance(i, dict) and i.get("id")
    ]
    # The connector reads "primary" for the user's main calendar, whatever its id.
    return [("primary" if primary else cid, label, primary) for cid, label, primary in found]


def _graph_calendars(config: Config, access_token: str) -> list[tuple[str, str, bool]]:
    sec = config.calendar_oauth.microsoft
    try:
        answer = httpx.get(
            sec.graph_url.rstrip("/") + "/me/calendars",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=TIMEOUT,
            verify=ssl.create_default_context(cafile=sec.ca_file) if sec.ca_file else True,
        )
        answer.raise_for_status()
        items = answer.json().get("value", [])
    except (httpx.HTTPError, ValueError, AttributeError):
        return []
    # The connector reads the mailbox's default calendar when no calendar_id is set.
    return [
        (
            "" if i.get("isDefaultCalendar") else str(i["id"]),
            str(i.get("name") or i["id"]),
            bool(i.get("isDefaultCalendar")),
        )
        for i in items
        if isinstance(i, dict) and i.get("id")
    ]


def calendar_settings(
    config: Config, provider: str, calendar_id: str | None
) -> tuple[str, dict[str, Any]]:
    """(source type, settings) of the calendar a sign-in ends with (its refresh token is
    stored with it, encrypted: ``stored_secrets``)."""
    sec = section(config, provider)
    secret = (
        {"client_secret_env": sec.client_secret_env}
        if sec.client_secret_env
        else {"client_secret_file": sec.client_secret_file}
    )
    settings: dict[str, Any] = {
        "client_id": sec.client_id,
        **secret,
        "stored_secrets": ["refresh_token"],
    }
    if isinstance(sec, GoogleOAuthSection):
        settings["calendar_id"] = calendar_id or "primary"
        if sec.token_url != GOOGLE_TOKEN_URL:
            settings["token_uri"] = sec.token_url
        if sec.api_url:
            settings["api_endpoint"] = sec.api_url
        return "google", settings
    settings["tenant_id"] = sec.tenant
    if calendar_id:
        settings["calendar_id"] = calendar_id
    if sec.authority.rstrip("/") != MICROSOFT_AUTHORITY:
        settings["authority"] = sec.authority
    if sec.graph_url.rstrip("/") != GRAPH_URL:
        settings["graph_base_url"] = sec.graph_url
    if sec.ca_file:
        settings["ca_file"] = sec.ca_file
    return "graph", settings
