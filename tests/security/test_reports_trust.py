"""Delivery reports speak only for messages their provider was handed (issue #14, rule 1).

A provider's callback is trusted by its secret, so what it may change is bounded by the
connection too: a report through provider B's callback cannot settle a message sent through
A, nor one that was never handed to anyone (a message queued for 2030). Such reports are
answered 200 (a retry cannot make them true), logged and counted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY
from sqlmodel import select

from hub.sending import submit as sending
from hub.store.db import session_scope
from hub.store.models import Message
from tests.conftest import MakeHub, make_config

TWO_PROVIDERS = {
    "a": {"type": "simulator", "report_delay": 3600.0},
    "b": {"type": "simulator", "report_delay": 3600.0},
}


def _rejected(provider: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "smshub_reports_rejected_total", {"provider": provider, "reason": reason}
    )
    return value or 0.0


def _message(engine: Any, mid: str) -> Message:
    with session_scope(engine) as session:
        return session.exec(select(Message).where(Message.id == mid)).one()


def _submit(hub: Any, **extra: Any) -> str:
    result = sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(account="acme", recipients=["0612345678"], text="hi", **extra),
    )
    [mid] = [r.message_id for r in result.recipients if r.message_id]
    return mid


async def _post_report(hub: Any, provider: str, report: dict[str, Any]) -> int:
    response = await hub.hub_client.post(
        f"/callbacks/{provider}/dlr",
        json={"reports": [report]},
        headers={"X-Smshub-Secret": hub.providers[provider].secret},
    )
    return response.status_code


async def _two_provider_hub(make_hub: MakeHub, db_url: str, tmp_path: Any, engine: Any) -> Any:

    config = make_config(db_url, tmp_path, providers=TWO_PROVIDERS, routing={"default": ["a"]})
    hub = await make_hub(config=config)
    return hub


async def test_report_through_another_providers_callback_changes_nothing(
    db_url, tmp_path, engine, account, make_hub
):
    hub = await _two_provider_hub(make_hub, db_url, tmp_path, engine)
    try:
        mid = _submit(hub)
        await hub.dispatcher.drain()
        sent = _message(engine, mid)
        assert (sent.status, sent.provider) == ("sent", "a")
        before = _rejected("b", "wrong_provider")
        # B's callback names A's message by our id and by A's reference: both refused.
        for report in (
            {"id": "b-123", "message_id": mid, "status": "delivered"},
            {
                "id": sent.provider_message_id,
                "message_id": mid,
                "status": "undelivered",
                "reason": "invalid_number",
            },
        ):
            assert await _post_report(hub, "b", report) == 200
        after = _message(engine, mid)
        assert (after.status, after.provider, after.provider_message_id) == (
            "sent",
            "a",
            sent.provider_message_id,
        )
        assert _rejected("b", "wrong_provider") == before + 2
        # A's own report with a reference A never gave for it is refused too.
        assert (
            await _post_report(
                hub, "a", {"id": "a-forged", "message_id": mid, "status": "delivered"}
            )
            == 200
        )
        assert _message(engine, mid).status == "sent"
        # And A's true report still settles it.
        assert (
            await _post_report(
                hub, "a", {"id": sent.provider_message_id, "message_id": mid, "status": "delivered"}
            )
            == 200
        )
        assert _message(engine, mid).status == "delivered"
    finally:
        await hub.stop()


async def test_report_for_a_message_scheduled_in_2030_leaves_it_queued_and_cancellable(
    hub, account
):
    mid = _submit(hub, send_at=datetime(2030, 1, 7, 9, 0, tzinfo=UTC))
    assert _message(hub.engine, mid).status == "queued"
    before = _rejected("simulator", "never_sent")
    response = await hub.hub_client.post(
        "/callbacks/simulator/dlr",
        json={"reports": [{"id": "sim-forged", "message_id": mid, "status": "delivered"}]},
        headers={"X-Smshub-Secret": hub.providers["simulator"].secret},
    )
    assert response.status_code == 200
    message = _message(hub.engine, mid)
    assert (message.status, message.provider, message.provider_message_id) == (
        "queued",
        None,
        None,
    )
    assert _rejected("simulator", "never_sent") == before + 1
    with session_scope(hub.engine) as session:
        assert sending.cancel(session, mid).status == "cancelled"


async def test_report_for_unknown_message_is_counted_and_answered_200(hub, account):
    before = _rejected("simulator", "unknown_message")
    response = await hub.hub_client.post(
        "/callbacks/simulator/dlr",
        json={"reports": [{"id": "sim-nothing", "message_id": "nope", "status": "delivered"}]},
        headers={"X-Smshub-Secret": hub.providers["simulator"].secret},
    )
    assert response.status_code == 200
    assert _rejected("simulator", "unknown_message") == before + 1


async def test_report_that_overtakes_the_dispatcher_records_where_the_message_went(hub, account):
    """A report for a message still `submitting` (handed over, outcome not yet written, or
    the dispatcher died) settles it with the provider, its reference and sent_at (#15 item
    10): the row says where it went, and later reports matched by reference find it."""
    from hub.ports.sms import DeliveryReport, DeliveryState
    from hub.sending import outbox
    from hub.sending.reports import apply_events

    mid = _submit(hub)
    [claimed] = outbox.claim(hub.engine, "dead-worker", 10)
    assert claimed.id == mid
    # Its provider call starts (a message only claimed was never handed over: no report).
    assert outbox.mark_started(hub.engine, "dead-worker", [mid]) == {mid}
    # A report matched on our id alone (some gateways give no reference of their own): the
    # provider and sent_at must still be recorded.
    report = DeliveryReport(
        provider="simulator", event_key="k1", state=DeliveryState.DELIVERED, message_id=mid
    )
    apply_events(hub.engine, [report], hub.policy)
    message = _message(hub.engine, mid)
    assert (message.status, message.provider, message.provider_message_id) == (
        "delivered",
        "simulator",
        None,
    )
    assert message.sent_at is not None and message.first_sent_at is not None
    assert message.claimed_by is None
