"""SMPP 3.4 provider: an ESME on asyncio streams, bound as a transceiver to one SMSC.

One TCP connection both submits (submit_sm, UDH-concatenated for long texts, receipts
requested) and receives (deliver_sm: delivery receipts and inbound SMS). A supervisor task
connects, binds, keeps the link alive with enquire_link and reconnects with exponential
backoff; while the link is down, send() answers TRANSIENT at once so the dispatcher can fail
over. Requests are matched to responses by sequence number, with at most ``window`` submits
in flight.

Receipts and inbound SMS go to an event sink (the hub's ``handle_events``), and the
deliver_sm is acknowledged only once the sink has stored them: if the process dies in
between, the SMSC delivers again, and the deterministic event keys make that harmless.

A long message goes out as several submit_sm whose ids all map to our message (kept in the
hub's state store, so receipts arriving after a restart, or on another instance's bind,
still resolve); it is delivered when every part is. SMPP has no idempotency key, so
``deduplicates`` is False, and a submit_sm that went out without an answer (timeout, link
lost) is reported UNKNOWN rather than sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from connectors.sms.base import SmsProviderBase
from connectors.sms.smpp.journal import MoGroup, PartRef
from connectors.sms.smpp.link import Link, LinkLost
from connectors.sms.smpp.pdu import (
    BindTransceiver,
    Command,
    Pdu,
    PduError,
    ShortMessage,
    Status,
    decode_bind_resp,
    decode_submit_sm_resp,
    message_id_resp_body,
    status_name,
)
from connectors.sms.smpp.receiving import DeliverSmReader
from connectors.sms.smpp.sending import Attempt, submit_bodies
from connectors.sms.smpp.settings import THROTTLE_STATUSES, SmppSettings, status_outcome
from connectors.sms.smpp.shared_state import SharedSmppState
from hub.core.config import read_secret
from hub.errors import ConfigError
from hub.ports.sms import (
    DeliveryReason,
    OutgoingSms,
    ProviderContext,
    ProviderEvent,
    SendOutcome,
    SendResult,
)
from hub.ports.state import MemoryStateStore
from hub.sending.callbacks import CallbackView

log = logging.getLogger("smshub.smpp")

EventSink = Callable[[Sequence[ProviderEvent]], Awaitable[None]]


class SmppProvider(SmsProviderBase[SmppSettings]):
    """Implements hub.ports.sms.SmsProvider over one SMPP 3.4 transceiver bind."""

    settings_model = SmppSettings
    label = "SMPP"
    log = log
    # SMPP has no idempotency key.
    deduplicates = False

    def __init__(self, settings: SmppSettings, ctx: ProviderContext) -> None:
        super().__init__(settings, ctx)
        self.password = read_secret(settings, "password", self.where) or ""
        try:
            BindTransceiver(settings.system_id, self.password, settings.system_type).encode()
        except PduError as exc:
            # Found now rather than as a reconnect loop that can never bind.
            raise ConfigError(f"{self.where}: {exc}") from None
        # Where receipts and inbound SMS go; the composition root passes the hub's
        # handle_events through the context, and tests may set it directly.
        self.events: EventSink | None = ctx.emit
        # In the hub's state store, so every instance resolves receipts of every part;
        # without one (a provider built alone), in this process only.
        self.state = SharedSmppState(
            ctx.store or MemoryStateStore(),
            ctx.name,
            receipt_window=settings.receipt_window_hours * 3600,
            mo_timeout=settings.mo_concat_timeout,
        )
        # Where earlier builds kept that state: moved into the store at start.
        self.legacy_state_path = (
            Path(settings.state_path)
            if settings.state_path
            else ctx.data_dir / f"smpp-{ctx.name}.jsonl"
        )
        self.reader = DeliverSmReader(self.name, settings, self.state)
        self.peer = f"{settings.host}:{settings.port}"
        self.smsc_system_id = ""
        self._link: Link | None = None
        self._bound = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._stopping = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ref = random.randrange(256)
        self._throttle_level = 0
        self._throttled_until = 0.0
        self._reconnect_at = 0.0
        self._last_error = ""
        self._last_housekeeping = 0.0
        self.binds = 0  # successful binds so far (reconnects show up here)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start connecting; waits (bounded) for the first bind attempt."""
        if self.events is None:
            log.error(
                "SMPP provider %r has no event sink: receipts and inbound SMS will be refused "
                "(answered ESME_RX_T_APPN) until one is set",
                self.name,
            )
        await asyncio.to_thread(self.state.adopt_file, self.legacy_state_path)
        self._stopping.clear()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"smpp-{self.name}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._first_attempt.wait(),
                self.settings.connect_timeout + self.settings.response_timeout,
            )

    async def close(self) -> None:
        """Unbind politely, stop reconnecting."""
        self._stopping.set()
        link = self._link
        if link is not None and link.usable:
            try:
                await link.request(
                    Command.UNBIND, b"", timeout=min(2.0, self.settings.response_timeout)
                )
            except (ConnectionError, TimeoutError, OSError) as exc:
                log.info("unbind from %s got no answer: %r", self.peer, exc)
            link.close("closed by us")
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def callbacks(self) -> Mapping[str, CallbackView]:
        """None: receipts and inbound SMS arrive over the SMPP link itself."""
        return {}

    @property
    def bound(self) -> bool:
        return self._link is not None and self._link.usable

    @property
    def link(self) -> Link | None:
        """The current connection (None between connections)."""
        return self._link

    async def wait_bound(self, timeout: float) -> None:
        """Wait until a link is bound (raises TimeoutError)."""
        await asyncio.wait_for(self._bound.wait(), timeout)

    # -- connection supervision ------------------------------------------------------------
    async def _supervise(self) -> None:
        delay = self.settings.reconnect_delay
        while not self._stopping.is_set():
            binds = self.binds
            try:
                await self._run_link()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._last_error = _describe(exc)
                log.warning("SMPP %s (%s): %s", self.name, self.peer, self._last_error)
            finally:
                self._bound.clear()
                self._first_attempt.set()
            if self._stopping.is_set():
                break
            if self.binds > binds:
                # The link was up and then lost: start the backoff over from the beginning.
                delay = self.settings.reconnect_delay
            # Jitter keeps a fleet of hubs from hammering a recovering SMSC in step.
            wait = delay * random.uniform(0.8, 1.2)
            self._reconnect_at = time.monotonic() + wait
            log.info("SMPP %s: reconnecting to %s in %.1fs", self.name, self.peer, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            delay = min(delay * 2, self.settings.reconnect_max_delay)

    async def _run_link(self) -> None:
        """Connect, bind, serve until the link closes."""
        s = self.settings
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(s.host, s.port), s.connect_timeout
            )
        except TimeoutError:
            raise ConnectionError(f"no TCP connection within {s.connect_timeout}s") from None
        link = Link(reader, writer, s.window)
        self._link = link
        reader_task = asyncio.create_task(self._read_loop(link), name=f"smpp-{self.name}-read")
        try:
            bind = BindTransceiver(
                system_id=s.system_id,
                password=self.password,
                system_type=s.system_type,
                address_range=s.address_range,
            )
            try:
                resp = await link.request(
                    Command.BIND_TRANSCEIVER, bind.encode(), timeout=s.response_timeout
                )
            except TimeoutError:
                raise ConnectionError(f"no bind response within {s.response_timeout}s") from None
            if resp.status != Status.ROK or resp.command_id != Command.BIND_TRANSCEIVER_RESP:
                raise ConnectionError(
                    f"bind_transceiver as {s.system_id!r} refused: {status_name(resp.status)}"
                )
            self.smsc_system_id = decode_bind_resp(resp.body)
            link.bound = True
            self.binds += 1
            self._last_error = ""
            self._bound.set()
            self._first_attempt.set()
            log.info(
                "SMPP %s: bound to %s (%s) as %r",
                self.name,
                self.peer,
                self.smsc_system_id or "?",
                s.system_id,
            )
            await self._keep_alive(link)
            if not self._stopping.is_set():
                raise ConnectionError(f"link lost: {link.close_reason}")
        finally:
            link.close(link.close_reason or "link ended")
            if self._link is link:
                self._link = None
            reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader_task

    async def _keep_alive(self, link: Link) -> None:
        """enquire_link when the link has been silent; housekeeping on the side."""
        s = self.settings
        while not link.closed.is_set():
            idle = time.monotonic() - link.last_rx
            if idle < s.enquire_link_interval:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        link.closed.wait(), min(s.enquire_link_interval - idle, 60.0)
                    )
                self._housekeeping()
                continue
            try:
                await link.request(Command.ENQUIRE_LINK, b"", timeout=s.response_timeout)
            except TimeoutError:
                link.close(f"no enquire_link_resp within {s.response_timeout}s")
            except ConnectionError:
                pass  # closed meanwhile; the loop condition ends it

    def _housekeeping(self) -> None:
        now = time.time()
        if now - self._last_housekeeping < min(60.0, self.settings.mo_concat_timeout / 4):
            return
        self._last_housekeeping = now
        self._spawn(self._expire_mo(now))

    async def _expire_mo(self, now: float) -> None:
        try:
            stale = await asyncio.to_thread(self.state.stale_mo_groups, now)
        except Exception:
            log.exception("SMPP %s: cannot read unfinished inbound SMS", self.name)
            return
        for group in stale:
            await self._store_incomplete_mo(group)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_loop(self, link: Link) -> None:
        """Read PDUs until the link ends; requests from the SMSC are answered here."""
        try:
            while True:
                pdu = await link.read_pdu()
                if pdu.is_response:
                    link.resolve(pdu)
                elif pdu.command_id == Command.ENQUIRE_LINK:
                    link.respond(Command.ENQUIRE_LINK_RESP, Status.ROK, pdu.sequence)
                elif pdu.command_id == Command.DELIVER_SM:
                    if not link.bound:
                        link.respond(Command.GENERIC_NACK, Status.RINVBNDSTS, pdu.sequence)
                    else:
                        self._spawn(self._handle_deliver_sm(link, pdu))
                elif pdu.command_id == Command.UNBIND:
                    link.respond(Command.UNBIND_RESP, Status.ROK, pdu.sequence)
                    link.close("the SMSC unbound")
                    return
                elif pdu.command_id == Command.ALERT_NOTIFICATION:
                    pass  # no response is defined for it, and we have no use for it
                else:
                    log.warning(
                        "SMPP %s: %s not supported; answered generic_nack", self.name, pdu.name
                    )
                    link.respond(Command.GENERIC_NACK, Status.RINVCMDID, pdu.sequence)
        except asyncio.IncompleteReadError:
            link.close("the SMSC closed the connection")
        except PduError as exc:
            # A bad length cannot be skipped over: the stream is out of step for good.
            link.close(f"framing error: {exc}")
        except (ConnectionError, OSError) as exc:
            link.close(f"connection error: {exc!r}")

    # -- sending ---------------------------------------------------------------------------
    async def attempt(self, sms: OutgoingSms) -> SendResult:
        """Submit every part; the first part's id is the provider id."""
        if not self.bound:
            return SendResult(SendOutcome.TRANSIENT, detail=self._outage_detail())
        left = self._throttled_until - time.monotonic()
        if left > 0:
            return SendResult(
                SendOutcome.TRANSIENT, detail=f"the SMSC is throttling us; pausing {left:.1f}s"
            )
        try:
            self._ref = (self._ref + 1) % 256
            bodies = submit_bodies(sms, self.settings, self._ref)
        except PduError as exc:
            return SendResult(SendOutcome.PERMANENT, reason=DeliveryReason.OTHER, detail=str(exc))
        total = len(bodies)
        first_id = ""
        for index, body in enumerate(bodies):
            deadline = time.monotonic() + self.settings.part_retry_seconds
            while True:
                attempt = await self._submit(body, sms.message_id, index, total, first_id)
                if attempt.ok:
                    break
                where = f"part {index + 1}/{total}: " if total > 1 else ""
                if attempt.permanent is not None:
                    sent = f"; {index} part(s) already went out" if index else ""
                    return SendResult(
                        SendOutcome.PERMANENT,
                        reason=attempt.permanent,
                        detail=f"{where}{attempt.detail}{sent}",
                    )
                if index == 0:
                    # Nothing went out for sure: try again later (or through another
                    # provider), unless this one may have gone out.
                    outcome = SendOutcome.UNKNOWN if attempt.maybe_sent else SendOutcome.TRANSIENT
                    return SendResult(outcome, detail=f"{where}{attempt.detail}")
                # Earlier parts went out: retry this part (same UDH, so the phone still
                # joins it) for a while rather than send the whole message again.
                if not await self._wait_to_retry(deadline):
                    return SendResult(
                        SendOutcome.UNKNOWN,
                        detail=f"{where}{attempt.detail}; {index} of {total} parts went out",
                    )
            if index == 0:
                first_id = attempt.message_id
        return SendResult(SendOutcome.ACCEPTED, first_id or None, detail=f"{total} part(s)")

    def _outage_detail(self) -> str:
        detail = f"not bound to SMSC {self.peer}"
        if self._last_error:
            detail += f" ({self._last_error})"
        wait = self._reconnect_at - time.monotonic()
        if wait > 0:
            detail += f"; reconnecting in {wait:.1f}s"
        return detail

    async def _wait_to_retry(self, deadline: float) -> bool:
        """Wait until sending may work again (bound, not throttled); False past the deadline."""
        while True:
            now = time.monotonic()
            if now >= deadline:
                return False
            if not self.bound:
                try:
                    await asyncio.wait_for(self._bound.wait(), deadline - now)
                except TimeoutError:
                    return False
                continue
            pause = self._throttled_until - now
            if pause > 0:
                if now + pause > deadline:
                    return False
                await asyncio.sleep(pause)
                continue
            return True

    async def _submit(
        self, body: bytes, message_id: str, index: int, total: int, first_id: str
    ) -> Attempt:
        link = self._link
        if link is None or not link.usable:
            return Attempt(False, detail=self._outage_detail())

        noted: list[tuple[str, PartRef]] = []

        def remember(resp: Pdu) -> None:
            if resp.status != Status.ROK or resp.command_id != Command.SUBMIT_SM_RESP:
                return
            pid = decode_submit_sm_resp(resp.body)
            if pid:
                ref = PartRef(message_id, first_id or pid, index, total, time.time())
                self.state.remember_recent(pid, ref)
                noted.append((pid, ref))

        try:
            resp = await link.request(
                Command.SUBMIT_SM,
                body,
                timeout=self.settings.response_timeout,
                windowed=True,
                on_response=remember,
            )
        except TimeoutError:
            # SMPP cannot tell whether the SMSC took it; sending again may send it twice.
            return Attempt(
                False,
                maybe_sent=True,
                detail=f"no submit_sm_resp within {self.settings.response_timeout}s; "
                "the SMSC may have taken it",
            )
        except LinkLost as exc:
            return Attempt(
                False,
                maybe_sent=True,
                detail=f"link to {self.peer} lost before submit_sm_resp ({exc}); "
                "the SMSC may have taken it",
            )
        except (ConnectionError, OSError) as exc:
            return Attempt(False, detail=f"not sent, link to {self.peer} is down: {exc}")
        for pid, ref in noted:
            if ref.total > 1:
                try:
                    await asyncio.to_thread(self.state.remember, pid, ref)
                except Exception as exc:  # sent all the same: only other instances miss it
                    log.warning("SMPP %s: cannot store the id of part %s: %s", self.name, pid, exc)
        return self._classify(link, resp)

    def _classify(self, link: Link, resp: Pdu) -> Attempt:
        status = resp.status
        if status == Status.ROK and resp.command_id == Command.SUBMIT_SM_RESP:
            self._throttle_level = 0
            pid = decode_submit_sm_resp(resp.body)
            if not pid:
                log.warning("SMPP %s: submit_sm_resp without message_id", self.name)
            return Attempt(True, message_id=pid)
        name = status_name(status)
        if resp.command_id == Command.GENERIC_NACK:
            name = f"generic_nack {name}"
        if status in THROTTLE_STATUSES:
            self._throttle_level += 1
            pause = min(
                self.settings.throttle_max_delay,
                self.settings.throttle_delay * 2 ** (self._throttle_level - 1),
            )
            self._throttled_until = time.monotonic() + pause
            return Attempt(False, throttled=True, detail=f"{name}; pausing {pause:.1f}s")
        if status == Status.RINVBNDSTS:
            link.close(f"the SMSC says we are not bound ({name})")
        outcome, reason = status_outcome(status, self.settings)
        if outcome == SendOutcome.PERMANENT:
            return Attempt(False, permanent=reason, detail=name)
        return Attempt(False, detail=name)

    # -- receiving -------------------------------------------------------------------------
    async def _handle_deliver_sm(self, link: Link, pdu: Pdu) -> None:
        """Turn a deliver_sm into events, store them, and only then acknowledge it."""
        try:
            sm = ShortMessage.decode(pdu.body, "deliver_sm")
        except PduError as exc:
            log.warning("SMPP %s: malformed deliver_sm refused: %s", self.name, exc)
            link.respond(Command.DELIVER_SM_RESP, Status.RX_P_APPN, pdu.sequence, b"\x00")
            return
        status = Status.ROK
        try:
            events, after = await self.reader.events_for(sm)
            if events:
                if self.events is None:
                    raise RuntimeError("no event sink configured")
                await self.events(events)
            if after is not None:
                await asyncio.to_thread(after)
        except asyncio.CancelledError:
            raise  # closing: leave it unanswered, the SMSC delivers it again
        except Exception:
            log.exception("SMPP %s: storing a deliver_sm failed; asking for redelivery", self.name)
            status = Status.RX_T_APPN
        link.respond(Command.DELIVER_SM_RESP, status, pdu.sequence, message_id_resp_body(""))

    async def _store_incomplete_mo(self, group: MoGroup) -> None:
        """The missing parts never came: store what did, marking the gaps."""
        if self.events is None or not await asyncio.to_thread(self.state.is_open, group.key):
            return
        raw = {"parts": group.total, "received_parts": sorted(group.parts), "incomplete": True}
        event = self.reader.inbound_from_group(group, raw)
        try:
            await self.events([event])
        except Exception:
            log.exception("SMPP %s: storing an incomplete inbound SMS failed", self.name)
            return
        await asyncio.to_thread(self.state.finish_mo, group)
        log.warning(
            "SMPP %s: inbound SMS from %s stored with %d of %d parts",
            self.name,
            group.sender,
            len(group.parts),
            group.total,
        )


def _describe(exc: BaseException) -> str:
    """A short reason for logs and send details ("Connection refused", "bind ... refused")."""
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__
