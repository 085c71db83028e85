"""Click tracking in the console (issue 17): the account's default, the send form's choice and
its preview, and the click section of a campaign report."""

from __future__ import annotations

import re

import httpx
from sqlmodel import select

from hub.campaigns.campaigns import create_campaign
from hub.store.db import session_scope
from hub.store.models import Account, Message

URL = "https://shop.example/soldes/printemps-2027?utm_source=sms"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


def _tracks(hub) -> bool:
    with session_scope(hub.engine) as s:
        return s.exec(select(Account).where(Account.name == "acme")).one().track_links


async def test_account_page_sets_click_tracking(console, hub):
    alice = await console("alice")
    page = await alice.get("/console/account")
    assert 'action="/console/account/links"' in page.text
    saved = await alice.post("/console/account/links", {"enabled": "on"})
    assert saved.status_code == 303 and _tracks(hub)
    page = await alice.get("/console/account")
    assert re.search(r'name="enabled" value="on" checked[^>]*> Replace links', page.text)
    # The send form then starts with short links ticked.
    home = await alice.get("/console/")
    assert re.search(r'name="links" value="on" checked', home.text)
    await alice.post("/console/account/links", {})
    assert not _tracks(hub)


async def test_send_form_previews_and_sends_per_recipient_links(console, hub):
    alice = await console("alice")
    text = f"Soldes: {URL}"
    base = hub.config.hub.public_url.rstrip("/") + "/s/"
    shown = await alice.post(
        "/console/preview",
        {"text": text, "to": "0612345678", "links": "on", "links_offered": "1"},
    )
    # Shown and counted as sent: a short link with x's for each recipient's code.
    assert f"Sent as: <q>Soldes: {base}xxxxxxxx</q>" in shown.text
    plain = await alice.post("/console/preview", {"text": text, "links_offered": "1"})
    assert "Sent as" not in plain.text

    sent = await alice.post(
        "/console/send",
        {"to": "0612345678, 0698765432", "text": text, "links": "on", "links_offered": "1"},
    )
    assert sent.status_code == 303
    with session_scope(hub.engine) as s:
        texts = [m.text for m in s.exec(select(Message)).all()]
    assert len(set(texts)) == 2 and all(t.startswith(f"Soldes: {base}") for t in texts)


async def test_campaign_report_page_shows_clicks_by_device(console, hub):
    with session_scope(hub.engine) as s:
        result = create_campaign(
            s,
            hub.config,
            "acme",
            "Soldes",
            text=f"Soldes: {URL}",
            numbers=["+33612345678", "+33698765432"],
            type="alert",
            track_links=True,
        )
        campaign_id = result.campaign.id
        texts = [m.text for m in s.exec(select(Message)).all()]
    path = "/s/" + texts[0].rsplit("/s/", 1)[1]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hub.api), base_url="http://hub"
    ) as phone:
        assert (await phone.get(path, headers={"User-Agent": IPHONE})).status_code == 302
    alice = await console("alice")
    page = await alice.get(f"/console/campaigns/{campaign_id}")
    assert page.status_code == 200
    assert 'data-unique-clickers="1"' in page.text and "1 of 2" in page.text
    assert 'data-click-rate="0.5"' in page.text and "50.0 %" in page.text
    assert "<td>iPhone</td>" in page.text and "<td>iOS</td>" in page.text
    assert "none yet" not in page.text
