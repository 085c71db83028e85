"""Access control over EVERY route of the app: console pages and the HTTP API.

Each route is classified in ROUTES: public (with the reason), the caller's own session, or
guarded. A guarded route is called (i) without a login or token: a redirect to the login form
or 401, never data; (ii) as lyon (a sub-account of acme) and as eve (another customer) with
path ids, names and numbers of acme's objects (a message, a campaign, a calendar, an inbound
SMS, a webhook, a token, a blacklist entry, an invalid number, an intake address, a user, a
short link, a hosted file, the account itself): the answer must be a refusal (403/404 or a
redirect; some routes list the refusals of a form too), no answer may contain acme's data,
and acme's rows must be unchanged afterwards. alice (acme's own user) then calls the same
URLs, which proves the ids and forms address real objects and pass validation, so the
refusals above come from the scope checks.

A route of the app missing from ROUTES fails the sweep with its method and path: a new page
or API route cannot skip this check.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, or_
from sqlalchemy import select as table_select
from sqlmodel import SQLModel, select

from hub.accounts import create_token
from hub.calendar_setup import add_calendar
from hub.campaigns import create_campaign
from hub.config import Config
from hub.db import session_scope
from hub.intake.addresses import add_intake_address, add_mail_user
from hub.links import shorten, upload
from hub.models import Account, InvalidNumber, MailUser
from hub.optout import opt_out
from hub.providers import InboundSms
from hub.sending import SubmitRequest
from hub.timeutil import utcnow
from hub.webhooks import add_endpoint
from tests.conftest import make_config

# acme's objects: every text below is a marker that no other account may ever see.
ACME_NUMBER = "+33611111111"  # messaged by acme, and answered
BLACKLISTED = "+33622222222"
INVALID = "+33633333333"
MESSAGE_TEXT = "ACME-SECRET message text"
CAMPAIGN_NAME = "ACME-SECRET campaign"
CAMPAIGN_TEXT = "ACME-SECRET campaign text"
CALENDAR_NAME = "acme-secret-calendar"
CALENDAR_HOST = "cal.acme-secret.example"
INBOUND_TEXT = "ACME-SECRET inbound answer"
WEBHOOK_HOST = "hooks.acme-secret.example"
TOKEN_NAME = "acme-secret-token"
BLACKLIST_NOTE = "ACME-SECRET blacklist note"
INTAKE_ADDRESS = "acme-secret@intake.example"
CLERK = "acme-secret-clerk"
LINK_TARGET = "https://shop.acme-secret.example/offer"
FILE_NAME = "acme-secret-price-list.pdf"
NEW_PASSWORD = "a new long password 42"
TEXT_MARKERS = [
    MESSAGE_TEXT,
    CAMPAIGN_NAME,
    CAMPAIGN_TEXT,
    CALENDAR_NAME,
    CALENDAR_HOST,
    INBOUND_TEXT,
    WEBHOOK_HOST,
    TOKEN_NAME,
    BLACKLIST_NOTE,
    INTAKE_ADDRESS,
    CLERK,
    "shop.acme-secret.example",
    "acme-secret-price-list",
]
NUMBER_MARKERS = [ACME_NUMBER, BLACKLISTED, INVALID]
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


# -- the classification of every route ----------------------------------------------------------


@dataclass(frozen=True)
class Public:
    """Reachable without a login, on purpose."""

    why: str


@dataclass(frozen=True)
class OwnSession:
    """Acts on the caller's own session only: no object of anyone else to address."""

    why: str


@dataclass(frozen=True)
class Guarded:
    """A route behind a console login (or, with api=True, an API token).

    URLS and FORMS hold {placeholders} for acme's objects (see `acme` below) and {own}, the
    caller's own account. Each URL is called with each form (POST) or JSON body / files.
    """

    urls: tuple[str, ...]
    forms: tuple[dict[str, str], ...] = ({},)
    json: dict[str, Any] | None = None
    files: bool = False
    api: bool = False
    # A 200 answer is fine for an intruder: the route shows the caller's own data (a list, a
    # preview); what it must not show is acme's (checked on every answer anyway).
    own_data: bool = False
    # Refusals of a form that also count (e.g. 409: a domain that is another customer's).
    also: frozenset[int] = frozenset()
    # What alice (acme's user) gets; None: not checked, with the reason in `note`.
    owner: int | None = 200
    note: str = ""


def page(*urls: str, **kw: Any) -> Guarded:
    return Guarded(urls=urls, **kw)


def post(url: str, *forms: dict[str, str], **kw: Any) -> Guarded:
    kw.setdefault("owner", 303)
    return Guarded(urls=(url,), forms=forms or ({},), **kw)


def api(*urls: str, **kw: Any) -> Guarded:
    return Guarded(urls=urls, api=True, **kw)


Spec = Public | OwnSession | Guarded

ACCOUNT = {"account": "acme"}
PASSWORDS = {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}

ROUTES: dict[tuple[str, str], Spec] = {
    # -- public ------------------------------------------------------------------------------
    ("GET", "/"): Public("redirects to the console"),
    ("GET", "/openapi.json"): Public("API documentation"),
    ("HEAD", "/openapi.json"): Public("API documentation"),
    ("GET", "/docs"): Public("API documentation"),
    ("HEAD", "/docs"): Public("API documentation"),
    ("GET", "/docs/start.js"): Public("API documentation"),
    ("HEAD", "/docs/start.js"): Public("API documentation"),
    ("MOUNT", "/docs/assets"): Public("API documentation (Swagger UI and ReDoc files)"),
    ("GET", "/redoc"): Public("API documentation"),
    ("HEAD", "/redoc"): Public("API documentation"),
    ("GET", "/healthz"): Public("health check for load balancers: no account data"),
    ("GET", "/metrics"): Public(
        "Prometheus metrics, no account data; loopback clients only unless its own bearer "
        "token ([http] metrics_token_env) is set (tests/test_api.py)"
    ),
    ("GET", "/callbacks/{provider}/{kind}"): Public(
        "provider callbacks check their own secret or signature (test_callback_needs_secret)"
    ),
    ("POST", "/callbacks/{provider}/{kind}"): Public(
        "provider callbacks check their own secret or signature (test_callback_needs_secret)"
    ),
    ("GET", "/s/{code}"): Public("short links in SMS are opened by their recipients"),
    ("HEAD", "/s/{code}"): Public("short links in SMS are opened by their recipients"),
    ("GET", "/u/{code}"): Public("unsubscribe links in marketing SMS are opened by recipients"),
    ("HEAD", "/u/{code}"): Public("unsubscribe links in marketing SMS are opened by recipients"),
    ("POST", "/u/{code}"): Public("the recipient confirms; the unguessable code is the secret"),
    ("MOUNT", "/console/static"): Public("the console's CSS and JavaScript"),
    ("GET", "/console/login"): Public("the login form"),
    ("POST", "/console/login"): Public("the login form (its own CSRF cookie)"),
    ("POST", "/console/logout"): OwnSession("ends the caller's own session"),
    ("POST", "/console/language"): OwnSession("sets the caller's own console language"),
    # -- HTTP API ----------------------------------------------------------------------------
    ("POST", "/v1/messages"): api(
        "/v1/messages",
        json={"to": [ACME_NUMBER], "text": "sent by an intruder", "account": "acme"},
        owner=202,
    ),
    ("GET", "/v1/messages"): api("/v1/messages", "/v1/messages?status=queued", own_data=True),
    ("GET", "/v1/messages/{message_id}"): api("/v1/messages/{message}"),
    ("DELETE", "/v1/messages/{message_id}"): api("/v1/messages/{message}"),
    ("GET", "/v1/account"): api("/v1/account", own_data=True),
    ("POST", "/v1/files"): api("/v1/files", files=True, owner=201),
    ("GET", "/v1/files/{file_id}"): api("/v1/files/{file}"),
    ("POST", "/v1/links"): api(
        "/v1/links", json={"url": "https://intruder.example/x", "account": "acme"}, owner=201
    ),
    ("GET", "/v1/links/{code}"): api("/v1/links/{link}"),
    # -- console: send, history, campaigns ---------------------------------------------------
    ("GET", "/console/"): page("/console/", own_data=True),
    ("POST", "/console/send"): post(
        "/console/send", {**ACCOUNT, "to": ACME_NUMBER, "text": "sent by an intruder"}
    ),
    ("POST", "/console/preview"): post(
        "/console/preview", {**ACCOUNT, "text": "hello", "to": ACME_NUMBER}, owner=200
    ),
    ("GET", "/console/messages"): page(
        "/console/messages?account=acme",
        "/console/messages?campaign={campaign}",
        "/console/messages?batch={batch}",
        "/console/messages?number={digits}",
        own_data=True,
    ),
    ("GET", "/console/messages.csv"): page(
        "/console/messages.csv?account=acme",
        "/console/messages.csv?campaign={campaign}",
        "/console/messages.csv?batch={batch}",
        own_data=True,
    ),
    ("GET", "/console/messages/{message_id}"): page("/console/messages/{message}"),
    ("POST", "/console/messages/{message_id}/cancel"): post("/console/messages/{message}/cancel"),
    ("GET", "/console/campaigns"): page("/console/campaigns", own_data=True),
    ("GET", "/console/campaigns/{campaign_id}"): page("/console/campaigns/{campaign}"),
    ("GET", "/console/campaigns/{campaign_id}.csv"): page("/console/campaigns/{campaign}.csv"),
    ("POST", "/console/campaigns/{campaign_id}/cancel"): post(
        "/console/campaigns/{campaign}/cancel"
    ),
    # -- console: replies --------------------------------------------------------------------
    ("GET", "/console/replies"): page(
        "/console/replies", "/console/replies?account=acme", own_data=True
    ),
    ("GET", "/console/replies/{digits}"): page(
        "/console/replies/{digits}?account=acme",
        # Without an account: the caller's own (empty) conversation with that number.
        "/console/replies/{digits}",
        own_data=True,
    ),
    ("POST", "/console/replies/{digits}"): post(
        "/console/replies/{digits}",
        {**ACCOUNT, "text": "answered by an intruder", "nonce": "n1"},
        {"text": "answered by an intruder", "nonce": "n2"},
        # Without an account: "this number has not written to you".
        also=frozenset({422}),
    ),
    # -- console: calendars ------------------------------------------------------------------
    ("GET", "/console/calendars"): page("/console/calendars", own_data=True),
    ("POST", "/console/calendars/add"): post(
        "/console/calendars/add",
        {**ACCOUNT, "kind": "ics", "name": "intruder", "url": "https://intruder.example/a.ics"},
    ),
    ("GET", "/console/calendars/oauth/{provider}/start"): page(
        "/console/calendars/oauth/google/start?account=acme", owner=303
    ),
    ("GET", "/console/calendars/oauth/callback"): page(
        "/console/calendars/oauth/callback?state={state}&code=x",
        owner=None,
        note="the code exchange needs Google; the state names the intruder and acme",
    ),
    ("POST", "/console/calendars/oauth/finish"): post(
        "/console/calendars/oauth/finish",
        {"pending": "{pending}", "calendar": "primary"},
        owner=None,
        note="a pending choice follows a real sign-in; this one names the intruder and acme",
    ),
    ("GET", "/console/calendars/{calendar_id:int}"): page("/console/calendars/{calendar}"),
    ("POST", "/console/calendars/{calendar_id:int}/rules"): post(
        "/console/calendars/{calendar}/rules",
        {
            "name": "renamed-by-intruder",
            "offsets": "1d",
            "quiet_start": "21:00",
            "quiet_end": "08:00",
            "template": "Hello {{ name }}",
            "timezone": "Europe/Paris",
            "locale": "fr_FR",
            "enabled": "1",
        },
    ),
    ("POST", "/console/calendars/{calendar_id:int}/preview"): post(
        "/console/calendars/{calendar}/preview", {"template": "Hello {{ name }}"}, owner=200
    ),
    ("POST", "/console/calendars/{calendar_id:int}/sync"): post(
        "/console/calendars/{calendar}/sync",
        owner=None,
        note="syncing would fetch the calendar's (fake) address",
    ),
    ("POST", "/console/calendars/{calendar_id:int}/remove"): post(
        "/console/calendars/{calendar}/remove"
    ),
    # -- console: account --------------------------------------------------------------------
    ("GET", "/console/account"): page(
        "/console/account", "/console/account?account=acme", own_data=True
    ),
    ("POST", "/console/account/alert"): post(
        "/console/account/alert", {**ACCOUNT, "threshold": "5", "email": "x@intruder.example"}
    ),
    ("POST", "/console/account/sender"): post(
        "/console/account/sender", {**ACCOUNT, "sender": "INTRUDER"}
    ),
    ("POST", "/console/account/region"): post(
        "/console/account/region", {**ACCOUNT, "region": "DE"}
    ),
    ("POST", "/console/account/language"): post(
        "/console/account/language", {**ACCOUNT, "language": "en"}
    ),
    ("POST", "/console/account/reply-mailbox"): post(
        "/console/account/reply-mailbox", {**ACCOUNT, "mailbox": "x@intruder.example"}
    ),
    ("POST", "/console/account/autoreply"): post(
        "/console/account/autoreply",
        {**ACCOUNT, "enabled": "on", "text": "auto-reply by an intruder", "period": "1"},
    ),
    ("POST", "/console/account/sub-accounts"): post(
        "/console/account/sub-accounts", {**ACCOUNT, "name": "intruder-sub", "mode": "limited"}
    ),
    ("POST", "/console/account/transfer"): post(
        "/console/account/transfer",
        {**ACCOUNT, "sub": "acme-lyon", "direction": "down", "amount": "5"},
        # From the caller's own account: take credits from acme, or give it some.
        {"account": "{own}", "sub": "acme", "direction": "up", "amount": "5"},
        {"account": "{own}", "sub": "acme", "direction": "down", "amount": "5"},
        also=frozenset({422}),
    ),
    ("POST", "/console/account/reset"): post(
        "/console/account/reset",
        {**ACCOUNT, "sub": "acme-lyon"},
        {"account": "{own}", "sub": "acme"},
        also=frozenset({422}),
    ),
    ("POST", "/console/account/disable"): post(
        "/console/account/disable",
        {**ACCOUNT, "sub": "acme-lyon"},
        {"account": "{own}", "sub": "acme"},
        also=frozenset({422}),
    ),
    # -- console: intake addresses and users -------------------------------------------------
    ("GET", "/console/intake"): page(
        "/console/intake", "/console/intake?account=acme", own_data=True
    ),
    ("POST", "/console/intake/addresses"): post(
        "/console/intake/addresses",
        {**ACCOUNT, "kind": "subject", "address": "sms@intruder.example"},
        # An address on acme's domain for the caller's own account.
        {"account": "{own}", "kind": "subject", "address": "other@intake.example"},
        also=frozenset({409}),
    ),
    ("POST", "/console/intake/addresses/{address_id}/senders"): post(
        "/console/intake/addresses/{intake}/senders", {"senders": "@intruder.example"}
    ),
    ("POST", "/console/intake/addresses/{address_id}/remove"): post(
        "/console/intake/addresses/{intake}/remove"
    ),
    ("POST", "/console/intake/users"): post(
        "/console/intake/users", {**ACCOUNT, "username": "intruder-user", **PASSWORDS}
    ),
    ("POST", "/console/intake/users/{user_id}/disable"): post(
        "/console/intake/users/{user}/disable", {"disabled": "true"}
    ),
    ("POST", "/console/intake/users/{user_id}/password"): post(
        "/console/intake/users/{user}/password", PASSWORDS
    ),
    # -- console: tokens, webhooks, blacklist, invalid numbers -------------------------------
    ("GET", "/console/tokens"): page(
        "/console/tokens", "/console/tokens?account=acme", own_data=True
    ),
    ("POST", "/console/tokens"): post(
        "/console/tokens", {**ACCOUNT, "name": "intruder-token"}, owner=200
    ),
    ("POST", "/console/tokens/{token_id}/revoke"): post("/console/tokens/{token}/revoke"),
    ("GET", "/console/webhooks"): page(
        "/console/webhooks", "/console/webhooks?account=acme", own_data=True
    ),
    ("POST", "/console/webhooks"): post(
        "/console/webhooks", {**ACCOUNT, "url": "https://intruder.example/hook"}, owner=200
    ),
    ("POST", "/console/webhooks/{endpoint_id}/disable"): post(
        "/console/webhooks/{webhook}/disable"
    ),
    ("POST", "/console/webhooks/{endpoint_id}/enable"): post("/console/webhooks/{webhook}/enable"),
    ("POST", "/console/webhooks/{endpoint_id}/remove"): post("/console/webhooks/{webhook}/remove"),
    ("POST", "/console/webhooks/{endpoint_id}/test"): post("/console/webhooks/{webhook}/test"),
    ("GET", "/console/blacklist"): page(
        "/console/blacklist",
        "/console/blacklist?account=acme",
        "/console/blacklist?q={blacklisted}",
        own_data=True,
    ),
    ("POST", "/console/blacklist"): post(
        "/console/blacklist", {**ACCOUNT, "number": "+33644444444", "reason": "intruder"}
    ),
    ("POST", "/console/blacklist/import"): post(
        "/console/blacklist/import",
        {**ACCOUNT, "numbers": "+33644444444", "reason": "x"},
        owner=200,
    ),
    ("POST", "/console/blacklist/remove"): post(
        "/console/blacklist/remove",
        {**ACCOUNT, "number": "{blacklisted}", "reason": "removed by an intruder"},
        # The caller's own blacklist has no such number.
        {"account": "{own}", "number": "{blacklisted}", "reason": "removed by an intruder"},
    ),
    ("GET", "/console/invalid"): page(
        "/console/invalid", "/console/invalid?account=acme", own_data=True
    ),
    ("POST", "/console/invalid/{entry_id}/remove"): post("/console/invalid/{invalid}/remove"),
    ("POST", "/console/invalid/add"): post(
        "/console/invalid/add", {**ACCOUNT, "numbers": "+33644444444"}, owner=200
    ),
    ("POST", "/console/invalid/from-campaign"): post(
        "/console/invalid/from-campaign", {"campaign": "{campaign}"}
    ),
    ("POST", "/console/account/night"): post(
        "/console/account/night", {**ACCOUNT, "mode": "hold", "start": "01:00", "end": "02:00"}
    ),
}

# Destructive actions run last in alice's pass, so they do not remove what others address.
_LAST = ("remove", "revoke", "disable", "cancel", "reset", "password")


def app_routes(app: Any) -> Iterator[tuple[str, str]]:
    """(METHOD, path) of every route of APP, included routers flattened ("MOUNT" for mounts).

    Recent FastAPI versions (0.165 here) keep an included router as one `_IncludedRouter`
    entry (its routes keep their own paths; the prefix is in its include context); older
    versions copy each route into the app with the prefix applied. Both are handled.
    """

    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                yield from walk(included.routes, prefix + route.include_context.prefix)
            elif getattr(route, "methods", None):
                for method in sorted(route.methods):
                    yield method, prefix + route.path
            else:
                yield "MOUNT", prefix + route.path

    yield from walk(app.routes, "")


# -- acme's objects and the callers -------------------------------------------------------------


@pytest.fixture
def config(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The test config with the console's Google / Microsoft sign-in set up (fake clients),
    so the OAuth routes reach their scope checks."""
    monkeypatch.setenv("SMSHUB_TEST_OAUTH_SECRET", "not-a-real-secret")
    client = {"client_id": "test-client", "client_secret_env": "SMSHUB_TEST_OAUTH_SECRET"}
    return make_config(
        db_url, tmp_path, calendar_oauth={"google": dict(client), "microsoft": dict(client)}
    )


@dataclass
class Caller:
    name: str
    account: str
    console: Any  # tests.console.conftest.ConsoleClient
    token: str
    user_id: int


def _user_id(engine: Engine, username: str) -> int:
    with session_scope(engine) as session:
        row = session.exec(select(MailUser).where(MailUser.username == username)).first()
        assert row is not None and row.id is not None
        return row.id


@pytest.fixture
async def acme(hub: Any, engine: Engine, users: dict[str, str]) -> dict[str, str]:
    """One object of each kind in acme; returns the placeholders of ROUTES."""
    config = hub.config
    # A message that went out (answered below), and one scheduled a month ahead.
    hub.submit(SubmitRequest(account="acme", recipients=[ACME_NUMBER], text="Your order is ready"))
    await hub.dispatcher.drain()
    scheduled = hub.submit(
        SubmitRequest(
            account="acme",
            recipients=[ACME_NUMBER],
            text=MESSAGE_TEXT,
            send_at=utcnow() + timedelta(days=30),
        )
    )
    await hub.handle_events(
        [
            InboundSms(
                provider="simulator",
                event_key="acme-inbound-1",
                sender=ACME_NUMBER,
                recipient="+33700000000",
                text=INBOUND_TEXT,
            )
        ]
    )
    with session_scope(engine) as s:
        acc = s.exec(select(Account).where(Account.name == "acme")).one()
        assert acc.id is not None
        campaign = create_campaign(
            s,
            config,
            "acme",
            CAMPAIGN_NAME,
            text=CAMPAIGN_TEXT,
            numbers=[ACME_NUMBER],
            type="alert",
            send_at=utcnow() + timedelta(days=30),
        )
        calendar = add_calendar(
            s, "acme", CALENDAR_NAME, "ics", {"url": f"https://{CALENDAR_HOST}/cabinet.ics"}
        )
        endpoint, _ = add_endpoint(s, "acme", f"https://{WEBHOOK_HOST}/hook", ["link.clicked"])
        token = create_token(s, "acme", TOKEN_NAME)
        opt_out(s, acc.id, BLACKLISTED, "manual", BLACKLIST_NOTE)
        invalid = InvalidNumber(account_id=acc.id, number=INVALID)
        s.add(invalid)
        intake = add_intake_address(s, "acme", INTAKE_ADDRESS)
        clerk = add_mail_user(s, "acme", CLERK, "the clerk's password")
        link = shorten(s, acc.id, LINK_TARGET)
        hosted, _ = upload(s, config, acc.id, FILE_NAME, PDF)
        s.flush()
        objects = {
            "acme_id": str(acc.id),
            "message": scheduled.accepted[0].message_id,
            "batch": scheduled.batch_id,
            "campaign": str(campaign.campaign.id),
            "calendar": str(calendar.id),
            "webhook": str(endpoint.id),
            "token": str(token.record.id),
            "invalid": str(invalid.id),
            "intake": str(intake.id),
            "user": str(clerk.id),
            "link": link.code,
            "file": str(hosted.id),
        }
    objects |= {"digits": ACME_NUMBER[1:], "number": ACME_NUMBER, "blacklisted": BLACKLISTED}
    return objects


@pytest.fixture
async def callers(console: Any, engine: Engine, users: dict[str, str]) -> dict[str, Caller]:
    """alice (acme's user), lyon (acme-lyon, a sub-account of acme), eve (another customer)."""
    found = {}
    for name, account in users.items():
        with session_scope(engine) as s:
            token = create_token(s, account, f"{name}'s token").token
        found[name] = Caller(name, account, await console(name), token, _user_id(engine, name))
    return found


def _forged_oauth(hub: Any, caller: Caller, acme_id: int) -> dict[str, str]:
    """A validly signed sign-in state (with its cookie) and pending choice naming CALLER and
    acme's account. Only the start page signs these, after its own scope check; the callback
    and the finish step must still refuse an account outside the caller's scope."""
    from hub.console import calendars_oauth as oauth
    from hub.console.auth import signing_key
    from hub.console.routes_calendars import OAUTH_COOKIE, OAUTH_PATH

    key = oauth.signer_key(signing_key(hub.engine))
    nonce = secrets.token_urlsafe(8)
    state = oauth.sign(
        key, {"u": caller.user_id, "a": acme_id, "p": "google", "n": "x", "k": nonce}
    )
    cookie = oauth.sign(key, {"k": nonce})
    caller.console.http.cookies.set(OAUTH_COOKIE, cookie, path=OAUTH_PATH)
    pending = oauth.sign(
        key, {"u": caller.user_id, "a": acme_id, "p": "google", "n": "x", "t": "none"}, 3600
    )
    return {"state": state, "pending": pending}


# -- calling a route ----------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def fill(text: str, values: dict[str, str]) -> str:
    """TEXT with each {name} of VALUES replaced (other braces, as in templates, are kept)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


@dataclass
class Call:
    method: str
    url: str
    form: dict[str, str]
    spec: Guarded

    def shown(self) -> str:
        return f"{self.method} {self.url}" + (f" {self.form}" if self.form else "")


def calls(method: str, spec: Guarded, values: dict[str, str]) -> list[Call]:
    return [
        Call(method, fill(url, values), {k: fill(v, values) for k, v in form.items()}, spec)
        for url in spec.urls
        for form in (spec.forms if method != "GET" else ({},))
    ]


async def send(call: Call, caller: Caller | None, client: httpx.AsyncClient) -> httpx.Response:
    """CALL as CALLER (None: nobody logged in, no token)."""
    spec = call.spec
    kw: dict[str, Any] = {}
    if spec.api:
        if caller is not None:
            kw["headers"] = {"Authorization": f"Bearer {caller.token}"}
        if spec.json is not None:
            kw["json"] = spec.json
        if spec.files:
            kw["files"] = {"file": (FILE_NAME, PDF, "application/pdf")}
            kw["data"] = {"account": "acme"}
    elif call.method != "GET":
        kw["data"] = {"csrf_token": caller.console.csrf if caller else "", **call.form}
    return await client.request(call.method, call.url, **kw)


def leaked(response: httpx.Response, call: Call) -> list[str]:
    """acme's markers in RESPONSE (those the request itself carried do not count)."""
    asked = " ".join([call.url, *call.form.values(), str(call.spec.json or "")])
    asked_digits = re.sub(r"\D", "", asked)
    body = response.text
    # Phone-number-like runs (digits with spaces, dots or dashes between them), each on its
    # own: gluing every digit of the page together would find a number in the digits of
    # timestamps and tokens.
    runs = [re.sub(r"\D", "", run) for run in re.findall(r"\+?\d[\d .\-]{7,}\d", body)]
    found = [m for m in TEXT_MARKERS if m in body and m not in asked]
    for number in NUMBER_MARKERS:
        national = number[3:]  # 611111111: the number in any format, without the prefix
        if national in asked_digits:
            continue
        if any(national in run for run in runs):
            found.append(number)
    return found


def snapshot(engine: Engine, account_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of acme: the account, rows with its account_id, and the rows that hang off
    those (message events, calendar events, reminders, webhook deliveries, …)."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    owned: dict[str, list[Any]] = {}
    with engine.connect() as conn:
        # Parents come before their children in sorted_tables.
        for table in SQLModel.metadata.sorted_tables:
            if table.name == "accounts":
                where = table.c.id == account_id
            elif "account_id" in table.c:
                where = table.c.account_id == account_id
            else:
                parents = [
                    fk.parent.in_(owned[fk.column.table.name])
                    for fk in table.foreign_keys
                    if fk.column.table.name in owned and fk.column.table.name != "accounts"
                ]
                if not parents:
                    continue
                where = or_(*parents)
            key = list(table.primary_key.columns)
            found = [
                tuple(r) for r in conn.execute(table_select(table).where(where).order_by(*key))
            ]
            rows[table.name] = found
            if len(key) == 1:
                position = list(table.c).index(key[0])
                owned[table.name] = [r[position] for r in found]
    return rows


def changed(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> list[str]:
    return [name for name in before if before[name] != after[name]]


def _refused(response: httpx.Response, spec: Guarded) -> bool:
    status = response.status_code
    if status in (403, 404) or status in spec.also:
        return True
    if status in (301, 302, 303, 307):
        # A redirect to the login form would mean the caller was logged out: nothing tested.
        return not response.headers.get("location", "").startswith("/console/login")
    return status == 200 and spec.own_data


def destructive(call: Call) -> bool:
    """Whether CALL would delete or end what it addresses (run those last)."""
    return call.method == "DELETE" or any(word in call.url for word in _LAST)


# -- the tests ----------------------------------------------------------------------------------


def unclassified(app: Any) -> list[str]:
    return [f"{m} {p}" for m, p in app_routes(app) if (m, p) not in ROUTES]


async def test_every_route_is_classified(hub: Any) -> None:
    missing = unclassified(hub.api)
    assert not missing, (
        "routes without an access-control entry in tests/console/test_access_control.py "
        "ROUTES (say whether each is public or which of acme's objects its URL and form "
        "address):\n  " + "\n  ".join(missing)
    )


async def test_nobody_logged_in_gets_nothing(hub: Any, acme: dict[str, str], console: Any) -> None:
    anonymous = (await console("")).http
    failures = []
    for (method, path), spec in ROUTES.items():
        if isinstance(spec, Public):
            continue
        if isinstance(spec, OwnSession):
            spec = post(path)
        for call in calls(method, spec, acme | {"own": "acme"}):
            response = await send(call, None, anonymous)
            if spec.api:
                ok = response.status_code == 401
            else:
                ok = response.status_code == 303 and response.headers["location"].startswith(
                    "/console/login"
                )
            if not ok:
                failures.append(f"{call.shown()}: {response.status_code} {response.text[:200]}")
            if leaked(response, call):
                failures.append(f"{call.shown()}: shows {leaked(response, call)}")
    assert not failures, "answered without a login or token:\n" + "\n".join(failures)


@pytest.mark.parametrize("intruder", ["lyon", "eve"])
async def test_other_accounts_cannot_see_or_change_acme(
    hub: Any, engine: Engine, acme: dict[str, str], callers: dict[str, Caller], intruder: str
) -> None:
    """lyon (acme's sub-account) and eve (another customer) address acme's objects on every
    guarded route: refused, nothing of acme's shown, nothing of acme's changed."""
    caller = callers[intruder]
    acme_id = int(acme["acme_id"])
    values = acme | {"own": caller.account} | _forged_oauth(hub, caller, acme_id)
    missing = unclassified(hub.api)
    assert not missing, f"unclassified routes (see test_every_route_is_classified): {missing}"
    every = [
        call
        for method, path in app_routes(hub.api)
        if isinstance(spec := ROUTES[(method, path)], Guarded)
        for call in calls(method, spec, values)
    ]
    assert len(every) > 50
    # Destructive actions last: should one get through, the others still find their object.
    every.sort(key=destructive)
    failures = []
    for call in every:
        before = snapshot(engine, acme_id)
        response = await send(call, caller, caller.console.http)
        if not _refused(response, call.spec):
            failures.append(f"{call.shown()}: {response.status_code} {response.text[:300]!r}")
        if shown := leaked(response, call):
            failures.append(f"{call.shown()}: shows acme's {shown}")
        if touched := changed(before, snapshot(engine, acme_id)):
            failures.append(f"{call.shown()}: changed acme's {touched}")
    assert not failures, f"{intruder} reached acme's data:\n" + "\n".join(failures)


async def test_acme_reaches_its_own_objects(
    hub: Any, acme: dict[str, str], callers: dict[str, Caller]
) -> None:
    """The URLs and forms of the sweep address real objects with valid forms: alice, acme's
    user, gets them (so the intruders' refusals come from the scope checks)."""
    alice = callers["alice"]
    values = acme | {"own": "acme"}
    entries = [
        (method, spec, call)
        for method, path in app_routes(hub.api)
        if isinstance(spec := ROUTES[(method, path)], Guarded) and spec.owner is not None
        # The first form addresses acme's object; the others are intruders' variants.
        for call in calls(method, replace(spec, forms=spec.forms[:1]), values)
    ]
    # Destructive actions last, so they do not remove what the others address.
    entries.sort(key=lambda e: destructive(e[2]))
    failures = []
    for _method, spec, call in entries:
        response = await send(call, alice, alice.console.http)
        if response.status_code != spec.owner:
            failures.append(
                f"{call.shown()}: {response.status_code} (expected {spec.owner}) "
                f"{response.text[:300]!r}"
            )
    assert not failures, "acme's own user was refused:\n" + "\n".join(failures)
    # The leak markers are real: acme's own pages show them.
    history = await alice.console.get("/console/messages")
    assert MESSAGE_TEXT in history.text


async def test_callback_needs_secret(hub: Any, console: Any) -> None:
    """Callbacks are public routes with their own secret: without it, nothing is stored."""
    anonymous = (await console("")).http
    for kind in ("dlr", "mo"):
        response = await anonymous.post(f"/callbacks/simulator/{kind}", json={"reports": []})
        assert response.status_code == 401, (kind, response.text)
