"""Crash test: the hub killed (SIGKILL) while 1,000 SMS flow through a real Kannel.

`smshub run --role api,dispatcher` runs as a child process, sending through Kannel's smsbox to
fakesmsc and receiving Kannel's delivery reports on its API. It is killed at random moments,
restarted, killed again, and a last run settles every message. fakesmsc's log is the phones'
side of the story: each message text is unique ("msg 0042"), so a text seen twice is a
message sent twice.

Kannel has no idempotency key (the connector says ``deduplicates = False``), so a message
caught in flight by a crash must become `unknown`, never be sent again. smsbox retries report
calls the dead hub could not answer (``http-request-retry``, the setting users need too), so
every message that reached Kannel ends `delivered` — even one marked `unknown` at recovery,
when its report comes in later.

The seed is fixed so a failure can be replayed; set SMSHUB_CRASH_SEED to try others.
"""

from __future__ import annotations

import collections
import random
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from hub.sending import submit as sending
from hub.sending.accounts import create_account
from hub.sending.credits import ledger_problems, top_up
from hub.store.db import make_engine, session_scope, sql
from hub.store.models import Message, MessageStatus
from tests.conftest import make_config
from tests.reliability._harness import (
    SEED,
    CrashHarness,
    backend_of,
    open_count,
    unsettled_messages,
    write_config,
)
from tests.servers._util import free_port
from tests.servers.kannel import KannelServer, start_kannel

# Kills processes and counts what survived: slow, and run by CI all the same (no -m filter).
pytestmark = pytest.mark.slow

MESSAGES = 1_000
RECIPIENTS_PER_SUBMIT = 100
KILLS = 3
MIN_KILLS_MID_WORK = 2
KILL_DELAY = (0.3, 1.5)
# Sends per second: about 7 s of traffic, so the kills land while messages are in flight.
RATE = 150
BATCH_SIZE = 20
LEASE_SECONDS = 2.0
READY_TIMEOUT = 60.0
SETTLE_TIMEOUT = 90.0
SECRET = "crash-test-secret"
# smsbox retries a report the dead hub could not take, once a second for 60 s: more than a
# restart takes. Users need the same (docs of connectors/sms/kannel.py).
SMSBOX_RETRIES = {"http-request-retry": 60, "http-queue-delay": 1}


def _write_config(tmp_path: Path, db_url: str, port: int, kannel: KannelServer) -> Path:
    password_file = tmp_path / "kannel-password"
    password_file.write_text(kannel.password + "\n", "utf-8")
    secret_file = tmp_path / "kannel-secret"
    secret_file.write_text(SECRET + "\n", "utf-8")
    return write_config(
        tmp_path,
        db_url,
        f"""
[http]
port = {port}

[dispatcher]
batch_size = {BATCH_SIZE}
claim_lease_seconds = {LEASE_SECONDS}
poll_interval = 0.05
retry_backoff_seconds = 0.05
# A loaded CI machine can keep smsbox busy for longer than 8 quick retries; the test is about
# crashes, not about giving up on a slow gateway.
max_attempts = 40

[routing]
default = ["kannel"]

[providers.kannel]
type = "kannel"
sendsms_url = "{kannel.sendsms_url}"
username = "{kannel.username}"
password_file = "{password_file.as_posix()}"
callback_secret_file = "{secret_file.as_posix()}"
sender = "36001"
rate_per_second = {RATE}
""",
        hub_extra=f'public_url = "http://127.0.0.1:{port}"\n',
    )


def _fill_outbox(engine: Engine, db_url: str, tmp_path: Path) -> dict[str, str]:
    """Queue MESSAGES SMS with unique texts; returns text -> message id."""
    config = make_config(db_url, tmp_path / "submit")
    with session_scope(engine) as session:
        create_account(session, "crash", region="FR")
        top_up(session, "crash", MESSAGES)
    numbers = [f"+3361{n:07d}" for n in range(MESSAGES)]
    by_number: dict[str, str] = {}
    for start in range(0, MESSAGES, RECIPIENTS_PER_SUBMIT):
        result = sending.submit(
            engine,
            config,
            sending.SubmitRequest(
                account="crash",
                recipients=numbers[start : start + RECIPIENTS_PER_SUBMIT],
                text=f"msg {'?' * 4}",
            ),
        )
        for r in result.recipients:
            assert r.status == "queued" and r.message_id and r.e164, r
            by_number[r.e164] = r.message_id
    # One submit per text would take a minute on a loaded machine; the same text for every
    # recipient, then made unique in place (same length and alphabet, so the same segments,
    # encoding and price), is what identifies each message at fakesmsc.
    ids = {f"msg {n:04d}": by_number[number] for n, number in enumerate(numbers)}
    with session_scope(engine) as session:
        session.execute(
            sql("UPDATE messages SET text = :text WHERE id = :id"),
            [{"text": text, "id": mid} for text, mid in ids.items()],
        )
    return ids


def test_hub_killed_while_messages_flow_through_kannel(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = backend_of(db_url)
    rng = random.Random(f"{SEED}:{backend}")
    started = time.monotonic()
    engine = make_engine(db_url)
    try:
        with start_kannel(
            tmp_path / "kannel", log_level=1, smsbox_options=SMSBOX_RETRIES
        ) as kannel:
            ids = _fill_outbox(engine, db_url, tmp_path)
            filled = time.monotonic()
            config_path = _write_config(tmp_path, db_url, free_port(), kannel)
            harness = CrashHarness(config_path, "api,dispatcher", ready_timeout=READY_TIMEOUT)
            kills_mid_work = 0
            for n in range(KILLS):
                harness.kill_after(f"hub run {n + 1}", rng, KILL_DELAY, check_alive=False)
                if open_count(engine) > 0:
                    kills_mid_work += 1
            assert kills_mid_work >= MIN_KILLS_MID_WORK, (
                f"only {kills_mid_work} of {KILLS} kills found work left; the test is too lax"
            )

            crashed = time.monotonic()
            # On PostgreSQL the last killed run's claims come back after their lease; reports
            # arrive by smsbox's retries.
            harness.settle(
                "final hub run",
                unsettled_messages(engine, SETTLE_TIMEOUT),
                SETTLE_TIMEOUT,
                died="the final hub died",
                extra=lambda: f"\n{kannel.log_tail(10)}",
            )
            settled = time.monotonic()
            received = collections.Counter(sms.text or repr(sms.data) for sms in kannel.mt_sms())
        with session_scope(engine) as session:
            messages = {m.id: m for m in session.exec(select(Message)).all()}
            assert ledger_problems(session) == []
    finally:
        engine.dispose()

    by_text = {text: messages[mid] for text, mid in ids.items()}
    statuses = collections.Counter(m.status for m in messages.values())
    reasons = collections.Counter(
        (m.status, m.reason, (m.detail or "")[:80])
        for m in messages.values()
        if m.status not in {MessageStatus.DELIVERED.value, MessageStatus.UNKNOWN.value}
    )
    assert set(statuses) <= {MessageStatus.DELIVERED.value, MessageStatus.UNKNOWN.value}, (
        statuses,
        reasons.most_common(3),
    )
    twice = sorted(text for text, count in received.items() if count > 1)
    assert twice == [], f"{len(twice)} message(s) reached the phone twice, e.g. {twice[:5]}"
    strangers = set(received) - set(ids)
    assert strangers == set(), f"fakesmsc got texts the hub never sent: {sorted(strangers)[:5]}"
    # Never re-sent: each message was claimed once, whatever happened to the process.
    reclaimed = [m.id for m in messages.values() if m.attempts != 1]
    assert reclaimed == [], f"{len(reclaimed)} message(s) claimed more than once"
    not_received = [
        t for t, m in by_text.items() if m.status == MessageStatus.DELIVERED and t not in received
    ]
    assert not_received == [], f"delivered but never at fakesmsc: {not_received[:5]}"
    unknown = [t for t, m in by_text.items() if m.status == MessageStatus.UNKNOWN]
    assert all(by_text[t].reason == "process_died" for t in unknown)
    reached = sum(1 for t in unknown if t in received)
    with capsys.disabled():
        print(
            f"\n[kannel crash {backend} seed={SEED}] {KILLS} kills ({kills_mid_work} mid-work): "
            f"{statuses[MessageStatus.DELIVERED.value]} delivered once, {len(unknown)} unknown "
            f"({reached} of them at fakesmsc, {len(unknown) - reached} never left the hub); "
            f"{settled - started:.1f} s: Kannel + fill {filled - started:.1f} s, kills "
            f"{crashed - filled:.1f} s, final run {settled - crashed:.1f} s"
        )
