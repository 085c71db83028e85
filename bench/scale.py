"""Benchmark: do dispatchers scale out, and does a provider's rate hold across them?

Real providers are I/O-bound: a send is an HTTP round trip of tens of milliseconds, so one
dispatcher is capped by `concurrency / latency`, not by CPU. This runs 1, 2 and 3
`smshub run --role dispatcher` processes on one PostgreSQL database (a scratch database per
run) against the simulator with a fixed per-request latency, each run draining its own N
queued messages, and prints each run's SMS/s (from the simulator log's accept times, first
to last) as a ratio to one process. Target: 2 processes >= 1.8x one.

Then it sets `rate_per_second` (a limit below what the processes could do together) and
runs 3 processes again: the aggregate must stay within 10 % of the limit.

    .venv/bin/python bench/scale.py [--n 1500] [--latency 0.05] [--concurrency 4]
                                    [--rate 100] [--pg-url postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import text
from sqlmodel import SQLModel, col, func, select

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._pg import pg_database, pg_unreachable  # noqa: E402
from connectors.sms.simulator import read_log  # noqa: E402
from hub.core.config import parse_config  # noqa: E402
from hub.sending import submit as sending  # noqa: E402
from hub.sending.accounts import create_account  # noqa: E402
from hub.sending.credits import top_up  # noqa: E402
from hub.store.db import make_engine, session_scope, upgrade  # noqa: E402
from hub.store.models import Message  # noqa: E402


def _queue(url: str, n: int, workdir: Path) -> None:
    engine = make_engine(url)
    upgrade(engine)
    config = parse_config(
        {"hub": {"data_dir": str(workdir / "submit")}, "database": {"url": url}}, "bench"
    )
    with session_scope(engine) as session:
        create_account(session, "bench", region="FR")
        top_up(session, "bench", 2 * n)
    for start in range(0, n, 500):
        sending.submit(
            engine,
            config,
            sending.SubmitRequest(
                account="bench",
                recipients=[f"+3361{i:07d}" for i in range(start, min(n, start + 500))],
                text="Rappel : rendez-vous demain a 9h",
            ),
        )
    engine.dispose()


def _open(url: str) -> int:
    engine = make_engine(url)
    with session_scope(engine) as session:
        left = session.exec(
            select(func.count())
            .select_from(Message)
            .where(col(Message.status).in_(["queued", "claimed", "submitting"]))
        ).one()
    engine.dispose()
    return int(left)


def _run(url: str, processes: int, args: argparse.Namespace, rate: float) -> float:
    """Drain N messages with PROCESSES dispatchers; returns SMS/s."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        _queue(url, args.n, workdir)
        data = workdir / "data"
        data.mkdir()
        config = workdir / "smshub.toml"
        config.write_text(
            f"""
[hub]
data_dir = "{data}"
log_level = "warning"
[database]
url = "{url}"
[dispatcher]
poll_interval = 0.05
batch_size = 100
[providers.simulator]
type = "simulator"
latency = {args.latency}
concurrency = {args.concurrency}
rate_per_second = {rate}
send_reports = false
deduplicates = false
""",
            "utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSHUB_")}
        command = [str(Path(sys.executable).with_name("smshub")), "--config", str(config)]
        procs = [
            subprocess.Popen(
                [*command, "run", "--role", "dispatcher"],
                env=env,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(processes)
        ]
        try:
            deadline = time.monotonic() + 600
            while _open(url) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(60)
        times = sorted(
            datetime.fromisoformat(str(e["at"]))
            for e in read_log(data / "simulator.jsonl")
            if e["kind"] == "mt"
        )
    # A fresh outbox for the next run.
    engine = make_engine(url)
    with engine.begin() as conn:
        tables = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    span = (times[-1] - times[0]).total_seconds()
    return (len(times) - 1) / span


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1500, help="messages per run")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per send")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight each")
    parser.add_argument("--rate", type=float, default=100.0, help="shared limit, SMS/s")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("SMSHUB_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1/test"),
    )
    args = parser.parse_args()
    if (why := pg_unreachable(args.pg_url)) is not None:
        sys.exit(f"PostgreSQL is needed: {why}")
    with pg_database(args.pg_url) as url:
        figures = {}
        for processes in (1, 2, 3):
            figures[processes] = _run(url, processes, args, 0.0)
            print(f"{processes} dispatcher(s): {figures[processes]:.0f} SMS/s", flush=True)
        limited = _run(url, 3, args, args.rate)
        print(f"3 dispatchers, rate_per_second = {args.rate:g}: {limited:.1f} SMS/s", flush=True)
    ceiling = args.concurrency / args.latency
    print(
        f"\nsummary (N={args.n} per run, latency {args.latency * 1000:.0f} ms, concurrency "
        f"{args.concurrency}: at most {ceiling:.0f} SMS/s per process):"
    )
    two, three = figures[2] / figures[1], figures[3] / figures[1]
    print(f"  2 processes: {two:.2f}x one {'PASS' if two >= 1.8 else 'FAIL'} (target 1.8)")
    print(f"  3 processes: {three:.2f}x one")
    off = abs(limited - args.rate) / args.rate
    print(
        f"  shared limit {args.rate:g}/s: {limited:.1f}/s, {off:.1%} off "
        f"{'PASS' if off <= 0.10 else 'FAIL'} (target 10 %)"
    )


if __name__ == "__main__":
    main()
