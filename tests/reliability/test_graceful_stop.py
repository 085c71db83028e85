"""Stops as an operator's tools make them: SIGTERM (systemd, containers) and SIGKILL.

`smshub run` runs as a child process against a simulator whose every send takes a while (as
a real provider's HTTP round trip does), so a signal always lands mid-batch. The simulator's
log says which provider calls had started ("request" lines) and which were accepted ("mt").

- SIGTERM, for each role combination with a dispatcher: the process exits 0 within its grace;
  the calls in flight finish; messages claimed but never handed to the provider go back to
  `queued`; nothing is left `claimed` or `submitting`; it logs a drained line.
- SIGTERM in the middle of an SMTP DATA: the client is answered `421` and the process
  exits 0.
- SIGKILL mid-batch: after recovery only messages whose provider call had started may be
  `unknown`; the others are sent (once) by the next run.
"""

from __future__ import annotations

import collections
import re
import signal
import socket
import time
from pathlib import Path
from typing import BinaryIO

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from connectors.sms.simulator import read_log
from hub.mail.intake.addresses import add_intake_address
from hub.sending import submit as sending
from hub.sending.accounts import create_account
from hub.sending.credits import top_up
from hub.store.db import make_engine, session_scope
from hub.store.models import Message
from tests.reliability._harness import HubProcess, open_count, write_config
from tests.servers._util import free_ports

# Kills processes and counts what survived: slow, and run by CI all the same (no -m filter).
pytestmark = pytest.mark.slow

MESSAGES = 120
LATENCY = 0.4
CONCURRENCY = 4
BATCH = 40
GRACE = 10.0
READY_TIMEOUT = 60.0
_DRAINED = re.compile(r"dispatcher drained: (\d+) sent, (\d+) handed back")


def _config(tmp_path: Path, db_url: str, *, dedupe: bool = False, lease: float = 30.0) -> Path:
    smtp_port, http_port = free_ports(2)
    return write_config(
        tmp_path,
        db_url,
        f"""
[http]
port = {http_port}

[dispatcher]
batch_size = {BATCH}
claim_lease_seconds = {lease}
poll_interval = 0.05

[smtp]
port = {smtp_port}
confirmations = false

[providers.simulator]
type = "simulator"
latency = {LATENCY}
concurrency = {CONCURRENCY}
report_delay = 3600
deduplicates = {"true" if dedupe else "false"}
""",
        hub_extra=f"stop_grace_seconds = {GRACE}",
    )


def _queue(engine: Engine, db_url: str, tmp_path: Path, count: int = MESSAGES) -> list[str]:
    from tests.conftest import make_config

    config = make_config(db_url, tmp_path / "submit")
    with session_scope(engine) as session:
        create_account(session, "ops", region="FR")
        top_up(session, "ops", 10 * count)
    result = sending.submit(
        engine,
        config,
        sending.SubmitRequest(
            account="ops", recipients=[f"+3361{n:07d}" for n in range(count)], text="Rappel"
        ),
    )
    return [r.message_id for r in result.recipients if r.message_id]


def _statuses(engine: Engine) -> dict[str, str]:
    with session_scope(engine) as session:
        return {m.id: m.status for m in session.exec(select(Message)).all()}


def _log(tmp_path: Path) -> list[dict[str, object]]:
    return read_log(tmp_path / "data" / "simulator.jsonl")


def _wait_for_requests(tmp_path: Path, proc: HubProcess, at_least: int) -> None:
    deadline = time.monotonic() + 30
    while sum(e["kind"] == "request" for e in _log(tmp_path)) < at_least:
        assert proc.alive(), proc.output()
        assert time.monotonic() < deadline, "the dispatcher sent nothing"
        time.sleep(0.02)


def _terminate(proc: HubProcess) -> tuple[int, float]:
    """SIGTERM PROC; returns its exit code and how long it took to exit."""
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    code = proc.proc.wait(GRACE + 20)
    proc._reader.join(5)
    return code, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("roles", ["dispatcher", "api,dispatcher", "api,smtp,dispatcher,scheduler"])
def test_sigterm_mid_batch_drains_and_hands_back(db_url: str, tmp_path: Path, roles: str) -> None:
    engine = make_engine(db_url)
    ids = _queue(engine, db_url, tmp_path)
    proc = HubProcess(_config(tmp_path, db_url), "hub", roles)
    try:
        proc.wait_ready(READY_TIMEOUT)
        _wait_for_requests(tmp_path, proc, CONCURRENCY + 1)
        code, took = _terminate(proc)
    finally:
        proc.stop()
    assert code == 0, proc.output()
    # The calls in flight take LATENCY; nothing waits for the rest of the batch.
    assert took < GRACE, f"took {took:.1f} s to stop:\n{proc.output()}"
    statuses = _statuses(engine)
    counts = collections.Counter(statuses.values())
    assert counts["claimed"] == 0 and counts["submitting"] == 0, counts
    log = _log(tmp_path)
    requested = {e["message_id"] for e in log if e["kind"] == "request"}
    accepted = [e["message_id"] for e in log if e["kind"] == "mt"]
    # Every call that started finished within the grace and was recorded.
    assert sorted(accepted) == sorted(requested)
    assert {i for i in ids if statuses[i] == "sent"} == requested
    # The rest of the claimed batch went back to the queue, never touched.
    handed_back = {i for i in ids if statuses[i] == "queued"}
    assert handed_back == set(ids) - requested
    with session_scope(engine) as session:
        attempts = {m.id: m.attempts for m in session.exec(select(Message)).all()}
    assert {attempts[i] for i in handed_back} == {0}
    match = _DRAINED.search(proc.output(200))
    assert match is not None, proc.output()
    assert int(match.group(2)) > 0, "the stop should have found claims to hand back"
    assert open_count(engine) == len(ids)
    engine.dispose()


def _smtp_session(port: int) -> tuple[socket.socket, BinaryIO]:
    """A client mid-DATA: greeting, envelope, DATA accepted, a few lines of the body sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    reader = sock.makefile("rb")

    def expect(code: bytes) -> None:
        while True:
            line = reader.readline()
            assert line.startswith(code), line
            if line[3:4] != b"-":
                return

    expect(b"220")
    for command, code in [
        (b"EHLO client.example", b"250"),
        (b"MAIL FROM:<anne@clinic.example>", b"250"),
        (b"RCPT TO:<sms@hub.test>", b"250"),
        (b"DATA", b"354"),
    ]:
        sock.sendall(command + b"\r\n")
        expect(code)
    sock.sendall(b"From: anne@clinic.example\r\nTo: sms@hub.test\r\nSubject: +33612345678\r\n")
    return sock, reader


@pytest.mark.slow
@pytest.mark.parametrize("roles", ["smtp", "api,smtp,dispatcher"])
def test_sigterm_mid_data_answers_421(db_url: str, tmp_path: Path, roles: str) -> None:
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        create_account(session, "clinic", region="FR")
        top_up(session, "clinic", 100)
        add_intake_address(session, "clinic", "sms@hub.test", allowed_senders=["@clinic.example"])
    config = _config(tmp_path, db_url)
    port = int(re.search(r"\[smtp\]\nport = (\d+)", config.read_text())[1])  # type: ignore[index]
    proc = HubProcess(config, "hub", roles)
    try:
        proc.wait_ready(READY_TIMEOUT)
        client, reader = _smtp_session(port)
        code, took = _terminate(proc)
        # The client goes on with its mail, then reads the answer.
        try:
            client.sendall(b"\r\nRappel demain 9h\r\n.\r\n")
        except OSError:
            pass
        reply = reader.readline()
        client.close()
    finally:
        proc.stop()
    assert code == 0, proc.output()
    assert took < GRACE
    assert reply.startswith(b"421 4.3.2 "), reply
    # The mail was not taken: the client sends it again later.
    assert _statuses(engine) == {}
    engine.dispose()


@pytest.mark.slow
def test_sigkill_mid_batch_only_started_calls_become_unknown(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    ids = _queue(engine, db_url, tmp_path)
    config = _config(tmp_path, db_url, lease=2.0)
    proc = HubProcess(config, "killed", "dispatcher")
    try:
        proc.wait_ready(READY_TIMEOUT)
        _wait_for_requests(tmp_path, proc, CONCURRENCY + 2)
        time.sleep(LATENCY / 2)
    finally:
        proc.kill()
    started = {e["message_id"] for e in _log(tmp_path) if e["kind"] == "request"}
    before = _statuses(engine)
    # The batch was claimed as a whole, but only the calls that started are `submitting`.
    assert {i for i in ids if before[i] == "submitting"} <= started
    assert sum(before[i] == "claimed" for i in ids) > 0, collections.Counter(before.values())

    final = HubProcess(config, "final", "dispatcher")
    try:
        final.wait_ready(READY_TIMEOUT)
        deadline = time.monotonic() + 60
        while any(s in {"queued", "claimed", "submitting"} for s in _statuses(engine).values()):
            assert final.alive() and time.monotonic() < deadline, final.output()
            time.sleep(0.1)
    finally:
        final.stop()
    after = _statuses(engine)
    unknown = {i for i in ids if after[i] == "unknown"}
    assert unknown, "the kill should have caught provider calls in flight"
    assert unknown <= started, "a message never handed to the provider was marked unknown"
    # Every started call that is not unknown had its outcome recorded before the kill.
    assert all(before[i] == "sent" for i in started - unknown)
    assert {i for i in ids if after[i] == "sent"} == set(ids) - unknown
    accepted = collections.Counter(e["message_id"] for e in _log(tmp_path) if e["kind"] == "mt")
    assert max(accepted.values()) == 1, "a message went out twice"
    engine.dispose()
