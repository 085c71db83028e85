"""Bad input at the HTTP edge is a 4xx naming the problem, never a 500 (issue #14).

A lone surrogate in a JSON string cannot be stored or sent; an id beyond 64 bits overflows
the database driver. Both are refused where they arrive, by the shared types of hub/web/edge.py.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from hub.sending.accounts import create_token
from hub.store.db import session_scope
from tests.console import conftest as console_fixtures

users = console_fixtures.users
console = console_fixtures.console

HUGE = str(2**64)  # beyond SQLite INTEGER and PostgreSQL BIGINT
BEYOND_INT4 = str(2**31)  # beyond PostgreSQL INTEGER, the id columns' type


@pytest.fixture
async def api(hub: Any, account: str) -> Any:
    with session_scope(hub.engine) as s:
        token = create_token(s, account).token
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hub.api),
        base_url="http://hub",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client


@pytest.mark.parametrize(
    "body",
    [
        b'{"to": "0612345678", "text": "caf\\ud800"}',
        b'{"to": "06\\ud80012345678", "text": "hello"}',
        b'{"to": ["0612345678", "\\udfff"], "text": "hello"}',
        b'{"to": "0612345678", "text": "hello", "sender": "\\ud800"}',
    ],
    ids=["text", "to", "to-list", "sender"],
)
async def test_lone_surrogate_in_a_message_is_422(api, body):
    response = await api.post(
        "/v1/messages", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "surrogate" in response.text


async def test_lone_surrogate_in_a_link_is_422(api):
    response = await api.post(
        "/v1/links",
        content=b'{"url": "https://example.com/\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("file_id", [HUGE, BEYOND_INT4, "-1", "0", "9" * 40])
async def test_file_id_beyond_64_bits_or_negative_is_4xx(api, file_id):
    response = await api.get(f"/v1/files/{file_id}")
    assert response.status_code in {404, 422}, response.text


def _integer_id_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path template) of every route with an integer path parameter, included
    routers flattened (FastAPI 0.165 keeps each as one entry with its prefix aside)."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                walk(included.routes, prefix + route.include_context.prefix)
            elif isinstance(route, APIRoute) and any(
                p.field_info.annotation is int for p in route.dependant.path_params
            ):
                found.extend((method, prefix + route.path) for method in sorted(route.methods))

    walk(app.routes, "")
    return found


async def test_every_console_route_with_an_integer_id_refuses_huge_and_negative_ids(hub, console):
    routes = _integer_id_routes(hub.api)
    console_routes = [(m, p) for m, p in routes if p.startswith("/console/")]
    # Calendars, intake users and addresses, tokens, webhooks, invalid numbers at least.
    assert len(console_routes) >= 12, console_routes
    client = await console("alice")
    for method, template in console_routes:
        for value in (HUGE, BEYOND_INT4, "-1"):
            url = re.sub(r"\{[^}]+\}", value, template)
            if method == "GET":
                response = await client.get(url)
            else:
                response = await client.post(url)
            assert response.status_code in {404, 422}, (method, url, response.status_code)


@pytest.mark.parametrize(
    "url",
    [
        f"/console/account?account={HUGE}",
        f"/console/account?account={BEYOND_INT4}",
        f"/console/campaigns/{BEYOND_INT4}",
        f"/console/account?before={HUGE}",
        f"/console/calendars?after={HUGE}",
        f"/console/replies?before={HUGE}",
        f"/console/campaigns?before={HUGE}",
        f"/console/campaigns/{HUGE}",
        f"/console/messages?campaign={HUGE}",
    ],
)
async def test_console_ids_in_query_strings_beyond_64_bits_are_not_a_500(console, url):
    client = await console("alice")
    response = await client.get(url)
    assert response.status_code < 500, (url, response.status_code)


async def test_nul_in_a_url_is_400_except_in_a_callbacks_query(hub, console, api):
    """PostgreSQL refuses NUL in any text parameter: refused at the edge for every page and
    API path. A provider callback's query may carry it (Kannel's UTF-16 text): the view
    reads it, and its own checks answer."""
    alice = await console("alice")
    assert (await alice.get("/console/messages/%00")).status_code == 400
    assert (await alice.get("/console/account?account=a%00b")).status_code == 400
    assert (await api.get("/v1/messages?status=%00")).status_code == 400
    callback = await api.get("/callbacks/simulator/mo?text=%00A")
    assert callback.status_code == 401  # the view's own answer: no secret sent
