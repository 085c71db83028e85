"""Click tracking (issue 17): per-recipient short links at every door, clicks read with
ua-parser, and the campaign click report (CLI, console, CSV)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlmodel import col, select

from hub.campaigns import clicks, links
from hub.campaigns.campaigns import campaign_report, create_campaign, export_campaign
from hub.campaigns.templates import preview_personalized
from hub.core import segments
from hub.core.timeutil import as_utc
from hub.mail.intake.addresses import MailLogin, add_intake_address, add_mail_user
from hub.mail.intake.policy import IntakePolicy, MailEnvelope
from hub.sending.account_settings import set_track_links
from hub.sending.accounts import create_token, get_account
from hub.store.db import session_scope
from hub.store.models import Campaign, LinkClick, Message, ShortLink
from tests.conftest import make_config
from tests.servers._util import free_port
from tests.test_links import PUBLIC, smshub, tiny_png  # noqa: F401  (smshub: the CLI fixture)

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
WHATSAPP = "WhatsApp/2.23.20.0 A"
NUMBERS = ["+33612345678", "+33698765432", "+33611223344"]
TEXT = "Soldes -30% ce week-end: https://shop.example/soldes/printemps-2027?utm_source=sms"
_LINK = re.compile(re.escape(PUBLIC) + r"/s/([0-9A-Za-z]{8})")


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Any:
    return make_config(
        db_url, tmp_path, hub={"public_url": PUBLIC + "/"}, links={"max_file_size": 4096}
    )


def _texts(engine: Any, campaign_id: int | None = None) -> dict[str, str]:
    with session_scope(engine) as s:
        query = select(Message)
        if campaign_id is not None:
            query = query.where(Message.campaign_id == campaign_id)
        return {m.recipient: m.text for m in s.exec(query).all()}


def _campaign(engine: Any, config: Any, text: str = TEXT, **kw: Any) -> int:
    with session_scope(engine) as s:
        result = create_campaign(
            s, config, "acme", "Soldes", text=text, numbers=NUMBERS, type="alert", **kw
        )
        assert result.campaign.id is not None
        return result.campaign.id


@contextlib.asynccontextmanager
async def serving(hub: Any) -> AsyncIterator[str]:
    """HUB's API on a real socket (uvicorn on a free port): its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(hub.api, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _click(base: str, short_url: str, agent: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base) as http:
        return await http.get(short_url.removeprefix(PUBLIC), headers={"User-Agent": agent})


# -- the parser -------------------------------------------------------------------------------
def test_user_agents_are_read_by_ua_parser() -> None:
    assert clicks.parse_agent(IPHONE) == clicks.Agent("iPhone", "iOS", "Mobile Safari", False)
    android = clicks.parse_agent(ANDROID)
    assert (android.os, android.browser, android.bot) == ("Android", "Chrome Mobile", False)
    assert android.device.startswith("Samsung")
    # Link previews of messaging apps are ua-parser's "Spider" devices: bots.
    for agent in (WHATSAPP, "facebookexternalhit/1.1", "TelegramBot (like TwitterBot)"):
        assert clicks.parse_agent(agent).bot, agent
    assert clicks.parse_agent("") == clicks.Agent("Other", "Other", "Other", False)
    # Bounded work whatever a client sends.
    assert clicks.parse_agent("x" * 100_000).device == "Other"


# -- campaigns --------------------------------------------------------------------------------
def test_campaign_with_tracking_gives_each_recipient_a_link_of_their_own(config, engine, account):
    with session_scope(engine) as s:
        shown = preview_personalized(s, config, "acme", TEXT, numbers=NUMBERS, track_links=True)
    # The preview shows the link as it will be sent, and counts it.
    placeholder = f"{PUBLIC}/s/xxxxxxxx"
    assert all(r["text"] == TEXT.split("https://")[0] + placeholder for r in shown["recipients"])
    assert shown["track_links"] is True

    campaign_id = _campaign(engine, config, track_links=True)
    texts = _texts(engine, campaign_id)
    codes = {n: _LINK.search(t).group(1) for n, t in texts.items()}  # type: ignore[union-attr]
    assert len(set(codes.values())) == 3
    with session_scope(engine) as s:
        rows = {m.recipient: m for m in s.exec(select(Message)).all()}
        found = {
            link.code: link
            for link in s.exec(select(ShortLink).where(col(ShortLink.code).in_(codes.values())))
        }
        assert s.get(Campaign, campaign_id).track_links  # type: ignore[union-attr]
    for number, code in codes.items():
        link = found[code]
        assert link.number == number and link.message_id == rows[number].id
        assert link.target_url == "https://shop.example/soldes/printemps-2027?utm_source=sms"
        assert texts[number] == TEXT.split("https://")[0] + f"{PUBLIC}/s/{code}"
        # Parts counted on the text as sent (the short link, not the long URL).
        assert rows[number].segments == segments.count(texts[number]).segments
        assert [r["segments"] for r in shown["recipients"]][0] == rows[number].segments


def test_campaign_follows_the_account_default_unless_told(config, engine, account):
    off = _campaign(engine, config)
    assert "https://shop.example" in next(iter(_texts(engine, off).values()))
    with session_scope(engine) as s:
        set_track_links(get_account(s, "acme"), True)
    on = _campaign(engine, config)
    assert all(_LINK.search(t) for t in _texts(engine, on).values())
    told = _campaign(engine, config, track_links=False)
    assert all("https://shop.example" in t for t in _texts(engine, told).values())
    with session_scope(engine) as s:
        report = campaign_report(s, told)
    assert report["track_links"] is False and report["clicks"] == 0


async def test_clicks_by_phones_make_the_campaign_report(hub, config, engine, account, smshub):  # noqa: F811
    campaign_id = _campaign(engine, config, track_links=True)
    urls = {n: _LINK.search(t).group(0) for n, t in _texts(engine, campaign_id).items()}  # type: ignore[union-attr]
    async with serving(hub) as base:
        first = await _click(base, urls[NUMBERS[0]], IPHONE)
        assert first.status_code == 302
        assert first.headers["location"].startswith("https://shop.example/soldes/")
        for _ in range(2):
            assert (await _click(base, urls[NUMBERS[1]], ANDROID)).status_code == 302
        # WhatsApp fetching the link for its preview: recorded, not counted as a person.
        assert (await _click(base, urls[NUMBERS[2]], WHATSAPP)).status_code == 302

    with session_scope(engine) as s:
        stored = {c.number: c for c in s.exec(select(LinkClick)).all()}
        report = campaign_report(s, campaign_id)
        first_at = s.exec(select(LinkClick.clicked_at).where(LinkClick.number == NUMBERS[0])).one()
    iphone = stored[NUMBERS[0]]
    assert (iphone.device_family, iphone.os_family, iphone.browser_family) == (
        "iPhone",
        "iOS",
        "Mobile Safari",
    )
    assert iphone.user_agent == IPHONE and not iphone.bot
    assert stored[NUMBERS[2]].bot

    assert report["clicks"] == 3
    assert report["unique_clickers"] == report["recipients_who_clicked"] == 2
    assert report["click_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert report["first_click_at"] == as_utc(first_at).isoformat()
    devices = {d["name"]: (d["clicks"], d["clickers"]) for d in report["devices"]}
    assert devices["iPhone"] == (1, 1)
    assert [v for k, v in devices.items() if k.startswith("Samsung")] == [(2, 1)]
    assert {d["name"]: d["clicks"] for d in report["os"]} == {"Android": 2, "iOS": 1}
    assert report["bot_clicks"] == 1 and report["bots"] == [{"name": "WhatsApp", "clicks": 1}]

    # The command line, as JSON and as text.
    code, out, _ = smshub("campaigns", "report", str(campaign_id), "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["unique_clickers"], data["click_rate"]) == (2, report["click_rate"])
    code, out, _ = smshub("campaigns", "report", str(campaign_id))
    assert code == 0
    assert "clicks: 3 by 2 recipient(s), click rate 66.7%" in out
    assert "iPhone 1 (1)" in out and "iOS 1 (1)" in out
    assert "link previews and bots (not counted): 1 (WhatsApp 1)" in out

    # The CSV export: each recipient's clicks, first click, device and system.
    with session_scope(engine) as s:
        body = export_campaign(s, campaign_id).decode("utf-8-sig")
    rows = {r["number"]: r for r in csv.DictReader(io.StringIO(body))}
    assert rows[NUMBERS[0]]["clicks"] == "1"
    assert rows[NUMBERS[0]]["first_click_at"] == report["first_click_at"]
    assert (rows[NUMBERS[0]]["device"], rows[NUMBERS[0]]["os"]) == ("iPhone", "iOS")
    assert rows[NUMBERS[1]]["clicks"] == "2" and rows[NUMBERS[1]]["os"] == "Android"
    assert rows[NUMBERS[2]]["clicks"] == "0" and rows[NUMBERS[2]]["device"] == ""


async def test_a_hosted_file_in_a_campaign_is_tracked_per_recipient(hub, config, engine, account):
    with session_scope(engine) as s:
        acme = get_account(s, "acme")
        assert acme.id is not None
        hosted, shared = links.upload(s, config, acme.id, "plan.png", tiny_png())
        file_url = links.short_url(config, shared.code)
    campaign_id = _campaign(engine, config, text=f"Le plan d'acces: {file_url}", track_links=True)
    texts = _texts(engine, campaign_id)
    assert all(file_url not in t for t in texts.values())
    urls = {n: _LINK.search(t).group(0) for n, t in texts.items()}  # type: ignore[union-attr]
    assert len(set(urls.values())) == 3
    async with serving(hub) as base:
        served = await _click(base, urls[NUMBERS[1]], ANDROID)
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png" and served.content == tiny_png()
    with session_scope(engine) as s:
        [click] = s.exec(select(LinkClick)).all()
        link = s.get(ShortLink, click.link_id)
        report = campaign_report(s, campaign_id)
    assert link is not None and link.file_id == hosted.id and link.code != shared.code
    assert click.number == NUMBERS[1] and click.os_family == "Android"
    assert report["unique_clickers"] == 1


# -- the other doors --------------------------------------------------------------------------
@pytest.fixture
def intake(engine: Any, account: str) -> MailLogin:
    with session_scope(engine) as s:
        add_intake_address(s, "acme", "sms@hub.example.com", require_auth=True)
        user = add_mail_user(s, "acme", "reception", "correct horse battery")
        assert user.id is not None
        return MailLogin(user_id=user.id, username="reception", account_id=user.account_id)


def test_mail_intake_follows_the_account_default_files_included(config, engine, intake):
    with session_scope(engine) as s:
        set_track_links(get_account(s, "acme"), True)
    msg = EmailMessage()
    msg["From"] = "anne@clinic.example"
    msg["To"] = "sms@hub.example.com"
    msg["Subject"] = "06 12 34 56 78, 06 98 76 54 32"
    msg["Message-ID"] = "<tracked@clinic.example>"
    msg.set_content("Votre ordonnance: https://clinic.example/ordonnances/2027/0042")
    msg.add_attachment(tiny_png(), maintype="image", subtype="png", filename="plan.png")
    raw = msg.as_bytes()
    policy = IntakePolicy(engine, config)
    shown = policy.preview(raw, account="acme")
    outcome = policy.take(
        MailEnvelope(raw, "anne@clinic.example", ["sms@hub.example.com"], login=intake)
    )
    assert outcome.accepted, outcome.reply
    texts = _texts(engine)
    assert set(texts) == set(NUMBERS[:2])
    with session_scope(engine) as s:
        by_code = {link.code: link for link in s.exec(select(ShortLink)).all()}
        messages = {m.recipient: m for m in s.exec(select(Message)).all()}
    seen: set[str] = set()
    for number, text in texts.items():
        page, file = _LINK.findall(text)
        assert by_code[page].target_url == "https://clinic.example/ordonnances/2027/0042"
        assert by_code[file].file_id is not None
        assert {by_code[page].number, by_code[file].number} == {number}
        assert by_code[page].message_id == messages[number].id
        seen |= {page, file}
        # The dry run (`smshub mail parse`) counted the same parts.
        assert shown["segments"] == messages[number].segments
        assert len(shown["text"]) == len(text)
    assert len(seen) == 4


async def test_api_send_follows_the_account_default(hub, engine, account):
    with session_scope(engine) as s:
        token = create_token(s, "acme").token
        set_track_links(get_account(s, "acme"), True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hub.api), base_url="http://hub"
    ) as api:
        auth = {"Authorization": f"Bearer {token}"}
        assert (await api.get("/v1/account", headers=auth)).json()["track_links"] is True
        body = {"to": NUMBERS[0], "text": TEXT}
        assert (await api.post("/v1/messages", headers=auth, json=body)).status_code == 202
        body = {"to": NUMBERS[1], "text": TEXT, "shorten_links": False}
        assert (await api.post("/v1/messages", headers=auth, json=body)).status_code == 202
    texts = _texts(engine)
    assert _LINK.search(texts[NUMBERS[0]])
    assert texts[NUMBERS[1]] == TEXT


def test_cli_sets_the_account_default(smshub, account, engine):  # noqa: F811
    code, out, _ = smshub("accounts", "set", "acme", "--track-links")
    assert code == 0 and "per-recipient short links" in out
    with session_scope(engine) as s:
        assert get_account(s, "acme").track_links
    code, out, _ = smshub("accounts", "set", "acme", "--no-track-links")
    assert code == 0 and "no click tracking" in out
    with session_scope(engine) as s:
        assert not get_account(s, "acme").track_links
