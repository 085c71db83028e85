"""The OAuth sign-in every console "Connect" button runs (calendars, mailboxes): the
authorization-code redirect flow with PKCE against Google or Microsoft's identity platform,
for the OAuth clients named in ``[calendar_oauth.*]``.

The ``state`` sent to the provider is signed (a key per use, derived from the console's
session key) and names the console user, the account, what is being connected and a nonce;
an HttpOnly cookie holds the same nonce, so an answer is only taken from the browser that
started the sign-in, for the user who started it, within ten minutes. The PKCE verifier
waits in the hub's state store (encrypted, expiring, taken once), so the callback may land
on any instance. What the sign-in yields (refresh and access tokens) is the caller's to
keep; the client secret stays where the config file says (``client_secret_env`` /
``client_secret_file``).

Blocking (requests, MSAL): call these from a worker thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from hub.core.config import Config, GoogleOAuthSection, MicrosoftOAuthSection, read_secret
from hub.errors import ConfigError, InvalidInput
from hub.ports.state import StateStore

PROVIDERS = {"google": "Google", "microsoft": "Microsoft 365"}
STATE_SECONDS = 600
# The state store's namespace of sign-ins under way.
SIGNIN_NAMESPACE = "console-signin"
TIMEOUT = 30.0
# What signer_key derives the calendars' key with (states signed before the split stay valid).
CALENDAR_PURPOSE = b"smshub console calendar oauth"


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


def setup_hint(config: Config, provider: str, path: str) -> str:
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
        f"{redirect_uri(config, path)} as a redirect URI of that OAuth client"
    )


def redirect_uri(config: Config, path: str) -> str:
    """Where providers send the browser back; register exactly this with the OAuth client."""
    return config.hub.public_url.rstrip("/") + path


def client_secret(config: Config, provider: str) -> str:
    where = f"calendar_oauth.{provider}"
    secret = read_secret(section(config, provider), "client_secret", where)
    if not secret:
        raise ConfigError(f"'{where}': the client secret is empty")
    return secret


# -- signed values ------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signer_key(session_key: bytes, purpose: bytes = CALENDAR_PURPOSE) -> bytes:
    """A key of its own for one use's OAuth values, derived from the console's session key:
    a value signed for calendars is no good to the mailboxes' callback, and back."""
    return hmac.new(session_key, purpose, hashlib.sha256).digest()


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


class PinnedSession(requests.Session):
    """Trusts CA_FILE even when REQUESTS_CA_BUNDLE is set (it overrides a session's verify)."""

    def __init__(self, ca_file: str) -> None:
        super().__init__()
        self.verify = ca_file

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("timeout", TIMEOUT)
        return super().request(method, url, *args, **kwargs)


def short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def google_flow(config: Config, state: str, verifier: str, scopes: list[str], path: str) -> Any:
    from google_auth_oauthlib.flow import Flow

    sec = config.calendar_oauth.google
    uri = redirect_uri(config, path)
    client = {
        "web": {
            "client_id": sec.client_id,
            "client_secret": client_secret(config, "google"),
            "auth_uri": sec.auth_url,
            "token_uri": sec.token_url,
            "redirect_uris": [uri],
        }
    }
    return Flow.from_client_config(
        client,
        scopes=scopes,
        redirect_uri=uri,
        state=state,
        code_verifier=verifier,
        autogenerate_code_verifier=False,
    )


def msal_app(config: Config) -> Any:
    import msal

    sec = config.calendar_oauth.microsoft
    options: dict[str, Any] = {"timeout": TIMEOUT}
    if sec.ca_file:
        options = {"http_client": PinnedSession(sec.ca_file)}
    try:
        # instance_discovery=False: the authority is the one configured (a national cloud's,
        # a stand-in's), MSAL must not ask login.microsoftonline.com to vouch for it.
        return msal.ConfidentialClientApplication(
            sec.client_id,
            client_credential=client_secret(config, "microsoft"),
            authority=f"{sec.authority.rstrip('/')}/{sec.tenant}",
            instance_discovery=False,
            **options,
        )
    except (ValueError, requests.RequestException) as exc:
        raise InvalidInput(
            f"cannot use the Microsoft sign-in service {sec.authority} (tenant {sec.tenant}): "
            f"{short(str(exc))}; check calendar_oauth.microsoft in the config"
        ) from None


def start(
    config: Config,
    key: bytes,
    store: StateStore,
    provider: str,
    data: dict[str, Any],
    scopes: list[str],
    path: str,
) -> Started:
    """The provider's consent page asking SCOPES; DATA (the user "u", the account "a", what
    is connected...) travels signed in the state, the verifier waits in STORE."""
    store.prune()  # sign-ins never finished, choices never made
    nonce = secrets.token_urlsafe(16)
    state = sign(key, {**data, "p": provider, "k": nonce})
    if provider == "google":
        verifier = secrets.token_urlsafe(64)
        flow = google_flow(config, state, verifier, scopes, path)
        # offline + consent: otherwise Google gives no refresh token to an app it has seen.
        url, _ = flow.authorization_url(access_type="offline", prompt="consent")
    else:
        app = msal_app(config)
        with warnings.catch_warnings():
            # MSAL recommends form_post, but that answer is a cross-site POST, which carries no
            # SameSite=Lax session cookie; a query answer is bound by state and PKCE instead.
            warnings.filterwarnings("ignore", message="response_mode='form_post'")
            flow = app.initiate_auth_code_flow(
                scopes, redirect_uri=redirect_uri(config, path), state=state
            )
        url, verifier, scopes = flow["auth_uri"], flow["code_verifier"], flow["scope"]
    flow_data = json.dumps({"v": verifier, "s": scopes})
    store.put_secret(SIGNIN_NAMESPACE, f"flow-{nonce}", flow_data, ttl=STATE_SECONDS)
    return Started(url=str(url), cookie=sign(key, {"k": nonce}))


def read_state(
    key: bytes, state: str, cookie: str, page: str = "the Calendars page"
) -> dict[str, Any]:
    """The signed STATE of a sign-in answer, checked against the browser's COOKIE;
    InvalidInput when it is not genuine. Then (its user and account checked) take_flow."""
    data = unsign(key, state)
    kept = unsign(key, cookie) if cookie else None
    if data is None or data.get("p") not in PROVIDERS:
        raise InvalidInput(
            "this sign-in answer is not valid (forged, or older than ten minutes); "
            f"start again from {page}"
        )
    if kept is None or not hmac.compare_digest(str(kept.get("k")), str(data.get("k"))):
        raise InvalidInput(
            "this sign-in was started in another browser or tab, or already used; "
            f"start again from {page}"
        )
    return data


def take_flow(
    store: StateStore, data: dict[str, Any], page: str = "the Calendars page"
) -> dict[str, Any]:
    """DATA (read_state's) with the PKCE verifier added as "v", the scopes as "s", taken from
    STORE: an answer is used once; InvalidInput when it was, or is too old."""
    found = store.take_secret(SIGNIN_NAMESPACE, f"flow-{data['k']}")
    if found is None:
        raise InvalidInput(
            f"this sign-in was already used or is older than ten minutes; start again from {page}"
        )
    flow = json.loads(found)
    return {**data, "v": flow["v"], "s": flow["s"]}


def exchange_code(
    config: Config,
    provider: str,
    state: str,
    data: dict[str, Any],
    query: dict[str, str],
    path: str,
) -> dict[str, Any]:
    """Trade the code of QUERY for tokens: the token answer, with a refresh token
    (InvalidInput saying why when there is none)."""
    if provider == "google":
        return _google_exchange(config, state, data, query, path)
    return _microsoft_exchange(config, state, data, query, path)


def _google_exchange(
    config: Config, state: str, data: dict[str, Any], query: dict[str, str], path: str
) -> dict[str, Any]:
    flow = google_flow(config, state, str(data["v"]), list(data["s"]), path)
    try:
        token = dict(flow.fetch_token(code=query.get("code", ""), timeout=TIMEOUT))
    except Warning as changed:
        # oauthlib reports granted scopes that differ from the asked ones as a Warning
        # carrying the token; what was granted is used.
        token = dict(getattr(changed, "token", None) or {})
    except Exception as exc:  # oauthlib and requests raise many kinds
        raise InvalidInput(f"Google did not complete the sign-in: {short(str(exc))}") from None
    if not token.get("refresh_token"):
        raise InvalidInput(
            "Google gave no refresh token: remove smshub's access in your Google account "
            "(Security → Third-party access) and connect again"
        )
    return token


def _microsoft_exchange(
    config: Config, state: str, data: dict[str, Any], query: dict[str, str], path: str
) -> dict[str, Any]:
    app = msal_app(config)
    flow = {
        "state": state,
        "redirect_uri": redirect_uri(config, path),
        "scope": list(data["s"]),
        "code_verifier": str(data["v"]),
        "claims_challenge": None,
    }
    try:
        result = app.acquire_token_by_auth_code_flow(flow, dict(query))
    except (ValueError, requests.RequestException) as exc:
        raise InvalidInput(f"Microsoft did not complete the sign-in: {short(str(exc))}") from None
    if "refresh_token" not in result:
        first = str(result.get("error_description") or "").strip().splitlines()
        why = f"{result.get('error', 'error')}: {first[0] if first else ''}".rstrip(": ")
        raise InvalidInput(f"Microsoft did not complete the sign-in: {short(why)}")
    return dict(result)


# -- headless sign-ins (the CLI) -------------------------------------------------------------------
def device_code_signin(
    config: Config, scopes: list[str], show: Any, timeout: float = TIMEOUT
) -> dict[str, Any]:
    """Microsoft's device code flow with the ``[calendar_oauth.microsoft]`` client as a public
    client (its app registration must allow public client flows): SHOW gets the instruction
    ("open https://microsoft.com/devicelogin and enter ..."), then this blocks until the user
    signed in (about 15 minutes at most). The token answer, with a refresh token; InvalidInput
    saying why otherwise."""
    import msal  # loaded on use, as in msal_app

    sec = config.calendar_oauth.microsoft
    if not sec.client_id:
        raise ConfigError("set calendar_oauth.microsoft.client_id (the app registration)")
    options: dict[str, Any] = {"timeout": timeout}
    if sec.ca_file:
        options = {"http_client": PinnedSession(sec.ca_file)}
    try:
        app = msal.PublicClientApplication(
            sec.client_id,
            authority=f"{sec.authority.rstrip('/')}/{sec.tenant}",
            instance_discovery=False,
            **options,
        )
        flow = app.initiate_device_flow(scopes=scopes)
        if "user_code" not in flow:
            raise InvalidInput(
                f"Microsoft refused to start the sign-in: {flow.get('error_description') or flow}"
            )
        show(str(flow.get("message") or f"open {flow['verification_uri']}: {flow['user_code']}"))
        result = app.acquire_token_by_device_flow(flow)
    except (ValueError, requests.RequestException) as exc:
        raise InvalidInput(
            f"cannot use the sign-in service {sec.authority}: {short(str(exc))}"
        ) from None
    if "refresh_token" not in result:
        first = str(result.get("error_description") or "").strip().splitlines()
        raise InvalidInput(
            f"the sign-in did not complete: {result.get('error', 'error')}: "
            f"{short(first[0]) if first else ''}"
        )
    return dict(result)


@dataclass
class Pasted:
    """A sign-in whose answer the user copies back from the browser's address bar."""

    url: str  # the consent page to open
    state: str
    verifier: str
    scopes: list[str]
    path: str


def pasted_code_start(config: Config, scopes: list[str], path: str) -> Pasted:
    """Google's consent page for a headless install: the browser comes back to the hub's
    registered redirect URI (PATH), whose address carries the code the user pastes."""
    state, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(64)
    flow = google_flow(config, state, verifier, scopes, path)
    url, _ = flow.authorization_url(access_type="offline", prompt="consent")
    return Pasted(str(url), state, verifier, scopes, path)


def pasted_code_finish(config: Config, started: Pasted, pasted: str) -> dict[str, Any]:
    """Trade what the user pasted (the whole address, or only the code) for tokens."""
    pasted = pasted.strip()
    if "code=" in pasted:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(pasted).query).items()}
        if query.get("state", started.state) != started.state:
            raise InvalidInput("this address is the answer to another sign-in; start again")
        if query.get("error"):
            raise InvalidInput(f"Google did not connect: {query['error']}")
        code = query.get("code", "")
    else:
        code = pasted
    if not code:
        raise InvalidInput("nothing was pasted: paste the address the browser ended on")
    data = {"v": started.verifier, "s": started.scopes}
    return exchange_code(config, "google", started.state, data, {"code": code}, started.path)
