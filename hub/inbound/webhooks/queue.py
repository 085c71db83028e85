"""Queuing webhook events: one ``WebhookDelivery`` per matching endpoint, written in the
caller's transaction, so an event is notified exactly when the change it describes is
committed; the same event id for the same endpoint is queued once. The producers turn a
message, an inbound SMS or an opt-out into its event.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from hub.errors import ConflictError, InvalidInput
from hub.inbound.webhooks.endpoints import get_endpoint, has_endpoints, subscribed, targets
from hub.inbound.webhooks.payloads import (
    EVENT_TYPES,
    FAILED_STATUSES,
    INBOUND_RECEIVED,
    MESSAGE_DELIVERED,
    MESSAGE_FAILED,
    OPTOUT_CREATED,
    PING,
    build_body,
    inbound_data,
    message_data,
    optout_data,
)
from hub.store.db import padded
from hub.store.models import Account, Message, MessageStatus, WebhookDelivery, WebhookEndpoint


def _insert(
    session: Session,
    endpoints: Sequence[WebhookEndpoint],
    event_id: str,
    event_type: str,
    body: str,
) -> list[WebhookDelivery]:
    ids = [e.id for e in endpoints]
    done = set(
        session.exec(
            select(WebhookDelivery.endpoint_id).where(
                WebhookDelivery.event_id == event_id, col(WebhookDelivery.endpoint_id).in_(ids)
            )
        ).all()
    )
    rows = []
    for endpoint in endpoints:
        assert endpoint.id is not None
        if endpoint.id in done:
            continue
        row = WebhookDelivery(
            endpoint_id=endpoint.id, event_id=event_id, event_type=event_type, payload=body
        )
        session.add(row)
        rows.append(row)
    if rows:
        session.flush()
    return rows


def queue_event(
    session: Session, account_id: int, event_type: str, data: dict[str, Any], event_id: str
) -> list[WebhookDelivery]:
    """Queue EVENT_TYPE for every enabled, subscribed endpoint of the account and its
    ancestors, in SESSION's transaction; returns the new deliveries.

    EVENT_ID identifies the event (at most 64 characters) and must be the same when the same
    event is produced again: an endpoint that already has it is skipped.
    """
    if event_type not in EVENT_TYPES:
        raise InvalidInput(f"unknown webhook event {event_type!r}")
    if not event_id or len(event_id) > 64:
        raise InvalidInput(f"webhook event id {event_id!r} must be 1-64 characters")
    account, endpoints = targets(session, account_id)
    endpoints = [e for e in endpoints if subscribed(e, event_type)]
    if account is None or not endpoints:
        return []
    body = build_body(event_id, event_type, account.name, data)
    return _insert(session, endpoints, event_id, event_type, body)


def queue_ping(session: Session, endpoint_id: int) -> WebhookDelivery:
    """Queue a `ping` event for one endpoint (the `smshub webhooks test` command)."""
    endpoint = get_endpoint(session, endpoint_id)
    if not endpoint.enabled:
        raise ConflictError(
            f"webhook endpoint {endpoint_id} is disabled; enable it first "
            f"(`smshub webhooks enable {endpoint_id}`)"
        )
    account = session.get(Account, endpoint.account_id)
    event_id = "ping." + secrets.token_hex(12)
    body = build_body(
        event_id,
        PING,
        account.name if account else "",
        {"endpoint_id": endpoint.id, "url": endpoint.url},
    )
    [row] = _insert(session, [endpoint], event_id, PING, body)
    return row


def message_event(session: Session, message: Message) -> list[WebhookDelivery]:
    """Queue message.delivered or message.failed for a message that just became final
    (delivered, undelivered, failed, dr_unavailable); other statuses queue nothing.

    The event id is ``msg.<message id>.<status>``: the same outcome is notified once, and a
    late report that changes dr_unavailable into delivered is a new event.
    """
    if message.status == MessageStatus.DELIVERED:
        event_type = MESSAGE_DELIVERED
    elif message.status in FAILED_STATUSES:
        event_type = MESSAGE_FAILED
    else:
        return []
    if not has_endpoints(session):
        return []
    return queue_event(
        session,
        message.account_id,
        event_type,
        message_data(message),
        f"msg.{message.id}.{message.status}",
    )


def message_events(session: Session, message_ids: Sequence[str]) -> int:
    """``message_event`` for messages changed with plain SQL (loaded here, in chunks)."""
    if not message_ids or not has_endpoints(session):
        return 0
    queued = 0
    for start in range(0, len(message_ids), 500):
        chunk = padded(message_ids[start : start + 500])
        # populate_existing: a plain UPDATE may have changed rows this session already holds.
        query = (
            select(Message)
            .where(col(Message.id).in_(chunk))
            .execution_options(populate_existing=True)
        )
        for message in session.exec(query).all():
            queued += len(message_event(session, message))
    return queued


def inbound_event(session: Session, inbound: Any) -> list[WebhookDelivery]:
    """Queue inbound.received for a stored InboundMessage (nothing if no account matched)."""
    if inbound.account_id is None or not has_endpoints(session):
        return []
    if inbound.id is None:
        session.flush()
    return queue_event(
        session,
        inbound.account_id,
        INBOUND_RECEIVED,
        inbound_data(inbound),
        f"in.{inbound.id}",
    )


def optout_event(session: Session, optout: Any) -> list[WebhookDelivery]:
    """Queue optout.created for a stored OptOutEvent with action "stop"."""
    if optout.action != "stop" or not has_endpoints(session):
        return []
    if optout.id is None:
        session.flush()
    return queue_event(
        session,
        optout.account_id,
        OPTOUT_CREATED,
        optout_data(optout),
        f"optout.{optout.id}",
    )
