"""The dispatcher with the simulator: states, retries, failover, reports and recovery."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from sqlmodel import col, select

from hub.core.config import Config
from hub.core.timeutil import as_utc, utcnow
from hub.ports.sms import (
    OutgoingSms,
    ProviderSettings,
    SendOutcome,
    SendResult,
)
from hub.sending import outbox
from hub.sending import submit as sending
from hub.sending.callbacks import CallbackView
from hub.sending.credits import ledger_problems
from hub.sending.dispatch import Dispatcher
from hub.store.db import session_scope
from hub.store.models import InboundMessage, Message, MessageEvent


def _send(hub: Any, *numbers: str, text: str = "hello") -> list[str]:
    result = sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(account="acme", recipients=list(numbers), text=text),
    )
    return [r.message_id for r in result.recipients if r.message_id]


def _messages(engine: Any) -> dict[str, Message]:
    with session_scope(engine) as s:
        return {m.id: m for m in s.exec(select(Message)).all()}


def _simulator(hub: Any) -> Any:
    return hub.providers["simulator"]


async def _settle(hub: Any) -> None:
    """Send everything due and deliver every pending simulator report."""
    await hub.dispatcher.drain()
    await _simulator(hub).flush_reports()


async def test_message_reaches_delivered_through_the_simulator(hub, account):
    [mid] = _send(hub, "0612345678")
    await _settle(hub)
    message = _messages(hub.engine)[mid]
    assert message.status == "delivered"
    assert message.provider == "simulator"
    log = [e for e in _simulator(hub).read_log() if e["kind"] == "mt"]
    assert [(e["to"], e["text"]) for e in log] == [("+33612345678", "hello")]
    with session_scope(hub.engine) as s:
        events = s.exec(
            select(MessageEvent.status)
            .where(MessageEvent.message_id == mid)
            .order_by(col(MessageEvent.id))
        ).all()
    assert list(events) == ["sent", "delivered"]


async def test_same_report_twice_changes_nothing(hub, account):
    [mid] = _send(hub, "0612345678")
    await hub.dispatcher.drain()
    sim = _simulator(hub)
    body = {
        "reports": [
            {
                "id": _messages(hub.engine)[mid].provider_message_id,
                "message_id": mid,
                "status": "delivered",
            }
        ]
    }
    for _ in range(2):
        r = await hub.hub_client.post(
            "/callbacks/simulator/dlr", json=body, headers={"X-Smshub-Secret": sim.secret}
        )
        assert r.status_code == 200
    with session_scope(hub.engine) as s:
        events = s.exec(select(MessageEvent).where(MessageEvent.message_id == mid)).all()
    assert [e.status for e in events] == ["sent", "delivered"]


async def test_callback_with_bad_secret_or_body_is_refused(hub, account):
    r = await hub.hub_client.post(
        "/callbacks/simulator/dlr", json={"reports": []}, headers={"X-Smshub-Secret": "wrong"}
    )
    assert r.status_code == 401
    sim = _simulator(hub)
    r = await hub.hub_client.post(
        "/callbacks/simulator/dlr", content=b"{not json", headers={"X-Smshub-Secret": sim.secret}
    )
    assert r.status_code == 400
    assert "JSON" in r.text
    r = await hub.hub_client.post("/callbacks/nope/dlr", json={})
    assert r.status_code == 404


async def test_invalid_number_report_is_final_and_kept_charged(engine, account, make_hub):
    hub = await make_hub(
        providers={
            "simulator": {
                "type": "simulator",
                "report_delay": 3600,
                "invalid_numbers": ["+33698765432"],
            }
        },
    )
    try:
        ok, bad = _send(hub, "0612345678", "0698765432")
        await _settle(hub)
        messages = _messages(engine)
        assert messages[ok].status == "delivered"
        assert (messages[bad].status, messages[bad].reason) == ("undelivered", "invalid_number")
    finally:
        await hub.stop()


async def test_network_error_report_is_sent_again_as_a_new_send(engine, account, make_hub):
    hub = await make_hub()
    try:
        [mid] = _send(hub, "0612345678")
        await hub.dispatcher.drain()
        sim = _simulator(hub)
        pid = _messages(engine)[mid].provider_message_id
        body = {
            "reports": [
                {"id": pid, "message_id": mid, "status": "undelivered", "reason": "network_error"}
            ]
        }
        r = await hub.hub_client.post(
            "/callbacks/simulator/dlr", json=body, headers={"X-Smshub-Secret": sim.secret}
        )
        assert r.status_code == 200
        message = _messages(engine)[mid]
        assert (message.status, message.send_seq) == ("queued", 1)
        with session_scope(engine) as s:
            s.get(Message, mid).due_at = utcnow()  # type: ignore[union-attr]
        await hub.dispatcher.drain()
        keys = [e["key"] for e in sim.read_log() if e["kind"] == "mt"]
        assert keys == [f"{mid}.0", f"{mid}.1"]
    finally:
        await hub.stop()


class FlakyProvider:
    """A provider whose answers the test scripts."""

    settings_model: ClassVar[type[ProviderSettings]] = ProviderSettings

    def __init__(self, name: str, answers: list[SendOutcome], deduplicates: bool = False):
        self.name = name
        self.settings = ProviderSettings(type="flaky")
        self.answers = answers
        self.deduplicates = deduplicates
        self.sent: list[OutgoingSms] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def callbacks(self) -> Mapping[str, CallbackView]:
        return {}

    async def send(self, sms: OutgoingSms) -> SendResult:
        outcome = self.answers.pop(0) if self.answers else SendOutcome.ACCEPTED
        if outcome == SendOutcome.ACCEPTED:
            self.sent.append(sms)
            return SendResult(outcome, f"{self.name}-{len(self.sent)}")
        if outcome == SendOutcome.PERMANENT:
            return SendResult(outcome, reason="invalid_number", detail="unknown subscriber")
        if outcome == SendOutcome.UNKNOWN:
            return SendResult(outcome, detail="read timeout")
        raise ConnectionError("gateway unreachable")


def _dispatcher(engine: Any, config: Config, *providers: FlakyProvider) -> Dispatcher:
    config.routing.default = [p.name for p in providers]
    return Dispatcher(engine, config, {p.name: p for p in providers})  # type: ignore[misc]


def _submit(engine: Any, config: Config, *numbers: str) -> list[str]:
    result = sending.submit(
        engine, config, sending.SubmitRequest(account="acme", recipients=list(numbers), text="hi")
    )
    return [r.message_id for r in result.recipients if r.message_id]


async def test_outage_fails_over_to_the_next_provider(engine, config, account):
    primary = FlakyProvider("primary", [SendOutcome.TRANSIENT])
    backup = FlakyProvider("backup", [])
    d = _dispatcher(engine, config, primary, backup)
    [mid] = _submit(engine, config, "0612345678")
    await d.drain()
    message = _messages(engine)[mid]
    assert (message.status, message.provider) == ("sent", "backup")
    assert [s.to for s in backup.sent] == ["+33612345678"]


async def test_transient_failures_are_retried_then_fail_with_refund(engine, config, account):
    config.dispatcher.max_attempts = 3
    only = FlakyProvider("only", [SendOutcome.TRANSIENT] * 3)
    d = _dispatcher(engine, config, only)
    [mid] = _submit(engine, config, "0612345678")
    for _ in range(3):
        with session_scope(engine) as s:
            s.get(Message, mid).due_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
        await d.run_once()
    message = _messages(engine)[mid]
    assert (message.status, message.reason, message.attempts) == (
        "failed",
        "provider_unavailable",
        3,
    )
    with session_scope(engine) as s:
        from hub.sending.accounts import get_account

        assert get_account(s, "acme").balance == 100
        assert ledger_problems(s) == []


async def test_permanent_rejection_fails_at_once_and_refunds(engine, config, account):
    d = _dispatcher(engine, config, FlakyProvider("gw", [SendOutcome.PERMANENT]))
    [mid] = _submit(engine, config, "0612345678")
    await d.drain()
    message = _messages(engine)[mid]
    assert (message.status, message.reason) == ("failed", "invalid_number")
    with session_scope(engine) as s:
        from hub.sending.accounts import get_account

        assert get_account(s, "acme").balance == 100


async def test_prefix_routes_send_swiss_numbers_through_their_provider(engine, config, account):
    swiss = FlakyProvider("swiss", [])
    swiss.settings = ProviderSettings(type="flaky", prefixes=["+41"])
    rest = FlakyProvider("rest", [])
    d = _dispatcher(engine, config, swiss, rest)
    _submit(engine, config, "+41791234567", "0612345678")
    await d.drain()
    assert [s.to for s in swiss.sent] == ["+41791234567"]
    assert [s.to for s in rest.sent] == ["+33612345678"]


async def test_crashed_claims_are_resent_only_through_deduplicating_providers(
    engine, config, account
):
    ids = _submit(engine, config, "0612345678", "0698765432")
    claimed = outbox.claim(engine, "dead-worker", 10)
    assert len(claimed) == 2
    # Both provider calls had started when the worker died.
    assert outbox.mark_started(engine, "dead-worker", [c.id for c in claimed]) == set(ids)
    dedupe = FlakyProvider("dedupe", [], deduplicates=True)
    plain = FlakyProvider("plain", [], deduplicates=False)
    d_plain = _dispatcher(engine, config, plain)
    assert outbox.reconcile_abandoned(engine, d_plain.router.deduplicates, None) == (0, 2)
    assert {m.status for m in _messages(engine).values()} == {"unknown"}
    ids2 = _submit(engine, config, "0611111111")
    outbox.mark_started(
        engine, "dead-worker", [c.id for c in outbox.claim(engine, "dead-worker", 10)]
    )
    d_dedupe = _dispatcher(engine, config, dedupe)
    assert outbox.reconcile_abandoned(engine, d_dedupe.router.deduplicates, None) == (1, 0)
    await d_dedupe.drain()
    assert _messages(engine)[ids2[0]].status == "sent"
    assert ids


async def test_reports_missing_after_the_window_become_dr_unavailable(engine, config, account):
    d = _dispatcher(engine, config, FlakyProvider("gw", []))
    [mid] = _submit(engine, config, "0612345678")
    await d.drain()
    assert outbox.expire_reports(engine, timedelta(hours=48)) == 0
    later = utcnow() + timedelta(hours=48, seconds=1)
    assert outbox.expire_reports(engine, timedelta(hours=48), now=later) == 1
    assert _messages(engine)[mid].status == "dr_unavailable"


async def test_scheduled_message_waits_for_its_time(engine, config, account):
    d = _dispatcher(engine, config, FlakyProvider("gw", []))
    result = sending.submit(
        engine,
        config,
        sending.SubmitRequest(
            account="acme",
            recipients=["0612345678"],
            text="later",
            send_at=utcnow() + timedelta(minutes=5),
        ),
    )
    assert await d.drain() == 0
    mid = result.recipients[0].message_id
    with session_scope(engine) as s:
        s.get(Message, mid).due_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
    assert await d.drain() == 1


async def test_inbound_sms_is_stored_and_linked_to_the_last_message(hub, account):
    [mid] = _send(hub, "0612345678")
    await _settle(hub)
    assert await _simulator(hub).receive("+33612345678", "Merci !")
    with session_scope(hub.engine) as s:
        inbound = s.exec(select(InboundMessage)).one()
    assert (inbound.sender, inbound.text, inbound.reply_to_message_id) == (
        "+33612345678",
        "Merci !",
        mid,
    )


async def test_maybe_sent_is_unknown_unless_the_provider_deduplicates(engine, config, account):
    d = _dispatcher(engine, config, FlakyProvider("gw", [SendOutcome.UNKNOWN]))
    [mid] = _submit(engine, config, "0612345678")
    await d.drain()
    message = _messages(engine)[mid]
    assert (message.status, message.reason) == ("unknown", "provider_timeout")
    with session_scope(engine) as s:
        from hub.sending.accounts import get_account

        assert get_account(s, "acme").balance == 99  # maybe sent: stays charged
    safe = FlakyProvider("safe", [SendOutcome.UNKNOWN], deduplicates=True)
    d = _dispatcher(engine, config, safe)
    [mid] = _submit(engine, config, "0698765432")
    await d.run_once()
    assert _messages(engine)[mid].status == "queued"  # re-sending is harmless there


async def test_marketing_backlog_waits_for_marketing_hours(engine, config, account):
    import time_machine

    sunday = datetime(2026, 11, 29, 11, 0, tzinfo=UTC)  # 12:00 in Paris, a Sunday
    with time_machine.travel(sunday, tick=False):
        result = sending.submit(
            engine,
            config,
            sending.SubmitRequest(
                account="acme", recipients=["0612345678"], text="Soldes", type="marketing"
            ),
        )
        mid = result.recipients[0].message_id
        assert result.recipients[0].status == "scheduled"  # deferred at submit
        with session_scope(engine) as s:
            s.get(Message, mid).due_at = sunday  # type: ignore[union-attr]  (a backlog)
        gw = FlakyProvider("gw", [])
        d = _dispatcher(engine, config, gw)
        await d.drain()
        assert gw.sent == []
        message = _messages(engine)[mid]
        assert message.status == "queued"
        assert as_utc(message.due_at) == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # Mon 08:00


async def test_a_resting_provider_does_not_use_up_attempts(engine, config, account):
    config.dispatcher.max_attempts = 3
    gw = FlakyProvider("gw", [SendOutcome.TRANSIENT] * 5)
    d = _dispatcher(engine, config, gw)
    ids = _submit(engine, config, *[f"06123456{n:02d}" for n in range(5)])
    await d.run_once()  # five failures: the provider is now marked down
    for _ in range(4):  # rounds while it rests hold the messages without counting
        with session_scope(engine) as s:
            for mid in ids:
                s.get(Message, mid).due_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
        await d.run_once()
    messages = _messages(engine)
    assert {messages[mid].status for mid in ids} == {"queued"}
    assert max(messages[mid].attempts for mid in ids) <= 1  # only the real try counted


class SlowProvider(FlakyProvider):
    """Accepts everything after a pause; notes how many sends were in flight at once and how
    far the claims ran ahead of the sends."""

    def __init__(self, engine: Any, concurrency: int) -> None:
        super().__init__("slow", [])
        self.settings = ProviderSettings(type="flaky", concurrency=concurrency)
        self.engine = engine
        self.started = self.in_flight = self.most_in_flight = self.most_ahead = 0

    async def send(self, sms: OutgoingSms) -> SendResult:
        self.started += 1
        with session_scope(self.engine) as s:
            claimed = len(s.exec(select(Message.id).where(Message.attempts > 0)).all())
        self.most_ahead = max(self.most_ahead, claimed - self.started)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.05)
        finally:
            self.in_flight -= 1
        return await super().send(sms)


async def test_next_batch_goes_out_while_the_last_one_is_in_flight(engine, config, account):
    config.dispatcher.batch_size = 3
    slow = SlowProvider(engine, concurrency=4)
    d = _dispatcher(engine, config, slow)
    ids = _submit(engine, config, *[f"06123456{n:02d}" for n in range(10)])
    assert await d.drain() == 10
    assert {m.status for m in _messages(engine).values()} == {"sent"}
    assert sorted(s.message_id for s in slow.sent) == sorted(ids)
    # More requests in flight than one batch holds: the gateway is not idle between batches.
    assert slow.most_in_flight == 4
    # Yet never more than a batch claimed and not yet sent (a crash makes those `unknown`).
    assert slow.most_ahead <= 3


async def test_reports_of_one_message_in_one_batch_apply_in_order(engine, config, account):
    from hub.ports.sms import DeliveryReason, DeliveryReport, DeliveryState
    from hub.sending.reports import ReportPolicy, apply_events

    [mid] = _submit(engine, config, "0612345678")
    [claimed] = outbox.claim(engine, "w", 10)
    outbox.mark_started(engine, "w", [claimed.id])
    outbox.record_outcomes(
        engine, "w", [outbox.Outcome(claimed, "sent", provider="gw", provider_message_id="ref-1")]
    )

    def report(key: str, state: DeliveryState, by_id: bool) -> DeliveryReport:
        return DeliveryReport(
            provider="gw",
            event_key=key,
            state=state,
            message_id=mid if by_id else None,
            provider_message_id="ref-1",
            reason=DeliveryReason.OTHER if state == DeliveryState.UNDELIVERED else None,
            detail=key,
        )

    batch = [
        report("accepted", DeliveryState.PENDING, by_id=True),
        report("delivered", DeliveryState.DELIVERED, by_id=False),  # found by reference
        report("late-failure", DeliveryState.UNDELIVERED, by_id=True),  # final already
        report("accepted", DeliveryState.PENDING, by_id=True),  # the same report twice
    ]
    apply_events(engine, batch, ReportPolicy(config=config))
    message = _messages(engine)[mid]
    assert (message.status, message.reason, message.provider) == ("delivered", None, "gw")
    assert message.final_at is not None
    with session_scope(engine) as s:
        events = s.exec(
            select(MessageEvent.status, MessageEvent.event_key)
            .where(MessageEvent.message_id == mid)
            .order_by(col(MessageEvent.id))
        ).all()
    assert list(events) == [
        ("sent", None),
        ("pending", "accepted"),
        ("delivered", "delivered"),
        ("undelivered", "late-failure"),
    ]


async def test_outcome_writer_groups_writes_and_reports_a_failed_one(monkeypatch):
    from hub.sending.outcome_writer import OutcomeWriter

    written: list[list[str]] = []
    gate = threading.Event()

    def record(engine: Any, worker: str, outcomes: list[outbox.Outcome]) -> None:
        gate.wait(5)
        if not written:
            written.append(["failed"])
            raise RuntimeError("database went away")
        written.append([o.status for o in outcomes])

    monkeypatch.setattr(outbox, "record_outcomes", record)
    claimed = outbox.Claimed("m", 1, 1, "+33612345678", None, "hi", "GSM-7", 1, 1, 1, 0, None)
    writer = OutcomeWriter(engine=None, worker="w")  # type: ignore[arg-type]
    writer.add([outbox.Outcome(claimed, "sent")])  # the write that fails
    await asyncio.sleep(0.05)  # ... is under way in its thread
    writer.add([outbox.Outcome(claimed, "queued")])  # both wait for the next write,
    writer.add([outbox.Outcome(claimed, "failed")])  # in one transaction
    gate.set()
    with pytest.raises(RuntimeError, match="went away"):
        await writer.flush()
    assert written == [["failed"], ["queued", "failed"]]
    await writer.flush()  # the error was reported once


async def test_claim_metrics_count_renewals_and_expiries(engine, config, account):
    """smshub_claims_renewed_total / smshub_claims_expired_total follow the leases."""
    from hub.core.metrics import CLAIMS_EXPIRED, CLAIMS_RENEWED

    _submit(engine, config, "0612345678", "0698765432")
    claimed = outbox.claim(engine, "w", 10)
    renewed, expired = CLAIMS_RENEWED._value.get(), CLAIMS_EXPIRED._value.get()
    assert outbox.renew(engine, "w", [c.id for c in claimed]) == 2
    assert CLAIMS_RENEWED._value.get() == renewed + 2
    # The holder dies: both claims are taken back (never handed to a provider).
    outbox.reconcile_abandoned(engine, lambda _: False, None)
    assert CLAIMS_EXPIRED._value.get() == expired + 2
