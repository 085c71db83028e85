"""The dispatcher: the only part of the hub that sends SMS.

Claims due messages in batches, sends each through the account's route (the first provider
that accepts wins; a transient failure or an outage moves on to the next), and writes each
batch's outcomes in one transaction while the next batch is being sent. Blocking database
work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine, text

from hub import compliance
from hub.core import phone
from hub.core.config import Config
from hub.core.metrics import PROVIDER_LATENCY, SMS_RESULTS
from hub.core.timeutil import utcnow
from hub.ports.sms import OutgoingSms, SendOutcome, SendResult, SmsProvider
from hub.sending import outbox
from hub.sending.outbox import Claimed, Outcome
from hub.sending.outcome_writer import OutcomeWriter
from hub.sending.rate_limits import Limiter, RateLimiter, limiter_for
from hub.sending.start_marks import StartMarker
from hub.store.db import is_sqlite, session_scope

__all__ = ["Dispatcher", "RateLimiter", "Router"]

log = logging.getLogger("smshub.dispatch")


@dataclass
class ProviderSlot:
    provider: SmsProvider
    limiter: Limiter
    gate: asyncio.Semaphore
    prefixes: tuple[str, ...] = ()
    # Consecutive outages; the provider is skipped until `down_until` passes.
    failures: int = 0
    down_until: float = 0.0
    last_detail: str = ""


@dataclass
class Router:
    """Chooses the providers for a message: country-prefix routes first, then the route order."""

    slots: Mapping[str, ProviderSlot]
    default_route: Sequence[str]
    account_routes: dict[int, list[str]] = field(default_factory=dict)

    def route_for(self, account_id: int, recipient: str) -> list[ProviderSlot]:
        names = self.account_routes.get(account_id) or list(self.default_route)
        slots = [self.slots[n] for n in names if n in self.slots]
        preferred = [s for s in slots if any(recipient.startswith(p) for p in s.prefixes)]
        # Prefix-routed providers serve their prefixes only, unless nothing else is left.
        general = [s for s in slots if not s.prefixes]
        return preferred + general if (preferred or general) else slots

    def deduplicates(self, account_id: int) -> bool:
        names = self.account_routes.get(account_id) or list(self.default_route)
        return all(self.slots[n].provider.deduplicates for n in names if n in self.slots)


@dataclass
class _Batch:
    """One claimed batch on its way: its outcomes go to the database together."""

    size: int
    done: int = 0
    outcomes: list[Outcome] = field(default_factory=list)


class _Unstarted:
    """Claimed messages not yet handed to a provider (waiting for a sender, a rate-limit
    token or a free connection); the dispatcher claims more only once none is left."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.none_left = asyncio.Event()
        self.none_left.set()

    def add(self, ids: Iterable[str]) -> None:
        self.ids.update(ids)
        if self.ids:
            self.none_left.clear()

    def started(self, message_id: str) -> None:
        self.ids.discard(message_id)
        if not self.ids:
            self.none_left.set()


class Dispatcher:
    """Claims, sends and records, in a loop, until stopped."""

    def __init__(self, engine: Engine, config: Config, providers: Mapping[str, SmsProvider]):
        self.engine = engine
        self.config = config
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.settings = config.dispatcher
        self.router = Router(
            slots={
                name: ProviderSlot(
                    provider=p,
                    limiter=limiter_for(engine, name, p.settings.rate_per_second),
                    gate=asyncio.Semaphore(max(1, p.settings.concurrency)),
                    prefixes=tuple(p.settings.prefixes),
                )
                for name, p in providers.items()
            },
            default_route=config.routing.default,
        )
        # As many senders as requests the providers may have in flight all together.
        self._senders = sum(max(1, p.settings.concurrency) for p in providers.values())
        self._wake = asyncio.Event()
        self._stopping = False
        # Set with _stopping: waits for a rate-limit slot end at once.
        self._stop_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._last_reconcile = 0.0
        # Ids this dispatcher holds a claim on (claimed or in a provider's hands, outcome not
        # yet written): their lease is renewed while the process lives.
        self._held: set[str] = set()
        self._marker = StartMarker(engine, self.worker)
        # What the stop did, for its closing log line.
        self._finished_while_stopping = 0
        self._handed_back = 0
        # When the loop last showed progress (a look at the outbox or a send), for /readyz.
        self.last_round = time.monotonic()

    def wake(self) -> None:
        """Look at the outbox now (a door just queued something)."""
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def start(self, background: bool = True) -> None:
        """Recover abandoned claims, then (with BACKGROUND) loop until stopped."""
        await asyncio.to_thread(self._load_routes)
        # One dispatcher on SQLite: whatever is claimed at start was left by a crash.
        try:
            await asyncio.to_thread(self.reconcile, at_start=True)
        except Exception:
            # The keeper recovers them later; a start-up hiccup must not stop the hub.
            log.exception("recovering abandoned claims at start failed; trying again later")
            self._last_reconcile = 0.0
        if background:
            self._task = asyncio.create_task(self.run(), name="dispatcher")
            self._keeper = asyncio.create_task(self._keep_leases(), name="dispatcher-leases")

    def begin_stop(self) -> None:
        """Stop claiming now; messages not yet handed to a provider are handed back."""
        self._stopping = True
        self._stop_event.set()
        self._wake.set()

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let the provider calls in flight finish (at most GRACE seconds,
        None: as long as they take), hand back the claims never handed to a provider, and
        log what the stop did. Calls still running after GRACE are abandoned: their messages
        are settled at once as after a crash (re-sent through deduplicating providers, else
        `unknown`)."""
        self.begin_stop()
        abandoned = False
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=grace)
            if not done:
                abandoned = True
                log.warning(
                    "provider calls still in flight after the %g s stop grace: abandoning them",
                    grace,
                )
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
            settled = (0, 0)
            if abandoned or self._held:
                try:
                    settled = await asyncio.to_thread(
                        outbox.reconcile_abandoned,
                        self.engine,
                        self.router.deduplicates,
                        None,
                        worker=self.worker,
                    )
                except Exception:
                    log.exception("settling this dispatcher's last claims failed")
                self._held.clear()
            log.warning(
                "dispatcher drained: %d sent, %d handed back%s",
                self._finished_while_stopping,
                self._handed_back,
                f", {settled[0]} re-queued and {settled[1]} marked unknown after the grace"
                if abandoned
                else "",
            )

    def _load_routes(self) -> None:
        with session_scope(self.engine) as session:
            rows = session.execute(text("SELECT id, route FROM accounts WHERE route != ''")).all()
        self.router.account_routes = {
            int(i): [n.strip() for n in r.split(",") if n.strip()] for i, r in rows
        }

    def reconcile(self, at_start: bool = False) -> tuple[int, int]:
        """Settle claims whose lease lapsed (their dispatcher died)."""
        if at_start and is_sqlite(self.engine):
            cutoff = None
        else:
            cutoff = utcnow() - timedelta(seconds=self.settings.claim_lease_seconds)
        self._last_reconcile = time.monotonic()
        return outbox.reconcile_abandoned(self.engine, self.router.deduplicates, cutoff)

    async def _keep_leases(self) -> None:
        """On its own timer, whatever the batches do: renew this dispatcher's claims (a
        slow provider never loses them), settle the claims of dead dispatchers within about
        a lease, and reload the account routes."""
        period = max(0.05, self.settings.claim_lease_seconds / 3)
        while True:
            await asyncio.sleep(period)
            try:
                if self._held:
                    await asyncio.to_thread(
                        outbox.renew, self.engine, self.worker, sorted(self._held)
                    )
                if time.monotonic() - self._last_reconcile >= period:
                    await asyncio.to_thread(self.reconcile)
                    await asyncio.to_thread(self._load_routes)
            except Exception:
                log.exception("renewing or recovering claims failed; trying again shortly")

    async def run(self) -> None:
        """The main loop; survives database and provider errors, logging them."""
        while not self._stopping:
            try:
                await self._pump(forever=True)
            except Exception:
                log.exception("dispatch round failed; retrying shortly")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)

    async def run_once(self) -> int:
        """Claim one batch, send it and record the outcomes; returns how many were claimed."""
        return await self._pump(once=True)

    async def drain(self) -> int:
        """Send everything due now (tests and one-shot runs); returns how many were claimed."""
        return await self._pump()

    async def _pump(self, *, once: bool = False, forever: bool = False) -> int:
        """Claim, send and record until nothing is due (FOREVER: until stopped, waiting for
        work meanwhile; ONCE: one batch); returns how many were claimed.

        One sender per request the providers allow in flight takes the claimed messages in
        turn. The next batch is claimed as soon as every message of the last one is in a
        provider's hands, while their requests are still in flight, so the gateway is not
        left idle between batches, nor while outcomes (written in groups by an
        OutcomeWriter) reach the database; and no more messages than one batch are ever
        claimed but not yet sent. Once stopping, nothing more is claimed and what was not
        yet handed to a provider is handed back.
        """
        queue: asyncio.Queue[tuple[Claimed, _Batch] | None] = asyncio.Queue()
        writer = OutcomeWriter(self.engine, self.worker, written=self._written)
        unstarted = _Unstarted()
        handback: list[str] = []
        workers = [
            asyncio.create_task(self._sender(queue, writer, unstarted, handback))
            for _ in range(self._senders)
        ]
        try:
            claimed = await self._feed(queue, unstarted, once=once, forever=forever)
        finally:
            # The messages already claimed are sent and recorded, whatever stopped the feed.
            await asyncio.gather(*workers)
            try:
                await writer.flush()
            finally:
                if handback:
                    await self._hand_back(handback)
        return claimed

    async def _sender(
        self,
        queue: asyncio.Queue[tuple[Claimed, _Batch] | None],
        writer: OutcomeWriter,
        unstarted: _Unstarted,
        handback: list[str],
    ) -> None:
        """One request in flight: send the claimed messages in turn until the feed ends;
        a batch's outcomes go to WRITER once all of it is done, unsent ones to HANDBACK."""
        while (item := await queue.get()) is not None:
            message, batch = item
            self.last_round = time.monotonic()
            try:
                outcome = await self._send_one(message, unstarted)
            except Exception:
                # A bug, not an outage: the claim lapses and recovery settles it.
                log.exception("sending message %s failed", message.id)
                self._held.discard(message.id)
            else:
                if outcome is None:
                    handback.append(message.id)
                else:
                    batch.outcomes.append(outcome)
                    if self._stopping:
                        self._finished_while_stopping += 1
            # Held, or no provider took it: nothing of it is waiting any more.
            unstarted.started(message.id)
            batch.done += 1
            if batch.done == batch.size and batch.outcomes:
                writer.add(batch.outcomes)

    async def _feed(
        self,
        queue: asyncio.Queue[tuple[Claimed, _Batch] | None],
        unstarted: _Unstarted,
        *,
        once: bool,
        forever: bool,
    ) -> int:
        """Claim a batch each time the last one is all in providers' hands, and queue it
        for the senders; returns how many were claimed. Ends the senders when it ends."""
        claimed = 0
        try:
            while not self._stopping:
                self.last_round = time.monotonic()
                await unstarted.none_left.wait()
                if self._stopping:
                    break
                # Cleared before claiming: a wake() during the claim is not missed.
                self._wake.clear()
                batch = await asyncio.to_thread(
                    outbox.claim, self.engine, self.worker, self.settings.batch_size
                )
                claimed += len(batch)
                self._held.update(m.id for m in batch)
                unstarted.add(m.id for m in batch)
                progress = _Batch(len(batch))
                for message in batch:
                    queue.put_nowait((message, progress))
                if once or (not batch and not forever):
                    break
                if not batch:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
        finally:
            for _ in range(self._senders):
                queue.put_nowait(None)
        return claimed

    def _written(self, outcomes: Sequence[Outcome]) -> None:
        """Outcomes are in the database (or their write failed: recovery settles those)."""
        self._held.difference_update(o.message.id for o in outcomes)

    async def _hand_back(self, ids: list[str]) -> None:
        try:
            self._handed_back += await asyncio.to_thread(
                outbox.release, self.engine, self.worker, ids
            )
        except Exception:
            # Their leases lapse and another dispatcher (or the next start) takes them.
            log.exception("handing back %d claimed messages failed", len(ids))
        self._held.difference_update(ids)

    async def _send_one(self, message: Claimed, unstarted: _Unstarted) -> Outcome | None:
        """Send MESSAGE through its route; None when it was never handed to a provider and
        must be handed back (the dispatcher is stopping, or it may no longer be sent)."""
        sms = _outgoing(message)
        if message.type == "marketing":
            held = self._outside_marketing_hours(message)
            if held is not None:
                return held
        route = self.router.route_for(message.account_id, message.recipient)
        if not route:
            return self._retry_or_fail(message, None, "no provider configured for this route")
        last_detail = ""
        started = False
        for slot in route:
            if slot.down_until > time.monotonic():
                last_detail = (
                    f"{slot.provider.name} is marked down after repeated failures "
                    f"(last: {slot.last_detail or 'unknown'})"
                )
                continue
            result = await self._call(slot, sms, unstarted, first=not started)
            if result is None:
                return _stopped(message, slot, last_detail) if started else None
            started = True
            SMS_RESULTS.labels(provider=slot.provider.name, outcome=result.outcome.value).inc()
            settled = _settled(message, slot, result)
            if settled is not None:
                return settled
            last_detail = _transient_failure(slot, result)
        return self._route_failed(message, route, last_detail)

    def _route_failed(
        self, message: Claimed, route: Sequence[ProviderSlot], last_detail: str
    ) -> Outcome:
        """No provider of ROUTE took MESSAGE: retry it (without using up an attempt while
        every provider rests) or fail it."""
        downs = [slot.down_until for slot in route if slot.down_until > time.monotonic()]
        if len(downs) == len(route):
            # Every provider of the route is resting after repeated failures: wait for the
            # first to come back without using up an attempt (they measure real tries).
            wait = min(downs) - time.monotonic()
            return Outcome(
                message,
                "queued",
                provider=route[-1].provider.name,
                detail=last_detail,
                counted=False,
                retry_at=utcnow() + timedelta(seconds=max(wait, 0.05)),
            )
        return self._retry_or_fail(message, route[-1].provider.name, last_detail)

    def _outside_marketing_hours(self, message: Claimed) -> Outcome | None:
        """A marketing SMS that became due outside its recipient's hours (a retry, a backlog)
        waits for the next allowed moment instead of going out."""
        now = utcnow()
        country = phone.parse_number(message.recipient).country
        rules = self.config.marketing_hours
        try:
            if compliance.is_allowed(now, country, rules, number=message.recipient):
                return None
            later = compliance.next_allowed_time(now, country, rules, number=message.recipient)
        except compliance.NoMarketingWindow as exc:
            return Outcome(message, "failed", reason="outside_marketing_hours", detail=str(exc))
        return Outcome(
            message, "queued", detail="held for marketing hours", retry_at=later, counted=False
        )

    async def _call(
        self, slot: ProviderSlot, sms: OutgoingSms, unstarted: _Unstarted, *, first: bool
    ) -> SendResult | None:
        """One provider call; None when it did not start (stopping, or the message may no
        longer be sent). The FIRST call of a message records that it starts beforehand."""
        if not await slot.limiter.acquire(self._stop_event):
            return None
        async with slot.gate:
            if self._stopping:
                return None
            if first and not await self._marker.start(sms.message_id):
                return None
            unstarted.started(sms.message_id)
            started = time.monotonic()
            try:
                return await slot.provider.send(sms)
            except Exception as exc:  # an outage or a bug in a connector: never lose the row
                log.warning(
                    "provider %s raised while sending %s: %r",
                    slot.provider.name,
                    sms.message_id,
                    exc,
                )
                return SendResult(SendOutcome.TRANSIENT, detail=f"{type(exc).__name__}: {exc}")
            finally:
                PROVIDER_LATENCY.labels(provider=slot.provider.name).observe(
                    time.monotonic() - started
                )

    def _retry_or_fail(self, message: Claimed, provider: str | None, detail: str) -> Outcome:
        if message.attempts >= self.settings.max_attempts:
            return Outcome(
                message,
                "failed",
                provider=provider,
                reason="provider_unavailable",
                detail=f"gave up after {message.attempts} attempts; {detail}",
            )
        delay = min(self.settings.retry_backoff_seconds * 2 ** (message.attempts - 1), 3600.0)
        return Outcome(
            message,
            "queued",
            provider=provider,
            detail=detail,
            retry_at=utcnow() + timedelta(seconds=delay),
        )


def _outgoing(message: Claimed) -> OutgoingSms:
    return OutgoingSms(
        message_id=message.id,
        to=message.recipient,
        text=message.text,
        sender=message.sender,
        encoding=message.encoding,
        segments=message.segments,
        dedupe_key=f"{message.id}.{message.send_seq}",
        type=message.type,
    )


def _stopped(message: Claimed, slot: ProviderSlot, last_detail: str) -> Outcome:
    # Stopping after a failed call: the next provider is not tried now.
    return Outcome(
        message,
        "queued",
        provider=slot.provider.name,
        detail=f"{last_detail}; not tried further: the dispatcher stopped",
    )


def _settled(message: Claimed, slot: ProviderSlot, result: SendResult) -> Outcome | None:
    """MESSAGE's outcome when SLOT's answer settles it (sent, maybe sent, refused); None for a
    transient failure, after which the next provider of the route is tried."""
    name = slot.provider.name
    if result.outcome == SendOutcome.ACCEPTED:
        slot.failures = 0
        return Outcome(
            message,
            "sent",
            provider=name,
            provider_message_id=result.provider_message_id,
            detail=result.detail,
        )
    if result.outcome == SendOutcome.UNKNOWN and not slot.provider.deduplicates:
        return Outcome(
            message,
            "unknown",
            provider=name,
            reason="provider_timeout",
            detail=result.detail or "the provider did not answer; it may have sent it",
        )
    if result.outcome == SendOutcome.PERMANENT:
        return Outcome(
            message,
            "failed",
            provider=name,
            reason=result.reason or "rejected",
            detail=result.detail,
        )
    return None


def _transient_failure(slot: ProviderSlot, result: SendResult) -> str:
    """Count SLOT's failure (resting it after five in a row); returns the detail to report."""
    slot.failures += 1
    if slot.failures >= 5:
        # Stop hammering a provider that keeps failing; try it again a little later.
        slot.down_until = time.monotonic() + min(60.0, 2.0 * slot.failures)
    slot.last_detail = result.detail
    return f"{slot.provider.name}: {result.detail or 'temporary failure'}"
