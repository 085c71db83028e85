"""The invalid-number list is managed, not only listed (issue 17): numbers added by hand and
by import (CSV/XLSX, with the contact import's per-line rejection report) from the CLI and the
console, and "add the invalid numbers of this campaign" from a campaign report."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlmodel import select

from hub.campaigns.campaigns import create_campaign
from hub.core.config import Config
from hub.sending import submit as sending
from hub.store.db import session_scope
from hub.store.models import Account, InvalidNumber
from tests.conftest import make_config
from tests.test_cli import smshub  # noqa: F401  (the CLI fixture, on the same database)

BAD = "+33698765432"


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    """The simulator reports BAD as an invalid number."""
    return make_config(
        db_url,
        tmp_path,
        providers={
            "simulator": {"type": "simulator", "report_delay": 3600.0, "invalid_numbers": [BAD]}
        },
    )


def _listed(engine: Any, account: str = "acme") -> set[str]:
    with session_scope(engine) as s:
        acc = s.exec(select(Account).where(Account.name == account)).one()
        return set(
            s.exec(select(InvalidNumber.number).where(InvalidNumber.account_id == acc.id)).all()
        )


def _xlsx(rows: list[list[str]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def test_cli_add_and_import_with_rejection_report(hub, users, smshub, tmp_path):  # noqa: F811
    code, out, _ = smshub("invalid", "add", "06 12 34 56 78", "hello", "--account", "acme")
    assert code == 0
    assert "1 added" in out and "line 2: 'hello' left out" in out
    assert _listed(hub.engine) == {"+33612345678"}

    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("Numéro;Nom\n0611223344;Al\nnot a number;Bo\n0612345678;Cy\n")
    code, out, _ = smshub("invalid", "import", str(csv_file), "--account", "acme", "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["added"], report["already"]) == (1, 1)
    assert [(r["line"], r["input"]) for r in report["rejected"]] == [(3, "not a number")]

    xlsx_file = tmp_path / "bad.xlsx"
    xlsx_file.write_bytes(_xlsx([["Tel"], ["+41791234567"], ["12"]]))
    code, out, _ = smshub("invalid", "import", str(xlsx_file), "--account", "acme", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["added"] == 1 and report["format"] == "xlsx"
    assert [r["line"] for r in report["rejected"]] == [3]
    assert _listed(hub.engine) == {"+33612345678", "+33611223344", "+41791234567"}

    # Listed numbers are left out of sends.
    with session_scope(hub.engine) as s:
        result = sending.submit_in(
            s,
            hub.config,
            sending.SubmitRequest(account="acme", recipients=["0611223344"], text="x"),
        )
    assert "invalid-number list" in (result.recipients[0].reason or "")

    code, _, err = smshub("invalid", "add", "nope", "--account", "acme")
    assert code == 1


async def test_console_add_by_hand_and_by_file(console, hub):
    alice = await console("alice")
    page = await alice.post("/console/invalid/add", {"numbers": "0612345678\nxyz\n"})
    assert page.status_code == 200
    assert "1 added" in page.text and "xyz" in page.text  # reported, and put back to fix
    assert _listed(hub.engine) == {"+33612345678"}

    data = _xlsx([["Numéro"], ["0611223344"], ["0612345678"], ["abc"]])
    page = await alice.post(
        "/console/invalid/add",
        files={"file": ("list.xlsx", data, "application/octet-stream")},
    )
    assert page.status_code == 200, page.text
    assert "1 added, 1 already" in page.text and "line 4" in page.text
    assert _listed(hub.engine) == {"+33612345678", "+33611223344"}
    # The sub-account's user adds to the sub-account's list, not to acme's.
    lyon = await console("lyon")
    await lyon.post("/console/invalid/add", {"numbers": "0699887766"})
    assert _listed(hub.engine, "acme-lyon") == {"+33699887766"}
    assert "+33699887766" not in _listed(hub.engine)


async def test_add_the_invalid_numbers_of_a_campaign(console, hub, smshub):  # noqa: F811
    with session_scope(hub.engine) as s:
        created = create_campaign(
            s, hub.config, "acme", "c", numbers=["0612345678", BAD], text="Hi", type="alert"
        )
        campaign_id = created.campaign.id
    await hub.dispatcher.drain()
    await hub.providers["simulator"].flush_reports()
    assert _listed(hub.engine) == set()  # once is not twice in a row

    alice = await console("alice")
    report = await alice.get(f"/console/campaigns/{campaign_id}")
    assert 'action="/console/invalid/from-campaign"' in report.text
    done = await alice.post("/console/invalid/from-campaign", {"campaign": str(campaign_id)})
    assert done.status_code == 303
    assert _listed(hub.engine) == {BAD}
    # Another account's user cannot touch it.
    eve = await console("eve")
    refused = await eve.post("/console/invalid/from-campaign", {"campaign": str(campaign_id)})
    assert refused.status_code == 404

    code, out, _ = smshub("invalid", "add-campaign", str(campaign_id), "--json")
    assert code == 0
    assert json.loads(out)["already"] == 1
