"""Sizing: resident memory of `smshub run` idle and after 10,000 and 20,000 messages.

Starts `smshub run` (every role, the simulator as provider, delivery reports after 1 s,
remembering its last 5,000 sends for deduplication, so that its memory is flat) as
a child process and reads its RSS from /proc, submits messages with `smshub send` (1,000
recipients a call) and waits until each is delivered. Fails when RSS grows by more than
--max-growth MB between the 10,000th and the last message (a leak: every message must
leave memory once it is settled). The figures go into docs/deploy.md, "Sizing".

    .venv/bin/python bench/memory.py [--database-url postgresql://...] [--messages 20000]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from hub.db import make_engine

REPO = Path(__file__).resolve().parents[1]
SMSHUB = [sys.executable, "-m", "hub"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def settle(url: str, total: int, timeout: float) -> float:
    """Seconds until TOTAL messages are delivered."""
    engine = make_engine(url)
    started = time.monotonic()
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp dir")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument(
        "--max-growth", type=float, default=5.0, help="MB, from the 10,000th to the last"
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="smshub-memory-"))
    url = args.database_url or f"sqlite:///{home / 'smshub.db'}"
    if url.startswith("postgresql"):
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    config = home / "smshub.toml"
    config.write_text(
        f'[hub]\ndata_dir = "{home}"\nlog_level = "warning"\n[database]\nurl = "{url}"\n'
        "[http]\nport = 18925\n[smtp]\nport = 12925\n[ops]\nport = 19925\n"
        '[providers.simulator]\ntype = "simulator"\nreport_delay = 1.0\n'
        # The simulator's own memory (a provider stand-in, not the hub) stops growing here.
        "dedupe_window = 5000\n"
    )
    env = {**os.environ, "SMSHUB_CONFIG": str(config)}
    subprocess.run([*SMSHUB, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run(
        [*SMSHUB, "accounts", "create", "bench"], env=env, check=True, capture_output=True
    )
    subprocess.run(
        [*SMSHUB, "accounts", "credit", "bench", str(args.messages * 2)],
        env=env,
        check=True,
        capture_output=True,
    )
    log = (home / "run.log").open("w")
    hub = subprocess.Popen([*SMSHUB, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(15)  # start-up, then idle
        idle = rss_mb(hub.pid)
        print(f"idle: {idle:.1f} MB RSS")
        marks: dict[int, float] = {}
        sent = 0
        step = 10_000
        for target in range(step, args.messages + 1, step):
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
            time.sleep(5)  # reports flushed, batches written
            marks[target] = rss_mb(hub.pid)
            rate = step / (time.monotonic() - started)
            print(
                f"after {target:,} messages: {marks[target]:.1f} MB RSS "
                f"(delivered {took:.0f} s after the last submit, {rate:.0f}/s end to end)"
            )
        last = max(marks)
        growth = marks[last] - marks[step]
        print(f"growth {step:,} → {last:,}: {growth:+.1f} MB")
        return 0 if growth <= args.max_growth else 1
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(60)


if __name__ == "__main__":
    sys.exit(main())
