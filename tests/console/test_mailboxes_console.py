"""Console Mailboxes page: list the config's mailboxes, connect one by Microsoft 365 sign-in
(code + PKCE against the stand-in), test it against a Dovecot checking tokens by
introspection, see a revoked consent with its fix, disconnect; who may do it."""

from __future__ import annotations

import re
import ssl
import uuid
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from hub.console.routes_mailboxes import OAUTH_COOKIE
from hub.mail.oauth import intake_key, mailbox_namespace
from tests.fakes import graph
from tests.servers.dovecot import DovecotServer, dovecot_oauth_fixture  # noqa: F401
from tests.servers.oauth_introspection import Introspection

graph_fake = graph.graph_fake

APP = "22222222-mail-console"


def _follow(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    return response.headers["location"]


async def _flash(client: Any, response: httpx.Response) -> str:
    page = await client.get(_follow(response))
    found = re.search(r'<p class="flash" role="status">(.*?)</p>', page.text, re.S)
    assert found, page.text
    return found.group(1)


@pytest.fixture
def mailbox(
    hub: Any,
    graph_fake: Any,
    dovecot_oauth: DovecotServer,
    introspection: Introspection,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[str, str]:
    """An [[imap]] mailbox signing in with Microsoft 365: (its key, its user)."""
    user, _ = dovecot_oauth.add_user(f"desk-{uuid.uuid4().hex[:8]}@cabinet.example")
    graph_fake.app(APP, "m-secret")
    graph_fake.authorize_user = user
    introspection.accept(graph_fake.user_of)
    monkeypatch.setenv("TEST_MAIL_MS_SECRET", "m-secret")
    section = hub.config.calendar_oauth.microsoft
    section.client_id = APP
    section.client_secret_env = "TEST_MAIL_MS_SECRET"
    section.authority = graph_fake.url
    section.ca_file = graph_fake.ca_file
    hub.config.imap.append(
        {
            "name": "accueil",
            "host": dovecot_oauth.host,
            "port": dovecot_oauth.port,
            "security": "plain",
            "username": user,
            "auth": "xoauth2",
            "oauth_provider": "microsoft",
            "intake_address": "sms@hub.test",
        }
    )
    return intake_key("accueil"), user


async def test_connect_test_revoke_and_disconnect_a_mailbox(hub, console, graph_fake, mailbox):
    key, user = mailbox
    view = f"/console/mailboxes/view?key={quote(key, safe='')}"
    alice = await console("alice")
    listing = await alice.get("/console/mailboxes")
    assert listing.status_code == 200
    assert "accueil" in listing.text and "not connected" in listing.text
    page = await alice.get(view)
    assert "not connected yet: reconnect the mailbox in the console" in page.text
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in page.text

    r = await alice.get(f"/console/mailboxes/oauth/start?key={quote(key)}")
    location = _follow(r)
    asked = parse_qs(urlsplit(location).query)
    assert location.startswith(f"{graph_fake.url}/common/oauth2/v2.0/authorize?")
    assert asked["code_challenge_method"] == ["S256"]
    assert "https://outlook.office.com/SMTP.Send" in asked["scope"][0].split()
    answer = httpx.get(location, verify=ssl.create_default_context(cafile=graph_fake.ca_file))
    back = urlsplit(answer.headers["location"])
    assert back.path == "/console/mailboxes/oauth/callback"
    callback = f"{back.path}?{back.query}"
    # Another user's browser, even holding the cookie, may not finish it.
    eve = await console("eve")
    for cookie in alice.http.cookies.jar:
        if cookie.name == OAUTH_COOKIE:
            eve.http.cookies.jar.set_cookie(cookie)
    assert (await eve.get(callback)).status_code == 403
    flash = await _flash(alice, await alice.get(callback))
    assert "Mailbox accueil connected with Microsoft 365" in flash
    namespace = mailbox_namespace(key)
    assert hub.state.get_secret(namespace, "refresh_token").startswith("0.AXoA-refresh-")
    # Used once.
    assert (await alice.get(callback)).status_code == 422

    flash = await _flash(alice, await alice.post("/console/mailboxes/test", {"key": key}))
    assert f"Test passed: signed in to 127.0.0.1 as {user} and read &#39;INBOX&#39;" in flash
    page = await alice.get(view)
    assert "read INBOX" in page.text and "yes, as" in page.text

    # Consent revoked at Microsoft: the test says so, the page shows the fix.
    graph_fake.revoke(user)
    hub.state.delete(namespace, "access_token")
    flash = await _flash(alice, await alice.post("/console/mailboxes/test", {"key": key}))
    assert "Test failed" in flash and "reconnect the mailbox in the console" in flash
    page = await alice.get(view)
    assert "This mailbox cannot sign in: the Microsoft 365 consent was revoked" in page.text
    assert "invalid_grant" in page.text
    assert "revoked" in (await alice.get("/console/mailboxes")).text

    flash = await _flash(alice, await alice.post("/console/mailboxes/disconnect", {"key": key}))
    assert "its stored tokens are deleted" in flash
    assert hub.state.get_secret(namespace, "refresh_token") is None


async def test_only_the_hubs_own_account_manages_mailboxes(hub, console, mailbox):
    key, _ = mailbox
    for name in ("eve", "lyon"):
        other = await console(name)
        assert (await other.get("/console/mailboxes")).status_code == 403
        r = await other.get(f"/console/mailboxes/oauth/start?key={quote(key)}")
        assert r.status_code == 403 and OAUTH_COOKIE not in r.headers.get("set-cookie", "")
        assert (await other.post("/console/mailboxes/disconnect", {"key": key})).status_code == 403
    alice = await console("alice")
    r = await alice.get("/console/mailboxes/view?key=imap%3Anope")
    assert r.status_code == 404 and "no mailbox &#39;imap:nope&#39;" in r.text
