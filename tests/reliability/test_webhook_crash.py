"""Crash test: webhook retries survive a hub restart (kill -9); every event is delivered at
least once, every request is signed.

`smshub run --role api,dispatcher` runs as a separate process with the simulator reporting
quickly, and a webhook endpoint (created before the first start) pointing at a local HTTP
receiver. The receiver answers 500 to the first request of each event and 200 afterwards, so
every event goes through the retry path. 200 messages are submitted in waves, one per hub
life; the hub is killed with SIGKILL at random moments (while it sends, applies reports and
posts webhooks) and restarted; a last run settles everything.

Retries wait 30 s at first (not configurable): to keep the test short, the test makes such
rows due again itself. A delivery claimed by a process that died comes back by itself after
its claim lease (`claim_lease_seconds`, 2 s here); a claimed row, possibly being posted at
that very moment, is left alone.

The seed is fixed so a failure can be replayed; set SMSHUB_CRASH_SEED to try others.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select

from hub.core.timeutil import as_utc, utcnow
from hub.inbound import webhooks
from hub.sending import submit as sending
from hub.sending.accounts import create_account
from hub.sending.credits import top_up
from hub.store.db import make_engine, session_scope
from hub.store.models import Message, MessageStatus, WebhookDelivery
from tests.conftest import make_config
from tests.reliability._harness import (
    SEED,
    CrashHarness,
    HubProcess,
    backend_of,
    open_count,
    write_config,
)
from tests.servers._util import BackgroundServer, free_port

# Kills processes and counts what survived: slow, and run by CI all the same (no -m filter).
pytestmark = pytest.mark.slow

ACCOUNT = "hooks"
MESSAGES = 200
KILLS = 3
# One wave of messages per hub life (the killed ones and the last).
WAVE = MESSAGES // (KILLS + 1)
# Sends per second the simulator takes: a wave takes over a second to go out, so a kill
# lands while messages are sent, reported on and notified.
RATE = 40
REPORT_DELAY = 0.1
INVALID_SHARE = 0.1
KILL_DELAY = (0.3, 1.5)
# Kills that must find work left (messages or webhooks), or the test proved little.
MIN_KILLS_MID_WORK = 2
READY_TIMEOUT = 60.0
SETTLE_TIMEOUT = 60.0
# A failed first attempt waits retry_delay(1) = 30 s; a claim lasts claim_lease_seconds (2 s,
# renewed while its process lives). Rows due within this window are claims (or retries
# about to be due anyway); rows due later wait for a retry.
CLAIM_WINDOW = timedelta(seconds=3)
EXPECTED_TYPES = {webhooks.MESSAGE_DELIVERED, webhooks.MESSAGE_FAILED}


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes
    status: int


class _Server(ThreadingHTTPServer):
    # The hub posts up to 10 requests at once; with socketserver's default backlog of 5 the
    # extra connection attempts are dropped and retried by TCP a second later.
    request_queue_size = 128


class Receiver:
    """The webhook endpoint: records every request; 500 to the first one of each event."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        # Requests cut short by a kill (fewer body bytes than Content-Length).
        self.torn = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's hook name)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                event_id = self.headers.get(webhooks.ID_HEADER, "")
                if len(body) < length:
                    # The hub was killed in the middle of sending: not a request at all.
                    with receiver._lock:
                        receiver.torn += 1
                    return
                with receiver._lock:
                    status = 200 if event_id in receiver._seen else 500
                    receiver._seen.add(event_id)
                    receiver.requests.append(
                        Received(time.time(), dict(self.headers.items()), body, status)
                    )
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"try again later")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = BackgroundServer(Handler, server_class=_Server).start()

    @property
    def url(self) -> str:
        return f"{self.server.url}/smshub-events"

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _write_config(tmp_path: Path, db_url: str) -> Path:
    port = free_port()
    return write_config(
        tmp_path,
        db_url,
        f"""
[http]
host = "127.0.0.1"
port = {port}

[dispatcher]
claim_lease_seconds = 2.0
poll_interval = 0.05
retry_backoff_seconds = 0.05

[providers.simulator]
type = "simulator"
report_delay = {REPORT_DELAY}
rate_per_second = {RATE}
failure_mix = {{ invalid_number = {INVALID_SHARE} }}
""",
        hub_extra=f'public_url = "http://127.0.0.1:{port}"\n',
    )


def _submit_wave(engine: Engine, config: Any, wave: int) -> None:
    numbers = [f"+3361{n:07d}" for n in range(wave * WAVE, (wave + 1) * WAVE)]
    result = sending.submit(
        engine,
        config,
        sending.SubmitRequest(account=ACCOUNT, recipients=numbers, text=f"Rappel, vague {wave}"),
    )
    assert [r.status for r in result.recipients] == ["queued"] * WAVE


def _pending_deliveries(engine: Engine) -> int:
    with session_scope(engine) as s:
        return int(
            s.exec(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.status == "pending")
            ).one()
        )


def _hurry(engine: Engine, hub_is_down: bool) -> tuple[int, int]:
    """Make deliveries waiting for a retry due now instead of in 30 s. Returns how many were
    waiting for a retry and, with the hub down, how many were claimed (a killed process's
    unfinished posts, back after their lease)."""
    now = utcnow()
    retries = leases = 0
    with session_scope(engine) as s:
        for row in s.exec(select(WebhookDelivery).where(WebhookDelivery.status == "pending")):
            due = as_utc(row.due_at)
            if due <= now:
                continue
            if due <= now + CLAIM_WINDOW:
                leases += hub_is_down
                continue
            retries += 1
            row.due_at = now
            s.add(row)
    return retries, leases


@dataclass
class Run:
    kills: int = 0
    kills_mid_work: int = 0
    # Deliveries a killed process had claimed and not recorded; retries it left waiting.
    orphaned_claims: int = 0
    waiting_retries: int = 0
    errors: list[str] = field(default_factory=list)

    def absorb(self, proc: HubProcess) -> None:
        self.errors += [f"{proc.label}:\n{block}" for block in proc.errors()]


def _crash_and_settle(
    config_path: Path, engine: Engine, submit_config: Any, rng: random.Random
) -> Run:
    run = Run()
    harness = CrashHarness(config_path, "api,dispatcher", ready_timeout=READY_TIMEOUT)
    for n in range(KILLS):
        proc = harness.kill_after(
            f"hub run {n + 1}",
            rng,
            KILL_DELAY,
            during=lambda n=n: _submit_wave(engine, submit_config, n),
        )
        run.kills += 1
        run.absorb(proc)
        if open_count(engine) or _pending_deliveries(engine):
            run.kills_mid_work += 1
        # Nobody runs now: the deliveries the dead process had claimed are due again at once.
        retries, leases = _hurry(engine, hub_is_down=True)
        run.waiting_retries += retries
        run.orphaned_claims += leases

    def pending() -> str | None:
        _hurry(engine, hub_is_down=False)
        messages, deliveries = open_count(engine), _pending_deliveries(engine)
        if not messages and not deliveries:
            return None
        return (
            f"after {SETTLE_TIMEOUT:.0f} s, {messages} message(s) not final and "
            f"{deliveries} webhook deliveries pending"
        )

    final = harness.settle(
        "final hub run",
        pending,
        SETTLE_TIMEOUT,
        died="the final hub run died",
        during=lambda: _submit_wave(engine, submit_config, KILLS),
    )
    run.absorb(final)
    return run


def test_webhooks_survive_kill_9(
    db_url: str, tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = backend_of(db_url)
    seed = f"{SEED}:{backend}:webhooks"
    rng = random.Random(seed)
    started = time.perf_counter()
    engine = make_engine(db_url)
    try:
        with session_scope(engine) as s:
            create_account(s, ACCOUNT, region="FR")
            top_up(s, ACCOUNT, 2 * MESSAGES)
            endpoint, secret = webhooks.add_endpoint(
                s, ACCOUNT, receiver.url, ["*"], private_ok=True
            )
            endpoint_id = endpoint.id
        config_path = _write_config(tmp_path, db_url)
        run = _crash_and_settle(config_path, engine, make_config(db_url, tmp_path / "s"), rng)
        with session_scope(engine) as s:
            messages = list(s.exec(select(Message)).all())
            deliveries = list(s.exec(select(WebhookDelivery)).all())
    finally:
        engine.dispose()
    requests = receiver.snapshot()

    assert run.kills_mid_work >= MIN_KILLS_MID_WORK, (
        f"only {run.kills_mid_work} of {run.kills} kills found work left; the test is too lax"
    )
    # Every message is final; the simulator deduplicates, so none is left `unknown`.
    assert len(messages) == MESSAGES
    statuses = Counter(m.status for m in messages)
    assert set(statuses) <= {MessageStatus.DELIVERED.value, MessageStatus.UNDELIVERED.value}, (
        statuses
    )
    expected = {
        f"msg.{m.id}.{m.status}": (
            webhooks.MESSAGE_DELIVERED
            if m.status == MessageStatus.DELIVERED
            else webhooks.MESSAGE_FAILED
        )
        for m in messages
    }
    status_of = {m.id: m.status for m in messages}

    # The queue: one delivery per event, every one delivered.
    assert Counter(d.event_id for d in deliveries) == Counter(list(expected))
    assert {d.endpoint_id for d in deliveries} == {endpoint_id}
    assert [d.event_id for d in deliveries if d.status != "delivered"] == []
    assert {d.event_id: d.event_type for d in deliveries} == expected

    # The receiver: every event at least once (first refused, then accepted), nothing else.
    by_event: dict[str, list[Received]] = {}
    for r in requests:
        by_event.setdefault(r.headers[webhooks.ID_HEADER], []).append(r)
    unexpected = sorted(set(by_event) - set(expected))
    assert unexpected == [], f"events nobody produced: {unexpected[:5]}"
    missing = sorted(set(expected) - set(by_event))
    assert missing == [], f"{len(missing)} event(s) never received, e.g. {missing[:5]}"
    never_accepted = sorted(e for e, rs in by_event.items() if all(r.status != 200 for r in rs))
    assert never_accepted == [], f"{len(never_accepted)} event(s) only ever got a 500"
    types = Counter(r.headers[webhooks.TYPE_HEADER] for r in requests)
    assert set(types) <= EXPECTED_TYPES, types

    # Every request is signed with the endpoint's secret, over its exact body.
    bad = []
    for r in requests:
        if not webhooks.verify_signature(
            secret,
            r.headers[webhooks.TIMESTAMP_HEADER],
            r.body,
            r.headers[webhooks.SIGNATURE_HEADER],
            now=r.at,
        ):
            bad.append(r.headers[webhooks.ID_HEADER])
            continue
        body = json.loads(r.body)
        event_id = r.headers[webhooks.ID_HEADER]
        assert (body["id"], body["type"], body["account"]) == (
            event_id,
            expected[event_id],
            ACCOUNT,
        )
        assert body["data"]["status"] == status_of[body["data"]["message_id"]]
    assert bad == [], f"{len(bad)} request(s) with a bad signature, e.g. {bad[:5]}"

    # Being killed is no reason for a restarted hub to report errors.
    assert run.errors == [], f"{len(run.errors)} error(s) logged, the first:\n{run.errors[0]}"
    repeats = sum(len(rs) - 2 for rs in by_event.values() if len(rs) > 2)
    with capsys.disabled():
        print(
            f"\n[webhook crash {backend} seed={seed}] {run.kills} kills "
            f"({run.kills_mid_work} mid-work, {run.orphaned_claims} claimed deliveries "
            f"orphaned, {run.waiting_retries} retries waiting), {len(requests)} requests for "
            f"{len(expected)} events ({repeats} beyond the 500 + 200 pair, "
            f"{receiver.torn} cut short by a kill), "
            f"{dict(statuses)}, {time.perf_counter() - started:.1f} s"
        )
