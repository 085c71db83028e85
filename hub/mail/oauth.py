"""Mailboxes reached by OAuth (SASL XOAUTH2 / OAUTHBEARER): their tokens, kept in the
database, refreshed before they expire, and what each mailbox last did.

A mailbox is one of the hub's mail doors named by the config: an ``[[imap]]`` intake
source, or ``[mail_out]`` (SMTP relay or IMAP APPEND of forwarded SMS). With ``auth =
"xoauth2"`` it signs in with an access token of a Microsoft 365 or Google account instead of
a password. The refresh token of that sign-in (console "Connect", or `smshub mailboxes auth`)
lives encrypted in the connector state store (hub/ports/state.py) under the mailbox's namespace,
never in a file or a log; so does the current access token, so every instance uses it until
shortly before it expires, then one refreshes it (rotated refresh tokens are stored back).

A refused refresh (``invalid_grant``: consent revoked, password changed, token expired) is
noted in the namespace too: the mailbox's console page and ``/readyz`` show it with the fix,
until the mailbox is connected again.

Any transport that signs in with these tokens (IMAP, SMTP, and later a provider's mail API)
takes a :class:`MailboxAccess`; nothing here knows the protocol. Blocking (HTTP to the token
endpoint, SQL): call it from worker threads.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from hub.core.config import Config, read_secret
from hub.core.timeutil import utcnow
from hub.errors import ConfigError, ConsentRevoked, MailboxAuthError
from hub.ports.state import StateStore

log = logging.getLogger("smshub.mailboxes")

Provider = Literal["google", "microsoft"]
PROVIDERS: dict[str, str] = {"microsoft": "Microsoft 365", "google": "Google Workspace"}

# What a mailbox sign-in asks for: IMAP and SMTP send (Microsoft needs both resources of
# outlook.office.com; offline_access for a refresh token, which MSAL adds itself), or
# Google's one scope covering IMAP, SMTP and the Gmail API.
MICROSOFT_IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
MICROSOFT_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"
SCOPES: dict[str, list[str]] = {
    "microsoft": [MICROSOFT_IMAP_SCOPE, MICROSOFT_SMTP_SCOPE],
    "google": [GOOGLE_MAIL_SCOPE],
}
# With a provider's mail API as the transport (transport = "graph" / "gmail"): Graph's
# delegated mail permissions (a Microsoft token is for one resource, so not mixed with the
# outlook.office.com ones above), or Gmail's modify scope (read, label, send, insert).
API_SCOPES: dict[str, list[str]] = {
    "microsoft": [
        "https://graph.microsoft.com/Mail.ReadWrite",
        "https://graph.microsoft.com/Mail.Send",
    ],
    "google": ["https://www.googleapis.com/auth/gmail.modify"],
}
API_TRANSPORTS = ("graph", "gmail")


def scopes_for(provider: str, transport: str = "") -> list[str]:
    """What a mailbox of PROVIDER asks at sign-in for TRANSPORT ("imap", "smtp", "graph",
    "gmail"; the mail protocols by default)."""
    table = API_SCOPES if transport in API_TRANSPORTS else SCOPES
    return list(table.get(provider, []))


# An access token is refreshed this long before its announced expiry.
REFRESH_MARGIN = 300.0
# At most one "last activity" write per mailbox in this many seconds (errors always).
ACTIVITY_EVERY = 60.0
TIMEOUT = 30.0

# Keys in a mailbox's namespace.
REFRESH_KEY = "refresh_token"  # secret
ACCESS_KEY = "access_token"  # secret, expiring
GRANT_KEY = "grant"  # {"provider", "public", "scopes", "account", "connected_at"}
STATUS_KEY = "status"  # {"state": "revoked", "error", "at"} while the consent is refused
ACTIVITY_KEY = "activity"  # {"at", "what", "error", "error_at"}

MAIL_OUT = "mail_out"


def mailbox_namespace(key: str) -> str:
    """Where a mailbox's tokens, status and activity are kept (hub/ports/state.py)."""
    return f"mailbox:{key}"


def intake_key(label: str) -> str:
    """The key of the ``[[imap]]`` source labelled LABEL (its name, else user@host/folder)."""
    return f"imap:{label}"


def fix_hint(key: str) -> str:
    """How to connect mailbox KEY again, in words."""
    return (
        f"reconnect the mailbox in the console: Mailboxes → {key} → Connect "
        f"(or run `smshub mailboxes auth {key}` on the server)"
    )


# -- the OAuth clients ----------------------------------------------------------------------------
def _client(config: Config, provider: str) -> Any:
    # The same OAuth clients as the calendars' buttons: one app registration per provider,
    # given the mail permissions too (README: Microsoft 365 / Google Workspace).
    return config.calendar_oauth.google if provider == "google" else config.calendar_oauth.microsoft


def token_url(config: Config, provider: str) -> str:
    if provider == "google":
        return str(config.calendar_oauth.google.token_url)
    sec = config.calendar_oauth.microsoft
    return f"{sec.authority.rstrip('/')}/{sec.tenant}/oauth2/v2.0/token"


def client_secret(config: Config, provider: str) -> str:
    where = f"calendar_oauth.{provider}"
    secret = read_secret(_client(config, provider), "client_secret", where)
    if not secret:
        raise ConfigError(
            f"'{where}': the client secret is missing; set client_secret_env or "
            "client_secret_file (the mailbox sign-in uses this OAuth client)"
        )
    return secret


def _verify(config: Config, provider: str) -> Any:
    if provider == "microsoft" and config.calendar_oauth.microsoft.ca_file:
        return ssl.create_default_context(cafile=config.calendar_oauth.microsoft.ca_file)
    return True


def refresh_grant(
    config: Config, provider: str, refresh_token: str, scopes: list[str], public: bool
) -> dict[str, Any]:
    """Trade REFRESH_TOKEN for a new access token at PROVIDER's token endpoint (the standard
    refresh_token grant both speak). ConsentRevoked on invalid_grant; MailboxAuthError on
    anything else the endpoint refuses; OSError-like httpx errors pass through."""
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": str(_client(config, provider).client_id),
    }
    if not public:
        # A token from a public client (device code) must be refreshed without the secret.
        form["client_secret"] = client_secret(config, provider)
    if provider == "microsoft":
        form["scope"] = " ".join([*scopes, "offline_access"])
    answer = httpx.post(
        token_url(config, provider), data=form, timeout=TIMEOUT, verify=_verify(config, provider)
    )
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if answer.status_code == 200 and body.get("access_token"):
        return body
    error = str(body.get("error") or f"HTTP {answer.status_code}")
    first = str(body.get("error_description") or "").strip().splitlines()
    why = f"{error}: {first[0][:200]}" if first else error
    if error == "invalid_grant":
        raise ConsentRevoked(why)
    raise MailboxAuthError(f"the {PROVIDERS.get(provider, provider)} token endpoint refused: {why}")


# -- storing a sign-in ----------------------------------------------------------------------------
def store_grant(
    store: StateStore,
    key: str,
    provider: str,
    refresh_token: str,
    *,
    public: bool = False,
    account: str = "",
    access: dict[str, Any] | None = None,
    scopes: list[str] | None = None,
) -> None:
    """Keep a new sign-in of mailbox KEY (replacing any), clearing a revoked status; SCOPES
    are what it was granted (default: the mail protocols' scopes of PROVIDER)."""
    ns = mailbox_namespace(key)
    store.put_secret(ns, REFRESH_KEY, refresh_token)
    store.delete(ns, ACCESS_KEY)
    store.put(
        ns,
        GRANT_KEY,
        {
            "provider": provider,
            "public": public,
            "scopes": scopes or SCOPES[provider],
            "account": account,
            "connected_at": utcnow().isoformat(),
        },
    )
    store.delete(ns, STATUS_KEY)
    if access and access.get("access_token"):
        _keep_access(store, ns, access)


def _keep_access(store: StateStore, ns: str, answer: dict[str, Any]) -> None:
    try:
        lifetime = float(answer.get("expires_in") or 3600)
    except (TypeError, ValueError):
        lifetime = 3600.0
    ttl = max(1.0, lifetime - REFRESH_MARGIN)
    store.put_secret(ns, ACCESS_KEY, str(answer["access_token"]), ttl=ttl)


def disconnect(store: StateStore, key: str) -> int:
    """Forget mailbox KEY's tokens, status and activity; how many entries were deleted."""
    return store.delete_namespace(mailbox_namespace(key))


@dataclass
class MailboxState:
    """What the console and /readyz show of a mailbox."""

    connected: bool
    provider: str
    account: str
    connected_at: str
    revoked: str  # the provider's reason, "" unless the consent was refused
    activity: dict[str, Any]


def mailbox_state(store: StateStore, key: str) -> MailboxState:
    ns = mailbox_namespace(key)
    grant = store.get(ns, GRANT_KEY) or {}
    status = store.get(ns, STATUS_KEY) or {}
    has_token = store.get_secret(ns, REFRESH_KEY) is not None
    return MailboxState(
        connected=has_token,
        provider=str(grant.get("provider", "")),
        account=str(grant.get("account", "")),
        connected_at=str(grant.get("connected_at", "")),
        revoked=str(status.get("error", "")) if status.get("state") == "revoked" else "",
        activity=dict(store.get(ns, ACTIVITY_KEY) or {}),
    )


# -- what a transport holds -----------------------------------------------------------------------
class MailboxAccess:
    """One mailbox's sign-in for a transport: the access token (``token()``), and where it
    notes what it did (``record()``). With ``auth = "password"`` only ``record`` is used."""

    def __init__(
        self,
        config: Config,
        store: StateStore,
        key: str,
        *,
        auth: str = "password",
        provider: str | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        if auth == "xoauth2" and provider not in PROVIDERS:
            raise ConfigError(
                f'mailbox {key}: auth = "xoauth2" needs oauth_provider = "microsoft" or "google"'
            )
        self.config = config
        self.store = store
        self.key = key
        self.auth = auth
        self.provider = provider or ""
        self.namespace = mailbox_namespace(key)
        self._clock = clock
        self._last_write = -ACTIVITY_EVERY
        self._last_what = ""

    @property
    def oauth(self) -> bool:
        return self.auth == "xoauth2"

    def token(self, *, renew: bool = False) -> str:
        """A valid access token: the stored one, else (or with RENEW, after the server refused
        it) a refreshed one. MailboxAuthError (ConsentRevoked) saying what to do."""
        if not renew:
            kept = self.store.get_secret(self.namespace, ACCESS_KEY)
            if kept:
                return kept
        refresh = self.store.get_secret(self.namespace, REFRESH_KEY)
        if not refresh:
            raise MailboxAuthError(f"mailbox {self.key} is not connected: {fix_hint(self.key)}")
        grant = self.store.get(self.namespace, GRANT_KEY) or {}
        provider = str(grant.get("provider") or self.provider)
        if provider != self.provider:
            raise MailboxAuthError(
                f"mailbox {self.key} was connected with {PROVIDERS.get(provider, provider)} "
                f"but its config says oauth_provider = {self.provider!r}: {fix_hint(self.key)}"
            )
        scopes = list(grant.get("scopes") or SCOPES[provider])
        try:
            answer = refresh_grant(
                self.config, provider, refresh, scopes, bool(grant.get("public"))
            )
        except ConsentRevoked as exc:
            self.store.put(
                self.namespace,
                STATUS_KEY,
                {"state": "revoked", "error": str(exc), "at": utcnow().isoformat()},
            )
            self.store.delete(self.namespace, ACCESS_KEY)
            message = (
                f"the {PROVIDERS[provider]} sign-in of mailbox {self.key} was refused "
                f"({exc}): the consent was revoked or has expired; {fix_hint(self.key)}"
            )
            self.record("sign-in", error=message)
            raise ConsentRevoked(message) from None
        except httpx.HTTPError as exc:
            raise MailboxAuthError(
                f"mailbox {self.key}: cannot reach the {PROVIDERS[provider]} token endpoint "
                f"({type(exc).__name__}); retrying later"
            ) from None
        if answer.get("refresh_token") and answer["refresh_token"] != refresh:
            self.store.put_secret(self.namespace, REFRESH_KEY, str(answer["refresh_token"]))
        _keep_access(self.store, self.namespace, answer)
        self.store.delete(self.namespace, STATUS_KEY)
        log.info("mailbox %s: access token refreshed", self.key)
        return str(answer["access_token"])

    def record(self, what: str, *, error: str | None = None) -> None:
        """Note the mailbox's last activity (WHAT: "read INBOX", "sent a mail") or ERROR, for
        the console; successes at most once a minute, so a busy mailbox costs few writes."""
        now = self._clock()
        if error is None and what == self._last_what and now - self._last_write < ACTIVITY_EVERY:
            return
        self._last_write, self._last_what = now, what
        try:
            kept = self.store.get(self.namespace, ACTIVITY_KEY) or {}
            stamp = utcnow().isoformat()
            if error is None:
                kept.update({"at": stamp, "what": what, "error": ""})
            else:
                kept.update({"error": error, "error_at": stamp})
            self.store.put(self.namespace, ACTIVITY_KEY, kept)
        except Exception:  # noting activity must never stop the mail
            log.warning("mailbox %s: cannot note its activity", self.key, exc_info=True)


def sasl_xoauth2(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def sasl_oauthbearer(user: str, token: str, host: str = "", port: int = 0) -> str:
    """The SASL OAUTHBEARER initial response of RFC 7628 (before base64)."""
    extra = (f"host={host}\x01" if host else "") + (f"port={port}\x01" if port else "")
    return f"n,a={user},\x01{extra}auth=Bearer {token}\x01\x01"
