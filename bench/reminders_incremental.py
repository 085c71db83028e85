"""Benchmark: an incremental calendar sync costs what changed, not the whole calendar.

One calendar of N appointments (an ICS-like source: every sync lists them all) is planned
once; then the same list is synced again unchanged, then with 1 % of the appointments moved
by an hour. Printed: the time of each planning pass (``reconcile_chunked``: compare, plan,
write), and per changed appointment. No HTTP: the source's share is measured by
bench/reminders.py.

    .venv/bin/python bench/reminders_incremental.py --events 100000
    .venv/bin/python bench/reminders_incremental.py --pg-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._pg import pg_database  # noqa: E402
from hub.core.config import parse_config  # noqa: E402
from hub.ports.calendar import CalendarEvent, SyncResult, SyncWindow  # noqa: E402
from hub.reminders.reconcile import reconcile_chunked  # noqa: E402
from hub.sending.accounts import create_account, get_account  # noqa: E402
from hub.sending.credits import top_up  # noqa: E402
from hub.store.db import make_engine, session_scope, upgrade  # noqa: E402
from hub.store.models import Calendar  # noqa: E402


def events(count: int, base: datetime, moved: set[int]) -> list[CalendarEvent]:
    """COUNT appointments in half-hour slots; those in MOVED an hour later."""
    out = []
    for n in range(count):
        start = base + timedelta(days=n // 20, minutes=30 * (n % 20))
        if n in moved:
            start += timedelta(hours=1)
        digits = f"{n:08d}"
        out.append(
            CalendarEvent(
                uid=f"rdv-{n}",
                occurrence="",
                start=start,
                end=start + timedelta(minutes=30),
                timezone="Europe/Paris",
                title=f"RDV patient {n}",
                description=f"Nom: Patient {n}\nTel: 06 {digits[:2]} {digits[2:4]} "
                f"{digits[4:6]} {digits[6:]}",
            )
        )
    return out


def run(url: str, data_dir: Path, count: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    config = parse_config(
        {"hub": {"data_dir": str(data_dir), "log_level": "warning"}, "database": {"url": url}},
        "bench",
    )
    with session_scope(engine) as s:
        create_account(s, "bench", region="FR")
        top_up(s, "bench", 10 * count)
        calendar = Calendar(
            account_id=get_account(s, "bench").id,
            name="cabinet",
            source_type="ics",
            offsets="1d@09:00",
            timezone="Europe/Paris",
        )
        s.add(calendar)
        s.flush()
        calendar_id = calendar.id or 0
    base = (datetime.now(UTC) + timedelta(days=2)).replace(hour=7, minute=0, second=0)
    window = SyncWindow(base - timedelta(days=3), base + timedelta(days=count // 20 + 2))
    moved = set(range(0, count, 100))  # 1 %
    rounds = [
        ("first sync (all new)", set()),
        ("same list again (nothing changed)", set()),
        (f"1 % moved ({len(moved):,} appointments)", moved),
    ]
    took: list[float] = []
    for label, changed in rounds:
        listed = events(count, base, changed)
        started = time.perf_counter()
        report = reconcile_chunked(
            engine, config, calendar_id, SyncResult(listed, [], True), window
        )
        took.append(time.perf_counter() - started)
        print(
            f"{label:40s} {took[-1]:8.2f} s  planned {report.planned:,}, rescheduled "
            f"{report.rescheduled:,}, problems {len(report.problems)}"
        )
    engine.dispose()
    first, same, some = took
    # What the change costs on top of reading an unchanged calendar, per changed appointment,
    # against what planning one appointment costs in the first sync.
    extra = (some - same) / max(1, len(moved))
    print(
        f"per appointment: first sync {1000 * first / count:.3f} ms; unchanged re-sync "
        f"{1000 * same / count:.3f} ms ({same / first:.1%} of the first sync); each changed "
        f"one {1000 * extra:.3f} ms on top ({extra / (first / count):.2f} x a first-sync one)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="appointments (100,000)")
    parser.add_argument("--pg-url", help="run on PostgreSQL (a scratch database)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smshub-bench-incremental-") as tmp:
        if args.pg_url:
            with pg_database(args.pg_url) as url:
                run(url, Path(tmp), args.events)
        else:
            run(f"sqlite:///{tmp}/bench.db", Path(tmp), args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
