"""The opt-out mention follows the destination country (issue 17): France the STOP number,
Switzerland and Belgium (no replies to professional SMS) a web unsubscribe link whose page
blacklists the number only when its button is pressed (POST), never on a GET."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from hub import compliance
from hub.campaigns import campaigns, contacts
from hub.campaigns import templates as mt
from hub.core import segments
from hub.core.config import Config
from hub.core.timeutil import utcnow
from hub.sending import submit as sending
from hub.sending.accounts import get_account
from hub.sending.optout import is_blacklisted
from hub.store.db import session_scope
from hub.store.models import BlacklistEntry, Message, OptOutEvent, UnsubscribeLink
from tests.conftest import make_config
from tests.test_cli import smshub  # noqa: F401  (the CLI fixture)

PUBLIC = "https://sms.ex"
FR, CH, BE = "+33612345678", "+41791234567", "+32470123456"
SENDER = "36173"
LINK = re.compile(r"\nSTOP: https://sms\.ex/u/([0-9A-Za-z]{8})$")


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    # Belgium delivers numeric senders only; France then customarily adds the STOP mention.
    return make_config(
        db_url,
        tmp_path,
        hub={"public_url": PUBLIC},
        optout_mention={"append_for_numeric_sender": True},
    )


def _campaign(engine: Engine, config: Config, text: str) -> campaigns.CampaignCreated:
    data = f"Tel;First name\r\n{FR};Anne\r\n{CH};Bea\r\n{BE};Carl\r\n".encode()
    with session_scope(engine) as s:
        report = contacts.import_contacts(
            s, "acme", "mixed", data, "mixed.csv", preview=False, region="FR"
        )
        assert not report.rejected
    with session_scope(engine) as s:
        return campaigns.create_campaign(
            s,
            config,
            "acme",
            "promo",
            text=text,
            lists=["mixed"],
            type="marketing",
            sender=SENDER,
            send_at=utcnow() + timedelta(days=2),
        )


def _messages(engine: Engine) -> dict[str, Message]:
    with session_scope(engine) as s:
        return {m.recipient: m for m in s.exec(select(Message)).all()}


def test_each_country_of_one_campaign_gets_its_own_mention(engine, config, account):
    created = _campaign(engine, config, "Soldes {{ first_name }}")
    texts = {n: m.text for n, m in _messages(engine).items()}
    assert texts[FR] == "Soldes Anne\nSTOP au 36173"
    codes = {}
    for number, name in ((CH, "Bea"), (BE, "Carl")):
        assert texts[number].startswith(f"Soldes {name}\n"), texts[number]
        assert "36173" not in texts[number]
        found = LINK.search(texts[number])
        assert found, texts[number]
        codes[number] = found.group(1)
    assert codes[CH] != codes[BE]
    # The link itself is short: public_url + /u/ + 8 characters.
    assert len(f"{PUBLIC}/u/{codes[CH]}") == len(PUBLIC) + 11
    with session_scope(engine) as s:
        rows = {r.code: r for r in s.exec(select(UnsubscribeLink)).all()}
        assert {rows[c].number for c in codes.values()} == {CH, BE}
        assert {rows[c].campaign_id for c in codes.values()} == {created.campaign.id}
        assert all(rows[c].used_at is None for c in codes.values())


def test_parts_counted_and_charged_include_the_mention(engine, config, account):
    # 140 characters: one part with "STOP au 36173" (+14), two with the link (+27).
    text = "x" * 140
    with session_scope(engine) as s:
        shown = mt.preview_personalized(
            s, config, "acme", text, numbers=[FR, CH, BE], type="marketing", sender=SENDER
        )
    parts = {r["number"]: r["segments"] for r in shown["recipients"]}
    assert parts == {FR: 1, CH: 2, BE: 2}
    assert shown["totals"]["segments"] == 5
    with session_scope(engine) as s:
        result = sending.submit_in(
            s,
            config,
            sending.SubmitRequest(
                account="acme",
                recipients=[FR, CH, BE],
                text=text,
                type="marketing",
                sender=SENDER,
                send_at=utcnow() + timedelta(days=2),
            ),
        )
    assert result.segments == 2
    messages = _messages(engine)
    for number, want in parts.items():
        message = messages[number]
        assert message.segments == want == segments.count(message.text).segments
    assert result.credits_charged == sum(m.credits for m in messages.values())


def test_the_preview_shows_the_link_for_switzerland():
    rules = compliance.OptOutRules()
    shown = compliance.preview("Promo", "ACME", "marketing", "CH", rules=rules, public_url=PUBLIC)
    assert shown["text"] == f"Promo\nSTOP: {PUBLIC}/u/xxxxxxxx"
    assert shown["mention_added"]
    fr = compliance.preview("Promo", "ACME", "marketing", "FR", rules=rules, public_url=PUBLIC)
    assert fr["text"] == "Promo\nSTOP au 36173"
    # Countries not configured get the conservative default, the link.
    us = compliance.preview("Promo", "ACME", "marketing", "US", rules=rules, public_url=PUBLIC)
    assert "/u/" in us["text"]
    # Configuration can say otherwise, per country.
    custom = compliance.OptOutRules(optout_default="stop", optout_countries={"de": "none"})
    assert compliance.preview("P", "ACME", "marketing", "US", rules=custom)["text"].endswith(
        "36173"
    )
    assert compliance.preview("P", "ACME", "marketing", "DE", rules=custom)["text"] == "P"


def test_sms_count_includes_the_countrys_mention(smshub):  # noqa: F811
    code, out, _ = smshub(
        "sms",
        "count",
        "x" * 140,
        "--type",
        "marketing",
        "--sender",
        "ACME",
        "--country",
        "CH",
        "--json",
    )
    assert code == 0
    shown = json.loads(out)
    assert "/u/" in shown["text"] and shown["segments"] == 2
    code, out, _ = smshub(
        "sms",
        "count",
        "x" * 140,
        "--type",
        "marketing",
        "--sender",
        "ACME",
        "--country",
        "FR",
        "--json",
    )
    assert json.loads(out)["segments"] == 1


def test_short_links_leave_the_unsubscribe_link_alone(engine, config, account):
    with session_scope(engine) as s:
        sending.submit_in(
            s,
            config,
            sending.SubmitRequest(
                account="acme",
                recipients=[CH],
                text="Voir https://shop.example/x",
                type="marketing",
                sender="ACME",
                shorten_links=True,
                send_at=utcnow() + timedelta(days=2),
            ),
        )
    text = _messages(engine)[CH].text
    assert f"{PUBLIC}/s/" in text and LINK.search(text), text


@pytest.fixture
async def client(hub: Any) -> Any:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hub.api), base_url="http://hub"
    ) as c:
        yield c


async def test_unsubscribe_page_blacklists_only_on_confirm(engine, config, account, client):
    _campaign(engine, config, "Soldes {{ first_name }}")
    found = LINK.search(_messages(engine)[CH].text)
    assert found
    path = f"/u/{found.group(1)}"

    # A link scanner or preview fetches it: nothing changes.
    for _ in range(2):
        page = await client.get(path)
        assert page.status_code == 200
        assert 'method="post"' in page.text and CH not in page.text and CH[-4:] in page.text
    assert (await client.head(path)).status_code == 200
    with session_scope(engine) as s:
        assert not is_blacklisted(s, get_account(s, "acme"), CH)

    done = await client.post(path)
    assert done.status_code == 200
    with session_scope(engine) as s:
        entry = s.exec(select(BlacklistEntry).where(BlacklistEntry.number == CH)).one()
        assert entry.source == "link"
        event = s.exec(select(OptOutEvent).where(OptOutEvent.number == CH)).one()
        assert event.action == "stop" and event.source == "link"
        assert found.group(1) in event.note
        link = s.exec(select(UnsubscribeLink).where(UnsubscribeLink.number == CH)).one()
        assert link.used_at is not None
        # Only that number: the Belgian one is still subscribed.
        assert not is_blacklisted(s, get_account(s, "acme"), BE)
    # Confirming twice is harmless.
    assert (await client.post(path)).status_code == 200

    # Later marketing to that number is refused as for a STOP reply.
    with session_scope(engine) as s:
        result = sending.submit_in(
            s,
            config,
            sending.SubmitRequest(
                account="acme", recipients=[CH], text="Encore", type="marketing", sender="ACME"
            ),
        )
    assert result.recipients[0].status == "rejected"
    assert "blacklist" in (result.recipients[0].reason or "")


async def test_unknown_unsubscribe_codes_are_404(client):
    for path in ("/u/Zz9Zz9Zz", "/u/short", "/u/%3Cscript%3E"):
        assert (await client.get(path)).status_code == 404
        assert (await client.post(path)).status_code == 404
