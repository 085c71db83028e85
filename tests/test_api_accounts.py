"""/v1/accounts and /v1/transfers (issue #17): sub-accounts and credit moves over HTTP, with
the console's limits (a token acts on its account and those below it, never mints
credits); scoped, paged, idempotent."""

# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from hub.core.config import Config
from hub.sending.credits import ledger_problems
from hub.store.db import session_scope
from hub.store.models import LedgerEntry
from tests.api_resources import all_pages, assert_documented, auth, small_limits

# The API fixtures of test_api.py, used as test arguments (hence F811 below).
from tests.test_api import client, tokens  # noqa: F401


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    return small_limits(db_url, tmp_path)


async def _account(client, token: str, name: str) -> dict:
    r = await client.get(f"/v1/accounts/{name}", headers=auth(token))
    assert r.status_code == 200, r.text
    return r.json()


async def test_create_credit_transfer_list(hub, client, tokens):
    acme = tokens["acme"]
    # acme has 100, gave 20 to acme-lyon.
    r = await client.post(
        "/v1/accounts",
        headers=auth(acme),
        json={"name": "acme-paris", "initial_credits": 30, "region": "FR"},
    )
    assert r.status_code == 201, r.text
    assert (r.json()["parent"], r.json()["balance"]) == ("acme", 30)
    assert (await _account(client, acme, "acme"))["balance"] == 50
    r = await client.post(
        "/v1/accounts",
        headers=auth(acme),
        json={"name": "acme-paris-nord", "parent": "acme-paris", "credit_mode": "unlimited"},
    )
    assert r.status_code == 201 and r.json()["available"] == 30
    r = await client.post(
        "/v1/accounts",
        headers=auth(acme),
        json={"name": "acme-x", "credit_mode": "unlimited", "initial_credits": 5},
    )
    assert r.status_code == 422 and "initial_credits" in r.json()["error"]

    r = await client.post("/v1/accounts/acme-paris/credit", headers=auth(acme), json={"amount": 10})
    assert r.status_code == 200, r.text
    assert r.json() == {"from": "acme", "to": "acme-paris", "amount": 10, "balance": 40}
    r = await client.post(
        "/v1/transfers", headers=auth(acme), json={"from": "acme-paris", "to": "acme", "amount": 15}
    )
    assert r.status_code == 200 and r.json()["balance"] == 55
    r = await client.post(
        "/v1/transfers",
        headers=auth(acme),
        json={"from": "acme", "to": "acme-paris", "amount": 999},
    )
    assert r.status_code == 402
    r = await client.post(
        "/v1/transfers",
        headers=auth(acme),
        json={"from": "acme-lyon", "to": "acme-paris", "amount": 1},
    )
    assert r.status_code == 409 and "parent and child" in r.json()["error"]

    accounts = await all_pages(client, "/v1/accounts", acme, "accounts", "after")
    assert [a["name"] for a in accounts] == ["acme", "acme-lyon", "acme-paris", "acme-paris-nord"]
    assert [
        a["name"]
        for a in await all_pages(client, "/v1/accounts", tokens["acme-lyon"], "accounts", "after")
    ] == ["acme-lyon"]
    with session_scope(hub.engine) as s:
        assert ledger_problems(s) == []


async def test_a_token_never_reaches_up_or_across(client, tokens):
    acme, lyon, other = tokens["acme"], tokens["acme-lyon"], tokens["other"]
    # Its own account cannot be credited from above, nor can credits be pulled up into it.
    r = await client.post("/v1/accounts/acme-lyon/credit", headers=auth(lyon), json={"amount": 5})
    assert r.status_code == 403 and "your own account" in r.json()["error"]
    r = await client.post(
        "/v1/transfers", headers=auth(lyon), json={"from": "acme", "to": "acme-lyon", "amount": 5}
    )
    assert r.status_code == 404
    for who, name in ((other, "acme-lyon"), (lyon, "acme"), (other, "acme")):
        assert (await client.get(f"/v1/accounts/{name}", headers=auth(who))).status_code == 404
        r = await client.post(f"/v1/accounts/{name}/credit", headers=auth(who), json={"amount": 1})
        assert r.status_code == 404
        r = await client.post(
            "/v1/accounts", headers=auth(who), json={"name": "intrus", "parent": name}
        )
        assert r.status_code == 404
    assert (await _account(client, acme, "acme-lyon"))["balance"] == 20
    assert (await _account(client, other, "other"))["balance"] == 10


async def test_credit_and_create_are_idempotent(hub, client, tokens):
    acme = tokens["acme"]
    first = await client.post(
        "/v1/accounts/acme-lyon/credit", headers=auth(acme, "cr-1"), json={"amount": 7}
    )
    again = await client.post(
        "/v1/accounts/acme-lyon/credit", headers=auth(acme, "cr-1"), json={"amount": 7}
    )
    assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    assert (await _account(client, acme, "acme-lyon"))["balance"] == 27  # moved once
    r = await client.post(
        "/v1/accounts/acme-lyon/credit", headers=auth(acme, "cr-1"), json={"amount": 8}
    )
    assert r.status_code == 422
    body = {"name": "acme-nice", "initial_credits": 3}
    first = await client.post("/v1/accounts", headers=auth(acme, "new-1"), json=body)
    again = await client.post("/v1/accounts", headers=auth(acme, "new-1"), json=body)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    with session_scope(hub.engine) as s:
        moves = s.exec(select(LedgerEntry).where(LedgerEntry.kind == "transfer_in")).all()
        assert sorted(m.amount for m in moves) == [3, 7, 20]
    r = await client.get("/v1/accounts?limit=4", headers=auth(acme))
    assert r.status_code == 422 and "api.max_page_size" in r.json()["error"]


async def test_openapi_documents_the_account_routes(client):
    await assert_documented(
        client,
        {
            "/v1/accounts": {"get", "post"},
            "/v1/accounts/{name}": {"get"},
            "/v1/accounts/{name}/credit": {"post"},
            "/v1/transfers": {"post"},
        },
    )
