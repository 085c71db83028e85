"""Several instances by role on one PostgreSQL database, stopped as operators stop them.

One `smshub run --role api,smtp` instance takes the work through both doors (3,000 SMS
posted to the API in batches, 50 mails over SMTP with AUTH, each confirmed by mail), two
`smshub run --role dispatcher` instances send it through a simulator whose every call takes
a while and which does not deduplicate, and deliver the confirmations to an SMTP sink. In
the middle of their batches dispatcher 1 gets SIGTERM and dispatcher 2 SIGKILL; both are
started again and the test waits until every message is final. Then:

- nothing is left queued, claimed or submitting;
- no provider call was made twice for a message (the simulator logs each call as it
  starts, "request", and each SMS it accepts, "mt");
- only messages whose call dispatcher 2 had started before its kill are `unknown`, and
  every call still in flight at the kill is (it cannot be re-sent without deduplication);
- the ledger is exact: every balance equals its ledger sum, the charges are the credits of
  every message, the refunds those of the failed ones;
- each confirmation reached the sink once, except at most the one mail the killed
  dispatcher had handed to the sink without recording it (SMTP has no idempotency key: it
  is sent again, with the same Message-ID, rather than lost);
- the SIGTERM'd dispatcher exited 0 and logged what it drained.
"""

from __future__ import annotations

import collections
import json
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, func, text
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from connectors.sms.simulator import read_log
from hub.mail.intake.addresses import add_intake_address, add_mail_user
from hub.sending.accounts import create_account, create_token
from hub.sending.credits import ledger_problems, top_up
from hub.store.db import make_engine, session_scope, upgrade
from hub.store.models import LedgerEntry, LedgerKind, Message, OutgoingMail
from tests.conftest import PG_URL, require_server
from tests.reliability._harness import HubProcess, write_config
from tests.servers._util import free_ports
from tests.servers.smtp_sink import SmtpSink

# Kills processes and counts what survived: slow, and run by CI all the same (no -m filter).
pytestmark = pytest.mark.slow

SMS = 3000
API_BATCH = 100
MAILS = 50
MAIL_SESSIONS = 5
# Every 100th API recipient is refused by the provider: those fail and are refunded.
REJECTED = [f"+3361{n:07d}" for n in range(0, SMS, 100)]
LATENCY = 0.1
CONCURRENCY = 16
BATCH = 100
LEASE = 4.0
GRACE = 10.0
READY_TIMEOUT = 60.0
SETTLE_TIMEOUT = 60.0
PASSWORD = "correct horse battery"
SENDER = "anne@clinic.example"
OPEN = {"queued", "claimed", "submitting"}
_DRAINED = re.compile(r"dispatcher drained: (\d+) sent, (\d+) handed back")
_TOOK_BACK = re.compile(r"took back (\d+) claimed message")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test alone, dropped afterwards.

    Not the SQLite/PostgreSQL `db_url` pair: several instances share a database only on
    PostgreSQL, and with CI=true a missing server must fail this test, not skip it."""
    if not PG_URL:
        require_server("PostgreSQL", "SMSHUB_TEST_DATABASE_URL is not set")
    base = make_url(PG_URL)
    name = f"smshub_multi_{uuid.uuid4().hex[:10]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        require_server("PostgreSQL", f"{PG_URL}: {exc}")
    url = base.set(drivername="postgresql+psycopg", database=name).render_as_string(
        hide_password=False
    )
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tls_files(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate: SMTP AUTH is offered only after STARTTLS."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def _instance_config(
    directory: Path, db_url: str, sink: SmtpSink, tls: tuple[Path, Path]
) -> tuple[Path, int, int]:
    """DIRECTORY/smshub.toml for one instance (its own data directory and ports); returns
    it with its HTTP and SMTP ports."""
    directory.mkdir()
    http_port, smtp_port = free_ports(2)
    config = write_config(
        directory,
        db_url,
        f"""
[http]
port = {http_port}

[smtp]
port = {smtp_port}
tls_cert_file = "{tls[0].as_posix()}"
tls_key_file = "{tls[1].as_posix()}"
mails_per_sender_per_minute = 1000

[mail_out]
host = "127.0.0.1"
port = {sink.port}
starttls = false
from_address = "sms@hub.test"

[dispatcher]
batch_size = {BATCH}
claim_lease_seconds = {LEASE}
poll_interval = 0.05

[providers.simulator]
type = "simulator"
latency = {LATENCY}
concurrency = {CONCURRENCY}
send_reports = false
deduplicates = false
reject_numbers = {json.dumps(REJECTED)}
""",
        hub_extra=f"stop_grace_seconds = {GRACE}",
    )
    return config, http_port, smtp_port


def _prepare(engine: Engine) -> str:
    """Account 'ops' with credits, an SMTP AUTH user and its intake domain; an API token."""
    with session_scope(engine) as session:
        create_account(session, "ops", region="FR")
        top_up(session, "ops", 10 * (SMS + MAILS))
        add_intake_address(session, "ops", "*@sms.hub.test", require_auth=True)
        add_mail_user(session, "ops", SENDER, PASSWORD)
        return create_token(session, "ops", "load").token


class Load:
    """Both doors at once, each in its own thread: API batches and SMTP mails."""

    def __init__(self, http_port: int, smtp_port: int, token: str) -> None:
        self.http_port = http_port
        self.smtp_port = smtp_port
        self.token = token
        self.batches_posted = 0
        self.mails_sent = 0
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._guard(self._api), daemon=True),
            threading.Thread(target=self._guard(self._smtp), daemon=True),
        ]

    def _guard(self, work: Any) -> Any:
        def run() -> None:
            try:
                work()
            except Exception as exc:  # reported by the test, not lost in a thread
                self.errors.append(f"{type(exc).__name__}: {exc}")

        return run

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "the load did not finish"
        assert not self.errors, self.errors

    def _api(self) -> None:
        for start in range(0, SMS, API_BATCH):
            body = json.dumps(
                {"to": [f"+3361{n:07d}" for n in range(start, start + API_BATCH)], "text": "Rappel"}
            ).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.http_port}/v1/messages",
                data=body,
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": f"load-{start}",
                },
            )
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (local)
                result = json.load(response)
            queued = sum(r["status"] == "queued" for r in result["recipients"])
            assert queued == API_BATCH, result
            self.batches_posted += 1

    def _smtp(self) -> None:
        per_session = MAILS // MAIL_SESSIONS
        for session in range(MAIL_SESSIONS):
            with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as client:
                client.starttls(context=ssl._create_unverified_context())  # noqa: S323
                client.login(SENDER, PASSWORD)
                for k in range(per_session):
                    n = session * per_session + k
                    mail = EmailMessage()
                    mail["From"] = f"Anne <{SENDER}>"
                    mail["To"] = f"+3362{n:07d}@sms.hub.test"
                    mail["Subject"] = "Rappel"
                    mail["Message-ID"] = make_msgid(domain="clinic.example")
                    mail.set_content(f"Rendez-vous demain {n}")
                    client.send_message(mail)
                    self.mails_sent += 1


def _calls(log: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """The message ids whose call started, and those the simulator accepted."""
    started = {str(e["message_id"]) for e in log if e["kind"] == "request"}
    accepted = {str(e["message_id"]) for e in log if e["kind"] == "mt"}
    return started, accepted


def _statuses(engine: Engine) -> dict[str, str]:
    with session_scope(engine) as session:
        return dict(session.exec(select(Message.id, Message.status)).all())  # type: ignore[arg-type]


def _open(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(Message)
                .where(col(Message.status).in_(sorted(OPEN)))
            ).one()
        )


@pytest.mark.slow
def test_api_smtp_and_two_dispatchers_survive_sigterm_and_sigkill(
    pg_url: str, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    began = time.monotonic()
    engine = make_engine(pg_url)
    token = _prepare(engine)
    tls = _tls_files(tmp_path)
    api_config, http_port, smtp_port = _instance_config(tmp_path / "api", pg_url, smtp_sink, tls)
    d1_config, _, _ = _instance_config(tmp_path / "d1", pg_url, smtp_sink, tls)
    d2_config, _, _ = _instance_config(tmp_path / "d2", pg_url, smtp_sink, tls)
    d1_log, d2_log = (tmp_path / d / "data" / "simulator.jsonl" for d in ("d1", "d2"))

    procs: list[HubProcess] = []

    def spawn(config: Path, label: str, roles: str) -> HubProcess:
        proc = HubProcess(config, label, roles)
        procs.append(proc)
        return proc

    try:
        api = spawn(api_config, "api+smtp", "api,smtp")
        d1 = spawn(d1_config, "dispatcher 1", "dispatcher")
        d2 = spawn(d2_config, "dispatcher 2", "dispatcher")
        for proc in (api, d1, d2):
            proc.wait_ready(READY_TIMEOUT)
        phases = {"ready": round(time.monotonic() - began, 1)}
        load = Load(http_port, smtp_port, token)
        load.start()

        # Mid-batch: both dispatchers have sent some, and dispatcher 2 has calls in flight.
        deadline = time.monotonic() + 60
        while True:
            assert all(p.alive() for p in procs), [p.output() for p in procs]
            started1, accepted1 = _calls(read_log(d1_log))
            started2, accepted2 = _calls(read_log(d2_log))
            assert time.monotonic() < deadline, (
                "the dispatchers did not get going: dispatcher 1 accepted "
                f"{len(accepted1)}, dispatcher 2 accepted {len(accepted2)} with "
                f"{len(started2 - accepted2)} in flight; load posted {load.batches_posted} "
                f"batches and {load.mails_sent} mails ({load.errors or 'no error'}); "
                f"{_open(engine)} messages open"
            )
            if len(accepted1) >= 200 and len(accepted2) >= 200 and started2 - accepted2:
                break
            time.sleep(0.02)
        d2_name = f"{socket.gethostname()}-{d2.proc.pid}"  # its application_name
        assert _sessions(engine, d2_name), "dispatcher 2's sessions are not named as expected"
        d2.kill()
        stop_began = time.monotonic()
        d1.proc.send_signal(signal.SIGTERM)
        at_kill = {"api batches": load.batches_posted, "mails": load.mails_sent}
        # Its last COMMIT may still be under way on the server after the process died: what
        # it had recorded is read once its sessions have ended.
        _wait_sessions_gone(engine, d2_name)
        started2, accepted2 = _calls(read_log(d2_log))
        in_flight = started2 - accepted2
        marked2 = _submitting(engine, d2.proc.pid)
        phases["kill"] = round(time.monotonic() - began, 1)
        d1_code = d1.proc.wait(GRACE + 20)
        d1_took = time.monotonic() - stop_began
        d1._reader.join(5)

        delivered_before_restart = {str(m["Message-ID"]) for m in smtp_sink.messages}
        d1b = spawn(d1_config, "dispatcher 1 (again)", "dispatcher")
        d2b = spawn(d2_config, "dispatcher 2 (again)", "dispatcher")
        for proc in (d1b, d2b):
            proc.wait_ready(READY_TIMEOUT)
        phases["restarted"] = round(time.monotonic() - began, 1)
        load.join(60)
        phases["loaded"] = round(time.monotonic() - began, 1)

        # Every message final, and every confirmation out of the outbox.
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while _open(engine) or _pending_mails(engine):
            for proc in (api, d1b, d2b):
                assert proc.alive(), proc.output()
            assert time.monotonic() < deadline, (
                f"{_open(engine)} message(s) and {_pending_mails(engine)} mail(s) not settled "
                f"after {SETTLE_TIMEOUT:.0f} s:\n" + "\n".join(p.output() for p in procs)
            )
            time.sleep(0.2)
        phases["settled"] = round(time.monotonic() - began, 1)
        # The confirmations sent by the last round may still be on the wire: let them land.
        time.sleep(0.5)
    finally:
        for proc in procs:
            proc.stop()
    codes = {p.label: p.proc.returncode for p in procs if p is not d2}
    assert codes == dict.fromkeys(codes, 0), codes

    # The SIGTERM'd dispatcher drained within its grace, exit 0, and said so.
    assert d1_code == 0, d1.output()
    assert d1_took < GRACE, f"dispatcher 1 took {d1_took:.1f} s to stop"
    drained = _DRAINED.search(d1.output(500))
    assert drained is not None, d1.output()

    # Every message final; the provider saw each call once.
    statuses = _statuses(engine)
    counts = collections.Counter(statuses.values())
    assert len(statuses) == SMS + MAILS, counts
    assert not OPEN & set(counts), counts
    log = read_log(d1_log) + read_log(d2_log)
    requests = collections.Counter(str(e["message_id"]) for e in log if e["kind"] == "request")
    accepted = collections.Counter(str(e["message_id"]) for e in log if e["kind"] == "mt")
    twice = {i for i, n in (requests + accepted).items() if n > 2 or requests[i] > 1}
    assert not twice, f"{len(twice)} message(s) went to the provider twice"

    # `unknown` only where dispatcher 2 had recorded that the provider call starts (the
    # record comes first, so that a call never starts unrecorded and re-sendable), and every
    # call in flight at the kill is `unknown` (no deduplication: no re-send). Two kinds of
    # `unknown` were not in flight: calls the simulator had answered whose outcome the dead
    # process had not yet written, and calls recorded as starting in the group write just
    # before the kill that the process never got to make (at most one group: the senders).
    unknown = {i for i, s in statuses.items() if s == "unknown"}
    assert unknown, "the kill should have caught provider calls in flight"
    assert unknown == marked2, "unknown differs from the calls the killed dispatcher started"
    assert in_flight <= unknown, "a call in flight at the kill ended other than unknown"
    # A refused number is answered at once, without a "request" line: answered too.
    with session_scope(engine) as session:
        refused = set(
            session.exec(select(Message.id).where(col(Message.recipient).in_(REJECTED))).all()
        )
    answered = unknown & ((started2 & set(accepted)) | refused)
    never_called = unknown - started2 - refused
    assert len(never_called) <= CONCURRENCY, never_called
    assert not never_called & set(requests), "a call recorded as started happened later"
    sent = {i for i, s in statuses.items() if s == "sent"}
    failed = {i for i, s in statuses.items() if s == "failed"}
    assert sent == set(accepted) - unknown
    assert failed == refused - unknown and set(counts) == {"sent", "unknown", "failed"}

    # The ledger: balances equal their ledger sums; charges and refunds match the messages.
    with session_scope(engine) as session:
        assert ledger_problems(session) == []
        credits = dict(session.exec(select(Message.id, Message.credits)).all())  # type: ignore[arg-type]
        by_kind = dict(
            session.exec(
                select(LedgerEntry.kind, func.sum(LedgerEntry.amount)).group_by(
                    col(LedgerEntry.kind)
                )
            ).all()
        )
        balance = session.exec(select(func.sum(LedgerEntry.amount))).one()
    assert -by_kind[LedgerKind.CHARGE.value] == sum(credits.values())
    assert by_kind[LedgerKind.REFUND.value] == sum(credits[i] for i in failed)
    assert balance == by_kind[LedgerKind.TOPUP.value] - sum(credits[i] for i in sent | unknown)

    # Each confirmation reached the sink once, but for the mail dispatcher 2 may have been
    # sending at its kill: the sink took it, the process died before recording it as sent,
    # and it went out again once its lease ended (a mail worker sends one at a time, so at
    # most one; its first copy had landed before the restart).
    ids = collections.Counter(str(m["Message-ID"]) for m in smtp_sink.messages)
    assert len(ids) == MAILS, f"{len(ids)} distinct confirmations for {MAILS} mails"
    twice = {i for i, n in ids.items() if n > 1}
    assert max(ids.values()) <= 2 and len(twice) <= 1, f"delivered more than once: {twice}"
    assert twice <= delivered_before_restart, f"sent again though not sent before: {twice}"
    assert {str(m["To"]) for m in smtp_sink.messages} == {SENDER}

    took_back = sum(
        int(m.group(1)) for p in (d1b, d2b) for m in _TOOK_BACK.finditer(p.output(2000))
    )
    print(
        f"\nmulti-instance: {len(sent)} sent, {len(unknown)} unknown ({len(in_flight)} in "
        f"flight at the kill, {len(answered)} answered but not yet written, "
        f"{len(never_called)} recorded but not yet called), {len(failed)} failed; "
        f"dispatcher 1 drained {drained.group(1)} sent, {drained.group(2)} handed back; "
        f"{took_back} claim(s) of the killed one taken back; {len(ids)} confirmations; "
        f"load at the kill {at_kill}; "
        f"phases {phases}; {time.monotonic() - began:.1f} s"
    )
    engine.dispose()


def _sessions(engine: Engine, instance: str) -> int:
    """How many PostgreSQL sessions INSTANCE (its application_name) has open."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
    with engine.connect() as conn:
        return int(conn.execute(query, {"name": instance[:63]}).scalar() or 0)


def _wait_sessions_gone(engine: Engine, instance: str, timeout: float = 10.0) -> None:
    """Until no PostgreSQL session of INSTANCE is left."""
    deadline = time.monotonic() + timeout
    while _sessions(engine, instance):
        assert time.monotonic() < deadline, f"{instance}'s sessions outlived it by {timeout} s"
        time.sleep(0.02)


def _submitting(engine: Engine, pid: int) -> set[str]:
    """The messages process PID had recorded as handed to a provider (its worker id is
    HOST:PID:OBJECT) and whose outcome it had not written."""
    with session_scope(engine) as session:
        return set(
            session.exec(
                select(Message.id)
                .where(Message.status == "submitting")
                .where(col(Message.claimed_by).like(f"%:{pid}:%"))
            ).all()
        )


def _pending_mails(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(OutgoingMail)
                .where(OutgoingMail.status == "pending")
            ).one()
        )
