"""Benchmark: replanning after a settings change, and names found in contacts.

One calendar of N appointments, none named in its event (so every number is looked up among
the account's contacts, half of which know it), is planned once: the baseline. Then quiet
hours change so that every reminder moves (``hub.reminders.replan``: every one cancelled,
refunded and planned again), then the same replan runs with nothing left to move. Printed:
each pass's time and its ratio to the baseline, and how many statements read contacts
(one per chunk, not one per appointment).

    .venv/bin/python bench/reminders_replan.py --events 20000
    .venv/bin/python bench/reminders_replan.py --pg-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, insert  # noqa: E402

from bench._pg import pg_database  # noqa: E402
from hub.core.config import parse_config  # noqa: E402
from hub.ports.calendar import CalendarEvent, SyncResult, SyncWindow  # noqa: E402
from hub.reminders.reconcile import reconcile_chunked  # noqa: E402
from hub.reminders.replan import replan  # noqa: E402
from hub.reminders.setup import update_rules  # noqa: E402
from hub.sending.accounts import create_account, get_account  # noqa: E402
from hub.sending.credits import top_up  # noqa: E402
from hub.store.db import make_engine, session_scope, table, upgrade  # noqa: E402
from hub.store.models import Calendar, Contact, ContactList  # noqa: E402


def _number(n: int) -> tuple[str, str]:
    digits = f"{n:08d}"
    national = f"06 {digits[:2]} {digits[2:4]} {digits[4:6]} {digits[6:]}"
    return national, f"+336{digits}"


def events(count: int, base: datetime) -> list[CalendarEvent]:
    out = []
    for n in range(count):
        start = base + timedelta(days=n // 20, minutes=30 * (n % 20))
        national, _ = _number(n)
        out.append(
            CalendarEvent(
                uid=f"rdv-{n}",
                occurrence="",
                start=start,
                end=start + timedelta(minutes=30),
                timezone="Europe/Paris",
                title=f"Kiné {national}",
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
        account_id = get_account(s, "bench").id
        patients = ContactList(account_id=account_id, name="patients")
        s.add(patients)
        calendar = Calendar(
            account_id=account_id,
            name="cabinet",
            source_type="ics",
            offsets="1d@08:00",
            timezone="Europe/Paris",
        )
        s.add(calendar)
        s.flush()
        calendar_id = calendar.id or 0
        s.connection().execute(
            insert(table(Contact)),
            [
                {
                    "list_id": patients.id,
                    "number": _number(n)[1],
                    "fields": json.dumps({"first_name": "Patient", "last_name": str(n)}),
                    "created_at": datetime.now(UTC),
                }
                for n in range(0, count, 2)
            ],
        )
    contact_reads = 0

    def count_contacts(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        nonlocal contact_reads
        if "FROM contacts" in statement:
            contact_reads += 1

    event.listen(engine, "before_cursor_execute", count_contacts)
    base = (datetime.now(UTC) + timedelta(days=2)).replace(hour=7, minute=0, second=0)
    window = SyncWindow(base - timedelta(days=3), base + timedelta(days=count // 20 + 2))
    started = time.perf_counter()
    report = reconcile_chunked(
        engine, config, calendar_id, SyncResult(events(count, base), [], True), window
    )
    baseline = time.perf_counter() - started
    print(
        f"{'first sync (baseline)':38s} {baseline:8.2f} s  1.00x  planned {report.planned:,}, "
        f"{contact_reads} contact read(s)"
    )
    with session_scope(engine) as s:
        cal = s.get(Calendar, calendar_id)
        assert cal is not None
        update_rules(
            s,
            cal,
            offsets=cal.offsets,
            quiet_start="20:00",
            quiet_end="09:00",
            template=cal.template,
            locale=cal.locale,
            tz=cal.timezone,
        )
    for label in ("quiet hours changed: all move", "replanned again: nothing moves"):
        contact_reads = 0
        started = time.perf_counter()
        report = replan(engine, config, calendar_id)
        took = time.perf_counter() - started
        print(
            f"{label:38s} {took:8.2f} s  {took / baseline:.2f}x  replanned "
            f"{report.rescheduled:,}, {contact_reads} contact read(s)"
        )
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="appointments (20,000)")
    parser.add_argument("--pg-url", help="run on PostgreSQL (a scratch database)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smshub-bench-replan-") as tmp:
        if args.pg_url:
            with pg_database(args.pg_url) as url:
                run(url, Path(tmp), args.events)
        else:
            run(f"sqlite:///{tmp}/bench.db", Path(tmp), args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
