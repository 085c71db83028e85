"""Benchmark: durable mails per second taken in over SMTP, against a bare aiosmtpd server.

For each backend (SQLite in a temporary file, PostgreSQL in a database this script creates and
drops), in one process and one run:

1. a bare aiosmtpd server (a handler that accepts every RCPT and answers 250 to DATA without
   looking at the mail or storing anything) on its own event-loop thread;
2. the hub's listener (``hub.mail.intake.smtp.start_smtp`` with a real ``IntakePolicy``) on its
   own event-loop thread, on a migrated database with one account and one intake address:
   every 250 it sends comes after the mail and its SMS are committed;

are each sent N mails by the same client: C smtplib connections in threads, each sending its
share of the mails one after another over one connection. Each mail has its own Message-ID
and recipient number and is authorized as an allowed sender vouched for by a trusted relay
(``Authentication-Results``), so no TLS or SMTP AUTH is involved. After each hub run the
script checks that every mail and its SMS row were committed. The two servers take turns,
R rounds of one each, and the round with the median hub/bare ratio counts: within a round
both see the same machine, even when other work comes and goes on it.

The hub is measured as a hub in use, not a new one: before the first round its database
takes in H earlier mails (``--history``, with their SMS and ledger rows), and PostgreSQL's
statistics are then brought up to date with ANALYZE, as autovacuum keeps them on a running
server (this machine kind runs PostgreSQL with autovacuum off, where plans made for nearly
empty tables would read every earlier mail of the account at each duplicate check).

It prints the hub's and the bare server's mails/s and their ratio (target >= 0.3) per
backend, then a summary; the exit status is 1 when a target is missed. ``--profile`` then
runs the hub once more with time spans: wall and CPU time per mail in parsing, phone numbers,
each kind of SQL statement, commits, and outside the mail's group transaction (aiosmtpd,
reading the mail on the event loop, waiting for the group); ``--cprofile`` adds cProfile of
the event loop and of the intake worker threads (which slows the hub down several times, so
its span figures are inflated).

    .venv/bin/python bench/smtp_intake.py [--n 1000] [--connections 4] [--rounds 5]
                                          [--history 10000]
                                          [--backends sqlite,postgresql]
                                          [--pg-url postgresql://postgres@127.0.0.1:5432/test]
                                          [--profile | --cprofile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import pstats
import smtplib
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any, TypeVar

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine, event, func
from sqlmodel import select

# Runnable as a plain script from a checkout (`python bench/smtp_intake.py`).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._pg import pg_database, pg_unreachable  # noqa: E402
from hub.core.config import Config, parse_config  # noqa: E402
from hub.mail.intake.addresses import add_intake_address  # noqa: E402
from hub.mail.intake.policy import IntakePolicy  # noqa: E402
from hub.mail.intake.received import MailEnvelope  # noqa: E402
from hub.mail.intake.smtp import start_smtp  # noqa: E402
from hub.sending.accounts import create_account  # noqa: E402
from hub.sending.credits import top_up  # noqa: E402
from hub.store.db import make_engine, session_scope, upgrade  # noqa: E402
from hub.store.models import InboundMail, Message  # noqa: E402

T = TypeVar("T")

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_RATIO = 0.3
# Mails sent to each server before its clock starts: first connections, phone metadata,
# SQL compilation caches and the database's own caches are warm for both.
WARMUP = 20
ACCOUNT = "bench"
INTAKE = "sms@hub.bench"
SENDER = "anne@clinic.example"
RELAY = "mx.clinic.example"
TEXT = "Rappel : votre rendez-vous est demain a 09:00. Merci de confirmer."


@dataclass
class Result:
    """One backend's figures."""

    backend: str
    n: int
    hub_rate: float  # mails/s answered 250 after their commit
    bare_rate: float  # mails/s answered 250 by the bare server

    @property
    def ratio(self) -> float:
        return self.hub_rate / self.bare_rate if self.bare_rate else 0.0


# -- databases ------------------------------------------------------------------------------
def bench_config(db_url: str, data_dir: Path, total: int) -> Config:
    """The hub's config for TOTAL mails: limits out of the way (the bench measures intake,
    not throttling)."""
    return parse_config(
        {
            "hub": {"data_dir": str(data_dir), "log_level": "warning"},
            "database": {"url": db_url},
            "smtp": {
                "port": 2525,  # unused: the listener is started on port 0
                # The bench's client connects from loopback, which plays the relay.
                "trusted_relays": [{"authserv_id": RELAY, "networks": ["127.0.0.0/8"]}],
                "mails_per_sender_per_minute": 10 * total,
                "sms_per_account_per_hour": 10 * total,
                "confirmations": False,
            },
        },
        "bench config",
    )


def set_up(engine: Engine, total: int) -> None:
    """Schema, an account funded for TOTAL mails and its intake address open to
    @clinic.example."""
    upgrade(engine)
    with session_scope(engine) as session:
        create_account(session, ACCOUNT, region="FR")
        top_up(session, ACCOUNT, 10 * total)
        add_intake_address(session, ACCOUNT, INTAKE, allowed_senders=["@" + SENDER.split("@")[1]])


def load_history(engine: Engine, config: Config, count: int) -> None:
    """COUNT earlier mails taken in (in groups, as concurrent mail is), then statistics as
    a running PostgreSQL server's autovacuum keeps them."""
    if count:
        policy = IntakePolicy(engine, config)
        mails = make_mails("history", count, 5_000_000)
        for start in range(0, count, 64):
            envs = [
                MailEnvelope(raw=raw, mail_from=SENDER, rcpt_to=[INTAKE], peer="127.0.0.1")
                for raw in mails[start : start + 64]
            ]
            refused = [o.reply for o in policy.take_group(envs) if not o.accepted]
            if refused:
                raise RuntimeError(f"the history was refused: {refused[0]}")
        policy.connection.close()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")


def count_rows(engine: Engine) -> tuple[int, int]:
    """(inbound mails, outbox rows) committed."""
    with session_scope(engine) as session:
        mails = session.exec(select(func.count()).select_from(InboundMail)).one()
        messages = session.exec(select(func.count()).select_from(Message)).one()
    return int(mails), int(messages)


# -- mails and the client -------------------------------------------------------------------
def make_mails(tag: str, count: int, first_number: int) -> list[bytes]:
    """COUNT mails, each with its own Message-ID and recipient, CRLF line endings."""
    mails = []
    for i in range(count):
        msg = EmailMessage()
        msg["From"] = f"Anne <{SENDER}>"
        msg["To"] = INTAKE
        msg["Subject"] = f"+3361{first_number + i:07d}"
        msg["Message-ID"] = f"<bench-{tag}-{i}@clinic.example>"
        msg["Authentication-Results"] = f"{RELAY}; dmarc=pass header.from=clinic.example"
        msg.set_content(TEXT)
        mails.append(msg.as_bytes(policy=SMTP_POLICY))
    return mails


def send_all(port: int, mails: list[bytes], connections: int) -> float:
    """Seconds for CONNECTIONS smtplib connections to send MAILS (split evenly) and have
    every one answered 250; raises on any other answer."""
    shares = [mails[i::connections] for i in range(connections)]
    errors: list[BaseException] = []
    # Connections are opened before the clock starts: the figure is mails, not handshakes.
    clients = []
    for _ in shares:
        client = smtplib.SMTP("127.0.0.1", port, timeout=60)
        client.ehlo("client.clinic.example")
        clients.append(client)
    start = threading.Barrier(connections + 1)

    def worker(client: smtplib.SMTP, share: list[bytes]) -> None:
        start.wait()
        try:
            for raw in share:
                # Raises SMTPRecipientsRefused / SMTPDataError on anything but 250.
                client.sendmail(SENDER, [INTAKE], raw)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(c, s), daemon=True)
        for c, s in zip(clients, shares, strict=True)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for client in clients:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
    if errors:
        raise RuntimeError(f"{len(errors)} connection(s) failed, first: {errors[0]!r}")
    return elapsed


# -- the servers ----------------------------------------------------------------------------
class LoopThread:
    """An asyncio event loop of its own in a daemon thread (a server's, apart from the
    client's threads, as in a real process)."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run CORO in the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def call(self, fn: Callable[[], T]) -> T:
        """Call FN in the loop's thread (a profiler must be enabled from its own thread)."""

        async def call() -> T:
            return fn()

        return self.run(call())

    def close(self) -> None:
        async def shutdown() -> None:
            # The default executor holds asyncio.to_thread's workers.
            await self.loop.shutdown_default_executor()

        self.run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class BareHandler:
    """aiosmtpd hooks that take every recipient and answer 250 without storing anything."""

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        return "250 2.0.0 OK"


async def start_bare(config: Config) -> asyncio.Server:
    """The bare server, built with the hub's SMTP settings so only the handler differs."""
    loop = asyncio.get_running_loop()
    handler = BareHandler()

    def factory() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=config.smtp.max_message_size,
            hostname="bench.local",
            ident="smshub",
            timeout=config.smtp.command_timeout,
            loop=loop,
        )

    return await loop.create_server(factory, host="127.0.0.1", port=0)


def server_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def time_bare(config: Config, n: int, connections: int) -> float:
    """Seconds for the bare server to answer N mails."""
    loop = LoopThread("bare-smtp")
    try:
        server = loop.run(start_bare(config))
        port = server_port(server)
        send_all(port, make_mails("bare-warmup", WARMUP, 0), min(connections, WARMUP))
        seconds = send_all(port, make_mails("bare", n, WARMUP), connections)
        loop.call(server.close)  # asyncio.Server is not thread-safe: close it in its loop
        loop.run(server.wait_closed())
    finally:
        loop.close()
    return seconds


# -- where the hub's time goes --------------------------------------------------------------
class IntakeProfile:
    """Time spans and cProfile of the hub side while it takes mails in.

    The intake's groups of mails run on worker threads (the group commit's, and
    asyncio.to_thread for RCPT TO to an address not seen lately), which a profiler on the
    event loop only sees as idle selector time, so each worker thread gets a profiler of its
    own (enabled only inside those calls) and the loop's profiler covers aiosmtpd and the
    reading of each mail.
    """

    # (module, attribute) wrapped with a wall-clock span; nested spans are inclusive.
    SPANS = [
        ("hub.mail.intake.policy", "IntakePolicy.check_rcpt"),
        ("hub.mail.intake.group_commit", "GroupCommit._run_batch"),
        ("hub.mail.intake.policy", "IntakePolicy._take_together"),
        ("hub.mail.intake.policy", "IntakePolicy.receive"),
        ("hub.mail.parse", "parse_mail"),
        ("hub.campaigns.links", "mail_attachments"),
        ("hub.mail.intake.directory", "IntakeDirectory.load"),
        ("hub.mail.intake.transaction", "read_mail"),
        ("hub.mail.intake.received", "relay_verdict"),
        ("hub.mail.intake.transaction", "check_limits"),
        ("hub.sending.submit", "SubmitBatch.prepare"),
        ("hub.sending.submit", "SubmitBatch.submit"),
        ("hub.sending.submit", "SubmitBatch.settle"),
        ("hub.sending.submit", "SubmitBatch.write"),
        ("hub.core.phone", "parse_number"),
        ("hub.sending.credits", "charge_many"),
    ]
    # The spans that run on worker threads from the event loop (a batch of mails, RCPT TO
    # to an address not seen lately): the policy's share of the time.
    ENTRIES = ("GroupCommit._run_batch", "IntakePolicy.check_rcpt")

    def __init__(self, functions: bool) -> None:
        # cProfile as well as the spans: detailed, but it slows the hub down several times.
        self.functions = functions
        self.loop_profile = cProfile.Profile()
        self.local = threading.local()
        self.worker_profiles: list[cProfile.Profile] = []
        self.lock = threading.Lock()
        # Wall time, this thread's CPU time (time.thread_time) and calls, per span name.
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.restore: list[Callable[[], None]] = []

    def add(self, name: str, seconds: float, cpu: float, calls: int = 1) -> None:
        with self.lock:
            self.seconds[name] += seconds
            self.cpu[name] += cpu
            self.calls[name] += calls

    def _worker_profile(self) -> cProfile.Profile:
        profile: cProfile.Profile | None = getattr(self.local, "profile", None)
        if profile is None:
            profile = self.local.profile = cProfile.Profile()
            with self.lock:
                self.worker_profiles.append(profile)
        return profile

    def _wrap(self, module_name: str, attr: str) -> None:
        module = sys.modules[module_name]
        owner: Any = module
        name = attr
        if "." in attr:
            cls_name, name = attr.split(".")
            owner = getattr(module, cls_name)
        original = getattr(owner, name)
        # Only the entry points from the event loop run under the worker profiler.
        outer = self.functions and attr in self.ENTRIES

        def timed(*args: Any, **kwargs: Any) -> Any:
            profile = self._worker_profile() if outer else None
            started, cpu = time.perf_counter(), time.thread_time()
            if profile is not None:
                profile.enable()
            try:
                return original(*args, **kwargs)
            finally:
                if profile is not None:
                    profile.disable()
                self.add(attr, time.perf_counter() - started, time.thread_time() - cpu)

        setattr(owner, name, timed)
        self.restore.append(lambda: setattr(owner, name, original))

    def _watch_engine(self, engine: Engine) -> None:
        """SQL statements (by kind) and their time, and the commit's time (fsync lives there)."""

        def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            self.local.sql_started = (time.perf_counter(), time.thread_time())

        def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            kind = statement.lstrip().split(None, 1)[0].upper()
            if kind == "BEGIN":
                kind = statement.strip().upper()
            wall, cpu = self.local.sql_started
            self.add(f"SQL {kind}", time.perf_counter() - wall, time.thread_time() - cpu)

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        dialect = engine.dialect
        do_commit = dialect.do_commit

        def timed_commit(dbapi_connection: Any) -> None:
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                do_commit(dbapi_connection)
            finally:
                self.add("SQL COMMIT", time.perf_counter() - started, time.thread_time() - cpu)

        dialect.do_commit = timed_commit  # type: ignore[method-assign]

        def undo() -> None:
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)
            del dialect.do_commit  # back to the class's method

        self.restore.append(undo)

    @contextmanager
    def installed(self, engine: Engine, loop: LoopThread) -> Iterator[None]:
        import hub.campaigns.links
        import hub.core.phone  # noqa: F401  (wrapped by name below)

        for module_name, attr in self.SPANS:
            self._wrap(module_name, attr)
        self._watch_engine(engine)
        if self.functions:
            loop.call(self.loop_profile.enable)
        try:
            yield
        finally:
            if self.functions:
                loop.call(self.loop_profile.disable)
            for undo in reversed(self.restore):
                undo()

    def report(self, backend: str, n: int, connections: int, elapsed: float) -> None:
        """Per mail: each span's and each SQL kind's time and count; then the profiles."""
        per_mail_ms = 1000 * elapsed * connections / n
        print(
            f"--- {backend}: where the hub's time goes ({n} mails, {connections} connections, "
            f"{elapsed:.2f} s; a client waits {per_mail_ms:.1f} ms per mail) ---"
        )
        # Wall time minus the thread's own CPU time is waiting: for the database (its lock,
        # its server, fsync), for the GIL, or for a CPU on a busy machine.
        print(
            f"  {'span (inclusive)':<32} {'wall ms/mail':>12} {'CPU ms/mail':>12} "
            f"{'calls/mail':>10}"
        )
        rows = sorted(self.seconds.items(), key=lambda item: -item[1])
        for name, seconds in rows:
            print(
                f"  {name:<32} {1000 * seconds / n:12.2f} {1000 * self.cpu[name] / n:12.2f} "
                f"{self.calls[name] / n:10.1f}"
            )
        sql = sum(s for k, s in self.seconds.items() if k.startswith("SQL "))
        statements = sum(c for k, c in self.calls.items() if k.startswith("SQL "))
        policy = sum(self.seconds[k] for k in self.ENTRIES)
        policy_cpu = sum(self.cpu[k] for k in self.ENTRIES)
        print(
            f"  the policy (worker threads): {1000 * policy / n:.2f} ms/mail wall, "
            f"{1000 * policy_cpu / n:.2f} ms CPU; SQL (statements and commits) "
            f"{1000 * sql / n:.2f} ms wall in {statements / n:.1f} round trips per mail"
        )
        # A mail waits for the whole transaction of its group, not for its share of it.
        groups = self.calls["GroupCommit._run_batch"]
        group_ms = 1000 * self.seconds["GroupCommit._run_batch"] / groups if groups else 0.0
        print(
            f"  {n / groups if groups else 0:.1f} mails per group, {group_ms:.1f} ms per group; "
            f"of the {per_mail_ms:.1f} ms a client waits per mail, {per_mail_ms - group_ms:.1f} "
            "ms are outside its group: the SMTP dialogue in aiosmtpd, reading the mail on the "
            "event loop, the wait for the group's other mails"
        )
        if not self.functions:
            return
        merged = pstats.Stats(self.worker_profiles[0]) if self.worker_profiles else None
        if merged is not None:
            for profile in self.worker_profiles[1:]:
                merged.add(profile)
        for title, stats, sort, limit in [
            ("intake policy (worker threads, merged)", merged, "cumulative", 40),
            ("intake policy (worker threads, merged)", merged, "tottime", 25),
            ("event loop (aiosmtpd + handler)", pstats.Stats(self.loop_profile), "tottime", 20),
        ]:
            if stats is None:
                continue
            out = io.StringIO()
            stats.stream = out  # type: ignore[attr-defined]
            stats.sort_stats(sort).print_stats(limit)
            print(f"--- {backend}: {title}, by {sort} ---")
            print(out.getvalue())


def time_hub(
    engine: Engine,
    config: Config,
    n: int,
    connections: int,
    tag: str,
    profile: IntakeProfile | None = None,
) -> float:
    """Seconds for the hub's listener to take N mails (each committed before its 250)."""
    loop = LoopThread("hub-smtp")
    try:
        server = loop.run(start_smtp(IntakePolicy(engine, config), config, port=0))
        port = server_port(server)
        before = count_rows(engine)
        send_all(port, make_mails(f"{tag}-warmup", WARMUP, 0), min(connections, WARMUP))
        if profile is None:
            seconds = send_all(port, make_mails(tag, n, WARMUP), connections)
        else:
            with profile.installed(engine, loop):
                seconds = send_all(port, make_mails(tag, n, WARMUP), connections)
        after = count_rows(engine)
        loop.call(server.close)  # asyncio.Server is not thread-safe: close it in its loop
        loop.run(server.wait_closed())
    finally:
        loop.close()
    stored = (after[0] - before[0], after[1] - before[1])
    if stored != (n + WARMUP, n + WARMUP):
        raise RuntimeError(
            f"the hub answered 250 to {n + WARMUP} mails but stored {stored[0]} mails and "
            f"{stored[1]} SMS"
        )
    return seconds


# -- driver ---------------------------------------------------------------------------------
def run_backend(
    backend: str,
    db_url: str,
    workdir: Path,
    n: int,
    connections: int,
    rounds: int,
    profile: str,
    history: int,
) -> Result:
    """Time the bare server and the hub in alternation, ROUNDS times each, on the database
    at DB_URL; the round with the median ratio counts (then profile the hub if asked)."""
    engine = make_engine(db_url)
    # Every mail the hub takes in this run, warm-ups and the profiled round included.
    total = (rounds + int(profile != "off")) * (n + WARMUP) + history
    try:
        set_up(engine, total)
        config = bench_config(db_url, workdir / "data", total)
        started = time.perf_counter()
        load_history(engine, config, history)
        if history:
            print(
                f"  {backend}: {history} earlier mails taken in first "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        results: list[Result] = []
        # Alternating, and compared within a round, so that load from elsewhere on the
        # machine (which comes and goes) weighs on both sides of each ratio alike.
        for r in range(rounds):
            bare_seconds = time_bare(config, n, connections)
            hub_seconds = time_hub(engine, config, n, connections, f"hub{r}")
            results.append(Result(backend, n, n / hub_seconds, n / bare_seconds))
            print(
                f"  {backend} round {r + 1}/{rounds}: hub {results[-1].hub_rate:.0f} mails/s, "
                f"bare aiosmtpd {results[-1].bare_rate:.0f} mails/s, "
                f"ratio {results[-1].ratio:.2f}",
                flush=True,
            )
        if profile != "off":
            profiler = IntakeProfile(functions=profile == "cprofile")
            # Its own Message-IDs and its own round: the profile slows the hub down, so the
            # figures above are taken without it.
            seconds = time_hub(engine, config, n, connections, "profiled", profiler)
            profiler.report(backend, n, connections, seconds)
    finally:
        engine.dispose()
    # The round with the median ratio stands for the backend.
    return sorted(results, key=lambda result: result.ratio)[(len(results) - 1) // 2]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a target is missed or nothing could be measured."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="mails to send (default 1000)")
    parser.add_argument(
        "--connections", type=int, default=4, help="concurrent SMTP connections (default 4)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds (bare, then hub); the one with the median ratio counts (default 5)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=10_000,
        help="earlier mails in the hub's database before the first round (default 10000)",
    )
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma list: sqlite, postgresql"
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server to use")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--profile",
        dest="profile",
        action="store_const",
        const="spans",
        default="off",
        help="then time where the hub's time goes, in an extra round not used for the figures",
    )
    modes.add_argument(
        "--cprofile",
        dest="profile",
        action="store_const",
        const="cprofile",
        help="as --profile, plus cProfile of the event loop and the worker threads",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    if min(args.n, args.connections, args.rounds) < 1:
        parser.error("--n, --connections and --rounds must be at least 1")
    if args.history < 0:
        parser.error("--history must not be negative")

    results: list[Result] = []
    skipped: list[str] = []
    for backend in backends:
        with (
            tempfile.TemporaryDirectory(prefix=f"smshub-bench-{backend}-") as tmp,
            ExitStack() as stack,
        ):
            workdir = Path(tmp)
            if backend == "sqlite":
                url = f"sqlite:///{(workdir / 'bench.db').as_posix()}"
            else:
                why = pg_unreachable(args.pg_url)
                if why is not None:
                    print(f"postgresql: skipped, server not reachable ({why})", flush=True)
                    skipped.append(backend)
                    continue
                url = stack.enter_context(pg_database(args.pg_url))
            result = run_backend(
                backend,
                url,
                workdir,
                args.n,
                args.connections,
                args.rounds,
                args.profile,
                args.history,
            )
        results.append(result)
        verdict = "PASS" if result.ratio >= TARGET_RATIO else "FAIL"
        print(
            f"{backend}: hub {result.hub_rate:.0f} mails/s, bare aiosmtpd "
            f"{result.bare_rate:.0f} mails/s, ratio {result.ratio:.2f} {verdict} "
            f"(target {TARGET_RATIO})",
            flush=True,
        )

    print(
        f"\nsummary (N={args.n} mails per round, {args.connections} connections, median of "
        f"{args.rounds} rounds):"
    )
    ok = True
    for result in results:
        passed = result.ratio >= TARGET_RATIO
        ok &= passed
        print(
            f"  {result.backend}: {result.hub_rate:.0f} durable mails/s, ratio "
            f"{result.ratio:.2f} >= {TARGET_RATIO}: {'PASS' if passed else 'FAIL'}"
        )
    for backend in skipped:
        print(f"  {backend}: not measured (server not reachable)")
    if not results:
        print("  nothing measured")
    return 0 if ok and results else 1


if __name__ == "__main__":
    sys.exit(main())
