"""Console fixtures: accounts with users, and a logged-in httpx client per user."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest

from hub.mail.intake.addresses import add_mail_user
from hub.sending.accounts import create_account
from hub.sending.credits import top_up, transfer
from hub.store.db import session_scope

PASSWORD = "correct horse battery"


@pytest.fixture
def users(engine: Any, account: str) -> dict[str, str]:
    """Users alice (acme), lyon (acme-lyon, a sub-account with 20 credits), eve (other)."""
    with session_scope(engine) as s:
        create_account(s, "acme-lyon", parent="acme")
        transfer(s, "acme", "acme-lyon", 20)
        create_account(s, "other")
        top_up(s, "other", 10)
        add_mail_user(s, "acme", "alice", PASSWORD)
        add_mail_user(s, "acme-lyon", "lyon", PASSWORD)
        add_mail_user(s, "other", "eve", PASSWORD)
    return {"alice": "acme", "lyon": "acme-lyon", "eve": "other"}


class ConsoleClient:
    """An httpx client logged in to the console, which sends its CSRF token with posts."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.http = client
        self.csrf = ""

    async def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        form = await self.http.get("/console/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, form.text
        response = await self.http.post(
            "/console/login",
            data={"username": username, "password": password, "csrf_token": token.group(1)},
        )
        if response.status_code == 303:
            home = await self.http.get("/console/")
            found = re.search(r'<meta name="csrf-token" content="([^"]*)"', home.text)
            self.csrf = found.group(1) if found else ""
        return response

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.http.get(url, **kw)

    async def post(self, url: str, data: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return await self.http.post(url, data={"csrf_token": self.csrf, **(data or {})}, **kw)


ClientFactory = Callable[[str], Coroutine[Any, Any, ConsoleClient]]


@pytest.fixture
async def console(hub: Any, users: dict[str, str]) -> AsyncIterator[ClientFactory]:
    """console(username) -> a ConsoleClient logged in as that user."""
    opened: list[httpx.AsyncClient] = []

    async def _make(username: str) -> ConsoleClient:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=hub.api), base_url="http://hub")
        opened.append(http)
        client = ConsoleClient(http)
        if username:
            response = await client.login(username)
            assert response.status_code == 303, response.text
        return client

    yield _make
    for http in opened:
        await http.aclose()
