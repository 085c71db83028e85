"""Connecting a Google or Microsoft 365 calendar from the console: the OAuth authorization-code
redirect flow with PKCE, for the OAuth clients named in ``[calendar_oauth.*]``.

The ``state`` sent to the provider is signed and names the console user, the account, the
calendar name and a nonce; an HttpOnly cookie holds the same nonce, so an answer is only
taken from the browser that started the sign-in, for the user who started it, within ten
minutes. The PKCE verifier waits in the hub's state store (encrypted, expiring, taken once),
as does the refresh token while the user chooses a calendar, so the callback and the choice
may land on any instance. The refresh token ends encrypted in the database with the calendar
(its ``stored_secrets``); the client secret stays where the config file says
(``client_secret_env`` / ``client_secret_file``) and the calendar names the same place.

Blocking (requests, MSAL): call these from a worker thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import time
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import requests

from hub.config import Config, GoogleOAuthSection, MicrosoftOAuthSection, read_secret
from hub.errors import ConfigError, InvalidInput
from hub.state import StateStore

PROVIDERS = {"google": "Google", "microsoft": "Microsoft 365"}
SOURCE_TYPES = {"google": "google", "microsoft": "graph"}
CALLBACK_PATH = "/console/calendars/oauth/callback"
GOOGLE_SCOPE = "https://www.googleapis.com/auth/calendar.events"
GOOGLE_API = "https://www.googleapis.com/"
# Defaults of the connectors' settings: left out of a calendar's settings when unchanged.
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
GRAPH_URL = "https://graph.microsoft.com/v1.0"
STATE_SECONDS = 600
# How long the refresh token of a sign-in waits for the user's choice of calendar.
CHOICE_SECONDS = 3600
# The state store's namespace of sign-ins under way.
SIGNIN_NAMESPACE = "console-signin"
TIMEOUT = 30.0


# -- configuration ----------------------------------------------------------------------------
def section(config: Config, provider: str) -> GoogleOAuthSection | MicrosoftOAuthSection:
    if provider == "google":
        return config.calendar_oauth.google
    return config.calendar_oauth.microsoft


def missing_keys(config: Config, provider: str) -> list[str]:
    """The config keys to set before PROVIDER's button can work (empty: ready)."""
    sec = section(config, provider)
    where = f"calendar_oauth.{provider}"
    missing = []
    if not sec.client_id:
        missing.append(f"{where}.client_id")
    if not (sec.client_secret_env or sec.client_secret_file):
        missing.append(f"{where}.client_secret_env")
    return missing


def setup_hint(config: Config, provider: str) -> str:
    """What to set for PROVIDER's button, as a sentence ("" when nothing is missing)."""
    missing = missing_keys(config, provider)
    if not missing:
        return ""
    also = (
        f" (or calendar_oauth.{provider}.client_secret_file, a file holding the secret)"
        if missing[-1].endswith("client_secret_env")
        else ""
    )
    return (
        f"set {' and '.join(missing)}{also} in the hub's config file, and register "
        f"{redirect_uri(config)} as the redirect URI of that OAuth client"
    )


def redirect_uri(config: Config) -> str:
    """Where providers send the browser back; register exactly this with the OAuth client."""
    return config.hub.public_url.rstrip("/") + CALLBACK_PATH


def _client_secret(config: Config, provider: str) -> str:
    where = f"calendar_oauth.{provider}"
    secret = read_secret(section(config, provider), "client_secret", where)
    if not secret:
        raise ConfigError(f"'{where}': the client secret is empty")
    return secret


# -- signed values ------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signer_key(session_key: bytes) -> bytes:
    """A key of its own for OAuth values, derived from the console's session key."""
    return hmac.new(session_key, b"smshub console calendar oauth", hashlib.sha256).digest()


def sign(key: bytes, data: dict[str, Any], seconds: int = STATE_SECONDS) -> str:
    body = _b64(json.dumps({**data, "e": int(time.time()) + seconds}).encode())
    return f"{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def unsign(key: bytes, value: str) -> dict[str, Any] | None:
    """The data of a value signed by ``sign``; None when forged, malformed or expired."""
    body, _, signature = value.partition(".")
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not signature or not hmac.compare_digest(expected, signature):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        return None
    if not isinstance(data, dict) or int(data.get("e", 0)) < time.time():
        return None
    return data


# -- the flow -----------------------------------------------------------------------------------
@dataclass
class Started:
    url: str  # the provider's consent page
    cookie: str  # signed: the nonce of the state


@dataclass
class Connected:
    refresh_token: str
    # (id, name, primary) of the signed-in user's calendars; empty when they could not be read.
    calendars: list[tuple[str, str, bool]] = field(default_factory=list)


class _PinnedSession(requests.Session):
    """Trusts CA_FILE even when REQUESTS_CA_BUNDLE is set (it overrides a session's verify)."""

    def __init__(self, ca_file: str) -> None:
        super().__init__()
        self.verify = ca_file

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("timeout", TIMEOUT)
        return super().request(method, url, *args, **kwargs)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _google_flow(config: Config, state: str, verifier: str) -> Any:
    from google_auth_oauthlib.flow import Flow

    sec = config.calendar_oauth.google
    uri = redirect_uri(config)
    client = {
        "web": {
            "client_id": sec.client_id,
            "client_secret": _client_secret(config, "google"),
            "auth_uri": sec.auth_url,
            "token_uri": sec.token_url,
            "redirect_uris": [uri],
        }
    }
    return Flow.from_client_config(
        client,
        scopes=[GOOGLE_SCOPE],
        redirect_uri=uri,
        state=state,
        code_verifier=verifier,
        autogenerate_code_verifier=False,
    )


def _graph_scope(config: Config) -> str:
    parts = urlsplit(config.calendar_oauth.microsoft.graph_url)
    return f"{parts.scheme}://{parts.netloc}/Calendars.ReadWrite"


def _msal_app(config: Config) -> Any:
    import msal

    sec = config.calendar_oauth.microsoft
    options: dict[str, Any] = {"timeout": TIMEOUT}
    if sec.ca_file:
        options = {"http_client": _PinnedSession(sec.ca_file)}
    try:
        # instance_discovery=False: the authority is the one configured (a national cloud's,
        # a stand-in's), MSAL must not ask login.microsoftonline.com to vouch for it.
        return msal.ConfidentialClientApplication(
            sec.client_id,
            client_credential=_client_secret(config, "microsoft"),
            authority=f"{sec.authority.rstrip('/')}/{sec.tenant}",
            instance_discovery=False,
            **options,
        )
    except (ValueError, requests.RequestException) as exc:
        raise InvalidInput(
            f"cannot use the Microsoft sign-in service {sec.authority} (tenant {sec.tenant}): "
            f"{_short(str(exc))}; check calendar_oauth.microsoft in the config"
        ) from None


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
    store.prune()  # sign-ins never finished, choices never made
    nonce = secrets.token_urlsafe(16)
    state = sign(key, {"u": user_id, "a": account_id, "p": provider, "n": name, "k": nonce})
    if provider == "google":
        verifier = secrets.token_urlsafe(64)
        flow = _google_flow(config, state, verifier)
        # offline + consent: otherwise Google gives no refresh token to an app it has seen.
        url, _ = flow.authorization_url(access_type="offline", prompt="consent")
        scopes = [GOOGLE_SCOPE]
    else:
        app = _msal_app(config)
        with warnings.catch_warnings():
            # MSAL recommends form_post, but that answer is a cross-site POST, which carries no
            # SameSite=Lax session cookie; a query answer is bound by state and PKCE instead.
            warnings.filterwarnings("ignore", message="response_mode='form_post'")
            flow = app.initiate_auth_code_flow(
                [_graph_scope(config)], redirect_uri=redirect_uri(config), state=state
            )
        url, verifier, scopes = flow["auth_uri"], flow["code_verifier"], flow["scope"]
    flow_data = json.dumps({"v": verifier, "s": scopes})
    store.put_secret(SIGNIN_NAMESPACE, f"flow-{nonce}", flow_data, ttl=STATE_SECONDS)
    return Started(url=str(url), cookie=sign(key, {"k": nonce}))


def read_state(key: bytes, state: str, cookie: str) -> dict[str, Any]:
    """The signed STATE of a sign-in answer, checked against the browser's COOKIE;
    InvalidInput when it is not genuine. Then (its user and account checked) take_flow."""
    data = unsign(key, state)
    kept = unsign(key, cookie) if cookie else None
    if data is None or data.get("p") not in PROVIDERS:
        raise InvalidInput(
            "this sign-in answer is not valid (forged, or older than ten minutes); "
            "start again from the Calendars page"
        )
    if kept is None or not hmac.compare_digest(str(kept.get("k")), str(data.get("k"))):
        raise InvalidInput(
            "this sign-in was started in another browser or tab, or already used; "
            "start again from the Calendars page"
        )
    return data


def take_flow(store: StateStore, data: dict[str, Any]) -> dict[str, Any]:
    """DATA (read_state's) with the PKCE verifier added as "v", the scopes as "s", taken from
    STORE: an answer is used once; InvalidInput when it was, or is too old."""
    found = store.take_secret(SIGNIN_NAMESPACE, f"flow-{data['k']}")
    if found is None:
        raise InvalidInput(
            "this sign-in was already used or is older than ten minutes; "
            "start again from the Calendars page"
        )
    flow = json.loads(found)
    return {**data, "v": flow["v"], "s": flow["s"]}


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
    if provider == "google":
        return _google_exchange(config, state, data, query)
    return _microsoft_exchange(config, state, data, query)


def _google_exchange(
    config: Config, state: str, data: dict[str, Any], query: dict[str, str]
) -> Connected:
    flow = _google_flow(config, state, str(data["v"]))
    try:
        token = dict(flow.fetch_token(code=query.get("code", ""), timeout=TIMEOUT))
    except Warning as changed:
        # oauthlib reports granted scopes that differ from the asked ones as a Warning
        # carrying the token; the calendar works with what the user granted.
        token = dict(getattr(changed, "token", None) or {})
    except Exception as exc:  # oauthlib and requests raise many kinds
        raise InvalidInput(f"Google did not complete the sign-in: {_short(str(exc))}") from None
    refresh = token.get("refresh_token")
    if not refresh:
        raise InvalidInput(
            "Google gave no refresh token: remove smshub's access in your Google account "
            "(Security → Third-party access) and connect again"
        )
    return Connected(str(refresh), _google_calendars(config, str(token.get("access_token", ""))))


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


def _microsoft_exchange(
    config: Config, state: str, data: dict[str, Any], query: dict[str, str]
) -> Connected:
    app = _msal_app(config)
    flow = {
        "state": state,
        "redirect_uri": redirect_uri(config),
        "scope": list(data["s"]),
        "code_verifier": str(data["v"]),
        "claims_challenge": None,
    }
    try:
        result = app.acquire_token_by_auth_code_flow(flow, dict(query))
    except (ValueError, requests.RequestException) as exc:
        raise InvalidInput(f"Microsoft did not complete the sign-in: {_short(str(exc))}") from None
    if "refresh_token" not in result:
        first = str(result.get("error_description") or "").strip().splitlines()
        why = f"{result.get('error', 'error')}: {first[0] if first else ''}".rstrip(": ")
        raise InvalidInput(f"Microsoft did not complete the sign-in: {_short(why)}")
    return Connected(
        str(result["refresh_token"]), _graph_calendars(config, str(result["access_token"]))
    )


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
