"""The HTTP API: auth, sending, idempotency, scoping between accounts, health and metrics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hub.sending.accounts import create_account, create_token
from hub.sending.credits import top_up, transfer
from hub.store.db import session_scope


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
    from hub.sending.accounts import revoke_token

    with session_scope(engine) as s:
        revoke_token(s, tokens["other"][:10])
    assert (await client.get("/v1/account", headers=_auth(tokens["other"]))).status_code == 401


async def test_idempotency_key_header_sends_once(client, tokens):
    headers = {**_auth(tokens["acme"]), "Idempotency-Key": "order-42"}
    body = {"to": "0612345678", "text": "Votre commande est prête"}
    first = (await client.post("/v1/messages", headers=headers, json=body)).json()
    again = await client.post("/v1/messages", headers=headers, json=body)
    # The same request again gets the first answer again (nothing new is charged or sent).
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first
    assert first["recipients"][0]["status"] == "queued"


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
    metrics = (await client.get("/metrics")).text  # httpx's ASGI client is 127.0.0.1
    assert "smshub_provider_sends_total" in metrics
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/messages" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


REMOTE = ("203.0.113.5", 40000)
METRICS_TOKEN = "m3trics-t0ken-for-tests"


def _client_at(app: Any, address: tuple[str, int]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=address)
    return httpx.AsyncClient(transport=transport, base_url="http://hub")


@pytest.fixture
async def token_hub(
    db_url: str, tmp_path: Any, engine: Any, monkeypatch: Any, make_hub: Any
) -> Any:
    """A hub whose /metrics requires METRICS_TOKEN (from the environment)."""
    from tests.conftest import make_config

    monkeypatch.setenv("SMSHUB_TEST_METRICS_TOKEN", METRICS_TOKEN)
    config = make_config(db_url, tmp_path, http={"metrics_token_env": "SMSHUB_TEST_METRICS_TOKEN"})
    instance = await make_hub(config=config)
    yield instance
    await instance.stop()


@pytest.mark.parametrize("address", [("127.0.0.1", 5000), ("127.8.9.10", 5000), ("::1", 5000)])
async def test_metrics_without_token_answer_local_clients(hub, address):
    async with _client_at(hub.api, address) as c:
        r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    assert "smshub_messages" in r.text


@pytest.mark.parametrize("address", [REMOTE, ("2001:db8::5", 5000), ("10.0.0.7", 5000)])
async def test_metrics_without_token_refuse_remote_clients(hub, address):
    async with _client_at(hub.api, address) as c:
        r = await c.get("/metrics")
        assert (await c.get("/healthz")).status_code == 200  # health stays public
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/plain")
    assert "[http] metrics_token" in r.text
    assert "smshub_" not in r.text


async def test_metrics_token_is_required_when_set(token_hub):
    for address in (REMOTE, ("127.0.0.1", 5000)):  # local clients need it too
        async with _client_at(token_hub.api, address) as c:
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token"},
                {"Authorization": f"Basic {METRICS_TOKEN}"},
                {"Authorization": f"Bearer {METRICS_TOKEN}x"},
                {"Authorization": "Bearer café".encode()},  # raw UTF-8 bytes: no 500
            ):
                r = await c.get("/metrics", headers=headers)
                assert r.status_code == 401, (address, headers, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                assert "Authorization: Bearer" in r.text and len(r.text.splitlines()) == 1
                assert "smshub_" not in r.text and METRICS_TOKEN not in r.text
            r = await c.get("/metrics", headers=_auth(METRICS_TOKEN))
            assert r.status_code == 200, r.text
            assert "smshub_provider_sends_total" in r.text
            r = await c.get("/metrics", headers={"authorization": f"bearer  {METRICS_TOKEN} "})
            assert r.status_code == 200
            assert (await c.get("/healthz")).status_code == 200
