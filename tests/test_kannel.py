"""The Kannel connector against a real Kannel (bearerbox + smsbox + fakesmsc), on both databases.

The hub's HTTP API is served by uvicorn inside the test's event loop, so smsbox calls the
hub's delivery-report and inbound-SMS routes over real HTTP, while the test drives the
dispatcher with ``drain()``. Kannel is an external process: waiting for what it does is
polling with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine
from sqlmodel import col, select

from connectors.sms.kannel import (
    DLR_QUERY,
    MO_QUERY,
    KannelProvider,
    KannelSettings,
    failure_reason,
    interpret_sendsms_response,
)
from hub.app import Hub
from hub.core.config import Config
from hub.errors import ConfigError
from hub.ports.sms import DeliveryReason, OutgoingSms, ProviderContext, SendOutcome
from hub.sending import submit as sending
from hub.store.db import session_scope
from hub.store.models import InboundMessage, Message, MessageEvent
from tests.conftest import MakeHub, make_config
from tests.servers._util import free_port, wait_until_async
from tests.servers.dropping_http import DroppingHttpServer
from tests.servers.kannel import KannelServer, kannel_factory, kannel_mo_url  # noqa: F401

SECRET = "kannel-test-secret_0123456789"
SENDER = "36001"
PASSWORD_ENV = "SMSHUB_TEST_KANNEL_PASSWORD"
SECRET_ENV = "SMSHUB_TEST_KANNEL_SECRET"
# Kannel is a separate process: its reports take milliseconds, but a loaded CI box may be slow.
DEADLINE = 20.0

KannelFactory = Callable[..., KannelServer]


# -- helpers -------------------------------------------------------------------------------
def _config(
    db_url: str,
    tmp_path: Path,
    port: int,
    sendsms_url: str,
    route: list[str] | None = None,
    **kannel: Any,
) -> Config:
    section = {
        "type": "kannel",
        "sendsms_url": sendsms_url,
        "username": "smshub",
        "password_env": PASSWORD_ENV,
        "callback_secret_env": SECRET_ENV,
        "sender": SENDER,
        **kannel,
    }
    return make_config(
        db_url,
        tmp_path,
        hub={"public_url": f"http://127.0.0.1:{port}"},
        providers={"kannel": section},
        routing={"default": route or ["kannel"]},
    )


def _mo_url(port: int) -> str:
    return kannel_mo_url(f"http://127.0.0.1:{port}/callbacks/kannel/mo?secret={SECRET}")


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fixture's sendsms-user password (see tests/servers/kannel.py).
    monkeypatch.setenv(PASSWORD_ENV, "smshub-sendsms")
    monkeypatch.setenv(SECRET_ENV, SECRET)


@contextlib.asynccontextmanager
async def running_hub(make_hub: MakeHub, config: Config, port: int) -> AsyncIterator[Hub]:
    """A started hub (dispatcher driven by the test) whose API listens on PORT."""
    hub = await make_hub(config=config)
    server = uvicorn.Server(
        uvicorn.Config(hub.api, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait_until_async(
            lambda: server.started or task.done(), 10, "uvicorn to serve the hub's API"
        )
        if task.done():
            task.result()  # raises what stopped uvicorn (a port taken meanwhile...)
            raise RuntimeError("uvicorn stopped before serving")
        yield hub
    finally:
        server.should_exit = True
        await task
        await hub.stop()


def _submit(hub: Hub, text: str, *numbers: str) -> list[str]:
    result = sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(account="acme", recipients=list(numbers), text=text),
    )
    ids = [r.message_id for r in result.recipients if r.message_id]
    assert len(ids) == len(numbers), result.recipients
    return ids


def _messages(engine: Engine) -> dict[str, Message]:
    with session_scope(engine) as s:
        return {m.id: m for m in s.exec(select(Message)).all()}


def _events(engine: Engine, message_id: str) -> list[MessageEvent]:
    with session_scope(engine) as s:
        return list(
            s.exec(
                select(MessageEvent)
                .where(MessageEvent.message_id == message_id)
                .order_by(col(MessageEvent.id))
            ).all()
        )


def _inbound(engine: Engine) -> list[InboundMessage]:
    with session_scope(engine) as s:
        return list(s.exec(select(InboundMessage).order_by(col(InboundMessage.id))).all())


async def _until_status(engine: Engine, ids: list[str], status: str) -> dict[str, Message]:
    def check() -> dict[str, Message] | None:
        messages = _messages(engine)
        return messages if all(messages[i].status == status for i in ids) else None

    return await wait_until_async(
        check,
        DEADLINE,
        f"{len(ids)} message(s) to be {status}",
        details=lambda: repr({i: m.status for i, m in _messages(engine).items()}),
    )


def _dlr_query(message_id: str, dlr_type: int, reply: str = "", smsc_id: str = "") -> str:
    return urllib.parse.urlencode(
        {
            "secret": SECRET,
            "id": message_id,
            "key": f"{message_id}.0",
            "type": str(dlr_type),
            "reply": reply,
            "smsc_id": smsc_id,
            "ts": "1767225600",
            "smsc": "fake-mt",
        }
    )


# -- without Kannel: the mappings ----------------------------------------------------------
def test_sendsms_answers_map_to_outcomes() -> None:
    accepted = interpret_sendsms_response(202, "0: Accepted for delivery", "m1")
    assert (accepted.outcome, accepted.provider_message_id, accepted.detail) == (
        SendOutcome.ACCEPTED,
        "m1",
        "",
    )
    queued = interpret_sendsms_response(202, "3: Queued for later delivery", "m1")
    assert queued.outcome == SendOutcome.ACCEPTED and "later" in queued.detail
    refused = interpret_sendsms_response(403, "Authorization failed for sendsms", "m1")
    assert refused.outcome == SendOutcome.TRANSIENT
    assert "credentials" in refused.detail and "password_env" in refused.detail
    bad = interpret_sendsms_response(400, "Missing receiver number, rejected", "m1")
    assert bad.outcome == SendOutcome.TRANSIENT
    assert "Missing receiver number" in bad.detail
    down = interpret_sendsms_response(503, "Sending failed.", "m1")
    assert down.outcome == SendOutcome.TRANSIENT and "503" in down.detail


@pytest.mark.parametrize(
    ("dlr_type", "reply", "reason"),
    [
        (16, "NACK/0x0000000b/Invalid Destination Address", DeliveryReason.INVALID_NUMBER),
        (2, "NACK/0x0000000B/Invalid Destination Address", DeliveryReason.INVALID_NUMBER),
        (16, "NACK/0x00000045/Submit failed", DeliveryReason.OTHER),
        (16, "NACK/0x00000058/Throttling error", DeliveryReason.NETWORK_ERROR),
        (2, "id:1 sub:001 dlvrd:000 submit date:2601010000 stat:EXPIRED err:000 text:", "expired"),
        (2, "id:1 sub:001 dlvrd:000 submit date:2601010000 stat:UNDELIV err:001 text:", "other"),
        (2, "", DeliveryReason.OTHER),
    ],
)
def test_failure_reasons_from_the_smsc_reply(dlr_type: int, reply: str, reason: str) -> None:
    assert failure_reason(dlr_type, reply) == reason


def _provider(tmp_path: Path, public_url: str = "http://127.0.0.1:8025", **extra: Any) -> Any:
    settings = KannelSettings.model_validate(
        {
            "type": "kannel",
            "sendsms_url": "http://127.0.0.1:13013/cgi-bin/sendsms",
            "username": "u",
            "password_env": PASSWORD_ENV,
            "callback_secret_env": SECRET_ENV,
            **extra,
        }
    )
    return KannelProvider(settings, ProviderContext("kannel", public_url, tmp_path))


def test_urls_given_to_kannel_hold_no_stray_escape_codes(tmp_path: Path, secrets_env: None) -> None:
    provider = _provider(tmp_path)
    assert provider.mo_url() == kannel_mo_url(
        f"http://127.0.0.1:8025/callbacks/kannel/mo?secret={SECRET}"
    )
    assert provider.mo_url().endswith(MO_QUERY)
    assert "SECRET" in provider.mo_url(redact=True) and SECRET not in provider.mo_url(redact=True)
    sms = OutgoingSms("abc123", "+33612345678", "100% sure", None, "GSM-7", 1, "abc123.0")
    params = provider.request_params(sms)
    assert params["dlr-url"] == (
        f"http://127.0.0.1:8025/callbacks/kannel/dlr?secret={SECRET}&id=abc123&key=abc123.0&"
        + DLR_QUERY
    )
    assert (params["coding"], params["charset"], params["dlr-mask"]) == ("0", "UTF-8", "31")
    assert "from" not in params  # Kannel's default-sender then applies
    ucs2 = OutgoingSms("abc124", "+33612345678", "Привет", "MyShop", "UCS-2", 1, "abc124.0")
    assert provider.request_params(ucs2)["coding"] == "2"
    assert provider.request_params(ucs2)["from"] == "MyShop"
    no_reports = _provider(tmp_path, dlr_mask=0, smsc_id="operator1")
    assert "dlr-url" not in no_reports.request_params(sms)
    assert no_reports.request_params(sms)["smsc"] == "operator1"


def test_settings_errors_name_the_key(
    tmp_path: Path, secrets_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="password is missing.*password_env"):
        _provider(tmp_path, password_env=None)
    monkeypatch.setenv(SECRET_ENV, "not/url safe")
    with pytest.raises(ConfigError, match="callback_secret.*letters, digits"):
        _provider(tmp_path)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with pytest.raises(ConfigError, match="public_url contains '%'"):
        _provider(tmp_path, public_url="http://host/sms%20hub")
    with pytest.raises(ValueError, match="sendsms URL"):
        KannelSettings.model_validate(
            {"type": "kannel", "sendsms_url": "127.0.0.1:13013", "username": "u"}
        )


# -- with Kannel: MT, reports, MO ----------------------------------------------------------
async def test_mt_reaches_fakesmsc_exactly_and_is_delivered(
    db_url: str,
    tmp_path: Path,
    engine: Engine,
    account: str,
    make_hub: MakeHub,
    kannel_factory: KannelFactory,  # noqa: F811
    secrets_env: None,
) -> None:
    port = free_port()
    kannel = kannel_factory(mo_url=_mo_url(port))
    config = _config(db_url, tmp_path, port, kannel.sendsms_url)
    gsm = "Hello from smshub: 100% sure @ £ € {x} [y] ~ ^ | \\ & a+b=c"
    ucs2 = "Привет 😀"
    long = " ".join(f"Part of a long reminder, sentence {i}." for i in range(14))[:420]
    async with running_hub(make_hub, config, port) as hub:
        [m_gsm] = _submit(hub, gsm, "+33600000011")
        [m_ucs2] = _submit(hub, ucs2, "+33600000012")
        [m_long] = _submit(hub, long, "+33600000013")
        messages = _messages(engine)
        assert (messages[m_ucs2].encoding, messages[m_long].segments) == ("UCS-2", 3)
        assert await hub.dispatcher.drain() == 3  # type: ignore[union-attr]

        received = await kannel.wait_for_sms_async(3, DEADLINE)
        by_receiver = {sms.receiver: sms for sms in received}
        assert len(received) == 3
        assert (by_receiver["+33600000011"].coding, by_receiver["+33600000011"].text) == (
            "gsm",
            gsm,
        )
        assert (by_receiver["+33600000012"].coding, by_receiver["+33600000012"].text) == (
            "ucs2",
            ucs2,
        )
        assert by_receiver["+33600000013"].text == long
        assert len(by_receiver["+33600000013"].parts) == 3
        assert {sms.sender for sms in received} == {SENDER}

        # fakesmsc reports every message as delivered (type 1), after an SMSC success (8).
        ids = [m_gsm, m_ucs2, m_long]
        delivered = await _until_status(engine, ids, "delivered")
        for mid in ids:
            assert (delivered[mid].provider, delivered[mid].provider_message_id) == ("kannel", mid)
        for mid in ids:

            def three_events(mid: str = mid) -> list[MessageEvent] | None:
                return e if len(e := _events(engine, mid)) >= 3 else None

            # The type-8 report may be stored a moment after the type 1.
            events = await wait_until_async(three_events, DEADLINE, "the SMSC-success report")
            # In any order: fakesmsc reports before the dispatcher has written "sent".
            assert sorted(e.status for e in events) == ["delivered", "pending", "sent"]


async def test_mo_from_a_phone_becomes_an_inbound_message(
    db_url: str,
    tmp_path: Path,
    engine: Engine,
    account: str,
    make_hub: MakeHub,
    kannel_factory: KannelFactory,  # noqa: F811
    secrets_env: None,
) -> None:
    port = free_port()
    kannel = kannel_factory(mo_url=_mo_url(port))
    config = _config(db_url, tmp_path, port, kannel.sendsms_url)
    async with running_hub(make_hub, config, port) as hub:
        assert hub.providers["kannel"].mo_url() == kannel.mo_url  # type: ignore[attr-defined]
        await kannel.send_mo_async("+33610000002", SENDER, "Ça va? 😀")
        await kannel.send_mo_async("0610000003", SENDER, "two  spaces\nand a newline")
        inbound = await wait_until_async(
            lambda: found if len(found := _inbound(engine)) >= 2 else None,
            DEADLINE,
            "2 inbound SMS in the hub",
        )
        texts = {i.sender: (i.text, i.recipient, i.provider) for i in inbound}
        assert texts == {
            "+33610000002": ("Ça va? 😀", SENDER, "kannel"),
            # National numbers are read with the hub's region.
            "+33610000003": ("two  spaces\nand a newline", SENDER, "kannel"),
        }
        assert all(len(i.event_key) == 36 for i in inbound)  # Kannel's %I
        # max-messages = 0 in the sms-service (the setting users need): smsbox sends no reply.
        await wait_until_async(
            lambda: kannel.smsbox_log.read_text("utf-8", "replace").count("No reply sent") >= 2,
            DEADLINE,
            "smsbox to drop the replies",
        )
        assert kannel.mt_messages() == []


async def test_callbacks_refuse_bad_secrets_and_malformed_requests(
    db_url: str, tmp_path: Path, engine: Engine, account: str, make_hub: MakeHub, secrets_env: None
) -> None:
    port = free_port()
    config = _config(db_url, tmp_path, port, f"http://127.0.0.1:{free_port()}/cgi-bin/sendsms")
    async with running_hub(make_hub, config, port) as hub, httpx.AsyncClient() as client:
        base = f"http://127.0.0.1:{port}/callbacks/kannel"
        mo = {
            "from": "+33610000009",
            "to": SENDER,
            "text": "Hi",
            "coding": "0",
            "charset": "UTF-8",
            "smsc": "x",
            "id": "a3f1c0de-0000-4000-8000-000000000001",
            "ts": "1767225600",
        }
        for secret in ("wrong", None):
            query = {**mo, **({"secret": secret} if secret else {})}
            response = await client.get(f"{base}/mo", params=query)
            assert response.status_code == 401, response.text
            response = await client.get(f"{base}/dlr?" + _dlr_query("nope", 1).replace(SECRET, "x"))
            assert response.status_code == 401
        assert _inbound(engine) == []

        cases: list[tuple[dict[str, str | None], str]] = [
            ({"from": None}, "from"),
            ({"text": None}, "text"),
            ({"id": None}, "id"),
            ({"coding": "7"}, "coding"),
            ({"charset": "NO-SUCH-CHARSET"}, "charset"),
            ({"charset": "8-BIT", "coding": "1"}, "binary"),
            ({"ts": "yesterday"}, "ts"),
            ({"from": "1" * 40}, "32 characters"),
        ]
        for broken, what in cases:
            params = {k: v for k, v in {**mo, **broken, "secret": SECRET}.items() if v is not None}
            response = await client.get(f"{base}/mo", params=params)
            assert response.status_code == 400, (broken, response.text)
            assert what in response.text
        response = await client.get(
            f"{base}/dlr?" + _dlr_query("m1", 1).replace("type=1", "type=x")
        )
        assert response.status_code == 400 and "type" in response.text
        assert _inbound(engine) == []

        # A valid MO, twice (smsbox retries with the same %I): stored once, answered empty.
        utf16 = "Ça va? 😀".encode("utf-16-be")
        raw_query = urllib.parse.urlencode(
            {**mo, "secret": SECRET, "coding": "2", "charset": "UTF-16BE"}
        )
        raw_query = raw_query.replace("text=Hi", "text=" + urllib.parse.quote_from_bytes(utf16))
        for _ in range(2):
            response = await client.get(f"{base}/mo?{raw_query}")
            assert (response.status_code, response.text) == (200, "")
        [stored] = _inbound(engine)
        assert (stored.sender, stored.text) == ("+33610000009", "Ça va? 😀")
        assert hub.providers["kannel"].deduplicates is False


async def test_reports_of_each_kannel_type_move_the_message(
    db_url: str,
    tmp_path: Path,
    engine: Engine,
    account: str,
    make_hub: MakeHub,
    kannel_factory: KannelFactory,  # noqa: F811
    secrets_env: None,
) -> None:
    port = free_port()
    kannel = kannel_factory(mo_url=_mo_url(port))
    # No reports from fakesmsc here: the test posts the types fakesmsc never produces.
    config = _config(db_url, tmp_path, port, kannel.sendsms_url, dlr_mask=0)
    async with running_hub(make_hub, config, port) as hub, httpx.AsyncClient() as client:
        ids = _submit(hub, "report me", *(f"+3360000002{i}" for i in range(5)))
        assert await hub.dispatcher.drain() == 5  # type: ignore[union-attr]
        await kannel.wait_for_sms_async(5, DEADLINE)
        assert {m.status for m in _messages(engine).values()} == {"sent"}
        invalid, rejected, expired, twice, pending = ids
        base = f"http://127.0.0.1:{port}/callbacks/kannel/dlr?"
        posts = [
            (invalid, 16, "NACK/0x0000000b/Invalid Destination Address", ""),
            (rejected, 2, "NACK/0x00000045/Submit failed", ""),
            (expired, 2, "id:7 sub:001 dlvrd:000 stat:EXPIRED err:000 text:", "7"),
            (twice, 1, "", "smsc-42"),
            (twice, 1, "", "smsc-42"),
            (pending, 4, "", ""),
            (pending, 8, "ACK/", ""),
        ]
        for mid, dlr_type, reply, smsc_id in posts:
            response = await client.get(base + _dlr_query(mid, dlr_type, reply, smsc_id))
            assert response.status_code == 200, response.text
        messages = _messages(engine)
        outcome = {mid: (messages[mid].status, messages[mid].reason) for mid in ids}
        assert outcome == {
            invalid: ("undelivered", "invalid_number"),
            rejected: ("undelivered", "other"),
            expired: ("undelivered", "expired"),
            twice: ("delivered", None),
            pending: ("sent", None),
        }
        assert "Invalid Destination Address" in messages[invalid].detail
        # The same report twice is one event.
        assert [e.status for e in _events(engine, twice)] == ["sent", "delivered"]
        assert [e.status for e in _events(engine, pending)] == ["sent", "pending", "pending"]


# -- outages and refusals ------------------------------------------------------------------
async def test_kannel_down_requeues_with_a_detail_then_fails_over(
    db_url: str, tmp_path: Path, engine: Engine, account: str, make_hub: MakeHub, secrets_env: None
) -> None:
    port = free_port()
    closed = f"http://127.0.0.1:{free_port()}/cgi-bin/sendsms"
    config = _config(db_url, tmp_path / "alone", port, closed)
    async with running_hub(make_hub, config, port) as hub:
        [mid] = _submit(hub, "nobody home", "+33600000031")
        # One round: drain() would retry at once (tiny test backoff) until the provider is
        # marked down, and that detail would hide the reason this test looks for.
        await hub.dispatcher.run_once()  # type: ignore[union-attr]
        message = _messages(engine)[mid]
        assert message.status == "queued"
        assert "cannot reach Kannel" in message.detail and closed in message.detail

    config = _config(db_url, tmp_path / "failover", port, closed, route=["kannel", "simulator"])
    async with running_hub(make_hub, config, port) as hub:
        with session_scope(engine) as s:
            s.get(Message, mid).due_at = message.created_at  # type: ignore[union-attr]
        await hub.dispatcher.drain()  # type: ignore[union-attr]
        message = _messages(engine)[mid]
        assert (message.status, message.provider) == ("sent", "simulator")


async def test_kannel_that_takes_the_request_but_never_answers_leaves_it_unknown(
    db_url: str,
    tmp_path: Path,
    engine: Engine,
    account: str,
    secrets_env: None,
    make_hub: MakeHub,
) -> None:
    """sendsms has no idempotency key: a request Kannel may have taken is not sent again,
    neither through Kannel nor through the next provider (it used to be, as TRANSIENT)."""
    port = free_port()
    async with DroppingHttpServer("silent") as smsbox:
        sendsms = f"{smsbox.url}/cgi-bin/sendsms"
        config = _config(
            db_url, tmp_path, port, sendsms, route=["kannel", "simulator"], timeout=0.5
        )
        async with running_hub(make_hub, config, port) as hub:
            [mid] = _submit(hub, "maybe sent", "+33600000032")
            await hub.dispatcher.run_once()  # type: ignore[union-attr]
            message = _messages(engine)[mid]
            assert len(smsbox.requests) == 1
    assert (message.status, message.provider) == ("unknown", "kannel")
    assert "may have taken the message" in message.detail


async def test_refusals_by_kannel_fail_over_and_stay_visible(
    db_url: str,
    tmp_path: Path,
    engine: Engine,
    account: str,
    make_hub: MakeHub,
    kannel_factory: KannelFactory,  # noqa: F811
    secrets_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    kannel = kannel_factory(mo_url=_mo_url(port))
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    config = _config(db_url, tmp_path, port, kannel.sendsms_url, max_messages=2)
    async with running_hub(make_hub, config, port) as hub:
        [wrong_password] = _submit(hub, "short", "+33600000041")
        [too_long] = _submit(hub, "x" * 400, "+33600000042")
        await hub.dispatcher.run_once()  # type: ignore[union-attr]
        messages = _messages(engine)
        assert messages[wrong_password].status == "queued"
        assert "HTTP 403" in messages[wrong_password].detail
        assert messages[too_long].status == "queued"
        assert "needs 3 parts" in messages[too_long].detail
        assert kannel.mt_messages() == []

    config = _config(
        db_url, tmp_path, port, kannel.sendsms_url, max_messages=2, route=["kannel", "simulator"]
    )
    async with running_hub(make_hub, config, port) as hub:
        with session_scope(engine) as s:
            for mid in (wrong_password, too_long):
                s.get(Message, mid).due_at = messages[mid].created_at  # type: ignore[union-attr]
        await hub.dispatcher.drain()  # type: ignore[union-attr]
        messages = _messages(engine)
        assert {messages[m].provider for m in (wrong_password, too_long)} == {"simulator"}
        assert {messages[m].status for m in (wrong_password, too_long)} == {"sent"}
