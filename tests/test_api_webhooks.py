"""/v1/webhooks (issue #17): an account's webhook endpoints over HTTP, their URLs through the
outbound guard as in the console; scoped, paged and idempotent."""

# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from hub.core.config import Config
from hub.store.db import session_scope
from hub.store.models import WebhookDelivery, WebhookEndpoint
from tests.api_resources import all_pages, assert_documented, auth, small_limits

# The API fixtures of test_api.py, used as test arguments (hence F811 below).
from tests.test_api import client, tokens  # noqa: F401

# A public address written as one: accepted without a DNS lookup, never connected to here.
PUBLIC = "https://93.184.216.34/smshub"


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    return small_limits(db_url, tmp_path)


async def test_add_disable_ping_remove(hub, client, tokens):
    acme = tokens["acme"]
    r = await client.post(
        "/v1/webhooks",
        headers=auth(acme),
        json={"url": PUBLIC, "events": ["message.delivered", "optout.created"]},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["message.delivered", "optout.created"]
    webhook_id = created["id"]
    shown = (await client.get(f"/v1/webhooks/{webhook_id}", headers=auth(acme))).json()
    assert "secret" not in shown and shown["url"] == PUBLIC and shown["enabled"]

    r = await client.patch(
        f"/v1/webhooks/{webhook_id}", headers=auth(acme), json={"enabled": False}
    )
    assert r.status_code == 200 and r.json()["enabled"] is False
    r = await client.post(f"/v1/webhooks/{webhook_id}/ping", headers=auth(acme))
    assert r.status_code == 409 and "disabled" in r.json()["error"]
    await client.patch(f"/v1/webhooks/{webhook_id}", headers=auth(acme), json={"enabled": True})
    r = await client.post(f"/v1/webhooks/{webhook_id}/ping", headers=auth(acme))
    assert r.status_code == 202
    with session_scope(hub.engine) as s:
        deliveries = s.exec(select(WebhookDelivery.event_type)).all()
        assert list(deliveries) == ["ping"]

    r = await client.delete(f"/v1/webhooks/{webhook_id}", headers=auth(acme))
    assert r.status_code == 200 and r.json()["id"] == webhook_id
    assert (await client.get(f"/v1/webhooks/{webhook_id}", headers=auth(acme))).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9025/metrics",
        "http://localhost/admin",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "ftp://example.com/hook",
    ],
)
async def test_private_and_local_urls_are_refused(hub, client, tokens, url):
    r = await client.post("/v1/webhooks", headers=auth(tokens["acme"]), json={"url": url})
    assert r.status_code == 422, r.text
    assert "webhook URL" in r.json()["error"]
    with session_scope(hub.engine) as s:
        assert s.exec(select(WebhookEndpoint)).all() == []


async def test_webhooks_are_scoped_and_paged(client, tokens):
    acme, lyon, other = tokens["acme"], tokens["acme-lyon"], tokens["other"]
    ids = []
    for account in ("acme", "acme-lyon", "acme"):
        r = await client.post(
            "/v1/webhooks", headers=auth(acme), params={"account": account}, json={"url": PUBLIC}
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    found = await all_pages(client, "/v1/webhooks", acme, "webhooks", "after")
    assert [(w["id"], w["account"]) for w in found] == list(
        zip(ids, ["acme", "acme-lyon", "acme"], strict=True)
    )
    mine = (await client.get("/v1/webhooks", headers=auth(lyon))).json()["webhooks"]
    assert [w["id"] for w in mine] == [ids[1]]
    assert (await client.get("/v1/webhooks", headers=auth(other))).json()["webhooks"] == []
    for who, webhook_id in ((other, ids[1]), (lyon, ids[0])):
        for method, url, body in (
            ("GET", f"/v1/webhooks/{webhook_id}", None),
            ("PATCH", f"/v1/webhooks/{webhook_id}", {"enabled": False}),
            ("DELETE", f"/v1/webhooks/{webhook_id}", None),
            ("POST", f"/v1/webhooks/{webhook_id}/ping", None),
        ):
            r = await client.request(method, url, headers=auth(who), json=body)
            assert r.status_code == 404, (method, url, r.text)
    r = await client.post(
        "/v1/webhooks", headers=auth(lyon), params={"account": "acme"}, json={"url": PUBLIC}
    )
    assert r.status_code == 404
    r = await client.get("/v1/webhooks?limit=4", headers=auth(acme))
    assert r.status_code == 422 and "api.max_page_size" in r.json()["error"]


async def test_create_is_idempotent(hub, client, tokens):
    acme = tokens["acme"]
    body = {"url": PUBLIC, "events": ["*"]}
    first = await client.post("/v1/webhooks", headers=auth(acme, "wh-1"), json=body)
    again = await client.post("/v1/webhooks", headers=auth(acme, "wh-1"), json=body)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    r = await client.post(
        "/v1/webhooks", headers=auth(acme, "wh-1"), json={**body, "events": ["link.clicked"]}
    )
    assert r.status_code == 422
    with session_scope(hub.engine) as s:
        assert len(s.exec(select(WebhookEndpoint)).all()) == 1


async def test_openapi_documents_the_webhook_routes(client):
    await assert_documented(
        client,
        {
            "/v1/webhooks": {"get", "post"},
            "/v1/webhooks/{endpoint_id}": {"get", "patch", "delete"},
            "/v1/webhooks/{endpoint_id}/ping": {"post"},
        },
    )
