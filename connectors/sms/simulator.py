"""The built-in SMS simulator: the embedded default provider.

It records every SMS in a JSONL file, sends delivery reports back through the hub's own
callback routes (signed like a real provider's), and injects inbound SMS, so the whole hub
can be tried without a gateway. Outcomes follow a configurable failure mix, decided from
the message id so a run can be repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import json
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from connectors.sms.base import SmsProviderBase
from connectors.sms.callback_json import json_object
from hub.core.config import read_secret
from hub.errors import MalformedCallback
from hub.ports.sms import (
    DeliveryReason,
    DeliveryReport,
    DeliveryState,
    InboundSms,
    OutgoingSms,
    ProviderContext,
    ProviderEvent,
    ProviderSettings,
    SendOutcome,
    SendResult,
)
from hub.sending.callbacks import CallbackRequest, CallbackView, SharedSecretMixin

log = logging.getLogger("smshub.simulator")

REASONS = {r.value for r in DeliveryReason}


class SimulatorSettings(ProviderSettings):
    type: Literal["simulator"] = "simulator"
    # Resending the same message (after a crash) is recognised and not recorded twice.
    deduplicates: bool = True
    # Send delivery reports back to the hub.
    send_reports: bool = True
    # Seconds between accepting an SMS and reporting on it.
    report_delay: float = 1.0
    # Seconds each send request takes, as a real provider's HTTP round trip does (0: none).
    # With a latency, the log records each request when it arrives ("kind": "request"),
    # before the SMS is accepted ("kind": "mt") at its end.
    latency: float = Field(0.0, ge=0, le=60)
    # Share of messages reported undelivered, by reason, e.g. { invalid_number = 0.05 }.
    failure_mix: dict[str, float] = {}
    # Numbers always reported as invalid_number.
    invalid_numbers: list[str] = []
    # Numbers refused at send time (a permanent provider rejection).
    reject_numbers: list[str] = []
    # JSONL file of every SMS and report; empty means DATA_DIR/simulator.jsonl.
    log_path: str = ""
    # How many of the latest sends are remembered to recognise a resend (after a crash a
    # message is resent within minutes); older ones cost no memory, however long the log.
    dedupe_window: int = Field(50_000, ge=1)
    # Our own number, the recipient of injected inbound SMS.
    number: str = "+33700000000"
    # Environment variable or file holding the callback secret; unset means a random secret
    # per process (the simulator calls the hub from inside the same process).
    secret_env: str | None = None
    secret_file: str | None = None

    @field_validator("failure_mix")
    @classmethod
    def _check_mix(cls, value: dict[str, float]) -> dict[str, float]:
        for key, share in value.items():
            if key not in REASONS:
                raise ValueError(f"unknown reason {key!r}; use one of {sorted(REASONS)}")
            if not 0 <= share <= 1:
                raise ValueError(f"share for {key!r} must be between 0 and 1")
        if sum(value.values()) > 1:
            raise ValueError("the shares add up to more than 1")
        return value


class SimulatorProvider(SmsProviderBase[SimulatorSettings]):
    """Implements hub.ports.sms.SmsProvider without a network: a log file and callbacks."""

    settings_model = SimulatorSettings
    label = "the simulator"
    log = log

    def __init__(self, settings: SimulatorSettings, ctx: ProviderContext) -> None:
        super().__init__(settings, ctx)
        self.deduplicates = settings.deduplicates
        self.log_path = (
            Path(settings.log_path) if settings.log_path else (ctx.data_dir / "simulator.jsonl")
        )
        self.secret = read_secret(settings, "secret", self.where) or (secrets.token_urlsafe(24))
        # Digests of the latest dedupe keys (the provider id is derived from the key).
        self._sent = _RecentKeys(settings.dedupe_window)
        self._pending: list[tuple[float, str, dict[str, Any]]] = []
        self._fd: int | None = None
        self._reporter: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Streamed, keeping only the latest keys and the sends still waiting for a report:
        # start-up memory does not grow with the log (it used to hold every line).
        unreported: dict[str, dict[str, Any]] = {}
        tracking = self.settings.send_reports
        for entry in iter_log(self.log_path):
            kind = entry.get("kind")
            if kind == "mt":
                self._sent.add(entry["key"])
                if tracking:
                    unreported[entry["id"]] = {
                        f: entry[f] for f in ("id", "key", "message_id", "to")
                    }
            elif kind == "dlr" and tracking:
                unreported.pop(entry["id"], None)
        self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if tracking:
            for entry in unreported.values():
                self._schedule_report(entry)
            self._reporter = asyncio.create_task(self._report_loop(), name="simulator-reports")

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporter
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def callbacks(self) -> Mapping[str, CallbackView]:
        return {
            "dlr": SimulatorReportView(self.name, self.secret),
            "mo": SimulatorInboundView(self.name, self.secret),
        }

    # -- sending ---------------------------------------------------------------------------
    async def attempt(self, sms: OutgoingSms) -> SendResult:
        key = sms.dedupe_key or sms.message_id
        provider_id = "sim-" + hashlib.sha256(key.encode()).hexdigest()[:20]
        if self.deduplicates and key in self._sent:
            return SendResult(SendOutcome.ACCEPTED, provider_id, detail="duplicate ignored")
        if sms.to in self.settings.reject_numbers:
            return SendResult(
                SendOutcome.PERMANENT,
                reason=DeliveryReason.INVALID_NUMBER,
                detail="simulator refuses this number",
            )
        if self.settings.latency > 0:
            # The request has reached the provider: from here a crash leaves it unknown.
            self._append(
                {
                    "kind": "request",
                    "key": key,
                    "message_id": sms.message_id,
                    "at": datetime.now(UTC).isoformat(),
                }
            )
            await asyncio.sleep(self.settings.latency)
            if self.deduplicates and key in self._sent:
                return SendResult(SendOutcome.ACCEPTED, provider_id, detail="duplicate ignored")
        entry = {
            "kind": "mt",
            "id": provider_id,
            "key": key,
            "message_id": sms.message_id,
            "to": sms.to,
            "from": sms.sender,
            "text": sms.text,
            "encoding": sms.encoding,
            "segments": sms.segments,
            "at": datetime.now(UTC).isoformat(),
        }
        self._append(entry)
        self._sent.add(key)
        if self.settings.send_reports:
            self._schedule_report(entry)
        return SendResult(SendOutcome.ACCEPTED, provider_id)

    def _append(self, entry: dict[str, Any]) -> None:
        # One write() per line on an O_APPEND descriptor: a killed process leaves whole lines.
        assert self._fd is not None, "simulator used before start()"
        os.write(self._fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))

    def outcome_for(self, entry: Mapping[str, Any]) -> tuple[str, str | None]:
        """The (status, reason) this message will be reported with."""
        if entry["to"] in self.settings.invalid_numbers:
            return "undelivered", "invalid_number"
        roll = int(hashlib.sha256(entry["key"].encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        for reason, share in sorted(self.settings.failure_mix.items()):
            if roll < share:
                return "undelivered", reason
            roll -= share
        return "delivered", None

    # -- reports ---------------------------------------------------------------------------
    def _schedule_report(self, entry: Mapping[str, Any]) -> None:
        status, reason = self.outcome_for(entry)
        report = {
            "id": entry["id"],
            "message_id": entry["message_id"],
            "status": status,
            "reason": reason,
        }
        due = time.monotonic() + self.settings.report_delay
        heapq.heappush(self._pending, (due, entry["id"], report))
        self._kick.set()

    async def _report_loop(self) -> None:
        while True:
            if not self._pending:
                self._kick.clear()
                await self._kick.wait()
                continue
            wait = self._pending[0][0] - time.monotonic()
            if wait > 0:
                self._kick.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), wait)
                continue
            batch: list[tuple[float, str, dict[str, Any]]] = []
            now = time.monotonic()
            while self._pending and self._pending[0][0] <= now and len(batch) < 500:
                batch.append(heapq.heappop(self._pending))
            if not await self._post("dlr", {"reports": [r for _, _, r in batch]}):
                for due, pid, report in batch:
                    heapq.heappush(self._pending, (due + 1.0, pid, report))
                continue
            for _, pid, _ in batch:
                self._append({"kind": "dlr", "id": pid})

    async def flush_reports(self) -> int:
        """Send every pending report now, due or not (tests, and `smshub simulator flush`)."""
        batch = [heapq.heappop(self._pending) for _ in range(len(self._pending))]
        if batch and not await self._post("dlr", {"reports": [r for _, _, r in batch]}):
            for item in batch:
                heapq.heappush(self._pending, item)
            return 0
        for _, pid, _ in batch:
            self._append({"kind": "dlr", "id": pid})
        return len(batch)

    async def _post(self, kind: str, body: dict[str, Any]) -> bool:
        client = self.ctx.hub_client
        if client is None:
            log.error("simulator has no way to reach the hub's callbacks")
            return False
        try:
            response = await client.post(
                f"/callbacks/{self.name}/{kind}",
                headers={"X-Smshub-Secret": self.secret},
                json=body,
            )
        except Exception as exc:
            log.warning("simulator could not deliver %s callback: %r", kind, exc)
            return False
        if response.status_code != 200:
            log.warning(
                "hub answered %s to a simulator %s callback: %s",
                response.status_code,
                kind,
                response.text[:200],
            )
            return False
        return True

    async def receive(self, sender: str, text: str, recipient: str | None = None) -> bool:
        """Inject an inbound SMS as if a phone had sent it to our number."""
        body = {
            "id": "sim-mo-" + secrets.token_hex(8),
            "from": sender,
            "to": recipient or self.settings.number,
            "text": text,
            "at": datetime.now(UTC).isoformat(),
        }
        return await self._post("mo", body)

    def read_log(self) -> list[dict[str, Any]]:
        """Every entry recorded so far (tests; `iter_log` streams it)."""
        return read_log(self.log_path)

    def iter_log(self) -> Iterator[dict[str, Any]]:
        """Every entry recorded so far, one at a time (`smshub simulator log`)."""
        return iter_log(self.log_path)


class _RecentKeys:
    """The latest LIMIT dedupe keys, as 8-byte digests: bounded memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._order: deque[int] = deque()
        self._keys: set[int] = set()

    @staticmethod
    def _digest(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")

    def add(self, key: str) -> None:
        digest = self._digest(key)
        if digest in self._keys:
            return
        self._keys.add(digest)
        self._order.append(digest)
        if len(self._order) > self.limit:
            self._keys.discard(self._order.popleft())

    def __contains__(self, key: str) -> bool:
        return self._digest(key) in self._keys

    def __len__(self) -> int:
        return len(self._keys)


def iter_log(path: Path) -> Iterator[dict[str, Any]]:
    """Entries of a simulator JSONL log, one line at a time; a torn line (killed writer)
    is skipped."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return
    with file:
        for line in file:
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(entry, dict):
                yield entry


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every entry of a simulator JSONL log (see iter_log)."""
    return list(iter_log(path))


class SimulatorReportView(SharedSecretMixin, CallbackView):
    label = "simulator dlr"

    def parse_events(self, request: CallbackRequest) -> list[ProviderEvent]:
        reports = json_object(request).get("reports")
        if not isinstance(reports, list):
            raise MalformedCallback("'reports' must be a list")
        events: list[ProviderEvent] = []
        for i, item in enumerate(reports):
            try:
                status = item["status"]
                reason = item.get("reason")
                events.append(
                    DeliveryReport(
                        provider=self.provider_name,
                        event_key=f"{item['id']}:{status}",
                        state=DeliveryState(status),
                        message_id=item.get("message_id"),
                        provider_message_id=item["id"],
                        reason=DeliveryReason(reason) if reason else None,
                        raw=item,
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise MalformedCallback(f"report {i} is malformed: {exc!r}") from None
        return events


class SimulatorInboundView(SharedSecretMixin, CallbackView):
    label = "simulator mo"

    def parse_events(self, request: CallbackRequest) -> list[ProviderEvent]:
        body = json_object(request)
        try:
            return [
                InboundSms(
                    provider=self.provider_name,
                    event_key=str(body["id"]),
                    sender=str(body["from"]),
                    recipient=str(body["to"]),
                    text=str(body["text"]),
                    received_at=datetime.fromisoformat(body["at"]) if body.get("at") else None,
                    raw=body,
                )
            ]
        except (KeyError, ValueError) as exc:
            raise MalformedCallback(f"inbound SMS is malformed: {exc!r}") from None
