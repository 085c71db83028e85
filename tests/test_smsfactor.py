"""SMSFactor end to end: the hub, on the test database, against a local SMSFactor stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from connectors.sms.smsfactor import interpret_send_response
from hub.core.timeutil import utcnow
from hub.errors import ConfigError
from hub.ports.sms import SendOutcome
from hub.sending import submit as sending
from hub.sending.accounts import get_account
from hub.sending.credits import ledger_problems
from hub.store.db import session_scope
from hub.store.models import InboundMessage, Message, MessageEvent
from tests.conftest import MakeHub, make_config
from tests.fakes import smsfactor as fake_smsfactor
from tests.fakes.smsfactor import TOKEN, SmsFactorFake

smsfactor_fake = fake_smsfactor.smsfactor_fake  # the fixture, under its own name

PUBLIC = "https://sms.example.test"
SECRET = "sf-callback-secret"


@pytest.fixture
def sf_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSHUB_TEST_SF_TOKEN", TOKEN)
    monkeypatch.setenv("SMSHUB_TEST_SF_SECRET", SECRET)


def _section(fake: SmsFactorFake, **extra: Any) -> dict[str, Any]:
    return {
        "type": "smsfactor",
        "base_url": fake.url,
        "token_env": "SMSHUB_TEST_SF_TOKEN",
        "callback_secret_env": "SMSHUB_TEST_SF_SECRET",
        "inbound_number": "+33700000001",
        "timeout": 5.0,
        **extra,
    }


async def _hub(
    make_hub: MakeHub,
    db_url: str,
    tmp_path: Path,
    engine: Engine,
    fake: SmsFactorFake,
    route: list[str] | None = None,
    **extra: Any,
) -> Any:

    config = make_config(
        db_url,
        tmp_path,
        hub={"public_url": PUBLIC},
        providers={"smsfactor": _section(fake, **extra)},
        routing={"default": route or ["smsfactor"]},
    )
    hub = await make_hub(config=config)
    fake.webhooks = {
        "DLR": f"{PUBLIC}/callbacks/smsfactor/dlr?secret={SECRET}",
        "MO": f"{PUBLIC}/callbacks/smsfactor/mo?secret={SECRET}",
    }
    return hub


@pytest.fixture
async def hub(
    db_url: str,
    tmp_path: Path,
    engine: Engine,
    account: str,
    smsfactor_fake: SmsFactorFake,
    sf_env: None,
    make_hub: MakeHub,
) -> AsyncIterator[Any]:
    instance = await _hub(make_hub, db_url, tmp_path, engine, smsfactor_fake)
    yield instance
    await instance.stop()


def _send(
    hub: Any, *numbers: str, text: str = "Rappel: RDV demain 9h", sender: str | None = None
) -> list[str]:
    result = sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(account="acme", recipients=list(numbers), text=text, sender=sender),
    )
    return [r.message_id for r in result.recipients if r.message_id]


def _message(engine: Engine, mid: str) -> Message:
    with session_scope(engine) as s:
        message = s.get(Message, mid)
        assert message is not None
        s.expunge(message)
        return message


def _events(engine: Engine, mid: str) -> list[tuple[str, str | None]]:
    with session_scope(engine) as s:
        rows = s.exec(
            select(MessageEvent)
            .where(MessageEvent.message_id == mid)
            .order_by(col(MessageEvent.id))
        ).all()
        return [(e.status, e.reason) for e in rows]


def _balance(engine: Engine) -> int:
    with session_scope(engine) as s:
        return get_account(s, "acme").balance


async def test_sms_reaches_smsfactor_and_is_reported_delivered(hub, smsfactor_fake):
    [mid] = _send(hub, "06 12 34 56 78", sender="ACME")
    assert await hub.dispatcher.drain() == 1
    [sms] = smsfactor_fake.sent
    assert (sms.to, sms.text, sms.sender, sms.pushtype, sms.unicode, sms.gsmsmsid) == (
        "33612345678",
        "Rappel: RDV demain 9h",
        "ACME",
        "alert",
        0,
        mid,
    )
    message = _message(hub.engine, mid)
    assert (message.status, message.provider, message.provider_message_id) == (
        "sent",
        "smsfactor",
        sms.ticket,
    )
    r = await smsfactor_fake.post_dlr(hub.hub_client, sms, 3)
    assert (r.status_code, r.text) == (200, "OK")
    assert _message(hub.engine, mid).status == "delivered"
    assert _events(hub.engine, mid) == [("sent", None), ("delivered", None)]


@pytest.mark.parametrize(
    ("code", "reason"),
    [(5, "invalid_number"), (12, "expired"), (9, "other"), (2, "other")],
)
async def test_undelivered_report_maps_to_its_reason(hub, smsfactor_fake, code, reason):
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.drain()
    r = await smsfactor_fake.post_dlr(hub.hub_client, smsfactor_fake.sent[0], code)
    assert r.status_code == 200
    message = _message(hub.engine, mid)
    assert (message.status, message.reason) == ("undelivered", reason)


async def test_network_error_report_sends_again(hub, smsfactor_fake):
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.drain()
    await smsfactor_fake.post_dlr(hub.hub_client, smsfactor_fake.sent[0], 11)
    message = _message(hub.engine, mid)
    assert (message.status, message.send_seq) == ("queued", 1)


async def test_intermediate_report_changes_nothing_but_is_recorded(hub, smsfactor_fake):
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.drain()
    r = await smsfactor_fake.post_dlr(hub.hub_client, smsfactor_fake.sent[0], 1)
    assert r.status_code == 200
    assert _message(hub.engine, mid).status == "sent"
    assert _events(hub.engine, mid) == [("sent", None), ("pending", None)]


async def test_same_report_twice_changes_nothing(hub, smsfactor_fake):
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.drain()
    sms = smsfactor_fake.sent[0]
    body = smsfactor_fake.dlr_body(sms, 3)
    for _ in range(2):
        r = await hub.hub_client.post(smsfactor_fake.webhooks["DLR"], json=body)
        assert r.status_code == 200
    assert _events(hub.engine, mid) == [("sent", None), ("delivered", None)]


@pytest.mark.parametrize(
    "url",
    [
        f"{PUBLIC}/callbacks/smsfactor/dlr",
        f"{PUBLIC}/callbacks/smsfactor/dlr?secret=wrong",
        f"{PUBLIC}/callbacks/smsfactor/dlr?secret={SECRET}x",
    ],
)
async def test_report_without_the_secret_is_refused_and_not_stored(hub, smsfactor_fake, url):
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.drain()
    r = await smsfactor_fake.post_dlr(hub.hub_client, smsfactor_fake.sent[0], 3, url=url)
    assert r.status_code == 401
    assert _message(hub.engine, mid).status == "sent"
    assert _events(hub.engine, mid) == [("sent", None)]
    r = await hub.hub_client.post(
        url.replace("/dlr", "/mo"), json={"from": "33612345678", "message": "x", "date": None}
    )
    assert r.status_code == 401
    with session_scope(hub.engine) as s:
        assert s.exec(select(InboundMessage)).all() == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "JSON"),
        (b"[1, 2]", "object"),
        (b'{"status": 3}', "campaign_id"),
        (b'{"status": "purple", "campaign_id": "1"}', "status"),
        (b'{"status": 3, "campaign_id": "1", "date": "yesterday"}', "date"),
    ],
)
async def test_malformed_report_is_a_400(hub, smsfactor_fake, body, says):
    r = await hub.hub_client.post(
        smsfactor_fake.webhooks["DLR"], content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert says in r.text


async def test_reply_is_stored_as_inbound_message(hub, smsfactor_fake):
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.drain()
    sent_at = "2026-11-26T10:00:00+01:00"
    for _ in range(2):  # SMSFactor retrying the same webhook stores it once
        r = await smsfactor_fake.post_mo(
            hub.hub_client, "+33612345678", "Oui, merci !", last_message_id=mid, date=sent_at
        )
        assert r.status_code == 200
    with session_scope(hub.engine) as s:
        inbound = s.exec(select(InboundMessage)).one()
    assert (inbound.sender, inbound.recipient, inbound.text, inbound.reply_to_message_id) == (
        "+33612345678",
        "+33700000001",
        "Oui, merci !",
        mid,
    )
    r = await hub.hub_client.post(smsfactor_fake.webhooks["MO"], json={"message": "no sender"})
    assert r.status_code == 400


async def test_provider_outage_requeues_then_the_retry_goes_out(hub, smsfactor_fake):
    smsfactor_fake.fail_next(500, "<html>Internal Server Error</html>")
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.run_once()  # one round: drain() retries at once (10 ms backoff)
    message = _message(hub.engine, mid)
    assert (message.status, message.attempts) == ("queued", 1)
    assert "HTTP 500" in message.detail
    assert smsfactor_fake.sent == []
    with session_scope(hub.engine) as s:
        s.get(Message, mid).due_at = utcnow()  # type: ignore[union-attr]
    await hub.dispatcher.drain()
    assert _message(hub.engine, mid).status == "sent"
    assert [s.gsmsmsid for s in smsfactor_fake.sent] == [mid]


@pytest.mark.parametrize(
    ("http_status", "body", "says"),
    [
        (429, None, "rate limiting"),
        (200, {"status": -3, "message": "Not enough credits"}, "not enough credits"),
        (401, {"status": -1, "message": "Authentication error"}, "API token"),
        (200, {"status": -99, "message": "Unknown error"}, "unknown error"),
    ],
)
async def test_account_and_rate_problems_are_transient(
    hub, smsfactor_fake, http_status, body, says
):
    smsfactor_fake.fail_next(http_status, body)
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.run_once()  # one round: drain() retries at once (10 ms backoff)
    message = _message(hub.engine, mid)
    assert message.status == "queued"
    assert says in message.detail


async def test_wrong_token_is_reported_as_a_configuration_problem(
    db_url, tmp_path, engine, account, smsfactor_fake, sf_env, monkeypatch, make_hub
):
    monkeypatch.setenv("SMSHUB_TEST_SF_TOKEN", "not-the-token")
    hub = await _hub(make_hub, db_url, tmp_path, engine, smsfactor_fake)
    try:
        [mid] = _send(hub, "0612345678")
        await hub.dispatcher.run_once()  # one round: drain() retries at once (10 ms backoff)
        message = _message(hub.engine, mid)
        assert message.status == "queued"
        assert "refused the API token" in message.detail
    finally:
        await hub.stop()


async def test_outage_fails_over_to_the_next_provider(
    db_url, tmp_path, engine, account, smsfactor_fake, sf_env, make_hub
):
    hub = await _hub(
        make_hub, db_url, tmp_path, engine, smsfactor_fake, route=["smsfactor", "simulator"]
    )
    try:
        smsfactor_fake.fail_next(503, None)
        [mid] = _send(hub, "0612345678")
        await hub.dispatcher.drain()
        message = _message(hub.engine, mid)
        assert (message.status, message.provider) == ("sent", "simulator")
        assert smsfactor_fake.sent == []
    finally:
        await hub.stop()


@pytest.mark.parametrize(
    ("counter", "reason"),
    [("invalid", "invalid_number"), ("npai", "invalid_number"), ("blacklisted", "opted_out")],
)
async def test_filtered_number_fails_for_good_and_is_refunded(hub, smsfactor_fake, counter, reason):
    smsfactor_fake.filter_number("+33698765432", counter)
    ok, bad = _send(hub, "0612345678", "0698765432")
    assert _balance(hub.engine) == 98
    await hub.dispatcher.drain()
    assert _message(hub.engine, ok).status == "sent"
    message = _message(hub.engine, bad)
    assert (message.status, message.reason) == ("failed", reason)
    assert _balance(hub.engine) == 99
    with session_scope(hub.engine) as s:
        assert ledger_problems(s) == []


async def test_country_not_allowed_moves_on_to_the_next_provider(
    db_url, tmp_path, engine, account, smsfactor_fake, sf_env, make_hub
):
    hub = await _hub(
        make_hub, db_url, tmp_path, engine, smsfactor_fake, route=["smsfactor", "simulator"]
    )
    try:
        smsfactor_fake.filter_number("+41791234567", "not_allowed")
        [mid] = _send(hub, "+41791234567")
        await hub.dispatcher.drain()
        assert _message(hub.engine, mid).provider == "simulator"
    finally:
        await hub.stop()


async def test_unicode_text_and_configured_defaults_reach_smsfactor(
    db_url, tmp_path, engine, account, smsfactor_fake, sf_env, make_hub
):
    hub = await _hub(
        make_hub, db_url, tmp_path, engine, smsfactor_fake, sender="CABINET", pushtype="marketing"
    )
    try:
        _send(hub, "0612345678", text="Merci 😊")
        await hub.dispatcher.drain()
        [sms] = smsfactor_fake.sent
        assert (sms.text, sms.unicode, sms.sender, sms.pushtype) == (
            "Merci 😊",
            1,
            "CABINET",
            "marketing",
        )
    finally:
        await hub.stop()


def test_missing_token_is_a_config_error(db_url, tmp_path, engine, smsfactor_fake, monkeypatch):
    from hub.app import Hub

    section = _section(smsfactor_fake)
    del section["token_env"]
    config = make_config(db_url, tmp_path, providers={"smsfactor": section})
    with pytest.raises(ConfigError, match="token is missing"):
        Hub(config, engine=engine)
    monkeypatch.delenv("SMSHUB_TEST_SF_TOKEN", raising=False)
    config = make_config(db_url, tmp_path, providers={"smsfactor": _section(smsfactor_fake)})
    with pytest.raises(ConfigError, match="SMSHUB_TEST_SF_TOKEN"):
        Hub(config, engine=engine)


@pytest.mark.parametrize(
    ("status", "body", "outcome", "pid"),
    [
        (200, {"status": 1, "ticket": "77", "sent": 1}, SendOutcome.ACCEPTED, "77"),
        (200, {"status": -8, "ticket": "78", "message": "moderation"}, SendOutcome.ACCEPTED, "78"),
        (200, {"status": -7, "details": "Invalid sender"}, SendOutcome.TRANSIENT, None),
        (200, {"status": 1, "sent": 0, "flood": 1}, SendOutcome.TRANSIENT, None),
        (502, "<html>bad gateway</html>", SendOutcome.TRANSIENT, None),
        (200, "<response><status>1</status></response>", SendOutcome.TRANSIENT, None),
    ],
)
def test_send_answers_map_to_outcomes(status, body, outcome, pid):
    result = interpret_send_response(status, body)
    assert (result.outcome, result.provider_message_id) == (outcome, pid)


async def test_fake_is_as_strict_as_the_documented_api(smsfactor_fake):
    async with httpx.AsyncClient(base_url=smsfactor_fake.url) as client:
        auth = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
        r = await client.post("/send", json={"sms": {"message": {"text": "x"}}}, headers=auth)
        assert r.json() == {
            "status": -7,
            "message": "Data error",
            "details": "recipients.gsm is required",
        }
        r = await client.post("/send", content=b"{", headers=auth)
        assert r.json()["status"] == -6
        r = await client.post("/send", json={}, headers={"Accept": "application/json"})
        assert (r.status_code, r.json()["status"]) == (401, -1)
        r = await client.post("/send", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.headers["content-type"] == "application/xml"
