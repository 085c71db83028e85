"""/v1/templates (issue #17): saved texts with merge fields and their per-recipient preview,
scoped to the token's accounts, paged and idempotent."""

# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path

import pytest

from hub.core.config import Config
from tests.api_resources import all_pages, assert_documented, auth, small_limits

# The API fixtures of test_api.py, used as test arguments (hence F811 below).
from tests.test_api import client, tokens  # noqa: F401

TEXT = "Bonjour {{ prenom }}, votre commande est prête."


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    return small_limits(db_url, tmp_path)


async def test_save_preview_replace_delete(client, tokens):
    acme = tokens["acme"]
    r = await client.post("/v1/templates", headers=auth(acme), json={"name": "Pret", "text": TEXT})
    assert r.status_code == 201, r.text
    assert (r.json()["name"], r.json()["fields"]) == ("pret", ["prenom"])
    r = await client.post("/v1/templates", headers=auth(acme), json={"name": "pret", "text": "x"})
    assert r.status_code == 409
    r = await client.post(
        "/v1/templates", headers=auth(acme), json={"name": "casse", "text": "Bonjour {{ prenom"}
    )
    assert r.status_code == 422 and "cannot be used" in r.json()["error"]

    await client.post(
        "/v1/lists/clients/contacts",
        headers=auth(acme),
        json={"numbers": ["0612345678"], "fields": {"prenom": "Jeanne"}},
    )
    r = await client.post(
        "/v1/templates/pret/preview",
        headers=auth(acme),
        json={
            "lists": ["clients"],
            "numbers": ["06 98 76 54 32"],
            "type": "marketing",
            "sender": "ACME",
        },
    )
    assert r.status_code == 200, r.text
    jeanne, bare = r.json()["recipients"]
    # The exact text sent: merge field filled, opt-out mention added, parts counted.
    assert jeanne["text"].startswith("Bonjour Jeanne, votre commande est prête.")
    assert "STOP" in jeanne["text"] and jeanne["segments"] >= 1 and jeanne["credits"] >= 1
    assert jeanne["source"] == "list:clients"
    # A number without the merge field is left out for that reason only.
    assert bare["number"] == "+33698765432" and "'prenom' is missing" in bare["error"]
    assert r.json()["totals"]["recipients"] == 1 and r.json()["totals"]["left_out"] == 1
    r = await client.post("/v1/templates/pret/preview", headers=auth(acme), json={})
    assert r.status_code == 422 and "name the recipients" in r.json()["error"]

    r = await client.put(
        "/v1/templates/pret", headers=auth(acme), json={"text": "Salut {{ prenom }} !"}
    )
    assert r.status_code == 200 and r.json()["text"] == "Salut {{ prenom }} !"
    assert (await client.get("/v1/templates/pret", headers=auth(acme))).json()["text"] == (
        "Salut {{ prenom }} !"
    )
    r = await client.delete("/v1/templates/pret", headers=auth(acme))
    assert r.status_code == 200 and r.json()["name"] == "pret"
    assert (await client.get("/v1/templates/pret", headers=auth(acme))).status_code == 404


async def test_templates_page_by_name(client, tokens):
    for name in ("c", "a", "b"):
        await client.post(
            "/v1/templates", headers=auth(tokens["acme"]), json={"name": name, "text": "x"}
        )
    found = await all_pages(client, "/v1/templates", tokens["acme"], "templates", "after")
    assert [t["name"] for t in found] == ["a", "b", "c"]


async def test_other_accounts_templates_are_404(client, tokens):
    r = await client.put(
        "/v1/templates/rappel?account=acme-lyon", headers=auth(tokens["acme"]), json={"text": "x"}
    )
    assert r.status_code == 200
    assert (await client.get("/v1/templates/rappel", headers=auth(tokens["acme-lyon"]))).json()[
        "text"
    ] == "x"
    for who, account in (("other", "acme-lyon"), ("acme-lyon", "acme")):
        for method, url, body in (
            ("GET", "/v1/templates/rappel", None),
            ("PUT", "/v1/templates/rappel", {"text": "pirate"}),
            ("DELETE", "/v1/templates/rappel", None),
            ("POST", "/v1/templates/rappel/preview", {"numbers": ["0612345678"]}),
        ):
            r = await client.request(
                method, url, headers=auth(tokens[who]), params={"account": account}, json=body
            )
            assert r.status_code == 404, (who, method, r.text)
    # Without ?account= a token reads its own account's templates, never a sub-account's.
    r = await client.get("/v1/templates/rappel", headers=auth(tokens["other"]))
    assert r.status_code == 404


async def test_create_is_idempotent(client, tokens):
    acme = tokens["acme"]
    body = {"name": "promo", "text": TEXT}
    first = await client.post("/v1/templates", headers=auth(acme, "t-1"), json=body)
    again = await client.post("/v1/templates", headers=auth(acme, "t-1"), json=body)
    # Not a 409 "already has a template": the first answer again.
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    r = await client.post(
        "/v1/templates", headers=auth(acme, "t-1"), json={"name": "promo", "text": "autre"}
    )
    assert r.status_code == 422
    r = await client.post(
        "/v1/templates/promo/preview",
        headers=auth(acme),
        json={"numbers": [f"06123456{n:02d}" for n in range(6)]},
    )
    assert r.status_code == 413 and "api.max_items" in r.json()["error"]


async def test_openapi_documents_the_template_routes(client):
    await assert_documented(
        client,
        {
            "/v1/templates": {"get", "post"},
            "/v1/templates/{name}": {"get", "put", "delete"},
            "/v1/templates/{name}/preview": {"post"},
        },
    )
