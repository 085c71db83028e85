"""The HTTP API: auth, sending, idempotency, scoping between accounts, health and metrics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hub.accounts import create_account, create_token
from hub.credits import top_up, transfer
from hub.db import session_scope


@pytest.fixture
def tokens(engine: Any, account: str) -> dict[str, str]:
    """Tokens for acme, its limited sub-account acme-lyon (20 credits), and unrelated 'other'."""
    with session_scope(engine) as s:
        create_account(s, "acme-lyon", parent="acme")
        transfer(s, "acme", "acme-lyon", 20)
        create_account(s, "other")
        top_up(s, "other", 10)
        return {name: create_token(s, name).token for name in ("acme", "acme-lyon", "other")}


@pytest.fixture
async def client(hub: Any) -> Any:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hub.api), base_url="http://hub"
    ) as c:
        yield c


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_send_then_read_until_delivered(hub, client, tokens):
    r = await client.post(
        "/v1/messages",
        headers=_auth(tokens["acme"]),
        json={"to": ["06 12 34 56 78"], "text": "Rendez-vous demain"},
    )
    assert r.status_code == 202, r.text
    body = r.json()
    mid = body["recipients"][0]["message_id"]
    assert body["recipients"][0]["e164"] == "+33612345678"
    await hub.dispatcher.drain()
    await hub.providers["simulator"].flush_reports()
    r = await client.get(f"/v1/messages/{mid}", headers=_auth(tokens["acme"]))
    assert r.json()["status"] == "delivered"
    assert [e["status"] for e in r.json()["events"]] == ["sent", "delivered"]
    r = await client.get("/v1/messages?status=delivered", headers=_auth(tokens["acme"]))
    assert [m["id"] for m in r.json()["messages"]] == [mid]


async def test_missing_or_revoked_token_is_401(client, tokens, engine):
    assert (await client.get("/v1/account")).status_code == 401
    assert (await client.get("/v1/account", headers=_auth("smh_nope"))).status_code == 401
    from hub.accounts import revoke_token

    with session_scope(engine) as s:
        revoke_token(s, tokens["other"][:10])
    assert (await client.get("/v1/account", headers=_auth(tokens["other"]))).status_code == 401


async def test_idempotency_key_header_sends_once(client, tokens):
    headers = {**_auth(tokens["acme"]), "Idempotency-Key": "order-42"}
    body = {"to": "0612345678", "text": "Votre commande est prête"}
    first = (await client.post("/v1/messages", headers=headers, json=body)).json()
    second = (await client.post("/v1/messages", headers=headers, json=body)).json()
    assert second["recipients"][0]["status"] == "duplicate"
    assert second["recipients"][0]["message_id"] == first["recipients"][0]["message_id"]
    assert second["credits_charged"] == 0


async def test_accounts_cannot_see_or_spend_each_other(client, tokens):
    r = await client.post(
        "/v1/messages", headers=_auth(tokens["acme"]), json={"to": "0612345678", "text": "x"}
    )
    mid = r.json()["recipients"][0]["message_id"]
    for who in ("acme-lyon", "other"):
        assert (
            await client.get(f"/v1/messages/{mid}", headers=_auth(tokens[who]))
        ).status_code == 404
        assert (
            await client.delete(f"/v1/messages/{mid}", headers=_auth(tokens[who]))
        ).status_code == 404
        listed = (await client.get("/v1/messages", headers=_auth(tokens[who]))).json()
        assert listed["messages"] == []
    # A parent may send as its sub-account; nobody may send as an account outside its tree.
    r = await client.post(
        "/v1/messages",
        headers=_auth(tokens["acme"]),
        json={"to": "0612345678", "text": "x", "account": "acme-lyon"},
    )
    assert r.status_code == 202 and r.json()["account"] == "acme-lyon"
    r = await client.post(
        "/v1/messages",
        headers=_auth(tokens["other"]),
        json={"to": "0612345678", "text": "x", "account": "acme"},
    )
    assert r.status_code == 404
    r = await client.post(
        "/v1/messages",
        headers=_auth(tokens["acme-lyon"]),
        json={"to": "0612345678", "text": "x", "account": "acme"},
    )
    assert r.status_code == 404
    account = (await client.get("/v1/account", headers=_auth(tokens["acme-lyon"]))).json()
    assert (account["name"], account["balance"]) == ("acme-lyon", 19)


async def test_errors_are_json_with_a_reason(client, tokens):
    r = await client.post(
        "/v1/messages",
        headers=_auth(tokens["other"]),
        json={"to": [f"06123456{n:02d}" for n in range(11)], "text": "x"},
    )
    assert r.status_code == 402
    assert "10 credits, 11 are needed" in r.json()["error"]
    r = await client.post(
        "/v1/messages", headers=_auth(tokens["acme"]), json={"to": "0612345678", "text": ""}
    )
    assert r.status_code == 422
    assert "empty" in r.json()["error"]


async def test_cancel_scheduled_message(client, tokens):
    r = await client.post(
        "/v1/messages",
        headers=_auth(tokens["acme"]),
        json={"to": "0612345678", "text": "later", "send_at": "2099-01-01T09:00:00+01:00"},
    )
    mid = r.json()["recipients"][0]["message_id"]
    assert r.json()["recipients"][0]["status"] == "scheduled"
    r = await client.delete(f"/v1/messages/{mid}", headers=_auth(tokens["acme"]))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await client.delete(f"/v1/messages/{mid}", headers=_auth(tokens["acme"]))
    assert r.status_code == 409


async def test_health_metrics_and_openapi(client, tokens):
    assert (await client.get("/healthz")).json()["status"] == "ok"
    metrics = (await client.get("/metrics")).text
    assert "smshub_provider_sends_total" in metrics
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/messages" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200
