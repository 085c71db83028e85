"""/s/ short links are rate-limited per client address, across instances (they were not
limited at all: anyone could make the hub write a click row as fast as it could)."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine
from sqlmodel import select

from hub.app import Hub
from hub.campaigns import links
from hub.store.db import session_scope
from hub.store.models import Account
from tests.conftest import MakeHub, make_config


def _client(hub: Hub, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=hub.api, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://hub")


async def test_short_links_answer_429_past_the_rate_on_every_instance(
    db_url: str, tmp_path, engine: Engine, account: str, make_hub: MakeHub
) -> None:
    with session_scope(engine) as s:
        owner = s.exec(select(Account).where(Account.name == "acme")).one()
        assert owner.id is not None
        code = links.shorten(s, owner.id, "https://clinic.example/rdv").code
    config = make_config(db_url, tmp_path, links={"requests_per_minute": 5})
    first = await make_hub(config=config, start=False)
    second = await make_hub(config=config, start=False)
    await first.start(background=False)
    await second.start(background=False)
    try:
        async with _client(first, "203.0.113.9") as a, _client(second, "203.0.113.9") as b:
            statuses = [(await (a if i % 2 else b).get(f"/s/{code}")).status_code for i in range(8)]
            assert statuses == [302] * 5 + [429] * 3
            r = await a.get(f"/s/{code}")
            assert r.status_code == 429
            assert 1 <= int(r.headers["retry-after"]) <= 120
            assert "links.requests_per_minute" in r.json()["error"]
            # Unknown codes count too (a scan of codes is what the limit is for).
            assert (await a.get("/s/Zz9Zz9Zz")).status_code == 429
        async with _client(first, "198.51.100.20") as other:
            # Another client is served.
            assert (await other.get(f"/s/{code}")).status_code == 302
    finally:
        await first.stop()
        await second.stop()
