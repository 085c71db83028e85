"""/v1/lists (issue #17): contact lists over HTTP with the CLI's rules and import report,
scoped to the token's accounts, paged, idempotent and bounded."""

# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.core.config import Config
from tests.api_resources import all_pages, assert_documented, auth, small_limits

# The API fixtures of test_api.py, used as test arguments (hence F811 below).
from tests.test_api import client, tokens  # noqa: F401

CSV = (
    "Numéro;Prénom;Société\n"
    "06 12 34 56 78;Jeanne;Durand SA\n"
    "01 45 67 89 10;Paul;Fixe\n"  # a landline: left out with its line
    "0612345678;Jeanne bis;Durand\n"  # the same number again: a duplicate of line 2
    "06 98 76 54 32;Marc;\n"
).encode()


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    return small_limits(db_url, tmp_path)


async def test_a_list_from_creation_to_export(client, tokens):
    acme = tokens["acme"]
    r = await client.post("/v1/lists", headers=auth(acme), json={"name": "Patients"})
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "patients", "account": "acme", "contacts": 0, "fields": []}
    again = await client.post("/v1/lists", headers=auth(acme), json={"name": "patients"})
    assert again.status_code == 409 and "already has a contact list" in again.json()["error"]

    # A preview reports exactly what the CLI's import reports, and writes nothing.
    files = {"file": ("patients.csv", CSV, "text/csv")}
    r = await client.post(
        "/v1/lists/patients/import", headers=auth(acme), files=files, data={"preview": "true"}
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["dry_run"], report["added"], report["duplicates"]) == (True, 2, 1)
    assert report["rejected"] == [
        {"line": 3, "input": "01 45 67 89 10", "reason": "a landline number cannot receive SMS"}
    ]
    assert report["duplicate_lines"][0]["first_line"] == 2
    assert report["fields"] == ["prenom", "societe"]
    assert (await client.get("/v1/lists/patients", headers=auth(acme))).json()["contacts"] == 0

    r = await client.post("/v1/lists/patients/import", headers=auth(acme), files=files)
    assert r.status_code == 201 and r.json()["added"] == 2

    r = await client.post(
        "/v1/lists/patients/contacts",
        headers=auth(acme),
        json={"numbers": ["06 11 22 33 44", "pas un numéro"], "fields": {"Prénom": "Luc"}},
    )
    assert r.status_code == 201, r.text
    assert r.json()["added"] == 1 and r.json()["rejected"][0]["input"] == "pas un numéro"

    contacts = await all_pages(client, "/v1/lists/patients/contacts", acme, "contacts", "after")
    assert [c["number"] for c in contacts] == ["+33611223344", "+33612345678", "+33698765432"]
    assert contacts[1]["fields"] == {"prenom": "Jeanne", "societe": "Durand SA"}

    r = await client.put(
        "/v1/lists/patients/contacts/+33612345678",
        headers=auth(acme),
        json={"fields": {"prenom": "Jeanne-Marie"}},
    )
    assert r.status_code == 200 and r.json()["updated"] == 1
    r = await client.get("/v1/lists/patients/contacts/0612345678", headers=auth(acme))
    assert r.json()["fields"] == {"prenom": "Jeanne-Marie", "societe": "Durand SA"}

    r = await client.delete("/v1/lists/patients/contacts/+33698765432", headers=auth(acme))
    assert r.json()["removed"] == ["+33698765432"]
    r = await client.delete("/v1/lists/patients/contacts/+33698765432", headers=auth(acme))
    assert r.status_code == 404 and "is not on the list" in r.json()["error"]
    r = await client.post(
        "/v1/lists/patients/contacts/remove",
        headers=auth(acme),
        json={"numbers": ["06 11 22 33 44", "06 00 00 00 01"]},
    )
    assert r.json()["removed"] == ["+33611223344"] and len(r.json()["not_found"]) == 1

    csv = await client.get("/v1/lists/patients/export", headers=auth(acme))
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.content.decode("utf-8-sig").splitlines() == [
        "number,prenom,societe",
        "+33612345678,Jeanne-Marie,Durand SA",
    ]
    lists = await all_pages(client, "/v1/lists", acme, "lists", "after")
    assert [(x["name"], x["contacts"]) for x in lists] == [("patients", 1)]
    r = await client.delete("/v1/lists/patients", headers=auth(acme))
    assert r.json() == {"name": "patients", "deleted_contacts": 1}
    assert (await client.get("/v1/lists/patients", headers=auth(acme))).status_code == 404


async def test_lists_page_by_name(client, tokens):
    for name in ("e", "a", "d", "c", "b"):
        r = await client.post("/v1/lists", headers=auth(tokens["acme"]), json={"name": name})
        assert r.status_code == 201
    first = (await client.get("/v1/lists", headers=auth(tokens["acme"]))).json()
    assert [x["name"] for x in first["lists"]] == ["a", "b"] and first["next"] == "b"
    lists = await all_pages(client, "/v1/lists", tokens["acme"], "lists", "after")
    assert [x["name"] for x in lists] == ["a", "b", "c", "d", "e"]


async def test_other_accounts_lists_are_404(client, tokens):
    acme, lyon, other = tokens["acme"], tokens["acme-lyon"], tokens["other"]
    # A parent acts on its sub-account's lists with ?account=.
    r = await client.post(
        "/v1/lists/clients/contacts?account=acme-lyon",
        headers=auth(acme),
        json={"numbers": ["0612345678"]},
    )
    assert r.status_code == 201, r.text
    r = await client.get("/v1/lists/clients", headers=auth(lyon))
    assert r.json()["account"] == "acme-lyon" and r.json()["contacts"] == 1
    # Nobody reaches a list outside its tree: the sub-account's parent, another customer.
    assert (await client.get("/v1/lists/clients", headers=auth(other))).status_code == 404
    for who, account in ((other, "acme-lyon"), (lyon, "acme"), (other, "acme")):
        for method, url, body in (
            ("GET", "/v1/lists/clients/contacts", None),
            ("POST", "/v1/lists/clients/contacts", {"numbers": ["0698765432"]}),
            ("DELETE", "/v1/lists/clients", None),
            ("GET", "/v1/lists", None),
        ):
            r = await client.request(
                method, url, headers=auth(who), params={"account": account}, json=body
            )
            assert r.status_code == 404, (method, url, account, r.text)
            assert "among yours" in r.json()["error"]
    r = await client.get("/v1/lists/clients/contacts?account=acme-lyon", headers=auth(acme))
    assert [c["number"] for c in r.json()["contacts"]] == ["+33612345678"]


async def test_idempotent_additions_and_imports(client, tokens):
    acme = tokens["acme"]
    body = {"numbers": ["0612345678"], "fields": {"prenom": "Jeanne"}}
    first = await client.post("/v1/lists/vip/contacts", headers=auth(acme, "add-1"), json=body)
    again = await client.post("/v1/lists/vip/contacts", headers=auth(acme, "add-1"), json=body)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    # The first answer, not a second addition's ("unchanged").
    assert again.json() == first.json() and again.json()["added"] == 1
    other = {"numbers": ["0698765432"]}
    r = await client.post("/v1/lists/vip/contacts", headers=auth(acme, "add-1"), json=other)
    assert r.status_code == 422 and "used with a different request" in r.json()["error"]
    # The same key on another account's behalf (?account=) is another request too.
    r = await client.post(
        "/v1/lists/vip/contacts?account=acme-lyon", headers=auth(acme, "add-1"), json=body
    )
    assert r.status_code == 422

    files = {"file": ("vip.csv", CSV, "text/csv")}
    first = await client.post("/v1/lists/vip/import", headers=auth(acme, "imp-1"), files=files)
    again = await client.post("/v1/lists/vip/import", headers=auth(acme, "imp-1"), files=files)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    changed = {"file": ("vip.csv", CSV + b"06 11 22 33 44;Luc;\n", "text/csv")}
    r = await client.post("/v1/lists/vip/import", headers=auth(acme, "imp-1"), files=changed)
    assert r.status_code == 422
    contacts = await all_pages(client, "/v1/lists/vip/contacts", acme, "contacts", "after")
    assert len(contacts) == 2


async def test_limits_name_their_setting(client, tokens):
    acme = tokens["acme"]
    r = await client.get("/v1/lists?limit=4", headers=auth(acme))
    assert r.status_code == 422 and "api.max_page_size" in r.json()["error"]
    r = await client.post(
        "/v1/lists/big/contacts",
        headers=auth(acme),
        json={"numbers": [f"06123456{n:02d}" for n in range(6)]},
    )
    assert r.status_code == 413 and "api.max_items" in r.json()["error"]
    rows = "".join(f"06123456{n:02d}\n" for n in range(7)).encode()
    r = await client.post(
        "/v1/lists/big/import", headers=auth(acme), files={"file": ("big.txt", rows)}
    )
    assert r.status_code == 413 and "api.max_import_rows" in r.json()["error"]
    r = await client.post(
        "/v1/lists/big/import", headers=auth(acme), files={"file": ("big.csv", b"0" * 20_000)}
    )
    assert r.status_code == 413 and "api.max_upload_bytes" in r.json()["error"]
    assert (await client.get("/v1/lists/big", headers=auth(acme))).status_code == 404


async def test_openapi_documents_the_list_routes(client: Any) -> None:
    await assert_documented(
        client,
        {
            "/v1/lists": {"get", "post"},
            "/v1/lists/{name}": {"get", "delete"},
            "/v1/lists/{name}/contacts": {"get", "post"},
            "/v1/lists/{name}/contacts/remove": {"post"},
            "/v1/lists/{name}/contacts/{number}": {"get", "put", "delete"},
            "/v1/lists/{name}/import": {"post"},
            "/v1/lists/{name}/export": {"get"},
        },
    )
