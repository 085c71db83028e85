"""Benchmark: SMS per second from the outbox through the simulator, against a database baseline.

For each backend (SQLite in a temporary file, PostgreSQL in a database this script creates and
drops), it

1. fills the outbox with N messages through ``hub.sending.submit.submit`` (not timed);
2. times ``Dispatcher.drain()`` sending them all through the simulator (no delivery reports,
   so report callbacks do not compete with sending; deduplication on);
3. times a baseline on the same database, in the same process: N single-row INSERTs into a
   scratch table shaped like ``messages`` (same columns and indexes), each followed by an
   UPDATE of that row, committed every BATCH rows (the dispatcher's batch size);

and prints hub SMS/s, baseline ops/s (best of --repeat rounds each) and their ratio.
Targets (from the issue): ratio >= 0.5 on every backend and >= 1000 SMS/s on PostgreSQL.

    .venv/bin/python bench/dispatch.py [--n 5000] [--batch 200] [--backends sqlite,postgresql]
                                      [--pg-url postgresql://postgres@127.0.0.1:5432/test]
                                      [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Index,
    MetaData,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlmodel import col

# Runnable as a plain script from a checkout (`python bench/dispatch.py`).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._pg import pg_database, pg_unreachable  # noqa: E402
from hub.app import Hub  # noqa: E402
from hub.core.config import Config, parse_config  # noqa: E402
from hub.core.timeutil import utcnow  # noqa: E402
from hub.sending import submit as sending
from hub.sending.accounts import create_account  # noqa: E402
from hub.sending.credits import top_up  # noqa: E402
from hub.sending.dispatch import Dispatcher  # noqa: E402
from hub.store.db import make_engine, session_scope, upgrade  # noqa: E402
from hub.store.models import Message, MessageStatus, new_id  # noqa: E402

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_RATIO = 0.5
TARGET_PG_RATE = 1000.0
# Recipients per submit while filling the outbox (well under sending.max_recipients).
FILL_CHUNK = 1000
TEXT = "Rappel : votre rendez-vous est demain a 09:00. Repondez STOP pour ne plus recevoir."


@dataclass
class Result:
    """One backend's figures."""

    backend: str
    n: int
    hub_rate: float  # SMS/s
    baseline_rate: float  # INSERT+UPDATE pairs per second

    @property
    def ratio(self) -> float:
        return self.hub_rate / self.baseline_rate if self.baseline_rate else 0.0


# -- databases ------------------------------------------------------------------------------
@contextmanager
def sqlite_database(workdir: Path) -> Iterator[str]:
    """A SQLite file in WORKDIR (removed with it)."""
    yield f"sqlite:///{(workdir / 'bench.db').as_posix()}"


# -- the hub measurement --------------------------------------------------------------------
def bench_config(db_url: str, data_dir: Path, batch: int) -> Config:
    """The hub's config for the run: the simulator only, with no reports to compete."""
    return parse_config(
        {
            "hub": {"data_dir": str(data_dir), "log_level": "warning"},
            "database": {"url": db_url},
            "dispatcher": {"batch_size": batch},
            "providers": {
                "simulator": {"type": "simulator", "send_reports": False, "deduplicates": True}
            },
        },
        "bench config",
    )


def fill_outbox(engine: Engine, config: Config, n: int, first: bool) -> None:
    """Queue N single-part SMS to distinct French mobiles from a funded account."""
    with session_scope(engine) as session:
        if first:
            create_account(session, "bench", region="FR")
        top_up(session, "bench", n)
    for start in range(0, n, FILL_CHUNK):
        count = min(FILL_CHUNK, n - start)
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


def count_status(engine: Engine, status: str) -> int:
    """Messages in STATUS."""
    with session_scope(engine) as session:
        return int(
            session.execute(
                select(func.count()).select_from(Message).where(col(Message.status) == status)
            ).scalar_one()
        )


class DrainProfile:
    """cProfile of the event loop and, separately, of the database calls in worker threads.

    The dispatcher runs claim() and record_outcomes() through asyncio.to_thread, which a
    main-thread cProfile only sees as idle time in the selector; they are wrapped here so
    their own profile and wall time are known too.
    """

    def __init__(self) -> None:
        self.loop = cProfile.Profile()
        self.db = cProfile.Profile()
        self.seconds: dict[str, float] = {"claim": 0.0, "record_outcomes": 0.0}

    @contextmanager
    def wrapping_outbox(self) -> Iterator[None]:
        from hub.sending import outbox

        originals = {name: getattr(outbox, name) for name in self.seconds}

        def wrap(name: str) -> Any:
            original = originals[name]

            def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                # One call at a time (the dispatcher awaits each), so one profiler will do.
                self.db.enable()
                try:
                    return original(*args, **kwargs)
                finally:
                    self.db.disable()
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
        db = sum(self.seconds.values())
        print(f"--- {backend}: where the {total:.2f} s of drain() went ---")
        for name, seconds in self.seconds.items():
            print(f"  outbox.{name}: {seconds:.2f} s ({100 * seconds / total:.0f}%)")
        print(f"  everything else (sending, event loop): {total - db:.2f} s")
        for title, profile, sort, limit in [
            ("database calls (worker threads)", self.db, "cumulative", 30),
            ("event loop (main thread)", self.loop, "tottime", 20),
        ]:
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(sort).print_stats(limit)
            print(f"--- {backend}: {title} ---")
            print(out.getvalue())


async def time_drain(
    backend: str, engine: Engine, config: Config, n: int, profile: DrainProfile | None
) -> float:
    """Seconds to send the whole outbox with Dispatcher.drain() (providers started first)."""
    hub = Hub(config, engine=engine)
    # No hub.start(): its dispatcher's background loop would race the timed drain().
    for provider in hub.providers.values():
        await provider.start()
    dispatcher = Dispatcher(engine, config, hub.providers)
    try:
        with profile.wrapping_outbox() if profile else contextlib.nullcontext():
            if profile is not None:
                profile.loop.enable()
            started = time.perf_counter()
            claimed = await dispatcher.drain()
            elapsed = time.perf_counter() - started
            if profile is not None:
                profile.loop.disable()
    finally:
        await hub.stop()
    left = sum(
        count_status(engine, status.value)
        for status in (MessageStatus.QUEUED, MessageStatus.SUBMITTING)
    )
    if claimed != n or left:
        raise RuntimeError(f"drain claimed {claimed} of {n} messages and left {left} unsent")
    if profile is not None:
        profile.report(backend, elapsed)
    return elapsed


# -- the baseline ---------------------------------------------------------------------------
def scratch_table(metadata: MetaData) -> Table:
    """A table with the columns, keys and indexes of `messages` (no foreign keys)."""
    source = Message.__table__  # type: ignore[attr-defined]
    table = Table(
        "bench_scratch",
        metadata,
        *(
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, unique=c.unique)
            for c in source.columns
        ),
    )
    for index in source.indexes:
        # Renamed: PostgreSQL index names share one namespace with the real table's.
        Index(
            str(index.name).replace("ix_messages_", "ix_bench_scratch_"),
            *(table.c[c.name] for c in index.columns),
            unique=bool(index.unique),
        )
    return table


def scratch_row(n: int) -> dict[str, object]:
    """A row as submit() would write it for one recipient."""
    now = utcnow()
    return {
        "id": new_id(),
        "account_id": 1,
        "charged_account_id": 1,
        "batch_id": "bench",
        "idempotency_key": f"bench:{n}:{uuid.uuid4().hex}",
        "recipient": f"+3362{n:07d}",
        "sender": None,
        "text": TEXT,
        "encoding": "GSM-7",
        "segments": 1,
        "credits": 1,
        "type": "alert",
        "source": "bench",
        "status": "queued",
        "reason": None,
        "detail": "",
        "scheduled": False,
        "created_at": now,
        "due_at": now,
        "attempts": 0,
        "send_seq": 0,
        "claimed_by": None,
        "claimed_at": None,
        "provider": None,
        "provider_message_id": None,
        "sent_at": None,
        "first_sent_at": None,
        "final_at": None,
        "updated_at": now,
    }


def time_baseline(engine: Engine, n: int, batch: int) -> float:
    """Seconds for N (INSERT one row, UPDATE it) round-trip pairs, committed every BATCH."""
    metadata = MetaData()
    table = scratch_table(metadata)
    metadata.create_all(engine)
    # Rows are built before the clock starts: the baseline times the database, not Python.
    rows = [scratch_row(i) for i in range(n)]
    ins = insert(table)
    # The same change the dispatcher makes when a provider accepts a message.
    upd = (
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(
            status="sent",
            provider="bench",
            provider_message_id=bindparam("pmid"),
            sent_at=bindparam("now"),
            updated_at=bindparam("now"),
        )
    )
    try:
        started = time.perf_counter()
        for start in range(0, n, batch):
            with engine.begin() as conn:
                for row in rows[start : start + batch]:
                    conn.execute(ins, row)
                    conn.execute(
                        upd, {"row_id": row["id"], "pmid": f"b-{row['id']}", "now": utcnow()}
                    )
        return time.perf_counter() - started
    finally:
        metadata.drop_all(engine)


# -- driver ---------------------------------------------------------------------------------
def run_backend(
    backend: str, db_url: str, workdir: Path, n: int, batch: int, repeat: int, profile: bool
) -> Result:
    """Migrate, then REPEAT rounds of fill, time the hub, time the baseline; best of each.

    Alternating the two in every round exposes both to the same background load, and the
    best round is the least disturbed by it.
    """
    engine = make_engine(db_url)
    hub_seconds: list[float] = []
    baseline_seconds: list[float] = []
    try:
        upgrade(engine)
        config = bench_config(db_url, workdir / "data", batch)
        for round_no in range(repeat):
            fill_outbox(engine, config, n, first=round_no == 0)
            profiler = DrainProfile() if profile and round_no == 0 else None
            hub_seconds.append(asyncio.run(time_drain(backend, engine, config, n, profiler)))
            baseline_seconds.append(time_baseline(engine, n, batch))
    finally:
        engine.dispose()
    return Result(backend, n, n / min(hub_seconds), n / min(baseline_seconds))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a target is missed or nothing could be measured."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="messages to send (default 5000)")
    parser.add_argument(
        "--batch", type=int, default=200, help="dispatcher batch size (default 200)"
    )
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma list: sqlite, postgresql"
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server to use")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds per backend; the best is kept (default 3)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile drain() (slows it: not for the figures)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")

    results: list[Result] = []
    skipped: list[str] = []
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix=f"smshub-bench-{backend}-") as tmp:
            workdir = Path(tmp)
            if backend == "sqlite":
                with sqlite_database(workdir) as url:
                    result = run_backend(
                        backend, url, workdir, args.n, args.batch, args.repeat, args.profile
                    )
            else:
                why = pg_unreachable(args.pg_url)
                if why is not None:
                    print(f"postgresql: skipped, server not reachable ({why})", flush=True)
                    skipped.append(backend)
                    continue
                with pg_database(args.pg_url) as url:
                    result = run_backend(
                        backend, url, workdir, args.n, args.batch, args.repeat, args.profile
                    )
        results.append(result)
        print(
            f"{backend}: hub {result.hub_rate:.0f} SMS/s, baseline {result.baseline_rate:.0f} "
            f"ops/s (INSERT+UPDATE), ratio {result.ratio:.2f}",
            flush=True,
        )

    print(f"\nsummary (N={args.n}, batch={args.batch}, best of {args.repeat}):")
    ok = True
    for result in results:
        checks = [(f"ratio {result.ratio:.2f} >= {TARGET_RATIO}", result.ratio >= TARGET_RATIO)]
        if result.backend == "postgresql":
            checks.append(
                (
                    f"{result.hub_rate:.0f} SMS/s >= {TARGET_PG_RATE:.0f}",
                    result.hub_rate >= TARGET_PG_RATE,
                )
            )
        for label, passed in checks:
            ok &= passed
            print(f"  {result.backend}: {label}: {'PASS' if passed else 'FAIL'}")
    for backend in skipped:
        print(f"  {backend}: not measured (server not reachable)")
    if not results:
        print("  nothing measured")
    return 0 if ok and results else 1


if __name__ == "__main__":
    sys.exit(main())
