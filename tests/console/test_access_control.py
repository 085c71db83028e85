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

from hub.campaigns.campaigns import create_campaign
from hub.campaigns.contacts import add_numbers
from hub.campaigns.links import shorten, upload
from hub.campaigns.templates import create_template
from hub.core.config import Config
from hub.core.timeutil import utcnow
from hub.inbound.webhooks import add_endpoint
from hub.mail.intake.addresses import add_intake_address, add_mail_user
from hub.ports.sms import InboundSms
from hub.reminders.setup import add_calendar
from hub.sending.accounts import create_account, create_token
from hub.sending.optout import opt_out
from hub.sending.submit import SubmitRequest
from hub.store.db import session_scope
from hub.store.models import Account, Contact, ContactList, InvalidNumber, MailUser
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
LIST_NAME = "acme-secret-list"
CONTACT_NAME = "ACME-SECRET contact name"
TEMPLATE_NAME = "acme-secret-template"
TEMPLATE_TEXT = "ACME-SECRET template text {{ prenom }}"
# Objects of acme the /v1 routes address: their own, because the API's deletions run before
# the console's (routes are swept in the app's order) and must not take the console's objects.
API_LIST = "acme-secret-api-list"  # ACME_NUMBER and API_CONTACT, with CONTACT_NAME
API_CONTACT = "+33677777777"
OLD_LIST = "acme-secret-old-list"  # deleted by DELETE /v1/lists/{name}
API_TEMPLATE = "acme-secret-api-template"
API_CAMPAIGN = "ACME-SECRET API campaign"
API_BLACKLISTED = "+33655555555"
API_INVALID = "+33666666666"
SUB_ACCOUNT = "acme-secret-sub"  # a sub-account of acme beside acme-lyon
CSV = ("intruder.csv", b"number\n+33644444444\n", "text/csv")
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
    LIST_NAME,
    CONTACT_NAME,
    TEMPLATE_NAME,
    "ACME-SECRET template text",
    API_LIST,
    OLD_LIST,
    API_TEMPLATE,
    API_CAMPAIGN,
    SUB_ACCOUNT,
]
NUMBER_MARKERS = [ACME_NUMBER, BLACKLISTED, INVALID, API_CONTACT, API_BLACKLISTED, API_INVALID]
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

    URLS, FORMS and JSON bodies hold {placeholders} for acme's objects (see `acme` below) and
    {own}, the caller's own account. Each URL is called with each form (POST) or JSON body
    (a tuple of bodies: the first is acme's, the others intruders' variants, as for forms),
    or with an uploaded file (UPLOAD: name, bytes, media type).
    """

    urls: tuple[str, ...]
    forms: tuple[dict[str, str], ...] = ({},)
    json: dict[str, Any] | tuple[dict[str, Any], ...] | None = None
    files: bool = False
    upload: tuple[str, bytes, str] = (FILE_NAME, PDF, "application/pdf")
    api: bool = False
    # A 200 answer is fine for an intruder: the route shows the caller's own data (a list, a
    # preview); what it must not show is acme's (checked on every answer anyway).
    own_data: bool = False
    # Refusals of a form that also count (e.g. 409: a domain that is another customer's).
    also: frozenset[int] = frozenset()
    # What alice (acme's user) gets; None: not checked, with the reason in `note`.
    owner: int | None = 200
    note: str = ""

    def bodies(self) -> tuple[dict[str, Any] | None, ...]:
        if isinstance(self.json, tuple):
            return self.json
        return (self.json,)

    def first(self) -> Guarded:
        """The spec with only its first form and body: what addresses acme's object."""
        return replace(self, forms=self.forms[:1], json=self.bodies()[0])


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
    # Resources named in the path (lists, templates, numbers) are looked up in ?account=
    # (default: the token's own): acme's name there must be refused; without it the
    # intruder's own account has no such object. Routes that create in the caller's own
    # account (POST, PUT) are only called with ?account=acme.
    # -- HTTP API: contact lists -------------------------------------------------------------
    ("GET", "/v1/lists"): api("/v1/lists", "/v1/lists?account=acme", own_data=True),
    ("POST", "/v1/lists"): api(
        "/v1/lists?account=acme", json={"name": "intruder-api-list"}, owner=201
    ),
    ("GET", "/v1/lists/{name}"): api("/v1/lists/{api_list}?account=acme", "/v1/lists/{api_list}"),
    ("DELETE", "/v1/lists/{name}"): api("/v1/lists/{old_list}?account=acme"),
    ("GET", "/v1/lists/{name}/contacts"): api(
        "/v1/lists/{api_list}/contacts?account=acme", "/v1/lists/{api_list}/contacts"
    ),
    ("POST", "/v1/lists/{name}/contacts"): api(
        "/v1/lists/{api_list}/contacts?account=acme",
        json={"numbers": ["+33644444444"], "fields": {"prenom": "added by an intruder"}},
        owner=201,
    ),
    ("POST", "/v1/lists/{name}/contacts/remove"): api(
        "/v1/lists/{api_list}/contacts/remove?account=acme", json={"numbers": ["{api_contact}"]}
    ),
    ("GET", "/v1/lists/{name}/contacts/{number}"): api(
        "/v1/lists/{api_list}/contacts/{number}?account=acme",
        "/v1/lists/{api_list}/contacts/{number}",
    ),
    ("PUT", "/v1/lists/{name}/contacts/{number}"): api(
        "/v1/lists/{api_list}/contacts/{number}?account=acme",
        json={"fields": {"prenom": "changed by an intruder"}},
    ),
    ("DELETE", "/v1/lists/{name}/contacts/{number}"): api(
        "/v1/lists/{api_list}/contacts/{number}?account=acme"
    ),
    ("POST", "/v1/lists/{name}/import"): api(
        "/v1/lists/{api_list}/import?account=acme", files=True, upload=CSV, owner=201
    ),
    ("GET", "/v1/lists/{name}/export"): api(
        "/v1/lists/{api_list}/export?account=acme", "/v1/lists/{api_list}/export"
    ),
    # -- HTTP API: templates -----------------------------------------------------------------
    ("GET", "/v1/templates"): api("/v1/templates", "/v1/templates?account=acme", own_data=True),
    ("POST", "/v1/templates"): api(
        "/v1/templates?account=acme", json={"name": "intruder-api-template", "text": "x"}, owner=201
    ),
    ("GET", "/v1/templates/{name}"): api(
        "/v1/templates/{api_template}?account=acme", "/v1/templates/{api_template}"
    ),
    ("PUT", "/v1/templates/{name}"): api(
        "/v1/templates/{api_template}?account=acme", json={"text": "changed by an intruder"}
    ),
    ("DELETE", "/v1/templates/{name}"): api("/v1/templates/{api_template}?account=acme"),
    ("POST", "/v1/templates/{name}/preview"): api(
        "/v1/templates/{api_template}/preview?account=acme",
        "/v1/templates/{api_template}/preview",
        json={"lists": [API_LIST]},
    ),
    # -- HTTP API: campaigns -----------------------------------------------------------------
    ("GET", "/v1/campaigns"): api("/v1/campaigns", "/v1/campaigns?account=acme", own_data=True),
    ("POST", "/v1/campaigns"): api(
        "/v1/campaigns?account=acme",
        # Without ?account=: acme's list or template for the caller's own account.
        "/v1/campaigns",
        json=(
            {"name": "x", "lists": [API_LIST], "text": "Hi", "type": "alert"},
            {"name": "x", "template": API_TEMPLATE, "numbers": ["+33644444444"], "type": "alert"},
        ),
        owner=201,
    ),
    ("POST", "/v1/campaigns/preview"): api(
        "/v1/campaigns/preview?account=acme",
        "/v1/campaigns/preview",
        json=(
            {"lists": [API_LIST], "text": "Hi", "type": "alert"},
            {"template": API_TEMPLATE, "numbers": ["+33644444444"], "type": "alert"},
            # acme's blacklisted and invalid numbers from the caller's own account: lyon's
            # sends skip them (a parent's lists cover its sub-accounts), but acme's note and
            # other entries stay hidden.
            {"numbers": [API_BLACKLISTED, API_INVALID], "text": "Hi", "type": "marketing"},
        ),
        own_data=True,
    ),
    ("GET", "/v1/campaigns/{campaign_id}"): api("/v1/campaigns/{api_campaign}"),
    ("POST", "/v1/campaigns/{campaign_id}/cancel"): api("/v1/campaigns/{api_campaign}/cancel"),
    ("GET", "/v1/campaigns/{campaign_id}/export"): api("/v1/campaigns/{api_campaign}/export"),
    ("POST", "/v1/campaigns/{campaign_id}/invalid-numbers"): api(
        "/v1/campaigns/{api_campaign}/invalid-numbers"
    ),
    # -- HTTP API: blacklist and invalid numbers ---------------------------------------------
    ("GET", "/v1/blacklist"): api("/v1/blacklist", "/v1/blacklist?account=acme", own_data=True),
    ("POST", "/v1/blacklist"): api(
        "/v1/blacklist?account=acme",
        json={"numbers": ["+33644444444"], "note": "intruder"},
        owner=201,
    ),
    ("POST", "/v1/blacklist/import"): api(
        "/v1/blacklist/import?account=acme", files=True, upload=CSV, owner=201
    ),
    ("DELETE", "/v1/blacklist/{number}"): api(
        "/v1/blacklist/{api_blacklisted}?account=acme&reason=removed%20by%20an%20intruder"
    ),
    ("GET", "/v1/invalid-numbers"): api(
        "/v1/invalid-numbers", "/v1/invalid-numbers?account=acme", own_data=True
    ),
    ("POST", "/v1/invalid-numbers"): api(
        "/v1/invalid-numbers?account=acme", json={"numbers": ["+33644444444"]}, owner=201
    ),
    ("POST", "/v1/invalid-numbers/import"): api(
        "/v1/invalid-numbers/import?account=acme", files=True, upload=CSV, owner=201
    ),
    ("DELETE", "/v1/invalid-numbers/{number}"): api(
        "/v1/invalid-numbers/{api_invalid}?account=acme"
    ),
    # -- HTTP API: webhooks ------------------------------------------------------------------
    ("GET", "/v1/webhooks"): api("/v1/webhooks", "/v1/webhooks?account=acme", own_data=True),
    ("POST", "/v1/webhooks"): api(
        "/v1/webhooks?account=acme", json={"url": "https://intruder.example/api-hook"}, owner=201
    ),
    ("GET", "/v1/webhooks/{endpoint_id}"): api("/v1/webhooks/{api_webhook}"),
    ("PATCH", "/v1/webhooks/{endpoint_id}"): api(
        "/v1/webhooks/{api_webhook}", json={"enabled": True}
    ),
    ("DELETE", "/v1/webhooks/{endpoint_id}"): api("/v1/webhooks/{api_webhook}"),
    ("POST", "/v1/webhooks/{endpoint_id}/ping"): api("/v1/webhooks/{api_webhook}/ping", owner=202),
    # -- HTTP API: accounts and credits ------------------------------------------------------
    ("GET", "/v1/accounts"): api("/v1/accounts", own_data=True),
    ("POST", "/v1/accounts"): api(
        "/v1/accounts",
        json=(
            {"name": "intruder-api-sub", "parent": "acme", "initial_credits": 1},
            {"name": "intruder-api-sub", "parent": "{sub}"},
        ),
        owner=201,
    ),
    ("GET", "/v1/accounts/{name}"): api(
        "/v1/accounts/acme",
        "/v1/accounts/{sub}",
        # The caller's own account: its parent is named, its parent's other sub-accounts not.
        "/v1/accounts/{own}",
        own_data=True,
    ),
    ("POST", "/v1/accounts/{name}/credit"): api(
        "/v1/accounts/{sub}/credit",
        # lyon's own account: credits taken from acme, its parent.
        "/v1/accounts/acme-lyon/credit",
        json={"amount": 1},
    ),
    ("POST", "/v1/transfers"): api(
        "/v1/transfers",
        json=(
            {"from": "acme", "to": "{sub}", "amount": 1},
            {"from": "{own}", "to": "acme", "amount": 1},
            {"from": "acme", "to": "{own}", "amount": 1},
        ),
    ),
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
    # -- console: the hub's mailboxes (the hub's own account only: acme is the first) -----
    ("GET", "/console/mailboxes"): page("/console/mailboxes"),
    ("GET", "/console/mailboxes/view"): page("/console/mailboxes/view?key=imap%3Adesk"),
    ("GET", "/console/mailboxes/oauth/start"): page(
        "/console/mailboxes/oauth/start?key=imap%3Adesk", owner=303
    ),
    ("GET", "/console/mailboxes/oauth/callback"): page(
        "/console/mailboxes/oauth/callback?state=x&code=x",
        owner=None,
        note="the code exchange needs Google and a state the hub signed",
    ),
    ("POST", "/console/mailboxes/test"): post("/console/mailboxes/test", {"key": "imap:desk"}),
    ("POST", "/console/mailboxes/disconnect"): post(
        "/console/mailboxes/disconnect", {"key": "imap:desk"}
    ),
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
    # -- console: contact lists, templates, the campaign form --------------------------------
    ("GET", "/console/lists"): page("/console/lists", "/console/lists?account=acme", own_data=True),
    ("POST", "/console/lists/import"): post(
        "/console/lists/import",
        {**ACCOUNT, "list_name": "intruder-list"},
        owner=422,
        note="the sweep posts no file: acme's user gets 'choose a file' (imports are tested in "
        "test_campaign_tools_console.py)",
    ),
    ("POST", "/console/lists/import/preview"): post(
        "/console/lists/import/preview", {**ACCOUNT, "list_name": "intruder-list"}, owner=200
    ),
    ("GET", "/console/lists/{list_id}"): page("/console/lists/{list}"),
    ("GET", "/console/lists/{list_id}.csv"): page("/console/lists/{list}.csv"),
    ("POST", "/console/lists/{list_id}/add"): post(
        "/console/lists/{list}/add", {"number": "+33644444444"}
    ),
    ("POST", "/console/lists/{list_id}/contacts/{contact_id}"): post(
        "/console/lists/{list}/contacts/{contact}", {"number": "{number}", "field:prenom": "x"}
    ),
    ("POST", "/console/lists/{list_id}/contacts/{contact_id}/delete"): post(
        "/console/lists/{list}/contacts/{contact}/delete"
    ),
    ("POST", "/console/lists/{list_id}/delete"): post("/console/lists/{list}/delete"),
    ("GET", "/console/templates"): page(
        "/console/templates", "/console/templates?account=acme", own_data=True
    ),
    ("POST", "/console/templates"): post(
        "/console/templates", {**ACCOUNT, "name": "intruder-template", "text": "x"}
    ),
    ("POST", "/console/templates/preview"): post(
        "/console/templates/preview",
        {**ACCOUNT, "text": "Hi {{ prenom }}", "preview_list": LIST_NAME},
        # The caller's own account has no list of that name.
        {"account": "{own}", "text": "Hi {{ prenom }}", "preview_list": LIST_NAME},
        owner=200,
        also=frozenset({422}),
    ),
    ("GET", "/console/templates/{template_id}"): page("/console/templates/{template}"),
    ("POST", "/console/templates/{template_id}"): post(
        "/console/templates/{template}", {"text": "changed by an intruder"}
    ),
    ("POST", "/console/templates/{template_id}/delete"): post(
        "/console/templates/{template}/delete"
    ),
    ("GET", "/console/campaigns/new"): page(
        "/console/campaigns/new", "/console/campaigns/new?account=acme", own_data=True
    ),
    ("POST", "/console/campaigns/new/preview"): post(
        "/console/campaigns/new/preview",
        {**ACCOUNT, "list": LIST_NAME, "text": "Hi"},
        {"account": "{own}", "list": LIST_NAME, "text": "Hi"},
        owner=200,
        also=frozenset({422}),
    ),
    ("POST", "/console/campaigns/new"): post(
        "/console/campaigns/new",
        {
            **ACCOUNT,
            "name": "x",
            "list": LIST_NAME,
            "text": "Hi",
            "type": "alert",
            "action": "create",
        },
        {
            "account": "{own}",
            "name": "x",
            "list": LIST_NAME,
            "text": "Hi",
            "type": "alert",
            "action": "create",
        },
        also=frozenset({422}),
    ),  # fmt: skip
    ("POST", "/console/account/links"): post(
        "/console/account/links", {**ACCOUNT, "enabled": "on"}
    ),
    ("POST", "/console/account/night"): post(
        "/console/account/night", {**ACCOUNT, "mode": "hold", "start": "01:00", "end": "02:00"}
    ),
}

# Destructive actions run last in alice's pass, so they do not remove what others address.
_LAST = ("remove", "revoke", "disable", "cancel", "reset", "password", "delete")


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
    # A mailbox of the hub's (read only by the imap role, not started here) for its pages.
    desk = {
        "name": "desk",
        "host": "127.0.0.1",
        "port": 1,
        "security": "plain",
        "username": "desk@acme.example",
        "auth": "xoauth2",
        "oauth_provider": "google",
        "intake_address": "desk@intake.example",
        "timeout": 2.0,
    }
    return make_config(
        db_url,
        tmp_path,
        calendar_oauth={"google": dict(client), "microsoft": dict(client)},
        imap=[desk],
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
        add_numbers(s, acc, LIST_NAME, [ACME_NUMBER], region="FR", fields={"prenom": CONTACT_NAME})
        contact_list = s.exec(select(ContactList).where(ContactList.name == LIST_NAME)).one()
        contact = s.exec(select(Contact).where(Contact.list_id == contact_list.id)).one()
        template = create_template(s, acc, TEMPLATE_NAME, TEMPLATE_TEXT)
        # The /v1 routes' own objects (see API_LIST).
        add_numbers(
            s,
            acc,
            API_LIST,
            [ACME_NUMBER, API_CONTACT],
            region="FR",
            fields={"prenom": CONTACT_NAME},
        )
        add_numbers(s, acc, OLD_LIST, [ACME_NUMBER], region="FR")
        create_template(s, acc, API_TEMPLATE, TEMPLATE_TEXT)
        api_campaign = create_campaign(
            s,
            config,
            "acme",
            API_CAMPAIGN,
            text=CAMPAIGN_TEXT,
            numbers=[ACME_NUMBER],
            type="alert",
            send_at=utcnow() + timedelta(days=30),
        )
        api_endpoint, _ = add_endpoint(
            s, "acme", f"https://{WEBHOOK_HOST}/api-hook", ["link.clicked"]
        )
        opt_out(s, acc.id, API_BLACKLISTED, "manual", BLACKLIST_NOTE)
        s.add(InvalidNumber(account_id=acc.id, number=API_INVALID))
        create_account(s, SUB_ACCOUNT, parent="acme")
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
            "list": str(contact_list.id),
            "contact": str(contact.id),
            "template": str(template.id),
            "api_campaign": str(api_campaign.campaign.id),
            "api_webhook": str(api_endpoint.id),
        }
    objects |= {"digits": ACME_NUMBER[1:], "number": ACME_NUMBER, "blacklisted": BLACKLISTED}
    objects |= {
        "api_list": API_LIST,
        "api_contact": API_CONTACT,
        "old_list": OLD_LIST,
        "api_template": API_TEMPLATE,
        "api_blacklisted": API_BLACKLISTED,
        "api_invalid": API_INVALID,
        "sub": SUB_ACCOUNT,
    }
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


def fill_json(body: Any, values: dict[str, str]) -> Any:
    """BODY (JSON) with the {placeholders} of its strings filled."""
    if isinstance(body, str):
        return fill(body, values)
    if isinstance(body, list):
        return [fill_json(item, values) for item in body]
    if isinstance(body, dict):
        return {k: fill_json(v, values) for k, v in body.items()}
    return body


@dataclass
class Call:
    method: str
    url: str
    form: dict[str, str]
    spec: Guarded
    body: dict[str, Any] | None = None

    def shown(self) -> str:
        extra = self.form or self.body
        return f"{self.method} {self.url}" + (f" {extra}" if extra else "")


def calls(method: str, spec: Guarded, values: dict[str, str]) -> list[Call]:
    if spec.api:
        return [
            Call(method, fill(url, values), {}, spec, fill_json(body, values))
            for url in spec.urls
            for body in spec.bodies()
        ]
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
        if call.body is not None:
            kw["json"] = call.body
        if spec.files:
            kw["files"] = {"file": spec.upload}
            kw["data"] = {"account": "acme"}
    elif call.method != "GET":
        kw["data"] = {"csrf_token": caller.console.csrf if caller else "", **call.form}
    return await client.request(call.method, call.url, **kw)


def leaked(response: httpx.Response, call: Call) -> list[str]:
    """acme's markers in RESPONSE (those the request itself carried do not count)."""
    asked = " ".join([call.url, *call.form.values(), str(call.body or "")])
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
        for call in calls(method, spec.first(), values)
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
