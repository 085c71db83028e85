"""Twilio end to end: the hub, on the test database, against a local Twilio stand-in."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine
from sqlmodel import col, select

from connectors.sms.twilio import compute_signature, interpret_error
from hub.core.timeutil import utcnow
from hub.errors import ConfigError
from hub.ports.sms import SendOutcome
from hub.sending import submit as sending
from hub.sending.accounts import get_account
from hub.sending.credits import ledger_problems
from hub.store.db import session_scope
from hub.store.models import InboundMessage, Message, MessageEvent
from tests.conftest import MakeHub, make_config
from tests.fakes import twilio as fake_twilio
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake

twilio_fake = fake_twilio.twilio_fake  # the fixture, under its own name

PUBLIC = "https://sms.example.test"
FROM = "+33700000001"


@pytest.fixture
def tw_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSHUB_TEST_TWILIO_TOKEN", AUTH_TOKEN)


def _section(fake: TwilioFake, **extra: Any) -> dict[str, Any]:
    return {
        "type": "twilio",
        "base_url": fake.url,
        "account_sid": ACCOUNT_SID,
        "auth_token_env": "SMSHUB_TEST_TWILIO_TOKEN",
        "from_number": FROM,
        "timeout": 5.0,
        **extra,
    }


async def _hub(
    make_hub: MakeHub,
    db_url: str,
    tmp_path: Path,
    engine: Engine,
    fake: TwilioFake,
    route: list[str] | None = None,
    public_url: str = PUBLIC,
    **extra: Any,
) -> Any:

    config = make_config(
        db_url,
        tmp_path,
        hub={"public_url": public_url},
        providers={"twilio": _section(fake, **extra)},
        routing={"default": route or ["twilio"]},
    )
    hub = await make_hub(config=config)
    return hub


@pytest.fixture
async def hub(
    db_url: str,
    tmp_path: Path,
    engine: Engine,
    account: str,
    twilio_fake: TwilioFake,
    tw_env: None,
    make_hub: MakeHub,
) -> AsyncIterator[Any]:
    instance = await _hub(make_hub, db_url, tmp_path, engine, twilio_fake)
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


async def _sent(hub: Any, fake: TwilioFake) -> tuple[str, str]:
    """Send one SMS to 06 12 34 56 78 through the dispatcher; (our id, Twilio's sid)."""
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.drain()
    [created] = fake.messages
    return mid, created["Sid"]


async def test_sms_reaches_twilio_and_is_reported_delivered(hub, twilio_fake):
    [mid] = _send(hub, "06 12 34 56 78")
    assert await hub.dispatcher.drain() == 1
    [created] = twilio_fake.messages
    assert {k: created[k] for k in ("To", "Body", "From", "StatusCallback")} == {
        "To": "+33612345678",
        "Body": "Rappel: RDV demain 9h",
        "From": FROM,
        "StatusCallback": f"{PUBLIC}/callbacks/twilio/dlr?mid={mid}",
    }
    message = _message(hub.engine, mid)
    assert (message.status, message.provider, message.provider_message_id) == (
        "sent",
        "twilio",
        created["Sid"],
    )
    for status in ("sent", "delivered"):
        r = await twilio_fake.send_status(hub.hub_client, created["Sid"], status)
        assert r.status_code == 200, r.text
    assert _message(hub.engine, mid).status == "delivered"
    assert _events(hub.engine, mid) == [("sent", None), ("pending", None), ("delivered", None)]


async def test_message_sender_and_messaging_service_are_used(
    db_url, tmp_path, engine, account, twilio_fake, tw_env, make_hub
):
    hub = await _hub(
        make_hub,
        db_url,
        tmp_path,
        engine,
        twilio_fake,
        from_number=None,
        messaging_service_sid="MG" + "1" * 32,
    )
    try:
        _send(hub, "0612345678")
        _send(hub, "0698765432", sender="ACME")
        await hub.dispatcher.drain()
        plain, named = sorted(twilio_fake.messages, key=lambda m: m["To"])
        assert ("From" in plain, plain["MessagingServiceSid"]) == (False, "MG" + "1" * 32)
        assert named["From"] == "ACME"
    finally:
        await hub.stop()


async def test_report_that_outruns_the_dispatcher_still_finds_its_message(hub, twilio_fake):
    """The StatusCallback carries our id, so a report arriving before the sid is recorded
    (the dispatcher writes outcomes after the whole batch) still lands."""
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.drain()
    sid = twilio_fake.messages[0]["Sid"]
    with session_scope(hub.engine) as s:
        message = s.get(Message, mid)
        assert message is not None
        message.status, message.provider_message_id = "submitting", None
    r = await twilio_fake.send_status(hub.hub_client, sid, "delivered")
    assert r.status_code == 200
    assert _message(hub.engine, mid).status == "delivered"


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        ("undelivered", 30005, "invalid_number"),
        ("undelivered", 30006, "invalid_number"),
        ("undelivered", 30007, "other"),
        ("failed", 30008, "other"),
        ("failed", 30036, "expired"),
        ("failed", 21610, "opted_out"),
        ("undelivered", None, "other"),
    ],
)
async def test_undelivered_report_maps_to_its_reason(hub, twilio_fake, status, code, reason):
    mid, sid = await _sent(hub, twilio_fake)
    r = await twilio_fake.send_status(hub.hub_client, sid, status, code)
    assert r.status_code == 200
    message = _message(hub.engine, mid)
    assert (message.status, message.reason) == ("undelivered", reason)


async def test_unreachable_handset_is_sent_again(hub, twilio_fake):
    mid, sid = await _sent(hub, twilio_fake)
    await twilio_fake.send_status(hub.hub_client, sid, "undelivered", 30003)
    message = _message(hub.engine, mid)
    assert (message.status, message.send_seq) == ("queued", 1)


async def test_same_report_twice_changes_nothing(hub, twilio_fake):
    mid, sid = await _sent(hub, twilio_fake)
    for _ in range(2):
        r = await twilio_fake.send_status(hub.hub_client, sid, "delivered")
        assert r.status_code == 200
    assert _events(hub.engine, mid) == [("sent", None), ("delivered", None)]


async def test_badly_signed_callbacks_are_refused_and_not_stored(hub, twilio_fake):
    mid, sid = await _sent(hub, twilio_fake)
    url = twilio_fake.message(sid)["StatusCallback"]
    params = twilio_fake.status_params(sid, "delivered")
    attempts = [
        {"signature": "bm90IGEgc2lnbmF0dXJl"},
        {"token": "someone-elses-token"},
        # Signed correctly, then a value changed on the way.
        {
            "signature": compute_signature(
                AUTH_TOKEN, url, {k: [v] for k, v in {**params, "MessageStatus": "failed"}.items()}
            )
        },
    ]
    for forged in attempts:
        r = await twilio_fake.post_signed(hub.hub_client, url, params, **forged)
        assert r.status_code == 401, forged
    # Signed for another URL (another provider name, or without our query).
    r = await twilio_fake.post_signed(hub.hub_client, url.split("?")[0], params, deliver_to=url)
    assert r.status_code == 401
    r = await hub.hub_client.post(url, data=params)  # no signature at all
    assert r.status_code == 401
    assert "X-Twilio-Signature" in r.text
    inbound = twilio_fake.inbound_params("+33612345678", FROM, "STOP")
    r = await twilio_fake.post_signed(
        hub.hub_client, f"{PUBLIC}/callbacks/twilio/mo", inbound, token="wrong"
    )
    assert r.status_code == 401
    assert _events(hub.engine, mid) == [("sent", None)]
    assert _message(hub.engine, mid).status == "sent"
    with session_scope(hub.engine) as s:
        assert s.exec(select(InboundMessage)).all() == []


@pytest.mark.parametrize(
    ("drop", "change", "says"),
    [
        ("MessageStatus", {}, "MessageStatus"),
        ("MessageSid", {}, "MessageSid"),
        (None, {"ErrorCode": "thirty"}, "ErrorCode"),
    ],
)
async def test_malformed_but_signed_callback_is_a_400(hub, twilio_fake, drop, change, says):
    mid, sid = await _sent(hub, twilio_fake)
    url = twilio_fake.message(sid)["StatusCallback"]
    params = {**twilio_fake.status_params(sid, "undelivered", 30003), **change}
    params.pop(drop or "", None)
    r = await twilio_fake.post_signed(hub.hub_client, url, params)
    assert r.status_code == 400
    assert says in r.text
    assert _events(hub.engine, mid) == [("sent", None)]


async def test_inbound_sms_is_stored_and_answered_with_empty_twiml(hub, twilio_fake):
    mid, _ = await _sent(hub, twilio_fake)
    params = twilio_fake.inbound_params("+33612345678", FROM, "Oui, merci !")
    for _ in range(2):  # Twilio retrying the webhook stores it once
        r = await twilio_fake.post_signed(hub.hub_client, f"{PUBLIC}/callbacks/twilio/mo", params)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/xml")
        assert r.text.endswith("<Response/>")
    with session_scope(hub.engine) as s:
        inbound = s.exec(select(InboundMessage)).one()
    assert (
        inbound.event_key,
        inbound.sender,
        inbound.recipient,
        inbound.text,
        inbound.reply_to_message_id,
    ) == (params["MessageSid"], "+33612345678", FROM, "Oui, merci !", mid)


async def test_provider_outage_requeues_then_the_retry_goes_out(hub, twilio_fake):
    twilio_fake.fail_next(500)
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.run_once()  # one round: drain() retries at once (10 ms backoff)
    message = _message(hub.engine, mid)
    assert (message.status, message.attempts) == ("queued", 1)
    assert "HTTP 500" in message.detail
    with session_scope(hub.engine) as s:
        s.get(Message, mid).due_at = utcnow()  # type: ignore[union-attr]
    await hub.dispatcher.drain()
    assert _message(hub.engine, mid).status == "sent"
    assert len(twilio_fake.messages) == 1


async def test_rate_limit_is_transient(hub, twilio_fake):
    twilio_fake.fail_next(429)
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.run_once()  # one round: drain() retries at once (10 ms backoff)
    message = _message(hub.engine, mid)
    assert message.status == "queued"
    assert "rate limiting" in message.detail and "20429" in message.detail


async def test_outage_fails_over_to_the_next_provider(
    db_url, tmp_path, engine, account, twilio_fake, tw_env, make_hub
):
    hub = await _hub(make_hub, db_url, tmp_path, engine, twilio_fake, route=["twilio", "simulator"])
    try:
        twilio_fake.fail_next(503)
        [mid] = _send(hub, "0612345678")
        await hub.dispatcher.drain()
        message = _message(hub.engine, mid)
        assert (message.status, message.provider) == ("sent", "simulator")
        assert twilio_fake.messages == []
    finally:
        await hub.stop()


async def test_region_not_permitted_fails_over_to_the_next_provider(
    db_url, tmp_path, engine, account, twilio_fake, tw_env, make_hub
):
    hub = await _hub(make_hub, db_url, tmp_path, engine, twilio_fake, route=["twilio", "simulator"])
    try:
        twilio_fake.fail_number("+41791234567", 21408)
        [mid] = _send(hub, "+41791234567")
        await hub.dispatcher.drain()
        assert _message(hub.engine, mid).provider == "simulator"
    finally:
        await hub.stop()


@pytest.mark.parametrize(
    ("code", "reason"), [(21211, "invalid_number"), (21614, "invalid_number"), (21610, "opted_out")]
)
async def test_refused_number_fails_for_good_and_is_refunded(hub, twilio_fake, code, reason):
    twilio_fake.fail_number("+33698765432", code)
    ok, bad = _send(hub, "0612345678", "0698765432")
    assert _balance(hub.engine) == 98
    await hub.dispatcher.drain()
    assert _message(hub.engine, ok).status == "sent"
    message = _message(hub.engine, bad)
    assert (message.status, message.reason) == ("failed", reason)
    assert str(code) in message.detail
    assert _balance(hub.engine) == 99
    with session_scope(hub.engine) as s:
        assert ledger_problems(s) == []


async def test_wrong_auth_token_is_reported_as_a_configuration_problem(
    db_url, tmp_path, engine, account, twilio_fake, tw_env, monkeypatch, make_hub
):
    monkeypatch.setenv("SMSHUB_TEST_TWILIO_TOKEN", "not-the-token")
    hub = await _hub(make_hub, db_url, tmp_path, engine, twilio_fake)
    try:
        [mid] = _send(hub, "0612345678")
        await hub.dispatcher.run_once()  # one round: drain() retries at once (10 ms backoff)
        message = _message(hub.engine, mid)
        assert message.status == "queued"
        assert "refused our credentials" in message.detail
    finally:
        await hub.stop()


@contextmanager
def _serve(app: Any) -> Iterator[str]:
    """Serve APP with uvicorn on a free loopback port, in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


async def test_signature_is_checked_against_the_public_url_behind_a_proxy(
    db_url, tmp_path, engine, account, twilio_fake, tw_env, make_hub
):
    """Twilio signs the public URL (https, proxy host, path prefix); the hub listens on plain
    HTTP on another address. Only the public URL may validate, whatever Host says."""
    public = "https://sms.example.test/hub"
    hub = await _hub(make_hub, db_url, tmp_path, engine, twilio_fake, public_url=public)
    try:
        mid, sid = await _sent(hub, twilio_fake)
        callback = twilio_fake.message(sid)["StatusCallback"]
        assert callback == f"{public}/callbacks/twilio/dlr?mid={mid}"
        with _serve(hub.api) as internal:
            internal_url = f"{internal}/callbacks/twilio/dlr?mid={mid}"
            async with httpx.AsyncClient(timeout=10) as client:
                # What a naive check would accept: signed for the address the hub sees.
                r = await twilio_fake.post_signed(
                    client, internal_url, twilio_fake.status_params(sid, "delivered")
                )
                assert r.status_code == 401
                # Twilio's real request, relayed by the proxy to the internal address.
                r = await twilio_fake.send_status(client, sid, "delivered", deliver_to=internal_url)
                assert r.status_code == 200, r.text
                # Twilio sometimes signs with the explicit default port.
                inbound = twilio_fake.inbound_params("+33612345678", FROM, "ok")
                r = await twilio_fake.post_signed(
                    client,
                    "https://sms.example.test:443/hub/callbacks/twilio/mo",
                    inbound,
                    deliver_to=f"{internal}/callbacks/twilio/mo",
                )
                assert r.status_code == 200, r.text
        assert _message(hub.engine, mid).status == "delivered"
    finally:
        await hub.stop()


def test_signature_matches_twilios_published_vectors():
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": ["CA1234567890ABCDE"],
        "Caller": ["+14158675309"],
        "Digits": ["1234"],
        "From": ["+14158675309"],
        "To": ["+18005551212"],
    }
    assert compute_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = {"Sid": ["CA123"], "SidAccount": ["AC123"], "Digits": ["5678", "1234", "1234"]}
    assert compute_signature("12345", url, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    ("status", "body", "outcome", "reason"),
    [
        (
            400,
            {"code": 21211, "message": "bad To", "status": 400},
            SendOutcome.PERMANENT,
            "invalid_number",
        ),
        (
            400,
            {"code": 21610, "message": "unsubscribed", "status": 400},
            SendOutcome.PERMANENT,
            "opted_out",
        ),
        (400, {"code": 21408, "message": "region", "status": 400}, SendOutcome.TRANSIENT, None),
        (
            429,
            {"code": 20429, "message": "Too Many Requests", "status": 429},
            SendOutcome.TRANSIENT,
            None,
        ),
        (
            401,
            {"code": 20003, "message": "Authenticate", "status": 401},
            SendOutcome.TRANSIENT,
            None,
        ),
        (503, "<html>unavailable</html>", SendOutcome.TRANSIENT, None),
        (400, {"code": 99999, "message": "new", "status": 400}, SendOutcome.TRANSIENT, None),
    ],
)
def test_error_answers_map_to_outcomes(status, body, outcome, reason):
    result = interpret_error(status, body)
    assert (result.outcome, result.reason) == (outcome, reason)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"from_number": None}, "from_number"),
        ({"account_sid": "ACnope"}, "account_sid"),
        ({"auth_token_env": None}, "auth token is missing"),
        ({"auth_token_env": "SMSHUB_TEST_UNSET_VARIABLE"}, "SMSHUB_TEST_UNSET_VARIABLE"),
    ],
)
def test_configuration_mistakes_are_config_errors(
    db_url, tmp_path, engine, twilio_fake, tw_env, change, says
):
    from hub.app import Hub

    config = make_config(db_url, tmp_path, providers={"twilio": _section(twilio_fake, **change)})
    with pytest.raises(ConfigError, match=says):
        Hub(config, engine=engine)
