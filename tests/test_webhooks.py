"""Outgoing webhooks: queued in the transaction of the change, signed, retried, fanned out to
parent accounts, posted to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpcore
import pytest
from sqlalchemy import Engine
from sqlmodel import col, select
from typer.testing import CliRunner

from hub.core.timeutil import utcnow
from hub.errors import ConflictError, InvalidInput
from hub.inbound import webhooks
from hub.outbound import host_refusal
from hub.sending import outbox
from hub.sending import submit as sending
from hub.sending.accounts import create_account, get_account
from hub.store.db import session_scope
from hub.store.models import Message, WebhookDelivery, WebhookEndpoint
from tests.conftest import make_config
from tests.servers._util import BackgroundServer


class Receiver:
    """A local HTTP server that records every request and answers scripted status codes."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[int] = []
        # Seconds each answer takes (a slow receiver).
        self.delay = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                    )
                    status = receiver.answers.pop(0) if receiver.answers else 200
                time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"receiver is broken")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = BackgroundServer(Handler).start()

    @property
    def url(self) -> str:
        return f"{self.server.url}/hooks"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
async def sender(engine: Engine) -> Any:
    s = webhooks.WebhookSender(engine)
    yield s
    await s.stop()


def _add(
    engine: Engine,
    account: str,
    url: str,
    events: list[str] | None = None,
    *,
    private_ok: bool = True,
) -> tuple[int, str]:
    """Add an endpoint; by default as the administrator would (the receivers are local)."""
    with session_scope(engine) as s:
        endpoint, secret = webhooks.add_endpoint(
            s, account, url, events or ["*"], private_ok=private_ok
        )
    assert endpoint.id is not None
    return endpoint.id, secret


def _send(hub: Any, account: str, *numbers: str) -> list[str]:
    result = sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(account=account, recipients=list(numbers), text="hello"),
    )
    return [r.message_id for r in result.recipients if r.message_id]


async def _settle(hub: Any) -> None:
    await hub.dispatcher.drain()
    await hub.providers["simulator"].flush_reports()


def _deliveries(engine: Engine) -> list[WebhookDelivery]:
    with session_scope(engine) as s:
        return list(s.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id))).all())


def _make_due(engine: Engine) -> None:
    with session_scope(engine) as s:
        for row in s.exec(select(WebhookDelivery).where(WebhookDelivery.status == "pending")):
            row.due_at = utcnow()
            s.add(row)


# -- end to end through the simulator ----------------------------------------------------------
async def test_delivered_report_is_notified_once_and_signed(hub, account, receiver, sender):
    endpoint_id, secret = _add(hub.engine, "acme", receiver.url)
    [mid] = _send(hub, "acme", "0612345678")
    await _settle(hub)

    [delivery] = _deliveries(hub.engine)
    assert (delivery.endpoint_id, delivery.event_type, delivery.event_id) == (
        endpoint_id,
        "message.delivered",
        f"msg.{mid}.delivered",
    )
    assert await sender.send_due() == 1
    [request] = receiver.requests
    headers = request["headers"]
    assert request["path"] == "/hooks"
    assert headers["Content-Type"] == "application/json"
    assert headers["Smshub-Webhook-Id"] == f"msg.{mid}.delivered"
    assert headers["Smshub-Event-Type"] == "message.delivered"
    ts, sig = headers["Smshub-Webhook-Timestamp"], headers["Smshub-Signature"]
    assert sig.startswith("v1=")
    assert webhooks.verify_signature(secret, ts, request["body"], sig)
    # A receiver holding another secret, or a body changed on the way, does not verify.
    assert not webhooks.verify_signature(webhooks.new_secret(), ts, request["body"], sig)
    assert not webhooks.verify_signature(secret, ts, request["body"] + b" ", sig)
    assert not webhooks.verify_signature(secret, int(ts) - 1, request["body"], sig)

    body = json.loads(request["body"])
    assert set(body) == {"id", "type", "created_at", "account", "data"}
    assert (body["id"], body["type"], body["account"]) == (
        f"msg.{mid}.delivered",
        "message.delivered",
        "acme",
    )
    assert body["created_at"].endswith("Z")
    data = body["data"]
    assert (data["message_id"], data["status"], data["reason"], data["recipient"]) == (
        mid,
        "delivered",
        None,
        "+33612345678",
    )
    assert data["provider"] == "simulator" and data["final_at"] and data["sent_at"]

    # The same report again (a provider retrying its callback): no second delivery.
    with session_scope(hub.engine) as s:
        pmid = s.get(Message, mid).provider_message_id  # type: ignore[union-attr]
    report = {"reports": [{"id": pmid, "message_id": mid, "status": "delivered"}]}
    sim = hub.providers["simulator"]
    r = await hub.hub_client.post(
        "/callbacks/simulator/dlr", json=report, headers={"X-Smshub-Secret": sim.secret}
    )
    assert r.status_code == 200
    # And the producer itself is idempotent per (endpoint, event id).
    with session_scope(hub.engine) as s:
        message = s.get(Message, mid)
        assert message is not None
        assert webhooks.message_event(s, message) == []
    assert len(_deliveries(hub.engine)) == 1
    assert await sender.send_due() == 0
    assert len(receiver.requests) == 1
    [done] = _deliveries(hub.engine)
    assert (done.status, done.attempts, done.last_status_code, done.last_error) == (
        "delivered",
        1,
        200,
        "",
    )
    assert done.delivered_at is not None


async def test_a_500_is_retried_later_then_delivered(hub, account, receiver, sender):
    _add(hub.engine, "acme", receiver.url)
    receiver.answers = [500]
    _send(hub, "acme", "0612345678")
    await _settle(hub)

    before = utcnow()
    assert await sender.send_due() == 0
    [row] = _deliveries(hub.engine)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
    assert "HTTP 500" in row.last_error and "receiver is broken" in row.last_error
    wait = (row.due_at.replace(tzinfo=before.tzinfo) - before).total_seconds()
    assert 25 <= wait <= 35  # first retry after 30 s
    # Not due yet: nothing is sent.
    assert await sender.send_due() == 0
    assert len(receiver.requests) == 1

    _make_due(hub.engine)
    assert await sender.send_due() == 1
    [row] = _deliveries(hub.engine)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == (
        "delivered",
        2,
        200,
        "",
    )
    first, second = receiver.requests
    # The same event (receivers deduplicate on the id), signed again at its own time.
    assert first["body"] == second["body"]
    assert first["headers"]["Smshub-Webhook-Id"] == second["headers"]["Smshub-Webhook-Id"]


async def test_unreachable_endpoint_is_given_up_after_three_days(engine, account, sender):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint_id, _ = _add(engine, "acme", f"http://127.0.0.1:{port}/gone")
    with session_scope(engine) as s:
        acme = get_account(s, "acme")
        assert acme.id is not None
        webhooks.queue_event(s, acme.id, "link.clicked", {"url": "https://x.example"}, "lc.1")
    assert await sender.send_due() == 0
    [row] = _deliveries(engine)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, None)
    assert "ConnectError" in row.last_error
    with session_scope(engine) as s:
        stored = s.get(WebhookDelivery, row.id)
        assert stored is not None
        stored.created_at = utcnow() - timedelta(days=3)
        stored.due_at = utcnow()
    assert await sender.send_due() == 0
    [row] = _deliveries(engine)
    assert (row.status, row.attempts) == ("failed", 2)
    with session_scope(engine) as s:
        assert s.get(WebhookEndpoint, endpoint_id).enabled  # type: ignore[union-attr]


async def test_410_gone_disables_the_endpoint(engine, account, receiver, sender):
    endpoint_id, _ = _add(engine, "acme", receiver.url)
    receiver.answers = [410]
    with session_scope(engine) as s:
        acme_id = get_account(s, "acme").id
        assert acme_id is not None
        webhooks.queue_event(s, acme_id, "optout.created", {"number": "+33612345678"}, "o.1")
        webhooks.queue_event(s, acme_id, "optout.created", {"number": "+33612345679"}, "o.2")
        # The same event twice is one delivery.
        assert webhooks.queue_event(s, acme_id, "optout.created", {}, "o.1") == []
    assert await sender.send_due(limit=1) == 0
    rows = _deliveries(engine)
    assert [(r.status, r.last_status_code) for r in rows] == [("failed", 410), ("pending", None)]
    assert "endpoint disabled" in rows[0].last_error
    with session_scope(engine) as s:
        assert not s.get(WebhookEndpoint, endpoint_id).enabled  # type: ignore[union-attr]
        # A disabled endpoint gets no new events and its queued ones wait.
        assert webhooks.queue_event(s, acme_id, "optout.created", {}, "o.3") == []
    assert await sender.send_due() == 0
    assert len(receiver.requests) == 1
    with session_scope(engine) as s:
        webhooks.disable_endpoint(s, endpoint_id, False)
    assert await sender.send_due() == 1
    assert [r.status for r in _deliveries(engine)] == ["failed", "delivered"]


def _queue_optouts(engine: Engine, count: int) -> None:
    with session_scope(engine) as s:
        acme_id = get_account(s, "acme").id
        assert acme_id is not None
        for n in range(count):
            webhooks.queue_event(s, acme_id, "optout.created", {"n": n}, f"lease.{n}")


async def test_a_dead_senders_deliveries_come_back_after_the_lease(engine, account, receiver):
    _add(engine, "acme", receiver.url)
    _queue_optouts(engine, 3)
    lease = timedelta(seconds=1)
    dead = webhooks.WebhookSender(engine, lease=lease)
    jobs, _ = dead._claim(10)  # claimed, then the process died
    assert len(jobs) == 3
    other = webhooks.WebhookSender(engine, lease=lease)
    try:
        assert await other.send_due() == 0, "a living lease was taken"
        await asyncio.sleep(1.1)
        assert await other.send_due() == 3
    finally:
        await other.stop()
        await dead.stop()
    assert sorted(json.loads(r["body"])["data"]["n"] for r in receiver.requests) == [0, 1, 2]


async def test_a_slow_receiver_keeps_its_claim(engine, account, receiver):
    """Posts taking longer than the lease: renewals keep the claim, no second sender posts
    them too (the fixed two-minute lease used to be all a slow batch had)."""
    _add(engine, "acme", receiver.url)
    _queue_optouts(engine, 2)
    receiver.delay = 1.5
    lease = timedelta(seconds=2)
    # One post at a time: the two posts take 3 s, half as long again as the lease.
    first = webhooks.WebhookSender(engine, concurrency=1, lease=lease)
    second = webhooks.WebhookSender(engine, lease=lease)
    claimed = asyncio.Event()
    loop = asyncio.get_running_loop()
    claim = first._claim

    def claim_and_tell(limit: int, only: int | None = None) -> Any:
        result = claim(limit, only)
        loop.call_soon_threadsafe(claimed.set)
        return result

    first._claim = claim_and_tell  # type: ignore[method-assign]
    try:
        sending_ = asyncio.create_task(first.send_due())
        await claimed.wait()
        began = time.monotonic()
        while not sending_.done():
            assert await second.send_due() == 0
            await asyncio.sleep(0.05)
        assert await sending_ == 2 and time.monotonic() - began > lease.total_seconds()
    finally:
        await first.stop()
        await second.stop()
    assert [json.loads(r["body"])["data"]["n"] for r in receiver.requests] in ([0, 1], [1, 0])
    assert {r.status for r in _deliveries(engine)} == {"delivered"}


async def test_the_hubs_webhook_claims_last_claim_lease_seconds(make_hub):
    hub = await make_hub(engine=None, start=False, dispatcher={"claim_lease_seconds": 4.0})
    assert hub.webhook_sender.lease == timedelta(seconds=4)


async def test_sub_account_events_reach_the_parent_never_another_account(hub, account, sender):
    receivers = {name: Receiver() for name in ("acme", "shop", "globex")}
    try:
        with session_scope(hub.engine) as s:
            create_account(s, "shop", parent="acme", credit_mode="unlimited")
            create_account(s, "globex")
        ids = {name: _add(hub.engine, name, r.url)[0] for name, r in receivers.items()}

        [shop_mid] = _send(hub, "shop", "0612345678")
        [acme_mid] = _send(hub, "acme", "0612345679")
        await _settle(hub)
        assert await sender.send_due() == 3

        got = {
            name: [(b["type"], b["account"]) for b in r.bodies()] for name, r in receivers.items()
        }
        assert got["shop"] == [("message.delivered", "shop")]
        assert sorted(got["acme"]) == [("message.delivered", "acme"), ("message.delivered", "shop")]
        assert got["globex"] == []
        by_endpoint = {(d.endpoint_id, d.event_id) for d in _deliveries(hub.engine)}
        assert by_endpoint == {
            (ids["shop"], f"msg.{shop_mid}.delivered"),
            (ids["acme"], f"msg.{shop_mid}.delivered"),
            (ids["acme"], f"msg.{acme_mid}.delivered"),
        }
    finally:
        for r in receivers.values():
            r.close()


async def test_inbound_sms_is_notified_to_subscribed_endpoints(hub, account, receiver, sender):
    only_inbound = Receiver()
    try:
        _add(hub.engine, "acme", receiver.url)
        _add(hub.engine, "acme", only_inbound.url, ["inbound.received"])
        [mid] = _send(hub, "acme", "0612345678")
        await _settle(hub)
        assert await hub.providers["simulator"].receive("+33612345678", "See you at 10")
        assert await sender.send_due() == 3

        # Deliveries are posted concurrently: their order is not part of the contract.
        assert sorted(b["type"] for b in receiver.bodies()) == [
            "inbound.received",
            "message.delivered",
        ]
        [inbound] = only_inbound.bodies()
        assert inbound["type"] == "inbound.received"
        assert inbound["account"] == "acme"
        data = inbound["data"]
        assert (data["from"], data["text"], data["reply_to_message_id"]) == (
            "+33612345678",
            "See you at 10",
            mid,
        )
        assert data["provider"] == "simulator" and data["inbound_id"]
        assert inbound["id"] == f"in.{data['inbound_id']}"
    finally:
        only_inbound.close()


async def test_failed_undelivered_and_dr_unavailable_are_message_failed(
    engine, account, receiver, sender, make_hub
):
    hub = await make_hub(
        providers={
            "simulator": {
                "type": "simulator",
                "report_delay": 3600,
                "reject_numbers": ["+33611111111"],
                "invalid_numbers": ["+33622222222"],
            }
        },
    )
    try:
        _add(engine, "acme", receiver.url, ["message.failed"])
        rejected, invalid = _send(hub, "acme", "0611111111", "0622222222")
        await _settle(hub)
        [silent] = _send(hub, "acme", "0633333333")
        await hub.dispatcher.drain()
        hub.providers["simulator"]._pending.clear()  # its report never comes
        assert outbox.expire_reports(engine, timedelta(hours=48), utcnow() + timedelta(days=3))
        assert await sender.send_due() == 3
        found = {b["data"]["message_id"]: b for b in receiver.bodies()}
        assert {
            m: (b["type"], b["data"]["status"], b["data"]["reason"]) for m, b in found.items()
        } == {
            rejected: ("message.failed", "failed", "invalid_number"),
            invalid: ("message.failed", "undelivered", "invalid_number"),
            silent: ("message.failed", "dr_unavailable", "dr_unavailable"),
        }
    finally:
        await hub.stop()


# -- endpoints, events, signatures -------------------------------------------------------------
def test_endpoint_validation_and_management(engine, account):
    with session_scope(engine) as s:
        for bad in ["ftp://x.example/", "https://", "not a url", "https://x.example/#frag", ""]:
            with pytest.raises(InvalidInput):
                webhooks.add_endpoint(s, "acme", bad)
        with pytest.raises(InvalidInput, match="unknown webhook event 'message.sent'"):
            webhooks.add_endpoint(s, "acme", "https://x.example/", ["message.sent"])
        endpoint, secret = webhooks.add_endpoint(
            s, "acme", "https://x.example/h", ["message.failed", "link.clicked,message.failed"]
        )
        assert secret.startswith("whsec_") and len(secret) > 40
        assert endpoint.events == "message.failed,link.clicked"
        every, _ = webhooks.add_endpoint(s, "acme", "https://y.example/h", ["*", "message.failed"])
        assert every.events == "*"
        assert [e.url for e in webhooks.list_endpoints(s, "acme")] == [
            "https://x.example/h",
            "https://y.example/h",
        ]
        acme_id = get_account(s, "acme").id
        assert acme_id is not None
        with pytest.raises(InvalidInput):
            webhooks.queue_event(s, acme_id, "bogus", {}, "b.1")
        rows = webhooks.queue_event(s, acme_id, "link.clicked", {"url": "https://z"}, "l.1")
        assert len(rows) == 2
        assert webhooks.queue_event(s, acme_id, "inbound.received", {}, "i.1")[0].endpoint_id == (
            every.id
        )
        assert endpoint.id is not None
        webhooks.remove_endpoint(s, endpoint.id)
        assert [e.id for e in webhooks.list_endpoints(s)] == [every.id]
        assert {d.endpoint_id for d in webhooks.delivery_log(s)} == {every.id}
        webhooks.disable_endpoint(s, every.id or 0)
        with pytest.raises(ConflictError):
            webhooks.queue_ping(s, every.id or 0)


def test_verify_signature_checks_age_and_accepts_any_listed_signature():
    secret = "whsec_test"
    body = b'{"id":"x"}'
    good = webhooks.signature_header(secret, 1_700_000_000, body)
    assert webhooks.verify_signature(secret, "1700000000", body, good, now=1_700_000_100)
    assert webhooks.verify_signature(secret, "1700000000", body.decode(), good, now=1_700_000_100)
    assert not webhooks.verify_signature(secret, "1700000000", body, good, now=1_700_000_400)
    assert webhooks.verify_signature(secret, "1700000000", body, good, tolerance=0, now=0)
    rotated = f"v1={'0' * 64} {good}"
    assert webhooks.verify_signature(secret, "1700000000", body, rotated, now=1_700_000_000)
    for bad in ["", "v1=", "v0=" + good[3:], "v1=é", good.upper()]:
        assert not webhooks.verify_signature(secret, "1700000000", body, bad, now=1_700_000_000)
    assert not webhooks.verify_signature(secret, "soon", body, good, now=1_700_000_000)
    # The documented openssl recipe gives the same hex.
    import hashlib
    import hmac

    expected = hmac.new(secret.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert good == f"v1={expected}"


def test_retry_schedule_doubles_from_30_seconds_up_to_6_hours():
    delays = [webhooks.retry_delay(n).total_seconds() for n in range(1, 14)]
    assert delays[:5] == [30, 60, 120, 240, 480]
    assert max(delays) == 6 * 3600 and delays[-1] == 6 * 3600


# -- CLI ---------------------------------------------------------------------------------------
@pytest.fixture
def cli_run(db_url: str, tmp_path: Path) -> Any:
    from hub.cli import main as cli
    from hub.cli.webhooks import webhooks_app

    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        cli._state.clear()
        cli._state["config"] = make_config(db_url, tmp_path)
        result = runner.invoke(webhooks_app, list(args))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    yield run
    cli._state.clear()


def test_cli_add_list_test_log_remove(cli_run, engine, account, receiver):
    code, out, _ = cli_run("add", "acme", receiver.url, "--event", "message.delivered", "--json")
    assert code == 0, out
    added = json.loads(out)
    assert added["secret"].startswith("whsec_") and added["events"] == ["message.delivered"]
    assert added["private_ok"] is True  # the administrator's: may reach the hub's network

    code, out, _ = cli_run("list", "--json")
    assert code == 0
    [listed] = json.loads(out)
    assert "secret" not in listed and listed["account"] == "acme"

    code, out, _ = cli_run("test", str(added["id"]))
    assert code == 0, out
    assert "delivered: HTTP 200" in out
    [ping] = receiver.requests
    assert json.loads(ping["body"])["type"] == "ping"
    assert webhooks.verify_signature(
        added["secret"],
        ping["headers"]["Smshub-Webhook-Timestamp"],
        ping["body"],
        ping["headers"]["Smshub-Signature"],
    )

    receiver.answers = [503]
    code, _, err = cli_run("test", str(added["id"]))
    assert code == 1 and "HTTP 503" in err

    code, out, _ = cli_run("log", "--endpoint", str(added["id"]), "--json")
    assert code == 0
    log = json.loads(out)
    assert [(d["event_type"], d["status"], d["last_status_code"]) for d in log] == [
        ("ping", "pending", 503),
        ("ping", "delivered", 200),
    ]
    code, out, _ = cli_run("log")
    assert code == 0 and "ping" in out

    code, out, _ = cli_run("add", "acme", "ftp://nope")
    assert code == 1
    code, _, err = cli_run("remove", "999")
    assert code == 1 and "no webhook endpoint with id 999" in err
    code, out, _ = cli_run("remove", str(added["id"]))
    assert code == 0 and "removed" in out
    code, out, _ = cli_run("list")
    assert out.strip() == "no webhook endpoints"


async def test_stop_notifies_optout_created(hub, account, receiver, sender):
    _add(hub.engine, "acme", receiver.url, ["optout.created"])
    _send(hub, "acme", "0612345678")
    await _settle(hub)
    assert await hub.providers["simulator"].receive("+33612345678", "STOP")
    assert await hub.providers["simulator"].receive("+33612345678", "STOP")
    assert await sender.send_due() == 1
    [body] = receiver.bodies()
    assert (body["type"], body["account"], body["data"]["number"]) == (
        "optout.created",
        "acme",
        "+33612345678",
    )


# -- console endpoints reach public addresses only (SSRF) --------------------------------------
REFUSED = "; console webhooks must reach a public address"


def _ping(engine: Engine, endpoint_id: int) -> None:
    with session_scope(engine) as s:
        webhooks.queue_ping(s, endpoint_id)


def _errors(engine: Engine) -> dict[int, tuple[str, int, str]]:
    return {d.endpoint_id: (d.status, d.attempts, d.last_error) for d in _deliveries(engine)}


async def test_console_endpoint_on_localhost_is_not_called_an_admin_one_is(
    engine, account, receiver, sender
):
    # Real resolution of "localhost": no resolver is patched here.
    url = receiver.url.replace("127.0.0.1", "localhost")
    console_id, _ = _add(engine, "acme", url, private_ok=False)
    _ping(engine, console_id)
    before = utcnow()
    assert await sender.send_due() == 0
    assert receiver.requests == []
    [row] = _deliveries(engine)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, None)
    assert re.fullmatch(
        r"not sent: localhost resolves to (127\.0\.0\.1|::1), a loopback address "
        r"\(this machine\)" + re.escape(REFUSED),
        row.last_error,
    ), row.last_error
    # Retried like an unreachable endpoint: a DNS change can fix it.
    wait = (row.due_at.replace(tzinfo=before.tzinfo) - before).total_seconds()
    assert 25 <= wait <= 35

    admin_id, _ = _add(engine, "acme", url, private_ok=True)
    _ping(engine, admin_id)
    assert await sender.send_due() == 1
    [request] = receiver.requests
    assert json.loads(request["body"])["type"] == "ping"
    assert _errors(engine)[admin_id] == ("delivered", 1, "")


def test_cli_endpoint_may_point_at_localhost(cli_run, engine, account, receiver):
    url = receiver.url.replace("127.0.0.1", "localhost")
    code, out, _ = cli_run("add", "acme", url, "--json")
    assert code == 0, out
    added = json.loads(out)
    assert added["private_ok"] is True
    code, out, _ = cli_run("test", str(added["id"]))
    assert code == 0 and "delivered: HTTP 200" in out, out
    assert len(receiver.requests) == 1


async def test_console_endpoint_named_for_a_private_address_is_not_called(
    engine, account, receiver
):
    port = receiver.server.port
    answers = {
        "hooks.acme.example": ["127.0.0.1"],
        "internal.example.com": ["10.0.0.5"],
        # ANY private address refuses the name, IPv4-mapped IPv6 included.
        "mixed.example.com": ["93.184.216.34", "::ffff:127.0.0.1"],
        "metadata.example.com": ["169.254.169.254"],
    }
    looked_up: list[tuple[str, int]] = []

    # The outbound guard's own resolver hook (the names are made up).
    def resolve(host: str, port: int) -> list[str]:
        looked_up.append((host, port))
        return answers[host]

    sender = webhooks.WebhookSender(engine, resolver=resolve)
    ids = {}
    for host in [*answers, "127.0.0.1"]:
        ids[host], _ = _add(engine, "acme", f"http://{host}:{port}/hooks", private_ok=False)
        _ping(engine, ids[host])
    try:
        assert await sender.send_due() == 0
    finally:
        await sender.stop()
    assert receiver.requests == []
    errors = _errors(engine)
    assert errors[ids["internal.example.com"]] == (
        "pending",
        1,
        "not sent: internal.example.com resolves to 10.0.0.5, a private address" + REFUSED,
    )
    assert errors[ids["hooks.acme.example"]][2] == (
        "not sent: hooks.acme.example resolves to 127.0.0.1, a loopback address (this machine)"
        + REFUSED
    )
    assert errors[ids["mixed.example.com"]][2].startswith(
        "not sent: mixed.example.com resolves to ::ffff:127.0.0.1, an IPv4-mapped address of "
        "127.0.0.1, a loopback address"
    )
    assert "169.254.169.254, a link-local address" in errors[ids["metadata.example.com"]][2]
    assert errors[ids["127.0.0.1"]][2] == (
        "not sent: 127.0.0.1 is a loopback address (this machine)" + REFUSED
    )
    # An IP literal is judged as it is, without a lookup.
    assert sorted(looked_up) == sorted((host, port) for host in answers)


class _Recording(httpcore.AsyncMockBackend):
    """httpcore's mock network: answers 200 to each connection, recording where it went."""

    def __init__(self) -> None:
        super().__init__([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.connected.append((host, port))
        return await super().connect_tcp(host, port, *args, **kwargs)


async def test_console_endpoint_on_a_public_address_is_posted_lookup_failures_retried(
    engine, account
):
    def resolve(host: str, port: int) -> list[str]:
        if host == "hooks.acme.example":
            return ["93.184.216.34", "2606:2800:220:1::", "::ffff:93.184.216.34"]
        if host == "slow.example.com":
            time.sleep(2)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    network = _Recording()
    ids = {}
    for host in ("hooks.acme.example", "nowhere.example.com", "slow.example.com"):
        ids[host], _ = _add(engine, "acme", f"https://{host}/in", private_ok=False)
        _ping(engine, ids[host])
    sender = webhooks.WebhookSender(engine, timeout=0.5, resolver=resolve, network=network)
    try:
        assert await sender.send_due() == 1
    finally:
        await sender.stop()
    # Connected to the checked address itself (TLS to the name is the mock's to skip).
    assert network.connected == [("93.184.216.34", 443)]
    errors = _errors(engine)
    assert errors[ids["hooks.acme.example"]] == ("delivered", 1, "")
    assert errors[ids["nowhere.example.com"]] == (
        "pending",
        1,
        "DNS lookup of nowhere.example.com failed: Name or service not known",
    )
    assert errors[ids["slow.example.com"]] == (
        "pending",
        1,
        "DNS lookup of slow.example.com timed out after 0.5 s",
    )


@pytest.mark.parametrize(
    ("host", "addresses", "reason"),
    [
        ("hooks.acme.example", ["93.184.216.34", "2606:2800:220:1::"], None),
        ("93.184.216.34", [], None),
        ("::ffff:93.184.216.34", [], None),
        ("10.1.2.3", [], "10.1.2.3 is a private address"),
        (
            "::ffff:10.1.2.3",
            [],
            "::ffff:10.1.2.3 is an IPv4-mapped address of 10.1.2.3, a private address",
        ),
        (
            "64:ff9b::a01:203",
            [],
            "64:ff9b::a01:203 is a NAT64 address of 10.1.2.3, a private address",
        ),
        ("::1", [], "::1 is a loopback address (this machine)"),
        ("0.0.0.0", [], "0.0.0.0 is the unspecified address (this machine)"),
        (
            "100.64.0.1",
            [],
            "100.64.0.1 is a shared address (carrier-grade NAT, 100.64.0.0/10)",
        ),
        ("Localhost.", [], "Localhost. names the hub itself"),
        ("api.localhost", [], "api.localhost names the hub itself"),
        (
            "v6.example",
            ["fe80::1%eth0"],
            "v6.example resolves to fe80::1%eth0, a link-local address",
        ),
        ("db.example", ["192.168.1.9"], "db.example resolves to 192.168.1.9, a private address"),
    ],
)
def test_host_refusal(host, addresses, reason):
    # The outbound guard's check, which webhooks use (it was webhooks.check_destination).
    assert host_refusal(host, addresses) == reason
