"""Several dispatchers on one database: claims, outboxes and rate limits hold across them.

- A slow provider (a batch takes several times the claim lease) with two dispatcher
  processes: leases are renewed, so no claim is taken from a living dispatcher, none is
  `unknown` and none goes out twice.
- Two mail outboxes on one database deliver each queued mail once.
- A provider's `rate_per_second` is one limit for two dispatcher processes together.

Several dispatchers share a database on PostgreSQL; the process tests skip on SQLite (one
instance is the only case there: a SQLite dispatcher takes every claim back at start).
"""

from __future__ import annotations

import asyncio
import collections
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlmodel import select

from connectors.sms.simulator import read_log
from hub.mail.outbox import MailOutbox, build_message, queue_mail
from hub.ports.registry import build_mail_sender
from hub.store.db import make_engine, session_scope
from hub.store.models import Message, OutgoingMail
from tests.conftest import make_config
from tests.reliability._harness import HubProcess, backend_of, open_count, write_config
from tests.reliability.test_graceful_stop import _queue, _statuses
from tests.servers._util import free_ports
from tests.servers.smtp_sink import SmtpSink

READY_TIMEOUT = 60.0


def _pg_only(db_url: str) -> None:
    if backend_of(db_url) == "sqlite":
        pytest.skip("several dispatcher processes share a database on PostgreSQL only")


def _config(tmp_path: Path, db_url: str, dispatcher: str, provider: str) -> Path:
    (http_port,) = free_ports(1)
    return write_config(
        tmp_path,
        db_url,
        f"""
[http]
port = {http_port}

[dispatcher]
poll_interval = 0.05
{dispatcher}

[providers.simulator]
type = "simulator"
report_delay = 3600
deduplicates = false
{provider}
""",
    )


def _run_two(config: Path, engine: object, timeout: float) -> list[HubProcess]:
    """Two dispatcher processes on CONFIG until every message is out of the queue."""
    import time

    procs = [HubProcess(config, f"dispatcher {n}", "dispatcher") for n in (1, 2)]
    try:
        for proc in procs:
            proc.wait_ready(READY_TIMEOUT)
        deadline = time.monotonic() + timeout
        while any(
            s in {"queued", "claimed", "submitting"}
            for s in _statuses(engine).values()  # type: ignore[arg-type]
        ):
            for proc in procs:
                assert proc.alive(), proc.output()
            assert time.monotonic() < deadline, [p.output() for p in procs]
            time.sleep(0.1)
    finally:
        for proc in procs:
            proc.stop()
    return procs


@pytest.mark.slow
def test_slow_provider_keeps_its_claims_with_two_dispatchers(db_url: str, tmp_path: Path) -> None:
    _pg_only(db_url)
    engine = make_engine(db_url)
    ids = _queue(engine, db_url, tmp_path, count=60)
    # A batch of 20 at 2 calls of 0.3 s at a time takes 3 s: twice the 1.5 s lease.
    config = _config(
        tmp_path,
        db_url,
        "batch_size = 20\nclaim_lease_seconds = 1.5",
        "latency = 0.3\nconcurrency = 2",
    )
    procs = _run_two(config, engine, timeout=90)
    statuses = _statuses(engine)
    assert collections.Counter(statuses[i] for i in ids) == {"sent": len(ids)}
    accepted = collections.Counter(
        e["message_id"]
        for e in read_log(tmp_path / "data" / "simulator.jsonl")
        if e["kind"] == "mt"
    )
    assert set(accepted) == set(ids) and max(accepted.values()) == 1, "a message went out twice"
    for proc in procs:
        assert "recovered" not in proc.output(500) and "took back" not in proc.output(500), (
            "a living dispatcher's claim was taken over:\n" + proc.output()
        )
    assert open_count(engine) == len(ids)
    engine.dispose()


@pytest.mark.slow
def test_provider_rate_holds_across_two_dispatchers(db_url: str, tmp_path: Path) -> None:
    _pg_only(db_url)
    rate = 50
    engine = make_engine(db_url)
    # About 14 s of sending at the shared rate (twice as fast were it per process).
    ids = _queue(engine, db_url, tmp_path, count=700)
    config = _config(tmp_path, db_url, "batch_size = 50", f"rate_per_second = {rate}")
    _run_two(config, engine, timeout=120)
    assert collections.Counter(_statuses(engine)[i] for i in ids) == {"sent": len(ids)}
    times = sorted(
        datetime.fromisoformat(str(e["at"]))
        for e in read_log(tmp_path / "data" / "simulator.jsonl")
        if e["kind"] == "mt"
    )
    # Measured from the second dispatcher's start (the first sends alone before it).
    span = (times[-1] - times[0]).total_seconds()
    measured = (len(times) - 1) / span
    print(f"\naggregate {measured:.1f}/s over {span:.1f} s for a limit of {rate}/s")
    assert span >= 10
    assert abs(measured - rate) <= 0.15 * rate
    engine.dispose()


async def test_two_mail_outboxes_deliver_each_mail_once(
    db_url: str, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    config = make_config(
        db_url,
        tmp_path,
        mail_out={
            "host": "127.0.0.1",
            "port": smtp_sink.port,
            "starttls": False,
            "from_address": "smshub@hub.test",
        },
    )
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        for n in range(30):
            message: EmailMessage = build_message(
                "smshub@hub.test", f"user{n}@example.test", f"mail {n}", "body"
            )
            queue_mail(session, message, kind="confirmation", dedupe_key=f"mail-{n}")
    outboxes = []
    for _ in range(2):
        sender = build_mail_sender(config)
        assert sender is not None
        outboxes.append(MailOutbox(engine, sender))

    async def work(outbox: MailOutbox) -> None:
        while await outbox.send_due(limit=5):
            pass

    await asyncio.gather(*(work(o) for o in outboxes))
    ids = collections.Counter(str(m["Message-ID"]) for m in smtp_sink.messages)
    assert len(ids) == 30 and max(ids.values()) == 1, ids
    with session_scope(engine) as session:
        rows = session.exec(select(OutgoingMail)).all()
        assert {r.status for r in rows} == {"sent"}
        assert {r.attempts for r in rows} == {1}
        assert session.exec(select(Message)).all() == []
    engine.dispose()
