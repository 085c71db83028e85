"""/v1/campaigns (issue #17): create, schedule, cancel and report campaigns over HTTP, with
the STOP dates the CLI and the CSV export show; scoped, paged, idempotent and bounded."""

# ruff: noqa: F811

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from hub.core.config import Config
from hub.core.timeutil import utcnow
from hub.sending import optout
from hub.store.db import session_scope
from hub.store.models import Account, Campaign
from tests.api_resources import all_pages, assert_documented, auth, small_limits

# The API fixtures of test_api.py, used as test arguments (hence F811 below).
from tests.test_api import client, tokens  # noqa: F401

NUMBERS = ["0612345678", "0698765432", "0611223344"]


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    return small_limits(db_url, tmp_path)


async def _list(client, token: str, account: str | None = None) -> None:
    r = await client.post(
        "/v1/lists/clients/contacts",
        headers=auth(token),
        params={"account": account} if account else {},
        json={"numbers": NUMBERS, "fields": {"prenom": "Jeanne"}},
    )
    assert r.status_code == 201, r.text


async def _balance(client, token: str) -> int:
    return (await client.get("/v1/account", headers=auth(token))).json()["balance"]


async def test_schedule_then_cancel_refunds(client, tokens):
    acme = tokens["acme"]
    await _list(client, acme)
    await client.put(
        "/v1/templates/promo", headers=auth(acme), json={"text": "Bonjour {{ prenom }}"}
    )
    before = await _balance(client, acme)
    later = (utcnow() + timedelta(days=2)).isoformat()
    r = await client.post(
        "/v1/campaigns",
        headers=auth(acme),
        json={
            "name": "Soldes",
            "template": "promo",
            "lists": ["clients"],
            "numbers": ["01 45 67 89 10"],  # a landline: left out, the others go on
            "send_at": later,
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["status"], created["recipients"]) == ("scheduled", 3)
    assert created["rejected"] == [
        {"input": "01 45 67 89 10", "reason": "a landline number cannot receive SMS"}
    ]
    assert await _balance(client, acme) == before - created["credits"]

    report = (await client.get(f"/v1/campaigns/{created['id']}", headers=auth(acme))).json()
    assert report["status"] == "scheduled" and report["counts"]["queued"] == 3
    assert report["text"] == "Bonjour {{ prenom }}"

    r = await client.post(f"/v1/campaigns/{created['id']}/cancel", headers=auth(acme))
    assert r.status_code == 200, r.text
    assert r.json() == {"id": created["id"], "cancelled": 3, "credits_refunded": created["credits"]}
    assert await _balance(client, acme) == before
    r = await client.post(f"/v1/campaigns/{created['id']}/cancel", headers=auth(acme))
    assert r.status_code == 409 and "already cancelled" in r.json()["error"]


async def test_report_and_export_show_stop_dates(hub, client, tokens):
    acme = tokens["acme"]
    await _list(client, acme)
    r = await client.post(
        "/v1/campaigns",
        headers=auth(acme),
        json={"name": "Alerte", "text": "Fermé demain", "lists": ["clients"], "type": "alert"},
    )
    assert r.status_code == 201, r.text
    campaign_id = r.json()["id"]
    await hub.dispatcher.drain()
    r = await client.post(f"/v1/campaigns/{campaign_id}/cancel", headers=auth(acme))
    assert r.status_code == 409 and "started sending" in r.json()["error"]

    with session_scope(hub.engine) as s:
        acc = s.exec(select(Account).where(Account.name == "acme")).one()
        assert acc.id is not None
        optout.opt_out(s, acc.id, "+33698765432", "sms", "STOP")
    report = (await client.get(f"/v1/campaigns/{campaign_id}", headers=auth(acme))).json()
    assert report["opted_out"] == 1
    [stop] = report["opt_outs"]
    assert (stop["number"], stop["source"]) == ("+33698765432", "sms")

    r = await client.get(f"/v1/campaigns/{campaign_id}/export", headers=auth(acme))
    assert r.headers["content-type"].startswith("text/csv")
    rows = {row["number"]: row for row in csv.DictReader(io.StringIO(r.text.lstrip("\ufeff")))}
    assert rows["+33698765432"]["stop_at"] == stop["stop_at"]
    assert rows["+33612345678"]["stop_at"] == ""

    r = await client.post(f"/v1/campaigns/{campaign_id}/invalid-numbers", headers=auth(acme))
    assert r.status_code == 200 and r.json()["added"] == 0


async def test_campaigns_page_newest_first_across_sub_accounts(client, tokens):
    acme = tokens["acme"]
    ids = []
    for n, account in enumerate(("acme", "acme-lyon", "acme", "acme-lyon", "acme")):
        r = await client.post(
            "/v1/campaigns",
            headers=auth(acme),
            params={"account": account},
            json={"name": f"c{n}", "text": "x", "numbers": ["0612345678"], "type": "alert"},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    found = await all_pages(client, "/v1/campaigns", acme, "campaigns", "before")
    assert [c["id"] for c in found] == ids[::-1]
    lyon = await all_pages(client, "/v1/campaigns", tokens["acme-lyon"], "campaigns", "before")
    assert [c["id"] for c in lyon] == [ids[3], ids[1]]
    assert {c["account"] for c in lyon} == {"acme-lyon"}


async def test_other_accounts_campaigns_are_404(client, tokens):
    acme = tokens["acme"]
    r = await client.post(
        "/v1/campaigns",
        headers=auth(acme),
        json={
            "name": "x",
            "text": "x",
            "numbers": ["0612345678"],
            "send_at": (utcnow() + timedelta(days=1)).isoformat(),
        },
    )
    campaign_id = r.json()["id"]
    for who in ("other", "acme-lyon"):
        for method, url in (
            ("GET", f"/v1/campaigns/{campaign_id}"),
            ("POST", f"/v1/campaigns/{campaign_id}/cancel"),
            ("GET", f"/v1/campaigns/{campaign_id}/export"),
            ("POST", f"/v1/campaigns/{campaign_id}/invalid-numbers"),
        ):
            r = await client.request(method, url, headers=auth(tokens[who]))
            assert r.status_code == 404, (who, method, url, r.text)
        listed = (await client.get("/v1/campaigns", headers=auth(tokens[who]))).json()
        assert listed["campaigns"] == []
        r = await client.post(
            "/v1/campaigns",
            headers=auth(tokens[who]),
            params={"account": "acme"},
            json={"name": "x", "text": "x", "numbers": ["0612345678"]},
        )
        assert r.status_code == 404
    report = (await client.get(f"/v1/campaigns/{campaign_id}", headers=auth(acme))).json()
    assert report["status"] == "scheduled"


async def test_create_is_idempotent_and_bounded(hub, client, tokens):
    acme = tokens["acme"]
    body = {"name": "Une fois", "text": "x", "numbers": ["0612345678"], "type": "alert"}
    first = await client.post("/v1/campaigns", headers=auth(acme, "camp-1"), json=body)
    again = await client.post("/v1/campaigns", headers=auth(acme, "camp-1"), json=body)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    r = await client.post(
        "/v1/campaigns", headers=auth(acme, "camp-1"), json={**body, "text": "autre texte"}
    )
    assert r.status_code == 422
    with session_scope(hub.engine) as s:
        assert len(s.exec(select(Campaign)).all()) == 1
    r = await client.post(
        "/v1/campaigns",
        headers=auth(acme),
        json={**body, "numbers": [f"06123456{n:02d}" for n in range(6)]},
    )
    assert r.status_code == 413 and "api.max_items" in r.json()["error"]
    r = await client.get("/v1/campaigns?limit=9", headers=auth(acme))
    assert r.status_code == 422 and "api.max_page_size" in r.json()["error"]
    r = await client.post(
        "/v1/campaigns/preview",
        headers=auth(acme),
        json={"text": "Bonjour", "numbers": ["0612345678"], "sender": "ACME"},
    )
    assert r.status_code == 200 and "STOP" in r.json()["recipients"][0]["text"]


async def test_openapi_documents_the_campaign_routes(client):
    await assert_documented(
        client,
        {
            "/v1/campaigns": {"get", "post"},
            "/v1/campaigns/preview": {"post"},
            "/v1/campaigns/{campaign_id}": {"get"},
            "/v1/campaigns/{campaign_id}/cancel": {"post"},
            "/v1/campaigns/{campaign_id}/export": {"get"},
            "/v1/campaigns/{campaign_id}/invalid-numbers": {"post"},
        },
    )
