"""Console campaigns: list, report (counts, parts, credits, clicks), CSV, cancel, who sees what."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from hub.campaigns.campaigns import create_campaign
from hub.core.config import Config
from hub.core.timeutil import utcnow
from hub.store.db import session_scope
from hub.store.models import Account, Campaign, LinkClick, Message, ShortLink
from tests.conftest import make_config

LATER = timedelta(days=2)


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    """The simulator reports +33698765432 as an invalid number."""
    return make_config(
        db_url,
        tmp_path,
        providers={
            "simulator": {
                "type": "simulator",
                "report_delay": 3600.0,
                "invalid_numbers": ["+33698765432"],
            }
        },
    )


def _campaign(hub: Any, account: str, name: str, numbers: list[str], **kw: Any) -> int:
    kw.setdefault("text", "Bonjour, -20% cette semaine")
    kw.setdefault("type", "alert")
    with session_scope(hub.engine) as s:
        created = create_campaign(s, hub.config, account, name, numbers=numbers, **kw)
        assert created.campaign.id is not None
        return created.campaign.id


def _ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/console/campaigns/(\d+)"', page)]


def _fact(page: str, label: str) -> str:
    found = re.search(rf"<dt>{re.escape(label)}</dt>\s*<dd>(.*?)</dd>", page, re.S)
    assert found, label
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def _balance(engine: Any, name: str) -> int:
    with session_scope(engine) as s:
        return s.exec(select(Account).where(Account.name == name)).one().balance


def _status(engine: Any, campaign_id: int) -> str:
    with session_scope(engine) as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        return campaign.status


async def test_list_shows_the_scope_newest_first(console, hub):
    first = _campaign(hub, "acme", "Printemps", ["0611111111"])
    lyon = _campaign(hub, "acme-lyon", "Lyon en fête", ["0622222222"])
    other = _campaign(hub, "other", "Chez other", ["0633333333"])
    last = _campaign(hub, "acme", "Été", ["0644444444"], send_at=utcnow() + LATER)

    alice = await console("alice")
    page = await alice.get("/console/campaigns")
    assert page.status_code == 200
    assert _ids(page.text) == [last, lyon, first]
    assert "Lyon en fête" in page.text and "Chez other" not in page.text
    assert '<th scope="col">Account</th>' in page.text and "status-scheduled" in page.text

    lyon_user = await console("lyon")
    assert _ids((await lyon_user.get("/console/campaigns")).text) == [lyon]
    eve = await console("eve")
    assert _ids((await eve.get("/console/campaigns")).text) == [other]


async def test_list_pages_older_and_newer(console, hub):
    hub.config.console.page_size = 5
    made = [_campaign(hub, "acme", f"C{i}", [f"06111111{i:02d}"]) for i in range(7)]
    alice = await console("alice")
    page = await alice.get("/console/campaigns")
    assert _ids(page.text) == made[::-1][:5]
    older = re.search(r'href="([^"]+)" rel="next"', page.text)
    assert older and 'rel="prev"' not in page.text
    page = await alice.get(html.unescape(older.group(1)))
    assert _ids(page.text) == made[::-1][5:]
    assert 'rel="next"' not in page.text
    newer = re.search(r'href="([^"]+)" rel="prev"', page.text)
    assert newer
    page = await alice.get(html.unescape(newer.group(1)))
    assert _ids(page.text) == made[::-1][:5]


async def test_report_counts_parts_cost_and_clicks(console, hub, engine):
    # A two-part text: 170 GSM characters.
    text = "Soldes ! " + "x" * 161
    campaign_id = _campaign(
        hub, "acme", "Soldes", ["0612345678", "0698765432", "0611223344"], text=text
    )
    await hub.dispatcher.drain()
    await hub.providers["simulator"].flush_reports()
    with session_scope(engine) as s:
        messages = s.exec(
            select(Message).where(Message.campaign_id == campaign_id).order_by(col(Message.id))
        ).all()
        link = ShortLink(
            account_id=messages[0].account_id, code="abc123", message_id=messages[0].id
        )
        s.add(link)
        s.flush()
        assert link.id is not None
        s.add_all([LinkClick(link_id=link.id), LinkClick(link_id=link.id)])

    alice = await console("alice")
    page = await alice.get(f"/console/campaigns/{campaign_id}")
    assert page.status_code == 200
    assert "status-sent" in page.text
    counts = dict(
        re.findall(
            r'state=(\w+)"><span class="status[^"]*">\w+</span></a></td>\s*<td class="num">(\d+)',
            page.text,
        )
    )
    assert counts == {"delivered": "2", "undelivered": "1"}
    assert _fact(page.text, "Recipients") == "3"
    assert _fact(page.text, "SMS parts") == "6"
    assert _fact(page.text, "Credits charged") == "6"
    assert _fact(page.text, "Refunded") == "0"
    assert _fact(page.text, "Net cost") == "6 credits"
    assert _fact(page.text, "Clicks") == "2"
    assert _fact(page.text, "Recipients who clicked") == "1"
    # Sent: nothing to cancel; the messages and the export are linked.
    assert "/cancel" not in page.text
    assert f'href="/console/messages?campaign={campaign_id}"' in page.text

    export = await alice.get(f"/console/campaigns/{campaign_id}.csv")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    assert f'filename="campaign-{campaign_id}.csv"' in export.headers["content-disposition"]
    assert export.content.startswith(b"\xef\xbb\xbf")
    rows = {r["number"]: r for r in csv.DictReader(io.StringIO(export.content.decode("utf-8-sig")))}
    assert rows["+33698765432"]["status"] == "undelivered"
    assert rows[messages[0].recipient]["clicks"] == "2"


async def test_cancel_a_scheduled_campaign_refunds_it(console, hub, engine):
    before = _balance(engine, "acme")
    campaign_id = _campaign(
        hub, "acme", "Demain", ["0611111111", "0622222222"], send_at=utcnow() + LATER
    )
    assert _balance(engine, "acme") == before - 2
    alice = await console("alice")
    page = await alice.get(f"/console/campaigns/{campaign_id}")
    assert f'action="/console/campaigns/{campaign_id}/cancel"' in page.text
    assert "data-confirm=" in page.text

    response = await alice.post(f"/console/campaigns/{campaign_id}/cancel")
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/campaigns/{campaign_id}"
    page = await alice.get(response.headers["location"])
    assert "Campaign cancelled: 2 SMS, 2 credits refunded." in page.text
    assert "status-cancelled" in page.text and "/cancel" not in page.text
    assert _fact(page.text, "Refunded") == "2" and _fact(page.text, "Net cost") == "0 credits"
    assert _status(engine, campaign_id) == "cancelled"
    assert _balance(engine, "acme") == before

    again = await alice.post(f"/console/campaigns/{campaign_id}/cancel")
    page = await alice.get(again.headers["location"])
    assert "Not cancelled" in page.text and "already cancelled" in page.text
    assert _balance(engine, "acme") == before


async def test_a_started_campaign_cannot_be_cancelled(console, hub, engine):
    campaign_id = _campaign(hub, "acme", "Maintenant", ["0611111111"])
    alice = await console("alice")
    # Due now but not taken by the dispatcher yet: still cancellable.
    page = await alice.get(f"/console/campaigns/{campaign_id}")
    assert f'action="/console/campaigns/{campaign_id}/cancel"' in page.text
    await hub.dispatcher.drain()
    page = await alice.get(f"/console/campaigns/{campaign_id}")
    assert "/cancel" not in page.text
    before = _balance(engine, "acme")
    response = await alice.post(f"/console/campaigns/{campaign_id}/cancel")
    assert response.status_code == 303
    page = await alice.get(response.headers["location"])
    assert "Not cancelled" in page.text and "has started sending" in page.text
    assert _status(engine, campaign_id) != "cancelled"
    assert _balance(engine, "acme") == before


async def test_other_accounts_campaigns_are_out_of_reach(console, hub, engine):
    acme = _campaign(hub, "acme", "Secret acme", ["0611111111"], send_at=utcnow() + LATER)
    other = _campaign(hub, "other", "Secret other", ["0622222222"], send_at=utcnow() + LATER)
    lyon_id = _campaign(hub, "acme-lyon", "Lyon", ["0633333333"], send_at=utcnow() + LATER)
    lyon = await console("lyon")
    eve = await console("eve")
    alice = await console("alice")

    for client, hidden in ((lyon, [acme, other]), (eve, [acme, lyon_id]), (alice, [other])):
        listing = await client.get("/console/campaigns")
        assert not set(_ids(listing.text)) & set(hidden)
        for campaign_id in hidden:
            for url in (
                f"/console/campaigns/{campaign_id}",
                f"/console/campaigns/{campaign_id}.csv",
            ):
                response = await client.get(url)
                assert response.status_code == 404, url
                assert "Secret" not in response.text and "+336" not in response.text
            cancel = await client.post(f"/console/campaigns/{campaign_id}/cancel")
            assert cancel.status_code == 404
            assert _status(engine, campaign_id) == "scheduled"
        # Their messages stay out of the history's campaign filter too.
        for campaign_id in hidden:
            page = await client.get(f"/console/messages?campaign={campaign_id}")
            assert "Secret" not in page.text and "/console/messages/" not in page.text

    # The parent account sees and cancels its sub-account's campaign.
    page = await alice.get(f"/console/campaigns/{lyon_id}")
    assert page.status_code == 200 and _fact(page.text, "Account") == "acme-lyon"
    response = await alice.post(f"/console/campaigns/{lyon_id}/cancel")
    assert response.status_code == 303
    assert _status(engine, lyon_id) == "cancelled"


async def test_bad_ids_are_clear_errors(console, hub):
    alice = await console("alice")
    for url, status, words in [
        ("/console/campaigns/abc", 404, "campaign ids are numbers"),
        ("/console/campaigns/999999", 404, "no campaign 999999"),
        ("/console/campaigns/abc.csv", 404, "campaign ids are numbers"),
        ("/console/campaigns?before=x", 422, "page link is damaged"),
    ]:
        response = await alice.get(url)
        assert response.status_code == status, url
        assert words in html.unescape(response.text), url
    response = await alice.post("/console/campaigns/abc/cancel")
    assert response.status_code == 404


async def test_campaign_pages_need_login(console, hub):
    campaign_id = _campaign(hub, "acme", "X", ["0611111111"])
    anon = await console("")
    for url in ("/console/campaigns", f"/console/campaigns/{campaign_id}"):
        response = await anon.get(url)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login?next=")
    response = await anon.http.post(f"/console/campaigns/{campaign_id}/cancel")
    assert response.status_code == 303
    assert _status(hub.engine, campaign_id) != "cancelled"
