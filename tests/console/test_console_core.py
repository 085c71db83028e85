"""Console core: login, sessions, CSRF, the send form and its live preview."""

from __future__ import annotations

import re

from sqlmodel import select

from hub.mail.intake.passwords import hash_password
from hub.store.db import session_scope
from hub.store.models import MailUser, Message


async def test_pages_need_login_and_login_redirects_back(console):
    anon = await console("")
    r = await anon.get("/console/?state=sent")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?next=/console/%3Fstate%3Dsent"
    r = await anon.get("/", follow_redirects=False)
    assert r.headers["location"] == "/console/"
    fetch = await anon.http.get("/console/", headers={"X-Requested-With": "fetch"})
    assert fetch.status_code == 401


async def test_wrong_password_is_refused_then_throttled(console, hub):
    hub.config.console.max_failed_logins = 3
    client = await console("")
    for _ in range(3):
        r = await client.login("alice", "wrong password!")
        assert r.status_code == 401
        assert "Wrong user name or password" in r.text
    r = await client.login("alice")
    assert r.status_code == 429
    assert "Too many failed attempts" in r.text


async def test_login_form_needs_its_csrf_cookie(console):
    client = await console("")
    r = await client.http.post(
        "/console/login", data={"username": "alice", "password": "x", "csrf_token": "forged"}
    )
    assert r.status_code == 400


async def test_open_redirect_after_login_is_refused(console):
    client = await console("")
    form = await client.http.get("/console/login?next=//evil.example/x")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    r = await client.http.post(
        "/console/login",
        data={
            "username": "alice",
            "password": "correct horse battery",
            "csrf_token": token,
            "next": "https://evil.example/",
        },
    )
    assert r.headers["location"] == "/console/"


async def test_cookie_is_httponly_and_pages_have_strict_headers(console):
    client = await console("")
    r = await client.login("alice")
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    home = await client.get("/console/")
    assert home.status_code == 200
    assert "script-src 'self'" in home.headers["content-security-policy"]
    assert home.headers["x-frame-options"] == "DENY"


async def test_posts_without_csrf_token_are_refused(console):
    alice = await console("alice")
    r = await alice.http.post("/console/send", data={"to": "0612345678", "text": "hi"})
    assert r.status_code == 403
    assert "Reload the page" in r.text


async def test_new_password_ends_old_sessions(console, engine):
    alice = await console("alice")
    assert (await alice.get("/console/")).status_code == 200
    with session_scope(engine) as s:
        user = s.exec(select(MailUser).where(MailUser.username == "alice")).one()
        user.password_hash = hash_password("another password")
        s.add(user)
    assert (await alice.get("/console/")).status_code == 303


async def test_send_form_queues_and_flashes(console, engine):
    alice = await console("alice")
    r = await alice.post("/console/send", {"to": "06 12 34 56 78, 123", "text": "Bonjour"})
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/messages?batch=")
    with session_scope(engine) as s:
        sent = s.exec(select(Message)).all()
    assert [(m.recipient, m.source) for m in sent] == [("+33612345678", "console")]
    home = await alice.get("/console/")
    assert "Queued 1 SMS (1 credits)." in home.text
    assert "Left out: 123" in home.text


async def test_send_as_another_customers_account_is_refused(console, engine):
    lyon = await console("lyon")
    r = await lyon.post("/console/send", {"to": "0612345678", "text": "x", "account": "acme"})
    assert r.status_code == 404
    with session_scope(engine) as s:
        assert s.exec(select(Message)).all() == []


async def test_live_preview_counts_parts_and_cost(console):
    alice = await console("alice")
    r = await alice.post(
        "/console/preview", {"text": "é" * 10 + "😀" * 40, "to": "0612345678 0698765432"}
    )
    assert r.status_code == 200
    assert 'data-parts="2"' in r.text and "UCS-2" in r.text.upper().replace("UCS2", "UCS-2")
    assert 'data-cost="4"' in r.text
    r = await alice.post(
        "/console/preview", {"text": "Promo", "type": "marketing", "sender": "ACME"}
    )
    assert "Sent as:" in r.text
