"""/v1/blacklist and /v1/invalid-numbers (issue #17): list, add, import and remove the numbers
an account never sends to, recorded as the CLI records them; scoped, paged, idempotent and
bounded."""

# ruff: noqa: F811

from __future__ import annotations

import io
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlmodel import col, select

from hub.core.config import Config
from hub.store.db import session_scope
from hub.store.models import OptOutEvent
from tests.api_resources import all_pages, assert_documented, auth, small_limits

# The API fixtures of test_api.py, used as test arguments (hence F811 below).
from tests.test_api import client, tokens  # noqa: F401


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    return small_limits(db_url, tmp_path)


def _xlsx(*rows: str) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append([row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def test_blacklist_add_import_list_remove(hub, client, tokens):
    acme = tokens["acme"]
    r = await client.post(
        "/v1/blacklist",
        headers=auth(acme),
        json={"numbers": ["06 12 34 56 78", "pas un numéro"], "note": "asked by phone"},
    )
    assert r.status_code == 201, r.text
    assert (r.json()["added"], r.json()["already"]) == (1, 0)
    assert r.json()["rejected"][0]["input"] == "pas un numéro"
    data = b"number\n0698765432\n0612345678\nabc\n0611223344\n"
    r = await client.post(
        "/v1/blacklist/import", headers=auth(acme), files={"file": ("stop.csv", data)}
    )
    assert r.status_code == 201, r.text
    assert (r.json()["added"], r.json()["already"]) == (2, 1)
    assert {x["input"] for x in r.json()["rejected"]} == {"number", "abc"}

    entries = await all_pages(client, "/v1/blacklist", acme, "numbers", "after")
    assert [(e["number"], e["source"]) for e in entries] == [
        ("+33611223344", "import"),
        ("+33612345678", "api"),
        ("+33698765432", "import"),
    ]
    assert entries[1]["note"] == "asked by phone"

    r = await client.delete("/v1/blacklist/+33612345678", headers=auth(acme))
    assert r.status_code == 422  # the consent reason is required
    r = await client.delete(
        "/v1/blacklist/0612345678", headers=auth(acme), params={"reason": "asked again, 2026-12"}
    )
    assert r.status_code == 200, r.text
    r = await client.delete(
        "/v1/blacklist/0612345678", headers=auth(acme), params={"reason": "again"}
    )
    assert r.status_code == 404
    with session_scope(hub.engine) as s:
        events = s.exec(
            select(OptOutEvent.action, OptOutEvent.source)
            .where(OptOutEvent.number == "+33612345678")
            .order_by(col(OptOutEvent.id))
        ).all()
    assert [tuple(e) for e in events][:3] == [
        ("stop", "api"),
        ("stop", "import"),
        ("start", "manual"),
    ]


async def test_invalid_numbers_add_import_list_remove(client, tokens):
    acme = tokens["acme"]
    r = await client.post(
        "/v1/invalid-numbers", headers=auth(acme), json={"numbers": ["0612345678", "x"]}
    )
    assert r.status_code == 201 and r.json()["added"] == 1 and len(r.json()["rejected"]) == 1
    book = _xlsx("Numéro", "0698765432", "0612345678", "pas un numéro")
    r = await client.post(
        "/v1/invalid-numbers/import", headers=auth(acme), files={"file": ("npai.xlsx", book)}
    )
    assert r.status_code == 201, r.text
    assert (r.json()["added"], r.json()["already"], r.json()["format"]) == (1, 1, "xlsx")
    assert r.json()["rejected"] == [
        {"line": 4, "input": "pas un numéro", "reason": r.json()["rejected"][0]["reason"]}
    ]
    listed = await all_pages(client, "/v1/invalid-numbers", acme, "numbers", "after")
    assert [n["number"] for n in listed] == ["+33612345678", "+33698765432"]
    r = await client.delete("/v1/invalid-numbers/06 12 34 56 78", headers=auth(acme))
    assert r.json() == {"number": "+33612345678", "account": "acme"}
    r = await client.delete("/v1/invalid-numbers/0612345678", headers=auth(acme))
    assert r.status_code == 404 and "is not on the invalid list" in r.json()["error"]


async def test_other_accounts_numbers_are_404(client, tokens):
    acme, lyon, other = tokens["acme"], tokens["acme-lyon"], tokens["other"]
    for path in ("/v1/blacklist", "/v1/invalid-numbers"):
        r = await client.post(
            path,
            headers=auth(acme),
            params={"account": "acme-lyon"},
            json={"numbers": ["0612345678"]},
        )
        assert r.status_code == 201, r.text
        assert [
            n["number"] for n in (await client.get(path, headers=auth(lyon))).json()["numbers"]
        ] == ["+33612345678"]
        assert (await client.get(path, headers=auth(acme))).json()["numbers"] == []
        for who, account in ((other, "acme-lyon"), (lyon, "acme")):
            for method, url, kwargs in (
                ("GET", path, {}),
                ("POST", path, {"json": {"numbers": ["0698765432"]}}),
                ("DELETE", f"{path}/0612345678", {}),
                ("POST", f"{path}/import", {"files": {"file": ("a.csv", b"0698765432\n")}}),
            ):
                params = {"account": account, "reason": "x"}
                r = await client.request(method, url, headers=auth(who), params=params, **kwargs)
                assert r.status_code == 404, (path, method, url, r.text)


async def test_idempotent_and_bounded(client, tokens):
    acme = tokens["acme"]
    body = {"numbers": ["0612345678"], "note": "x"}
    first = await client.post("/v1/blacklist", headers=auth(acme, "bl-1"), json=body)
    again = await client.post("/v1/blacklist", headers=auth(acme, "bl-1"), json=body)
    assert (
        again.json()
        == first.json()
        == {
            "added": 1,
            "already": 0,
            "rejected": [],
            "format": "",
        }
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    r = await client.post(
        "/v1/blacklist", headers=auth(acme, "bl-1"), json={**body, "note": "autre"}
    )
    assert r.status_code == 422
    files = {"file": ("npai.csv", b"0698765432\n")}
    first = await client.post("/v1/invalid-numbers/import", headers=auth(acme, "in-1"), files=files)
    again = await client.post("/v1/invalid-numbers/import", headers=auth(acme, "in-1"), files=files)
    assert again.json() == first.json() and first.json()["added"] == 1

    rows = "".join(f"06123456{n:02d}\n" for n in range(7)).encode()
    for path in ("/v1/blacklist/import", "/v1/invalid-numbers/import"):
        r = await client.post(path, headers=auth(acme), files={"file": ("a.txt", rows)})
        assert r.status_code == 413 and "api.max_import_rows" in r.json()["error"], r.text
        r = await client.post(path, headers=auth(acme), files={"file": ("a.txt", b"0" * 20_000)})
        assert r.status_code == 413 and "api.max_upload_bytes" in r.json()["error"]
    many = {"numbers": [f"06123456{n:02d}" for n in range(6)]}
    for path in ("/v1/blacklist", "/v1/invalid-numbers"):
        r = await client.post(path, headers=auth(acme), json=many)
        assert r.status_code == 413 and "api.max_items" in r.json()["error"]
        r = await client.get(path, headers=auth(acme), params={"limit": 4})
        assert r.status_code == 422 and "api.max_page_size" in r.json()["error"]


async def test_openapi_documents_the_number_routes(client):
    await assert_documented(
        client,
        {
            "/v1/blacklist": {"get", "post"},
            "/v1/blacklist/import": {"post"},
            "/v1/blacklist/{number}": {"delete"},
            "/v1/invalid-numbers": {"get", "post"},
            "/v1/invalid-numbers/import": {"post"},
            "/v1/invalid-numbers/{number}": {"delete"},
        },
    )
