"""Benchmark: SMS per second from the hub's outbox through a real Kannel, against bare httpx.

For each backend (SQLite in a temporary file, PostgreSQL in a database this script creates and
drops) it starts Kannel (bearerbox + smsbox + fakesmsc, from ``tests/servers/kannel.py``) and
the hub's HTTP API (uvicorn, in this process, so smsbox can deliver the reports), then:

1. baseline: a bare ``httpx.AsyncClient`` loop sends N sendsms requests built exactly like the
   connector's (same parameters, dlr-mask and dlr-url) with the same concurrency: CONCURRENCY
   workers over CONCURRENCY kept-alive connections, as many as the connector may use. By
   default the connections share one httpx pool (plain httpx); ``--baseline per-connection``
   gives each worker a client of its own, which is how the connector holds them
   (``connectors/http_lanes.py``: httpcore's per-request walk over a shared pool costs more
   CPU than the rest of a request). That variant is the stricter comparison: it measures
   the hub's own overhead (outbox, dispatcher, reports) and nothing of the HTTP client;
2. hub: fills the outbox with N single-part SMS through ``hub.sending.submit.submit`` (not timed),
   then times ``Dispatcher.drain()`` until every message is accepted by smsbox and recorded;
3. repeats, ROUNDS hub runs in all, each between two baseline runs; the figures are medians,
   so a drift of Kannel or a noisy neighbour on the machine shows instead of skewing one side.

The figure is "accepted by smsbox per second" for both; the time until fakesmsc has logged
them all is printed too. Between runs it waits until Kannel has delivered every message and
every report (two per message: SMSC success and delivered) to the hub, so no run pays for the
previous one's tail. On PostgreSQL the tables are analyzed before each run (not timed), as
autovacuum does on a real server; the test server may run without it. Target: hub / baseline
>= 0.8.

The reports of both runs go to the hub's API in this process (the baseline's name messages the
hub does not have, so they are looked up and dropped; the hub's are stored). Each run also
prints this process's CPU time per SMS and the worker-thread time spent storing reports: on a
small machine the process's CPU is what caps both rates, so these say where the difference
goes. ``--dlr-mask 0`` measures the sending path alone (no reports at all).

    .venv/bin/python bench/kannel.py [--n 2000] [--rounds 3] [--concurrency 16] [--batch 200]
                                     [--baseline shared|per-connection] [--dlr-mask 31]
                                     [--backends sqlite,postgresql] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine, func, select, text
from sqlmodel import col

# Runnable as a plain script from a checkout (`python bench/kannel.py`).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._pg import pg_database, pg_unreachable  # noqa: E402
from hub.app import Hub  # noqa: E402
from hub.core.config import Config, parse_config  # noqa: E402
from hub.core.metrics import CALLBACKS  # noqa: E402
from hub.ports.sms import OutgoingSms  # noqa: E402
from hub.sending import submit as sending
from hub.sending.accounts import create_account  # noqa: E402
from hub.sending.credits import top_up  # noqa: E402
from hub.store.db import make_engine, session_scope, upgrade  # noqa: E402
from hub.store.models import Message, MessageStatus  # noqa: E402
from tests.servers._util import free_port  # noqa: E402
from tests.servers.kannel import KannelServer, start_kannel  # noqa: E402

TARGET_RATIO = 0.8
DEFAULT_PG_URL = os.environ.get(
    "SMSHUB_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TEXT = "Rappel : rendez-vous demain a 9h au cabinet. Repondez STOP pour ne plus recevoir."
FILL_CHUNK = 500
PASSWORD_ENV = "SMSHUB_BENCH_KANNEL_PASSWORD"
SECRET_ENV = "SMSHUB_BENCH_KANNEL_SECRET"
SETTLE_TIMEOUT = 120.0
# Seconds without a new report after which the missing ones are taken as lost.
REPORTS_QUIET = 15.0
# What users should set too: smsbox retries reports the hub could not take.
SMSBOX_OPTIONS = {"http-request-retry": 10, "http-queue-delay": 1}


@dataclass
class Result:
    """Rates of every run; the figures are medians (the machine may be shared and noisy)."""

    backend: str
    n: int
    hub_rates: list[float] = field(default_factory=list)
    baseline_rates: list[float] = field(default_factory=list)
    hub_to_smsc: list[float] = field(default_factory=list)
    baseline_to_smsc: list[float] = field(default_factory=list)

    @property
    def hub_rate(self) -> float:
        return statistics.median(self.hub_rates)

    @property
    def baseline_rate(self) -> float:
        return statistics.median(self.baseline_rates)

    @property
    def ratio(self) -> float:
        return self.hub_rate / self.baseline_rate


# -- databases ------------------------------------------------------------------------------
@contextlib.contextmanager
def database(backend: str, workdir: Path, pg_url: str) -> Iterator[str]:
    """A fresh SQLite file in WORKDIR, or a fresh PostgreSQL database dropped on exit."""
    if backend == "sqlite":
        yield f"sqlite:///{(workdir / 'bench.db').as_posix()}"
        return
    with pg_database(pg_url) as url:
        yield url


# -- the hub side ---------------------------------------------------------------------------
def bench_config(
    db_url: str, data_dir: Path, port: int, kannel: KannelServer, args: argparse.Namespace
) -> Config:
    """Kannel as the only provider, with reports on (dlr-mask 31) as a user would run it."""
    return parse_config(
        {
            "hub": {
                "data_dir": str(data_dir),
                "log_level": "warning",
                "public_url": f"http://127.0.0.1:{port}",
            },
            "database": {"url": db_url},
            "dispatcher": {"batch_size": args.batch},
            "providers": {
                "kannel": {
                    "type": "kannel",
                    "sendsms_url": kannel.sendsms_url,
                    "username": kannel.username,
                    "password_env": PASSWORD_ENV,
                    "callback_secret_env": SECRET_ENV,
                    "sender": "36001",
                    "concurrency": args.concurrency,
                    "dlr_mask": args.dlr_mask,
                }
            },
            "routing": {"default": ["kannel"]},
        },
        "bench config",
    )


def fill_outbox(engine: Engine, config: Config, n: int, offset: int) -> None:
    """Queue N single-part SMS to distinct French mobiles from a funded account."""
    with session_scope(engine) as session:
        top_up(session, "bench", n)
    for start in range(offset, offset + n, FILL_CHUNK):
        count = min(FILL_CHUNK, offset + n - start)
        result = sending.submit(
            engine,
            config,
            sending.SubmitRequest(
                account="bench",
                recipients=[f"+3361{i:07d}" for i in range(start, start + count)],
                text=TEXT,
            ),
        )
        queued = sum(1 for r in result.recipients if r.status == "queued")
        if queued != count:
            raise RuntimeError(f"only {queued} of {count} recipients were queued")


def analyze(engine: Engine) -> None:
    """Fresh planner statistics on PostgreSQL, as autovacuum keeps them on a real server (the
    test server may run without it): otherwise the lookups of reports by key fall back to
    scanning every event of the provider, slower with each run."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("ANALYZE messages, message_events"))
            conn.commit()


def count_status(engine: Engine, *statuses: str) -> int:
    """Messages in any of STATUSES (one query: rows move between them meanwhile)."""
    with session_scope(engine) as session:
        return int(
            session.execute(
                select(func.count()).select_from(Message).where(col(Message.status).in_(statuses))
            ).scalar_one()
        )


@contextlib.asynccontextmanager
async def serving(hub: Hub, port: int) -> AsyncIterator[None]:
    """The hub's API on PORT in this event loop (smsbox posts the reports there)."""
    server = uvicorn.Server(
        uvicorn.Config(hub.api, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


def dlr_callbacks() -> float:
    """Delivery reports the hub has answered so far (any status)."""
    total = 0.0
    for metric in CALLBACKS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("kind") == "dlr":
                total += sample.value
    return total


async def settle(kannel: KannelServer, mts: int, reports: float, what: str) -> float:
    """Wait until fakesmsc has MTS lines and the hub has answered REPORTS reports; returns the
    (monotonic) time the MTs were all there. Reports that stop coming are warned about."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    at_smsc: float | None = None
    last, last_change = dlr_callbacks(), time.monotonic()
    while True:
        if at_smsc is None and len(kannel.mt_messages()) >= mts:
            at_smsc = time.monotonic()
        now, answered = time.monotonic(), dlr_callbacks()
        if answered != last:
            last, last_change = answered, now
        if at_smsc is not None:
            if answered >= reports:
                return at_smsc
            if now - last_change > REPORTS_QUIET:
                print(f"  warning: {what}: {reports - answered:.0f} report(s) never came")
                return at_smsc
        if now > deadline:
            raise RuntimeError(
                f"{what}: after {SETTLE_TIMEOUT:.0f} s fakesmsc has {len(kannel.mt_messages())} "
                f"of {mts} MTs and the hub {answered:.0f} of {reports:.0f} reports"
            )
        await asyncio.sleep(0.1)


# -- the baseline ---------------------------------------------------------------------------
async def bare_httpx(
    provider: Any, n: int, concurrency: int, offset: int, per_connection: bool = False
) -> float:
    """Seconds for N sendsms requests, built like the connector's, CONCURRENCY at a time.

    CONCURRENCY workers, each sending its next request as soon as its last is answered, over
    CONCURRENCY kept-alive connections: by default all in one httpx pool (plain httpx); with
    PER_CONNECTION each worker has a client of its own with one connection, as the connector
    holds them (connectors/http_lanes.py), which spares httpcore's scan of the whole pool on
    every request.
    """
    requests = iter(range(offset, offset + n))
    url = provider.settings.sendsms_url
    failures: list[str] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for i in requests:
            message_id = uuid.uuid4().hex
            sms = OutgoingSms(
                message_id, f"+3362{i:07d}", TEXT, None, "GSM-7", 1, f"{message_id}.0"
            )
            response = await client.get(url, params=provider.request_params(sms))
            if response.status_code != 202:
                failures.append(f"HTTP {response.status_code}: {response.text[:100]}")

    size = 1 if per_connection else concurrency
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    clients = [
        httpx.AsyncClient(limits=limits, timeout=30)
        for _ in range(concurrency if per_connection else 1)
    ]
    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
    if failures:
        raise RuntimeError(f"{len(failures)} baseline requests failed, e.g. {failures[0]}")
    return elapsed


# -- profiling ------------------------------------------------------------------------------
class ReportTimer:
    """Time spent storing delivery reports (hub.app's apply_events, in worker threads)."""

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        import hub.app

        original = hub.app.apply_events

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                # Worker threads run one at a time for this count; += on floats is fine here.
                self.calls += 1
                self.seconds += time.perf_counter() - started

        hub.app.apply_events = timed
        try:
            yield
        finally:
            hub.app.apply_events = original

    def take(self) -> str:
        """What was measured since the last call, as text; then starts again from zero."""
        calls, seconds = self.calls, self.seconds
        self.calls, self.seconds = 0, 0.0
        each = f" ({1000 * seconds / calls:.1f} ms each)" if calls else ""
        return f"{calls} report callbacks stored in {seconds:.1f} s of worker-thread time{each}"


class DrainProfile:
    """cProfile of the event loop, and wall time of the outbox calls in worker threads."""

    def __init__(self) -> None:
        self.loop = cProfile.Profile()
        self.seconds: dict[str, float] = {"claim": 0.0, "record_outcomes": 0.0}

    @contextlib.contextmanager
    def wrapping_outbox(self) -> Iterator[None]:
        from hub.sending import outbox

        originals = {name: getattr(outbox, name) for name in self.seconds}

        def wrap(name: str) -> Callable[..., Any]:
            original = originals[name]

            def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    self.seconds[name] += time.perf_counter() - started

            return timed

        for name in originals:
            setattr(outbox, name, wrap(name))
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(outbox, name, original)

    def report(self, backend: str, total: float) -> None:
        print(f"--- {backend}: where the {total:.2f} s of drain() went ---")
        for name, seconds in self.seconds.items():
            print(f"  outbox.{name} (worker thread, loop waits): {seconds:.2f} s")
        out = io.StringIO()
        pstats.Stats(self.loop, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())


# -- driver ---------------------------------------------------------------------------------
async def measure(
    backend: str,
    engine: Engine,
    config: Config,
    kannel: KannelServer,
    port: int,
    args: argparse.Namespace,
) -> Result:
    """Alternate baseline and hub runs (baseline first and last), ROUNDS hub runs in all."""
    n, concurrency = args.n, args.concurrency
    hub = Hub(config, engine=engine)
    await hub.start(background=False)
    assert hub.dispatcher is not None
    provider = hub.providers["kannel"]
    result = Result(backend, n)
    sent = hub_sent = 0
    reports_before = dlr_callbacks()  # the counter is process-wide; earlier backends count too
    timer = ReportTimer()
    try:
        async with serving(hub, port), contextlib.AsyncExitStack() as stack:
            stack.enter_context(timer.installed())
            for phase in ["baseline", "hub"] * args.rounds + ["baseline"]:
                # Not timed; Kannel and the hub are idle (the previous run has settled).
                if phase == "hub":
                    await asyncio.to_thread(fill_outbox, engine, config, n, hub_sent)
                await asyncio.to_thread(analyze, engine)
                mts_before = len(kannel.mt_messages())
                started = time.monotonic()
                cpu_started = time.process_time()
                if phase == "baseline":
                    seconds = await bare_httpx(
                        provider, n, concurrency, sent, args.baseline == "per-connection"
                    )
                else:
                    prof = DrainProfile() if args.profile else None
                    with prof.wrapping_outbox() if prof else contextlib.nullcontext():
                        if prof:
                            prof.loop.enable()
                        t0 = time.perf_counter()
                        claimed = await hub.dispatcher.drain()
                        seconds = time.perf_counter() - t0
                        if prof:
                            prof.loop.disable()
                    hub_sent += n
                    accepted = count_status(
                        engine, MessageStatus.SENT.value, MessageStatus.DELIVERED.value
                    )
                    if claimed != n or accepted != hub_sent:
                        raise RuntimeError(
                            f"drain claimed {claimed} of {n}; {accepted} of {hub_sent} accepted"
                        )
                    if prof:
                        prof.report(backend, seconds)
                sent += n
                reports = reports_before + (2 * sent if args.dlr_mask else 0)
                at_smsc = await settle(kannel, mts_before + n, reports, phase)
                # This process's CPU (event loop and worker threads) per message, until every
                # report of the run is stored: on a small machine that is what caps the rate.
                cpu_ms = 1000 * (time.process_time() - cpu_started) / n
                rates = result.baseline_rates if phase == "baseline" else result.hub_rates
                rates.append(n / seconds)
                to_smsc = result.baseline_to_smsc if phase == "baseline" else result.hub_to_smsc
                to_smsc.append(n / (at_smsc - started))
                print(
                    f"  {backend} {phase}: {n / seconds:.0f} accepted/s "
                    f"({n / (at_smsc - started):.0f}/s until fakesmsc had them all); "
                    f"{cpu_ms:.1f} ms CPU/SMS in this process; " + timer.take(),
                    flush=True,
                )
    finally:
        await hub.stop()
    delivered = count_status(engine, MessageStatus.DELIVERED.value)
    if args.dlr_mask and delivered != hub_sent:
        print(f"  warning: {delivered} of {hub_sent} hub messages delivered after settling")
    return result


def run_backend(backend: str, url: str, workdir: Path, args: argparse.Namespace) -> Result:
    engine = make_engine(url)
    try:
        upgrade(engine)
        # Kannel's own logs at "warning": debug logging of every message would slow Kannel
        # for both sides alike and shrink the difference being measured.
        with start_kannel(workdir / "kannel", log_level=2, smsbox_options=SMSBOX_OPTIONS) as kannel:
            os.environ[PASSWORD_ENV] = kannel.password
            os.environ[SECRET_ENV] = uuid.uuid4().hex
            port = free_port()
            config = bench_config(url, workdir / "data", port, kannel, args)
            with session_scope(engine) as session:
                create_account(session, "bench", region="FR")
            return asyncio.run(measure(backend, engine, config, kannel, port, args))
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when the target is missed or nothing was measured."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="messages per run (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="hub runs, between baselines")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--batch", type=int, default=200, help="dispatcher batch size")
    parser.add_argument(
        "--baseline",
        choices=["shared", "per-connection"],
        default="shared",
        help="the bare loop's connections: one httpx pool (default), or one client each",
    )
    parser.add_argument(
        "--dlr-mask", type=int, default=31, help="reports asked for (0: none; default 31)"
    )
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite, postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server to use")
    parser.add_argument("--profile", action="store_true", help="profile drain() (slows it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The baseline's reports name messages the hub does not have: one warning each otherwise.
    logging.getLogger("smshub.reports").setLevel(logging.ERROR)
    results: list[Result] = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend not in {"sqlite", "postgresql"}:
            parser.error(f"unknown backend {backend!r}")
        if backend == "postgresql" and (why := pg_unreachable(args.pg_url)):
            print(f"postgresql: skipped, server not reachable ({why})")
            continue
        with (
            tempfile.TemporaryDirectory(prefix=f"smshub-bench-kannel-{backend}-") as tmp,
            database(backend, Path(tmp), args.pg_url) as url,
        ):
            result = run_backend(backend, url, Path(tmp), args)
        results.append(result)
    print(
        f"\nsummary (N={args.n} per run, {args.rounds} hub runs between {args.rounds + 1} "
        f"baseline runs, concurrency={args.concurrency}, batch={args.batch}, "
        f"baseline={args.baseline}; medians):"
    )
    ok = bool(results)
    for r in results:
        passed = r.ratio >= TARGET_RATIO
        ok &= passed
        print(
            f"  {r.backend}: hub {r.hub_rate:.0f} SMS/s, bare httpx {r.baseline_rate:.0f} req/s, "
            f"ratio {r.ratio:.2f} {'PASS' if passed else 'FAIL'} (target {TARGET_RATIO}); "
            f"until fakesmsc had them all: hub {statistics.median(r.hub_to_smsc):.0f}/s, "
            f"bare {statistics.median(r.baseline_to_smsc):.0f}/s"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
