"""Posting webhooks: a ``WebhookSender`` worker claims due deliveries, posts them signed
through the outbound guard, and retries failures with backoff. Delivery is at least once:
receivers deduplicate on the ``Smshub-Webhook-Id`` header (the event id).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import httpcore
import httpx
from sqlalchemy import Engine
from sqlmodel import col, select

from hub.core.timeutil import as_utc, utcnow
from hub.core.workers import PollingWorker
from hub.errors import LookupFailed, OutboundRefused
from hub.inbound.webhooks.signing import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TYPE_HEADER,
    signature_header,
)
from hub.outbound import Guard, Resolver, guarded_async_client
from hub.store import claims
from hub.store.claims import Lease
from hub.store.db import session_scope
from hub.store.models import WebhookDelivery, WebhookEndpoint

log = logging.getLogger("smshub.webhooks")

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
