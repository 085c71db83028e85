"""Sizing: resident memory of `smshub run` idle and after 10,000 and 20,000 messages.

Starts `smshub run` (every role, the simulator as provider, delivery reports after 1 s,
remembering its last 5,000 sends for deduplication, so that its memory is flat) as
a child process and reads its RSS from /proc, submits messages with `smshub send` (1,000
recipients a call) and waits until each is delivered; on SQLite, then on PostgreSQL, in
one run. Fails when the process's anonymous memory (RssAnon: RSS without the pages of
shared libraries, which the kernel drops and reloads with the machine's other work) grows
by more than --max-growth MB between the 10,000th and the last message on either database
(a leak: every message must leave memory once it is settled); RSS is printed too. The
figures go into docs/deploy.md, "Sizing".

`--probe` runs the hub under bench/_memprobe.py and, for the 10,000th and the last
message, tells where memory went: glibc's bytes in use and free, SQLite's own heap, the
open SQLite connections and pools, and the Python lines that allocated the most since.

    .venv/bin/python bench/memory.py [--pg-url postgresql://...] [--messages 20000] [--probe]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from sqlalchemy import text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._pg import pg_database, pg_unreachable  # noqa: E402
from hub.store.db import make_engine  # noqa: E402

SMSHUB = [sys.executable, "-m", "hub"]
PROBE = [sys.executable, str(REPO / "bench" / "_memprobe.py")]
STEP = 10_000
# Seconds without traffic before each figure: longer than hub.runtime.heap.TRIM_INTERVAL.
IDLE = 65.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """FIELD of /proc/PID/status in MB: VmRSS (all resident pages) or RssAnon (the process's
    own memory: heaps and stacks, without the pages of mapped files such as shared
    libraries, which the kernel drops and reads again as the machine needs)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def mark(pid: int) -> tuple[float, float]:
    return rss_mb(pid), rss_mb(pid, "RssAnon")


def settle(url: str, total: int, timeout: float) -> float:
    """Seconds until TOTAL messages are delivered."""
    engine = make_engine(url)
    started = time.monotonic()
    done = 0
    try:
        while time.monotonic() - started < timeout:
            with engine.connect() as conn:
                done = conn.execute(
                    text("SELECT COUNT(*) FROM messages WHERE status = 'delivered'")
                ).scalar_one()
            if done >= total:
                return time.monotonic() - started
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise TimeoutError(f"only {done} of {total} delivered after {timeout:.0f} s")


def probe_mark(pid: int, probe_dir: Path, n: int) -> dict[str, object]:
    """Ask the probed hub for its heap figures (mark N) and wait for them."""
    os.kill(pid, signal.SIGUSR1)
    found = probe_dir / f"{n}.json"
    for _ in range(600):
        if found.exists():
            time.sleep(0.5)  # the snapshot is written before the figures
            data: dict[str, object] = json.loads(found.read_text())
            return data
        time.sleep(0.5)
    raise TimeoutError("the probe did not answer")


def show_probe(first: dict[str, object], last: dict[str, object], probe_dir: Path, n: int) -> None:
    mb = 1024 * 1024
    keys = ("malloc_in_use", "malloc_free", "malloc_arena", "sqlite_heap", "sqlite_page_cache")
    for key in (*keys, "python_traced"):
        a, b = int(first[key]), int(last[key])  # type: ignore[call-overload]
        print(f"    {key:15} {a / mb:8.1f} → {b / mb:8.1f} MB ({(b - a) / mb:+.1f})")
    for key in ("sqlite_connections", "pools", "threads"):
        print(f"    {key:15} {first[key]} → {last[key]}")
    if not (probe_dir / "1.pickle").exists():
        return
    before = tracemalloc.Snapshot.load(str(probe_dir / "1.pickle"))
    after = tracemalloc.Snapshot.load(str(probe_dir / f"{n}.pickle"))
    skip = tracemalloc.Filter(False, tracemalloc.__file__)
    diff = after.filter_traces([skip]).compare_to(before.filter_traces([skip]), "lineno")
    print("    Python lines that grew most:")
    for stat in diff[:8]:
        print(f"      {stat}")


def measure(url: str, messages: int, probe: bool, trace: int = 0) -> dict[str, tuple[float, float]]:
    """RSS of `smshub run` on URL: idle, then every STEP messages until MESSAGES."""
    home = Path(tempfile.mkdtemp(prefix="smshub-memory-"))
    config = home / "smshub.toml"
    config.write_text(
        f'[hub]\ndata_dir = "{home}"\nlog_level = "warning"\n[database]\nurl = "{url}"\n'
        f"[http]\nport = {free_port()}\n[smtp]\nport = {free_port()}\n"
        f"[ops]\nport = {free_port()}\n"
        '[providers.simulator]\ntype = "simulator"\nreport_delay = 1.0\n'
        # The simulator's own memory (a provider stand-in, not the hub) stops growing here.
        "dedupe_window = 5000\n"
    )
    probe_dir = home / "probe"
    probe_dir.mkdir()
    env = {
        **os.environ,
        "SMSHUB_CONFIG": str(config),
        "PROBE_DIR": str(probe_dir),
        "PROBE_FRAMES": str(trace),
    }
    subprocess.run([*SMSHUB, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run(
        [*SMSHUB, "accounts", "create", "bench"], env=env, check=True, capture_output=True
    )
    subprocess.run(
        [*SMSHUB, "accounts", "credit", "bench", str(messages * 2)],
        env=env,
        check=True,
        capture_output=True,
    )
    log = (home / "run.log").open("w")
    hub = subprocess.Popen(
        [*(PROBE if probe else SMSHUB), "run"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    marks: dict[str, tuple[float, float]] = {}
    probes: list[dict[str, object]] = []
    try:
        # Start-up, then idle; each figure is taken after a minute without traffic, as an
        # idle hub is measured: its periodic heap trim (hub.runtime.heap) has run meanwhile.
        time.sleep(IDLE)
        marks["idle"] = mark(hub.pid)
        print(
            f"  idle: {marks['idle'][0]:.1f} MB RSS, {marks['idle'][1]:.1f} anonymous", flush=True
        )
        sent = 0
        for target in range(STEP, messages + 1, STEP):
            started = time.monotonic()
            while sent < target:
                numbers = [f"+336{10_000_000 + sent + i}" for i in range(min(1000, target - sent))]
                subprocess.run(
                    [*SMSHUB, "send", "--account", "bench", "--text", f"Rappel {sent}"]
                    + [a for n in numbers for a in ("--to", n)],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                sent += len(numbers)
            took = settle(url, target, 600)
            time.sleep(IDLE)  # reports flushed, batches written, then idle
            marks[f"{target}"] = mark(hub.pid)
            rate = STEP / (time.monotonic() - started)
            rss, anon = marks[f"{target}"]
            print(
                f"  after {target:,} messages: {rss:.1f} MB RSS, {anon:.1f} anonymous "
                f"(delivered {took:.0f} s after the last submit, {rate:.0f}/s end to end)",
                flush=True,
            )
            if probe:
                probes.append(probe_mark(hub.pid, probe_dir, len(probes) + 1))
        if probe and len(probes) > 1:
            show_probe(probes[0], probes[-1], probe_dir, len(probes))
            # What the allocator gives back when asked: free memory it kept (slack between
            # live blocks), not memory anything still uses.
            os.kill(hub.pid, signal.SIGUSR2)
            time.sleep(3)
            rss, anon = mark(hub.pid)
            print(f"    after malloc_trim(0): {rss:.1f} MB RSS, {anon:.1f} anonymous", flush=True)
        return marks
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("SMSHUB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a scratch database is created next to this one",
    )
    parser.add_argument("--only", choices=("sqlite", "postgresql"), default=None)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument(
        "--max-growth", type=float, default=2.0, help="MB, from the 10,000th to the last"
    )
    parser.add_argument("--probe", action="store_true", help="tell where memory went")
    parser.add_argument(
        "--trace",
        type=int,
        default=0,
        metavar="FRAMES",
        help="with --probe: trace Python allocations (FRAMES deep; slows the hub a lot)",
    )
    args = parser.parse_args()
    if args.messages < 2 * STEP:
        parser.error(f"--messages must be at least {2 * STEP:,}")
    results: dict[str, dict[str, tuple[float, float]]] = {}
    if args.only in (None, "sqlite"):
        print("SQLite:", flush=True)
        home = Path(tempfile.mkdtemp(prefix="smshub-memory-db-"))
        results["SQLite"] = measure(
            f"sqlite:///{home / 'smshub.db'}", args.messages, args.probe, args.trace
        )
    if args.only in (None, "postgresql"):
        why = pg_unreachable(args.pg_url)
        if why:
            print(f"PostgreSQL: not measured ({why})")
        else:
            print("PostgreSQL:", flush=True)
            with pg_database(args.pg_url) as url:
                results["PostgreSQL"] = measure(url, args.messages, args.probe, args.trace)
    last = f"{args.messages // STEP * STEP}"
    # Judged on anonymous memory: RSS also counts shared-library pages, which come and go
    # with the machine's other work (several MB either way here), not with the hub's.
    print(f"\n{'MB':24} {'idle':>8} {'10,000':>8} {int(last):>8,} {'growth':>8}")
    failed = False
    for name, marks in results.items():
        for column, what in ((0, "RSS"), (1, "anonymous")):
            idle, first, end = (marks[k][column] for k in ("idle", f"{STEP}", last))
            growth = end - first
            verdict = ""
            if column == 1:
                ok = growth <= args.max_growth
                failed |= not ok
                verdict = f"  {'pass' if ok else 'FAIL'} (≤ {args.max_growth:g} MB)"
            print(
                f"{name + ' ' + what:24} {idle:8.1f} {first:8.1f} {end:8.1f} {growth:+8.1f}"
                + verdict
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
