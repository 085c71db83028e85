"""Night hours from the console (issue 17): the account page sets them, and the send page
warns when a send would arrive at night."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlmodel import select

from hub.core.timeutil import utcnow
from hub.store.db import session_scope
from hub.store.models import Account


def _night(hub) -> tuple[str, str, str]:
    with session_scope(hub.engine) as s:
        acc = s.exec(select(Account).where(Account.name == "acme")).one()
        return acc.night_mode, acc.night_start, acc.night_end


async def test_account_page_sets_night_hours(console, hub):
    alice = await console("alice")
    page = await alice.get("/console/account")
    assert 'action="/console/account/night"' in page.text
    saved = await alice.post(
        "/console/account/night", {"mode": "hold", "start": "22:00", "end": "07:00"}
    )
    assert saved.status_code == 303
    assert _night(hub) == ("hold", "22:00", "07:00")
    refused = await alice.post(
        "/console/account/night", {"mode": "hold", "start": "late", "end": "07:00"}
    )
    assert refused.status_code == 422 and "Night start" in refused.text
    assert _night(hub) == ("hold", "22:00", "07:00")


async def test_send_page_warns_at_night(console, hub):
    alice = await console("alice")
    # Make "now" night in Paris: the night runs from an hour ago to an hour from now.
    now = utcnow().astimezone(ZoneInfo("Europe/Paris"))
    start = f"{now - timedelta(hours=1):%H:%M}"
    end = f"{now + timedelta(hours=1):%H:%M}"
    await alice.post("/console/account/night", {"mode": "off", "start": start, "end": end})
    shown = await alice.post("/console/preview", {"text": "Bonjour", "to": "0612345678"})
    assert shown.status_code == 200
    assert "would arrive at night" in shown.text and "go out anyway" in shown.text
    await alice.post("/console/account/night", {"mode": "hold", "start": start, "end": end})
    shown = await alice.post("/console/preview", {"text": "Bonjour", "to": "0612345678"})
    assert "wait until the night ends" in shown.text

    # In the daytime (the night is over an hour from now), no warning.
    later = f"{now + timedelta(hours=2):%H:%M}"
    await alice.post("/console/account/night", {"mode": "hold", "start": end, "end": later})
    shown = await alice.post("/console/preview", {"text": "Bonjour", "to": "0612345678"})
    assert "night" not in shown.text
