"""Logout ends the session on the server (issue #14): the old cookie no longer opens the
console, on this instance or another one sharing the database, and the table of ended
sessions keeps only those whose cookies have not expired yet."""

from __future__ import annotations

import time
from typing import Any

import httpx
from sqlmodel import select

from hub.console import session as cookies
from hub.console.auth import COOKIE
from hub.store.db import session_scope
from hub.store.models import RevokedSession
from tests.console import conftest as console_fixtures

users = console_fixtures.users
console = console_fixtures.console


async def _open_home(app: Any, cookie: str) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hub", cookies={COOKIE: cookie}
    ) as client:
        return await client.get("/console/")


async def test_old_cookie_no_longer_opens_the_console_after_logout(
    hub, console, config, engine, make_hub
):

    alice = await console("alice")
    cookie = alice.http.cookies[COOKIE]
    assert (await _open_home(hub.api, cookie)).status_code == 200
    other_instance = await make_hub(config=config, start=False)
    try:
        assert (await _open_home(other_instance.api, cookie)).status_code == 200
        response = await alice.post("/console/logout")
        assert response.status_code == 303
        # A copy of the cookie kept from before the logout: refused here and elsewhere.
        for app in (hub.api, other_instance.api):
            refused = await _open_home(app, cookie)
            assert refused.status_code == 303
            assert refused.headers["location"].startswith("/console/login")
    finally:
        await other_instance.hub_client.aclose()
    # Logging in again opens a new session.
    again = await console("alice")
    assert (await again.get("/console/")).status_code == 200


def test_revocations_of_expired_cookies_are_pruned(engine):
    expired = cookies.SessionData(
        user_id=1, csrf="old", expires=int(time.time()) - 10, fingerprint="f"
    )
    live = cookies.SessionData(
        user_id=1, csrf="new", expires=int(time.time()) + 3600, fingerprint="f"
    )
    with session_scope(engine) as session:
        cookies.revoke(session, expired)
    with session_scope(engine) as session:
        cookies.revoke(session, live)
        cookies.revoke(session, live)  # twice: no error
    with session_scope(engine) as session:
        ids = session.exec(select(RevokedSession.id)).all()
        assert list(ids) == [cookies.session_id(live)]
        assert "new" not in ids[0]  # a digest, not the token
