"""Crash test: the SMTP listener killed at random moments during intake loses no mail it
acknowledged and queues none twice.

`smshub run --role smtp` runs as a separate process (SMTP only, no dispatcher: the outbox
rows are the evidence). A client of 4 smtplib connections sends 1,000 mails, each with its own
Message-ID and its own recipient number, authorized as an allowed sender vouched for by a
trusted relay (no TLS, so the load is the intake itself). While it sends, the hub is killed
with SIGKILL (no clean shutdown, no `finally`) at random moments and restarted. Like a real
mail server, the client retries every mail that did not get a `250` (a dropped connection is
not an acknowledgement), with the same Message-ID: a retry of a mail the hub had in fact
committed just before dying must be answered "already received" and queue nothing. As a kill
rarely lands in the short gap between the commit and the 250, the client also hangs up right
after the final dot for a few mails: the hub commits them (or not) with nobody to answer, and
their retries take the same "already received" path.

At the end every mail that got a `250` has exactly its SMS in the outbox, committed in the
same transaction as its raw mail (same batch), no Message-ID produced two rows, and the
credit ledger adds up.

The seed is fixed so a failure can be replayed; set SMSHUB_CRASH_SEED to try others.
"""

from __future__ import annotations

import os
import queue
import random
import re
import smtplib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from hub.mail.intake.addresses import add_intake_address
from hub.sending.accounts import create_account
from hub.sending.credits import ledger_problems, top_up
from hub.store.db import make_engine, session_scope
from hub.store.models import Account, InboundMail, Message
from tests.reliability._harness import SEED, CrashHarness, HubProcess, backend_of, write_config
from tests.servers._util import free_ports

# Kills processes and counts what survived: slow, and run by CI all the same (no -m filter).
pytestmark = pytest.mark.slow

MAILS = 1_000
CONNECTIONS = 4
KILLS = 5
# Each hub life is killed after a random number of new acknowledgements (then a random few
# milliseconds more, so the kill lands anywhere in a transaction: parsing, inside the commit,
# between the commit and the 250). Counting acknowledgements rather than sleeping makes every
# kill land mid-intake whatever the machine's speed: KILLS * max < MAILS.
ACKS_BEFORE_KILL = (20, 160)
KILL_JITTER = (0.0, 0.03)
# Share of mails whose first send hangs up after the data, without waiting for the reply.
HANGUP_RATE = 0.02
# Kills that must interrupt work in progress (mails still to send), or the test proved little.
MIN_KILLS_MID_WORK = 3
TOP_UP = 10 * MAILS
READY_TIMEOUT = 60.0
RUN_TIMEOUT = 180.0

ACCOUNT = "clinic"
INTAKE = "sms@hub.test"
SENDER = "anne@clinic.example"
AUTH_RESULTS = "mx.clinic.example; dmarc=pass header.from=clinic.example"


@dataclass(frozen=True)
class Mail:
    """One mail of the run; its number and text are its own, so rows can be traced back."""

    index: int
    message_id: str
    number: str
    text: str
    raw: bytes


def _mails(run_tag: str) -> list[Mail]:
    mails = []
    for i in range(MAILS):
        message_id = f"crash-{run_tag}-{i}@clinic.example"
        number = f"+3361{i:07d}"
        text = f"Rappel {i} : rendez-vous demain a 9h"
        msg = EmailMessage()
        msg["From"] = f"Anne <{SENDER}>"
        msg["To"] = INTAKE
        msg["Subject"] = number
        msg["Message-ID"] = f"<{message_id}>"
        msg["Authentication-Results"] = AUTH_RESULTS
        msg.set_content(text)
        # CRLF line endings: the listener refuses bare LF (SMTP smuggling).
        mails.append(Mail(i, message_id, number, text, msg.as_bytes(policy=SMTP_POLICY)))
    return mails


@dataclass
class Client:
    """The sending side: CONNECTIONS smtplib threads sharing one queue of mails to send.

    A mail leaves the queue for good only with a final answer: a 250 (acknowledged) or a
    5xx (refused, which must not happen here). A dropped connection or a 4xx puts it back,
    to be sent again, by whichever connection takes it next.
    """

    port: int
    mails: list[Mail]
    deadline: float
    # Mails whose first send hangs up after the data.
    hang_ups: frozenset[int]
    todo: queue.Queue[int] = field(default_factory=queue.Queue)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # index -> the 250 reply; index -> the 5xx reply.
    acked: dict[int, str] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)
    attempts: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    hangups: int = 0
    temporary_failures: int = 0
    # Why each mail's last send got no answer: "kill" (connection dropped) or "hang-up".
    unanswered: dict[int, str] = field(default_factory=dict)
    # Retries answered "already received" (the hub had committed the unanswered send), by
    # why that send was unanswered.
    already_received: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        for mail in self.mails:
            self.todo.put(mail.index)

    @property
    def settled(self) -> int:
        with self.lock:
            return len(self.acked) + len(self.refused)

    def run(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._worker, name=f"smtp-client-{n}", daemon=True)
            for n in range(CONNECTIONS)
        ]
        for thread in threads:
            thread.start()
        return threads

    def _connect(self) -> smtplib.SMTP | None:
        """A connection that has said EHLO, retrying while the hub is down; None at deadline."""
        while time.monotonic() < self.deadline and not self.done.is_set():
            try:
                conn = smtplib.SMTP("127.0.0.1", self.port, timeout=15)
                conn.ehlo("client.clinic.example")
                return conn
            except (OSError, smtplib.SMTPException):
                # Refused while the hub restarts, or cut by a kill during the greeting.
                time.sleep(0.02)
        return None

    def _send(self, conn: smtplib.SMTP, mail: Mail) -> tuple[int, str]:
        """One SMTP transaction; the final (code, text). Raises on a dropped connection."""
        code, reply = conn.mail(SENDER)
        if code == 250:
            code, reply = conn.rcpt(INTAKE)
            if code in (250, 251):
                try:
                    code, reply = conn.data(mail.raw)
                except smtplib.SMTPDataError as exc:
                    # The DATA command itself refused (not 354); its reply is the answer.
                    error = exc.smtp_error
                    code = exc.smtp_code
                    reply = error if isinstance(error, bytes) else error.encode()
        if code != 250:
            conn.rset()
        return code, reply.decode("utf-8", "replace")

    def _hang_up_after_data(self, conn: smtplib.SMTP, mail: Mail) -> None:
        """Send the whole mail, then close without reading the reply (as a client that lost
        its network would): the mail stays unacknowledged whatever the hub did with it."""
        if conn.mail(SENDER)[0] != 250 or conn.rcpt(INTAKE)[0] not in (250, 251):
            raise smtplib.SMTPServerDisconnected("refused before DATA")
        conn.putcmd("data")
        if conn.getreply()[0] != 354:
            raise smtplib.SMTPServerDisconnected("refused DATA")
        # Dot-stuffing as smtplib.data() does it (these mails have no line starting with ".").
        conn.send(re.sub(rb"(?m)^\.", b"..", mail.raw) + b".\r\n")
        conn.close()

    def _worker(self) -> None:
        conn: smtplib.SMTP | None = None
        try:
            while not self.done.is_set():
                if time.monotonic() > self.deadline:
                    self.errors.append("client deadline reached")
                    return
                try:
                    index = self.todo.get(timeout=0.05)
                except queue.Empty:
                    continue
                if conn is None:
                    conn = self._connect()
                    if conn is None:
                        self.todo.put(index)
                        return
                mail = self.mails[index]
                with self.lock:
                    self.attempts[index] += 1
                    retry = self.attempts[index] > 1
                hang_up = not retry and index in self.hang_ups
                if hang_up:
                    try:
                        self._hang_up_after_data(conn, mail)
                    except (OSError, smtplib.SMTPException):
                        with self.lock:
                            self.connection_errors += 1
                            self.unanswered[index] = "kill"
                    else:
                        with self.lock:
                            self.hangups += 1
                            self.unanswered[index] = "hang-up"
                    conn.close()
                    conn = None
                    self.todo.put(index)
                    continue
                try:
                    code, reply = self._send(conn, mail)
                except (OSError, smtplib.SMTPException):
                    # No final answer: not acknowledged, so a real client sends it again.
                    with self.lock:
                        self.connection_errors += 1
                        self.unanswered[index] = "kill"
                    conn.close()
                    conn = None
                    self.todo.put(index)
                    continue
                with self.lock:
                    if code == 250:
                        self.acked[index] = reply
                        if "already received" in reply:
                            if retry:
                                why = self.unanswered.get(index, "4xx")
                                self.already_received[why] += 1
                            else:
                                self.errors.append(f"mail {index} sent once: {reply}")
                    elif 400 <= code < 500:
                        self.temporary_failures += 1
                    else:
                        self.refused[index] = f"{code} {reply}"
                    finished = len(self.acked) + len(self.refused) == len(self.mails)
                if 400 <= code < 500:
                    self.todo.put(index)
                if finished:
                    self.done.set()
        finally:
            if conn is not None:
                try:
                    conn.quit()
                except (OSError, smtplib.SMTPException):
                    conn.close()


@dataclass
class Run:
    """What happened during one crash run, for the assertions and the printed summary."""

    kills: int = 0
    kills_mid_work: int = 0
    acked_at_kills: list[int] = field(default_factory=list)


def _write_config(tmp_path: Path, db_url: str) -> tuple[Path, int]:
    smtp_port, http_port = free_ports(2)
    path = write_config(
        tmp_path,
        db_url,
        f"""
[http]
port = {http_port}

[dispatcher]
enabled = false

[smtp]
port = {smtp_port}
trusted_relays = [{{authserv_id = "mx.clinic.example", networks = ["127.0.0.0/8"]}}]
mails_per_sender_per_minute = {100 * MAILS}
sms_per_account_per_hour = {100 * MAILS}
confirmations = false
""",
    )
    return path, smtp_port


def _set_up(engine: Engine) -> int:
    """Account, credits and intake address with its allowed sender; returns the account id."""
    with session_scope(engine) as session:
        account = create_account(session, ACCOUNT, region="FR")
        top_up(session, ACCOUNT, TOP_UP)
        add_intake_address(session, ACCOUNT, INTAKE, allowed_senders=["@clinic.example"])
        assert account.id is not None
        return account.id


def _crash_while_sending(
    config_path: Path, client: Client, rng: random.Random
) -> tuple[Run, HubProcess]:
    """Start the hub, kill it KILLS times mid-intake, restart; returns the last (live) hub."""
    run = Run()
    # A listener is ready once bound; checked often, as the client waits for it.
    harness = CrashHarness(config_path, "smtp", ready_timeout=READY_TIMEOUT, ready_poll=0.02)
    proc = harness.start("hub run 1")
    client.run()
    for n in range(KILLS):
        target = client.settled + rng.randint(*ACKS_BEFORE_KILL)
        while client.settled < target and not client.done.is_set():
            if proc.proc.poll() is not None:
                pytest.fail(f"{proc.label} died on its own:\n{proc.output()}")
            if time.monotonic() > client.deadline:
                pytest.fail(f"no progress before kill {n + 1}:\n{proc.output()}")
            time.sleep(0.001)
        time.sleep(rng.uniform(*KILL_JITTER))
        settled = client.settled
        proc.kill()
        run.kills += 1
        run.acked_at_kills.append(settled)
        if settled < MAILS:
            run.kills_mid_work += 1
        proc = harness.start(f"hub run {n + 2}")
    return run, proc


def _check_outbox(engine: Engine, account_id: int, mails: list[Mail], acked: set[int]) -> None:
    """Every acknowledged mail is exactly its SMS, stored with its raw mail; nothing else."""
    with session_scope(engine) as session:
        messages = list(session.exec(select(Message)).all())
        inbound = list(session.exec(select(InboundMail)).all())
        assert ledger_problems(session) == []
        balance = session.exec(select(Account.balance).where(Account.name == ACCOUNT)).one()

    by_key = {f"mail:{account_id}:{m.message_id}:{m.number}": m for m in mails}
    per_mail = Counter(msg.idempotency_key.rsplit(":", 1)[0] for msg in messages)
    twice = [key for key, n in per_mail.items() if n > 1]
    assert twice == [], f"Message-IDs that produced two rows: {twice[:5]}"
    strangers = [msg.idempotency_key for msg in messages if msg.idempotency_key not in by_key]
    assert strangers == [], f"rows that belong to no mail sent: {strangers[:5]}"
    assert {msg.source for msg in messages} <= {"mail"}
    found = {by_key[msg.idempotency_key].index: msg for msg in messages}
    lost = sorted(acked - set(found))
    assert lost == [], f"{len(lost)} mail(s) answered 250 without their SMS, e.g. {lost[:5]}"
    unacked = sorted(set(found) - acked)
    assert unacked == [], f"SMS from mails never acknowledged: {unacked[:5]}"
    for index, msg in found.items():
        assert msg.recipient == mails[index].number
        assert msg.text.strip() == mails[index].text, f"mail {index}: {msg.text!r}"

    # The raw mail and its SMS were committed together: one InboundMail per accepted mail,
    # in the SMS's batch.
    ids = Counter(m.dedupe_key for m in inbound)
    assert [k for k, n in ids.items() if n > 1] == []
    by_id = {m.message_id: m for m in mails}
    assert {by_id[m.dedupe_key].index for m in inbound} == acked
    batch_of = {msg.recipient: msg.batch_id for msg in messages}
    for row in inbound:
        assert row.batch_id == batch_of[by_id[row.dedupe_key].number], row.dedupe_key
    assert balance == TOP_UP - sum(msg.credits for msg in messages)


def test_smtp_intake_killed_at_random_moments(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = backend_of(db_url)
    seed = f"{SEED}:{backend}"
    rng = random.Random(seed)
    engine = make_engine(db_url)
    started = time.perf_counter()
    proc: HubProcess | None = None
    client: Client | None = None
    try:
        account_id = _set_up(engine)
        config_path, port = _write_config(tmp_path, db_url)
        # The run tag keeps Message-IDs apart from any earlier run on a shared database.
        mails = _mails(f"{SEED}-{backend}-{os.getpid()}")
        # Chosen up front, per mail, so a seed replays the same run whatever the threads do.
        hang_ups = frozenset(rng.sample(range(MAILS), round(MAILS * HANGUP_RATE)))
        client = Client(port, mails, deadline=time.monotonic() + RUN_TIMEOUT, hang_ups=hang_ups)
        run, proc = _crash_while_sending(config_path, client, rng)
        # The last hub lives: the client finishes, retrying what the kills left unanswered.
        while not client.done.wait(0.05):
            if proc.proc.poll() is not None:
                pytest.fail(f"the last hub died:\n{proc.output()}")
            if time.monotonic() > client.deadline:
                pytest.fail(
                    f"only {client.settled}/{MAILS} mails answered after {RUN_TIMEOUT:.0f} s "
                    f"({client.errors[:3]}):\n{proc.output()}"
                )
        assert client.errors == []
        assert client.refused == {}, f"mails refused: {list(client.refused.items())[:3]}"
        assert run.kills >= KILLS and run.kills_mid_work >= MIN_KILLS_MID_WORK, run
        _check_outbox(engine, account_id, mails, set(client.acked))
    finally:
        if client is not None:
            client.done.set()
        if proc is not None:
            proc.stop()
        engine.dispose()
    sent = sum(client.attempts.values())
    retries = sent - len(client.attempts)
    with capsys.disabled():
        print(
            f"\n[smtp crash {backend} seed={seed}] {MAILS} mails, {sent} sends, "
            f"{len(client.acked)} answered 250, {retries} retries "
            f"({client.connection_errors} dropped by kills, {client.hangups} client "
            f"hang-ups, {client.temporary_failures} 4xx), retries answered 'already received': "
            f"{client.already_received['kill']} after a kill, "
            f"{client.already_received['hang-up']} after a hang-up; "
            f"{run.kills} kills ({run.kills_mid_work} mid-intake, at {run.acked_at_kills} "
            f"answered), {time.perf_counter() - started:.1f} s"
        )
