"""Campaign reports and exports show who opted out after the campaign, with the STOP date
(issue 17): the console report, its CSV and `smshub campaigns show/export`."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

from sqlmodel import select

from hub.campaigns.campaigns import create_campaign
from hub.core.timeutil import utcnow
from hub.sending.optout import opt_out
from hub.store.db import session_scope
from hub.store.models import Account, OptOutEvent
from tests.test_cli import smshub  # noqa: F401  (the CLI fixture, on the same database)

NUMBERS = ["+33612345678", "+33698765432", "+33611223344"]


def _setup(hub: Any) -> tuple[int, str]:
    engine = hub.engine
    with session_scope(engine) as s:
        acme = s.exec(select(Account).where(Account.name == "acme")).one()
        assert acme.id is not None
        # Opted out BEFORE the campaign: never sent to, not reported as opting out after it.
        opt_out(s, acme.id, NUMBERS[2], "manual", "asked by phone")
        earlier = s.exec(select(OptOutEvent)).one()
        earlier.created_at = utcnow() - timedelta(days=3)
    with session_scope(engine) as s:
        created = create_campaign(
            s, hub.config, "acme", "soldes", numbers=NUMBERS, text="Soldes", type="alert"
        )
        assert created.campaign.id is not None
        campaign_id = created.campaign.id
        acme_id = created.campaign.account_id
    with session_scope(engine) as s:
        # The first recipient answers STOP after the campaign.
        opt_out(s, acme_id, NUMBERS[0], "sms", "inbound SMS 1: 'STOP'")
        stop_at = s.exec(select(OptOutEvent).where(OptOutEvent.number == NUMBERS[0])).one()
        return campaign_id, stop_at.created_at.isoformat()[:16]


async def test_report_and_export_show_the_stop_date(console, hub, smshub):  # noqa: F811
    campaign_id, stop_at = _setup(hub)

    alice = await console("alice")
    page = await alice.get(f"/console/campaigns/{campaign_id}")
    assert page.status_code == 200
    assert 'data-opted-out="1"' in page.text
    assert "Opted out since this campaign" in page.text
    assert NUMBERS[0] in page.text and NUMBERS[2] not in page.text

    export = await alice.get(f"/console/campaigns/{campaign_id}.csv")
    rows = {r["number"]: r for r in csv.DictReader(io.StringIO(export.content.decode("utf-8-sig")))}
    assert rows[NUMBERS[0]]["stop_at"].startswith(stop_at)
    assert rows[NUMBERS[1]]["stop_at"] == ""

    code, out, _ = smshub("campaigns", "show", str(campaign_id), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["opted_out"] == 1
    assert [(o["number"], o["source"]) for o in data["opt_outs"]] == [(NUMBERS[0], "sms")]
    assert data["opt_outs"][0]["stop_at"].startswith(stop_at)
    code, out, _ = smshub("campaigns", "show", str(campaign_id))
    assert f"{NUMBERS[0]} STOP {stop_at}" in out
    code, out, _ = smshub("campaigns", "export", str(campaign_id))
    exported = {r["number"]: r for r in csv.DictReader(io.StringIO(out.lstrip("\ufeff")))}
    assert exported[NUMBERS[0]]["stop_at"].startswith(stop_at)
