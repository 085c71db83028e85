"""Connecting a Google or Microsoft 365 calendar when the browser's requests reach different
instances (another data directory, the same database): the sign-in's verifier and the
token waiting for the choice of calendar are in the database, not on one machine's disk;
so is the refresh token Microsoft renews, which the next scheduler leader must use."""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from hub.app import Hub
from hub.reminders.sync import sync_calendar
from hub.store.db import session_scope
from hub.store.models import Calendar
from hub.store.secretbox import KEY_ENV, new_key
from tests.conftest import MakeHub
from tests.console import test_calendars_console as single
from tests.console.conftest import ConsoleClient

# The Google / Microsoft stand-ins and the console's clients pointed at them.
google_fake = single.google_fake
graph_fake = single.graph_fake
google = single.google
microsoft = single.microsoft


@pytest.fixture
async def instance_b(
    hub: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_hub: MakeHub
) -> AsyncIterator[Hub]:
    """Another hub on the same database with its own data directory; both share the key."""
    monkeypatch.setenv(KEY_ENV, new_key())
    copy = hub.config.model_copy(deep=True)
    copy.hub.data_dir = tmp_path / "b"
    copy.hub.data_dir.mkdir()
    other = await make_hub(config=copy, engine=hub.engine, run_dispatcher=False)
    yield other
    await other.stop()


def on(instance: Hub, client: ConsoleClient) -> ConsoleClient:
    """CLIENT's browser (its cookies: session, sign-in) talking to INSTANCE."""
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=instance.api),
        base_url="http://hub",
        cookies=client.http.cookies,
    )
    moved = ConsoleClient(http)
    moved.csrf = client.csrf
    return moved


def _consent(location: str, **kw: Any) -> str:
    answer = httpx.get(location, follow_redirects=False, **kw)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["location"])
    return f"{back.path}?{back.query}"


def _calendar_id(response: httpx.Response) -> int:
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


async def test_a_google_sign_in_started_on_one_instance_completes_on_another(
    hub, console, google, instance_b
):
    google.add_event(
        "RDV Paul Petit", datetime.now(UTC) + timedelta(days=3), description="Tel 07 81 22 33 44"
    )
    alice = await console("alice")
    started = await alice.get("/console/calendars/oauth/google/start?account=acme")
    alice_b = on(instance_b, alice)
    calendar_id = _calendar_id(await alice_b.get(_consent(started.headers["location"])))
    # Nothing on either machine's disk; the calendar syncs from the first instance.
    for data_dir in (hub.config.hub.data_dir, instance_b.config.hub.data_dir):
        assert not (data_dir / "secrets").exists()
    report = await sync_calendar(hub.engine, hub.config, calendar_id, store=hub.state)
    assert (report.seen, report.planned) == (1, 1)
    await alice_b.http.aclose()


async def test_microsoft_sign_in_choice_and_renewed_token_across_instances(
    hub, console, microsoft, instance_b
):
    microsoft.add_event(
        "dr.martin@cabinet.example",
        "RDV Anne Roux",
        datetime.now(UTC) + timedelta(days=2),
        body="Tel. 06 98 76 54 32",
        calendar_id="AAMkAD-second-calendar",
    )
    alice = await console("alice")
    r = await alice.get("/console/calendars/oauth/microsoft/start?account=acme&name=Outlook")
    trust = ssl.create_default_context(cafile=microsoft.ca_file)
    callback = _consent(r.headers["location"], verify=trust)
    # The answer reaches instance B, which offers the calendars...
    alice_b = on(instance_b, alice)
    choose = await alice_b.get(callback)
    assert choose.status_code == 200 and "Which Microsoft 365 calendar?" in choose.text
    pending = re.search(r'name="pending" value="([^"]+)"', choose.text)
    assert pending is not None
    # ...and the choice reaches instance A.
    r = await alice.post(
        "/console/calendars/oauth/finish",
        {"pending": pending.group(1), "calendar": "AAMkAD-second-calendar"},
    )
    calendar_id = _calendar_id(r)
    with session_scope(hub.engine) as s:
        assert s.get(Calendar, calendar_id).name == "Outlook"

    # Instance B (the scheduler leader) syncs: Microsoft hands out a new refresh token.
    await sync_calendar(instance_b.engine, instance_b.config, calendar_id, store=instance_b.state)
    kept: Callable[[], Any] = lambda: json.loads(  # noqa: E731
        hub.state.get_secret(f"calendar-{calendar_id}", "renewed_refresh_token") or "{}"
    )
    newest = kept()["refresh_token"]
    # B is gone; A leads now: it signs in with the newest token, not the first one.
    report = await sync_calendar(hub.engine, hub.config, calendar_id, full=True, store=hub.state)
    assert report.seen == 1
    assert microsoft.token_requests[-1]["refresh_token"] == newest
    assert kept()["refresh_token"] != newest  # renewed again, kept for the next one
    for data_dir in (hub.config.hub.data_dir, instance_b.config.hub.data_dir):
        assert list(data_dir.glob("calendars/graph-*")) == []
    await alice_b.http.aclose()
