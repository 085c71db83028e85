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
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import col, select

from hub import sending
from hub.accounts import create_account
from hub.credits import ledger_problems, top_up
from hub.db import make_engine, session_scope, sql
from hub.models import FINAL_STATUSES, Message, MessageStatus
from tests.conftest import make_config
from tests.servers._util import free_port
from tests.servers.kannel import KannelServer, start_kannel

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("SMSHUB_CRASH_SEED", "20240611"))

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


class HubProcess:
    """One `smshub run --role api,dispatcher` child; its output is kept for reports."""

    def __init__(self, config_path: Path, label: str) -> None:
        self.label = label
        self.lines: list[str] = []
        self.ready = threading.Event()
        script = Path(sys.executable).with_name("smshub")
        command = (
            [str(script)]
            if script.exists()
            else [sys.executable, "-c", "from hub.cli import main; main()"]
        )
        env = dict(os.environ)
        # The child must use the config file's database, not one inherited from the shell.
        env.pop("SMSHUB_DATABASE_URL", None)
        env.pop("SMSHUB_CONFIG", None)
        self.proc = subprocess.Popen(
            [*command, "--config", str(config_path), "run", "--role", "api,dispatcher"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # Drained continuously so a chatty child never blocks on a full pipe.
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "smshub running" in line:
                self.ready.set()

    def wait_ready(self, timeout: float) -> None:
        """Wait until the hub has reconciled, started its dispatcher and is about to serve."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"{self.label} exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"{self.label} not ready after {timeout:.0f} s:\n{self.output()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the child."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(5)

    def stop(self) -> None:
        """Polite stop at the end (SIGTERM, then SIGKILL if it lingers)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(5)

    def output(self, last: int = 60) -> str:
        return "".join(self.lines[-last:])


def _write_config(tmp_path: Path, db_url: str, port: int, kannel: KannelServer) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    password_file = tmp_path / "kannel-password"
    password_file.write_text(kannel.password + "\n", "utf-8")
    secret_file = tmp_path / "kannel-secret"
    secret_file.write_text(SECRET + "\n", "utf-8")
    path = tmp_path / "smshub.toml"
    path.write_text(
        f"""
[hub]
data_dir = "{data_dir.as_posix()}"
public_url = "http://127.0.0.1:{port}"
log_level = "warning"

[database]
url = "{db_url}"

[http]
port = {port}

[dispatcher]
batch_size = {BATCH_SIZE}
claim_lease_seconds = {LEASE_SECONDS}
poll_interval = 0.05
retry_backoff_seconds = 0.05

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
        "utf-8",
    )
    return path


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


def _open_count(engine: Engine) -> int:
    """Messages not yet in a final state."""
    with session_scope(engine) as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(Message)
                .where(col(Message.status).not_in([s.value for s in FINAL_STATUSES]))
            ).one()
        )


def test_hub_killed_while_messages_flow_through_kannel(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
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
            kills_mid_work = 0
            for n in range(KILLS):
                proc = HubProcess(config_path, f"hub run {n + 1}")
                try:
                    proc.wait_ready(READY_TIMEOUT)
                    time.sleep(rng.uniform(*KILL_DELAY))
                finally:
                    proc.kill()
                if _open_count(engine) > 0:
                    kills_mid_work += 1
            assert kills_mid_work >= MIN_KILLS_MID_WORK, (
                f"only {kills_mid_work} of {KILLS} kills found work left; the test is too lax"
            )

            crashed = time.monotonic()
            final = HubProcess(config_path, "final hub run")
            try:
                final.wait_ready(READY_TIMEOUT)
                # Polling separate processes with a deadline: on PostgreSQL the last killed
                # run's claims come back after their lease; reports arrive by smsbox's retries.
                deadline = time.monotonic() + SETTLE_TIMEOUT
                while (left := _open_count(engine)) > 0:
                    if not final.alive():
                        pytest.fail(f"the final hub died:\n{final.output()}")
                    if time.monotonic() > deadline:
                        pytest.fail(
                            f"{left} message(s) still not final after {SETTLE_TIMEOUT:.0f} s:\n"
                            f"{final.output()}\n{kannel.log_tail(10)}"
                        )
                    time.sleep(0.1)
            finally:
                final.stop()
            settled = time.monotonic()
            received = collections.Counter(sms.text or repr(sms.data) for sms in kannel.mt_sms())
        with session_scope(engine) as session:
            messages = {m.id: m for m in session.exec(select(Message)).all()}
            assert ledger_problems(session) == []
    finally:
        engine.dispose()

    by_text = {text: messages[mid] for text, mid in ids.items()}
    statuses = collections.Counter(m.status for m in messages.values())
    assert set(statuses) <= {MessageStatus.DELIVERED.value, MessageStatus.UNKNOWN.value}, statuses
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
