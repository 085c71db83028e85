"""Outgoing webhooks: signed event notifications to an account's URLs, queued durably.

Queuing (``queue_event``) writes one ``WebhookDelivery`` per matching endpoint in the
caller's transaction, so an event is notified exactly when the change it describes is
committed; the same event id for the same endpoint is queued once. A ``WebhookSender``
worker posts due deliveries and retries failures with backoff. Delivery is at least once:
receivers deduplicate on the ``Smshub-Webhook-Id`` header (the event id).

An event of an account also goes to the endpoints of its parent, grand-parent, ... up to the
main account: whoever runs sub-accounts usually wants their events in one place. It never
goes to a sibling's or a child's endpoints. The body's ``account`` names the account the
event is about.

Signature: ``Smshub-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`` with
the ``Smshub-Webhook-Timestamp`` header (unix seconds); see ``verify_signature``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from sqlalchemy import Engine
from sqlmodel import Session, col, delete, select

from hub.core.timeutil import as_utc, utcnow
from hub.core.workers import PollingWorker
from hub.errors import ConflictError, InvalidInput, NotFound
from hub.outbound import (
    Guard,
    LookupFailed,
    OutboundRefused,
    Resolver,
    check_url,
    guarded_async_client,
    host_refusal,
)
from hub.sending.accounts import ancestors, get_account
from hub.store import claims
from hub.store.claims import Lease
from hub.store.db import padded, session_scope
from hub.store.models import Account, Message, MessageStatus, WebhookDelivery, WebhookEndpoint

log = logging.getLogger("smshub.webhooks")

MESSAGE_DELIVERED = "message.delivered"
MESSAGE_FAILED = "message.failed"
INBOUND_RECEIVED = "inbound.received"
OPTOUT_CREATED = "optout.created"
LINK_CLICKED = "link.clicked"
PING = "ping"

# The types an endpoint can subscribe to; "ping" is sent only by `smshub webhooks test`.
EVENT_TYPES = frozenset(
    {MESSAGE_DELIVERED, MESSAGE_FAILED, INBOUND_RECEIVED, OPTOUT_CREATED, LINK_CLICKED}
)
# Final statuses notified as message.failed (with the reason).
FAILED_STATUSES = frozenset(
    {MessageStatus.UNDELIVERED, MessageStatus.FAILED, MessageStatus.DR_UNAVAILABLE}
)

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "Smshub-Signature"
ID_HEADER = "Smshub-Webhook-Id"
TIMESTAMP_HEADER = "Smshub-Webhook-Timestamp"
TYPE_HEADER = "Smshub-Event-Type"

REQUEST_TIMEOUT = 10.0
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=6)
# A delivery still failing this long after its event is given up.
GIVE_UP_AFTER = timedelta(days=3)
# A claimed delivery is this worker's for this long unless renewed (every third of it while
# the worker posts); a delivery is posted only while at least half of it is left. The hub
# passes [dispatcher] claim_lease_seconds, so a dead instance's deliveries come back as its
# SMS and mails do.
CLAIM_LEASE = timedelta(minutes=2)

_TARGETS_CACHE = "smshub.webhook_targets"


# -- signing -----------------------------------------------------------------------------------
def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def sign(secret: str, timestamp: int | str, body: str | bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` keyed with the whole secret string."""
    message = str(timestamp).encode("ascii") + b"." + _as_bytes(body)
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int | str, body: str | bytes) -> str:
    """The value of the Smshub-Signature header."""
    return f"v1={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: str | bytes,
    header: str,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """True if HEADER signs BODY at TIMESTAMP with SECRET and TIMESTAMP is within TOLERANCE
    seconds of now (0 turns the age check off).

    BODY must be the raw request body, byte for byte, not re-serialized JSON. HEADER may hold
    several space- or comma-separated ``v1=`` signatures; one match is enough.
    """
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    if tolerance and abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    expected = sign(secret, ts, body).encode("ascii")
    for part in header.replace(",", " ").split():
        scheme, _, value = part.partition("=")
        if scheme == "v1" and hmac.compare_digest(value.encode("utf-8"), expected):
            return True
    return False


# -- endpoints ---------------------------------------------------------------------------------
def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def validate_url(url: str) -> str:
    """URL if it is an absolute http(s) URL; InvalidInput says what is wrong otherwise."""
    url = url.strip()
    if not url or len(url) > 1000 or any(c.isspace() for c in url):
        raise InvalidInput(f"webhook URL {url!r} must be one http(s) URL of at most 1000 chars")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise InvalidInput(f"webhook URL {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in {"http", "https"}:
        raise InvalidInput(f"webhook URL {url!r} must start with https:// (or http://)")
    if not parts.hostname:
        raise InvalidInput(f"webhook URL {url!r} has no host name")
    if parts.fragment:
        raise InvalidInput(f"webhook URL {url!r} must not have a #fragment")
    return url


def check_public_url(url: str) -> str:
    """URL, validated, if it does not name this machine or a private network by address.

    Customers add webhooks from the console and the API; a URL aimed at the hub's own
    network would let them make the hub call internal services and read the start of their
    answers in the delivery log. This gives the immediate error for names and literal
    addresses; names that resolve to such addresses are refused by the sender at each
    delivery (the same outbound guard, ``hub.outbound``).
    """
    url = validate_url(url)
    reason = host_refusal(urlsplit(url).hostname or "")
    if reason is not None:
        raise InvalidInput(
            f"webhook URL {url!r} points at a private or local address: {reason}; use a "
            "public one (the hub administrator can add others with `smshub webhooks add`)"
        )
    return url


def check_resolves_public(url: str) -> None:
    """Refuse now a URL whose host already resolves to the hub's own network, which every
    delivery would refuse; a name that does not resolve (yet) is accepted. Blocking, and
    brief (the outbound guard's own lookup timeout): run it in a thread."""
    try:
        check_url(url)
    except OutboundRefused as exc:
        raise InvalidInput(
            f"webhook URL {url!r} cannot be used: {exc.reason}; use a public address "
            "(the hub administrator can add others with `smshub webhooks add`)"
        ) from None


def validate_events(events: Iterable[str]) -> list[str]:
    """The event types, checked; ["*"] when empty or when "*" is among them."""
    chosen: list[str] = []
    for raw in events:
        for name in (p.strip() for p in raw.split(",")):
            if not name:
                continue
            if name == "*":
                return ["*"]
            if name not in EVENT_TYPES:
                known = ", ".join(sorted(EVENT_TYPES))
                raise InvalidInput(f"unknown webhook event {name!r}; use * or one of: {known}")
            if name not in chosen:
                chosen.append(name)
    return chosen or ["*"]


def _forget_targets(session: Session) -> None:
    session.info.pop(_TARGETS_CACHE, None)


def add_endpoint(
    session: Session,
    account: str | int,
    url: str,
    events: Sequence[str] = ("*",),
    *,
    private_ok: bool = False,
) -> tuple[WebhookEndpoint, str]:
    """Register URL for ACCOUNT's EVENTS; returns the endpoint and its secret (show it once).

    PRIVATE_OK (the hub administrator's CLI only) lets the URL reach the hub's own network;
    otherwise the sender refuses a host that is or resolves to a non-public address
    (the outbound guard, ``hub.outbound``).
    """
    acc = get_account(session, account)
    assert acc.id is not None
    secret = new_secret()
    endpoint = WebhookEndpoint(
        account_id=acc.id,
        url=validate_url(url),
        secret=secret,
        events=",".join(validate_events(events)),
        private_ok=private_ok,
    )
    session.add(endpoint)
    session.flush()
    _forget_targets(session)
    return endpoint, secret


def get_endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(
            f"no webhook endpoint with id {endpoint_id} (list them with `smshub webhooks list`)"
        )
    return endpoint


def list_endpoints(
    session: Session,
    account: str | int | None = None,
    *,
    account_ids: Collection[int] | None = None,
    after: int = 0,
    limit: int | None = None,
) -> list[WebhookEndpoint]:
    """Endpoints by id: of ACCOUNT, or of ACCOUNT_IDS, else all; ids above AFTER, at most
    LIMIT (a page of the API)."""
    query = select(WebhookEndpoint).order_by(col(WebhookEndpoint.id))
    if account is not None:
        query = query.where(WebhookEndpoint.account_id == get_account(session, account).id)
    if account_ids is not None:
        query = query.where(col(WebhookEndpoint.account_id).in_(list(account_ids)))
    if after:
        query = query.where(col(WebhookEndpoint.id) > after)
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())


def remove_endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    """Delete an endpoint with its queued deliveries and delivery log."""
    endpoint = get_endpoint(session, endpoint_id)
    session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint_id))
    session.delete(endpoint)
    session.flush()
    _forget_targets(session)
    return endpoint


def disable_endpoint(session: Session, endpoint_id: int, disabled: bool = True) -> WebhookEndpoint:
    """Disable (or enable) an endpoint: a disabled one gets no new events, and what it has
    queued waits until it is enabled again."""
    endpoint = get_endpoint(session, endpoint_id)
    endpoint.enabled = not disabled
    session.add(endpoint)
    session.flush()
    _forget_targets(session)
    return endpoint


def delivery_log(
    session: Session, endpoint_id: int | None = None, limit: int = 50
) -> list[WebhookDelivery]:
    """The latest deliveries, newest first."""
    query = select(WebhookDelivery).order_by(col(WebhookDelivery.id).desc()).limit(limit)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    return list(session.exec(query).all())


def subscribed(endpoint: WebhookEndpoint, event_type: str) -> bool:
    names = {n.strip() for n in endpoint.events.split(",")}
    return "*" in names or event_type in names


# -- queuing -----------------------------------------------------------------------------------
def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Targets:
    """Per-transaction cache: whether any endpoint exists, and each account's targets."""

    any_enabled: bool
    by_account: dict[int, tuple[Account | None, list[WebhookEndpoint]]]


def _cache(session: Session) -> _Targets:
    cache = session.info.get(_TARGETS_CACHE)
    if not isinstance(cache, _Targets):
        # Most hubs have no endpoint at all: one cheap query spares every lookup after it.
        found = session.exec(select(WebhookEndpoint.id).where(col(WebhookEndpoint.enabled))).first()
        cache = _Targets(any_enabled=found is not None, by_account={})
        session.info[_TARGETS_CACHE] = cache
    return cache


def has_endpoints(session: Session) -> bool:
    """True if any enabled endpoint exists (cached for the transaction)."""
    return _cache(session).any_enabled


def _targets(session: Session, account_id: int) -> tuple[Account | None, list[WebhookEndpoint]]:
    """The account and the enabled endpoints of it and its ancestors (cached)."""
    cache = _cache(session)
    if not cache.any_enabled:
        return None, []
    if account_id not in cache.by_account:
        account = session.get(Account, account_id)
        endpoints: list[WebhookEndpoint] = []
        if account is not None:
            scope = [a.id for a in ancestors(session, account)]
            endpoints = list(
                session.exec(
                    select(WebhookEndpoint)
                    .where(
                        col(WebhookEndpoint.account_id).in_(scope),
                        col(WebhookEndpoint.enabled),
                    )
                    .order_by(col(WebhookEndpoint.id))
                ).all()
            )
        cache.by_account[account_id] = (account, endpoints)
    return cache.by_account[account_id]


def build_body(event_id: str, event_type: str, account: str, data: dict[str, Any]) -> str:
    """The JSON body posted for an event (compact, UTF-8)."""
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created_at": _iso(utcnow()),
            "account": account,
            "data": data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )


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
    account, endpoints = _targets(session, account_id)
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


# -- producers ---------------------------------------------------------------------------------
def message_data(message: Message) -> dict[str, Any]:
    """The `data` of message.delivered / message.failed."""
    status = message.status
    reason = message.reason
    if status == MessageStatus.DR_UNAVAILABLE:
        reason = reason or "dr_unavailable"
    elif status != MessageStatus.DELIVERED:
        reason = reason or "other"
    return {
        "message_id": message.id,
        "batch_id": message.batch_id,
        "status": status,
        "reason": reason,
        "detail": message.detail,
        "recipient": message.recipient,
        "sender": message.sender,
        "type": message.type,
        "source": message.source,
        "segments": message.segments,
        "credits": message.credits,
        "provider": message.provider,
        "provider_message_id": message.provider_message_id,
        "created_at": _iso(message.created_at),
        "sent_at": _iso(message.first_sent_at or message.sent_at),
        "final_at": _iso(message.final_at),
    }


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
        {
            "inbound_id": inbound.id,
            "from": inbound.sender,
            "to": inbound.recipient,
            "text": inbound.text,
            "received_at": _iso(inbound.received_at),
            "provider": inbound.provider,
            "reply_to_message_id": inbound.reply_to_message_id,
        },
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
        {
            "optout_id": optout.id,
            "number": optout.number,
            "source": optout.source,
            "note": optout.note,
            "created_at": _iso(optout.created_at),
        },
        f"optout.{optout.id}",
    )


# -- sending -----------------------------------------------------------------------------------
def retry_delay(attempts: int) -> timedelta:
    """The wait after the ATTEMPTS-th failure: 30 s, 1 min, 2 min, ... capped at 6 h."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY)


@dataclass(frozen=True)
class _Job:
    delivery_id: int
    endpoint_id: int
    url: str
    secret: str
    event_id: str
    event_type: str
    payload: str
    private_ok: bool = False


@dataclass(frozen=True)
class _Result:
    status_code: int | None
    error: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender(PollingWorker):
    """Posts due deliveries; one worker per process, several processes share the queue."""

    task_name = "webhook-sender"

    def __init__(
        self,
        engine: Engine,
        poll_interval: float = 2.0,
        batch_size: int = 50,
        concurrency: int = 10,
        *,
        timeout: float = REQUEST_TIMEOUT,
        resolver: Resolver | None = None,
        network: httpcore.AsyncNetworkBackend | None = None,
        lease: timedelta = CLAIM_LEASE,
    ) -> None:
        """TIMEOUT bounds each DNS lookup and each post. RESOLVER and NETWORK (the outbound
        guard's lookup, and what opens its checked connections) are the system's; tests
        give their own."""
        super().__init__(poll_interval)
        self.engine = engine
        self.timeout = timeout
        self.batch_size = batch_size
        self.lease = lease
        self._resolver = resolver
        self._network = network
        # One client per kind of endpoint: the customers' (public addresses only) and the
        # administrator's (private_ok); both connect only to addresses the guard resolved.
        self._clients: dict[bool, httpx.AsyncClient] = {}
        self._gate = asyncio.Semaphore(max(1, concurrency))
        self._claimed = 0

    def client(self, private_ok: bool = False) -> httpx.AsyncClient:
        if private_ok not in self._clients:
            guard = Guard(allow_private=private_ok, timeout=self.timeout, resolver=self._resolver)
            self._clients[private_ok] = guarded_async_client(
                guard,
                inner=self._network,
                timeout=self.timeout,
                follow_redirects=False,
                headers={"User-Agent": "smshub-webhooks/1"},
            )
        return self._clients[private_ok]

    async def stop(self, grace: float | None = 0) -> None:
        """Post nothing more; posts in flight get GRACE seconds (None: as long as they
        take) to finish, deliveries not yet posted are handed back."""
        await super().stop(grace)
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def _round(self) -> bool:
        try:
            await self.send_due()
        except Exception:
            self._claimed = 0
            raise
        return self._claimed >= self.batch_size

    def _claim(self, limit: int, only: int | None = None) -> tuple[list[_Job], Lease]:
        """Take due deliveries of enabled endpoints, pushing their due time by the lease."""
        with session_scope(self.engine) as session:
            query = (
                select(WebhookDelivery, WebhookEndpoint)
                .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
                .where(WebhookDelivery.status == "pending", col(WebhookEndpoint.enabled))
                .order_by(col(WebhookDelivery.due_at), col(WebhookDelivery.id))
                .limit(limit)
            )
            if only is not None:
                query = query.where(WebhookDelivery.id == only)
            rows, lease = claims.claim_due(session, query, WebhookDelivery, self.lease)
            jobs = []
            for delivery, endpoint in rows:
                assert delivery.id is not None and endpoint.id is not None
                jobs.append(
                    _Job(
                        delivery_id=delivery.id,
                        endpoint_id=endpoint.id,
                        url=endpoint.url,
                        secret=endpoint.secret,
                        event_id=delivery.event_id,
                        event_type=delivery.event_type,
                        payload=delivery.payload,
                        private_ok=endpoint.private_ok,
                    )
                )
        return jobs, lease

    async def _post(self, job: _Job, lease: Lease) -> _Result | None:
        timestamp = int(time.time())
        body = job.payload.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: job.event_id,
            TIMESTAMP_HEADER: str(timestamp),
            TYPE_HEADER: job.event_type,
            SIGNATURE_HEADER: signature_header(job.secret, timestamp, body),
        }
        client = self.client(job.private_ok)
        async with self._gate:
            if self._stopping or not lease.fresh():
                # Handed back: a stop, or the claim too old to be sure it is still ours.
                return None
            try:
                async with client.stream("POST", job.url, content=body, headers=headers) as r:
                    excerpt = b""
                    async for chunk in r.aiter_bytes():
                        excerpt += chunk
                        if len(excerpt) >= 300:
                            break
            except OutboundRefused as exc:
                # Retried like a connection error: a DNS change can fix it.
                return _Result(
                    None, f"not sent: {exc.reason}; console webhooks must reach a public address"
                )
            except LookupFailed as exc:
                return _Result(None, str(exc))
            except httpx.TimeoutException as exc:
                return _Result(None, f"timeout after {self.timeout:g} s ({type(exc).__name__})")
            except httpx.HTTPError as exc:
                return _Result(None, f"{type(exc).__name__}: {exc}")
        if 200 <= r.status_code < 300:
            return _Result(r.status_code, "")
        text = excerpt[:200].decode("utf-8", "replace").strip()
        where = f" to {r.headers.get('location')}" if r.is_redirect else ""
        return _Result(r.status_code, f"HTTP {r.status_code}{where}: {text}".rstrip(": "))

    def _record(self, job: _Job, result: _Result) -> None:
        now = utcnow()
        with session_scope(self.engine) as session:
            row = session.get(WebhookDelivery, job.delivery_id)
            if row is None or row.status != "pending":
                return
            row.attempts += 1
            row.last_status_code = result.status_code
            if result.ok:
                row.status = "delivered"
                row.delivered_at = now
                row.last_error = ""
            elif result.status_code == 410:
                # The receiver says the URL is gone for good: stop sending to it.
                row.status = "failed"
                row.last_error = f"{result.error}; endpoint disabled"[:500]
                endpoint = session.get(WebhookEndpoint, job.endpoint_id)
                if endpoint is not None:
                    endpoint.enabled = False
                    session.add(endpoint)
                log.warning("webhook endpoint %d answered 410 Gone: disabled", job.endpoint_id)
            else:
                row.last_error = result.error[:500]
                due = now + retry_delay(row.attempts)
                if due > as_utc(row.created_at) + GIVE_UP_AFTER:
                    row.status = "failed"
                    log.warning(
                        "webhook %s to endpoint %d given up after %d attempts: %s",
                        job.event_id,
                        job.endpoint_id,
                        row.attempts,
                        result.error,
                    )
                else:
                    row.due_at = due
            session.add(row)

    async def _send(self, job: _Job, held: claims.Holding) -> bool | None:
        """Post JOB and record the result; None when it was not posted (to hand back)."""
        result = await self._post(job, held.lease)
        if result is None:
            return None
        if not result.ok:
            log.info(
                "webhook %s to endpoint %d not delivered yet: %s",
                job.event_id,
                job.endpoint_id,
                result.error,
            )
        await held.settle(job.delivery_id, lambda: self._record(job, result))
        return result.ok

    async def send_due(self, limit: int | None = None) -> int:
        """Post every due delivery once (up to LIMIT); returns how many were delivered.
        The claim is renewed while the posts take (a slow receiver keeps its deliveries)."""
        jobs, lease = await asyncio.to_thread(self._claim, limit or self.batch_size)
        self._claimed = len(jobs)
        if not jobs:
            return 0
        async with claims.Holding(
            self.engine, WebhookDelivery, (j.delivery_id for j in jobs), lease
        ) as held:
            results = await asyncio.gather(*(self._send(job, held) for job in jobs))
            unsent = [job.delivery_id for job, ok in zip(jobs, results, strict=True) if ok is None]
            if unsent:
                await held.release(unsent)
        return sum(1 for ok in results if ok)

    async def send_now(self, delivery_id: int) -> WebhookDelivery | None:
        """Post one pending delivery now, due or not; returns it as recorded (None if it is
        not pending, or its endpoint is disabled)."""

        def _make_due() -> None:
            with session_scope(self.engine) as session:
                row = session.get(WebhookDelivery, delivery_id)
                if row is not None and row.status == "pending":
                    row.due_at = utcnow()
                    session.add(row)

        await asyncio.to_thread(_make_due)
        jobs, lease = await asyncio.to_thread(self._claim, 1, delivery_id)
        if not jobs:
            return None
        async with claims.Holding(self.engine, WebhookDelivery, [delivery_id], lease) as held:
            await self._send(jobs[0], held)

        def _load() -> WebhookDelivery | None:
            with session_scope(self.engine) as session:
                return session.get(WebhookDelivery, delivery_id)

        return await asyncio.to_thread(_load)
