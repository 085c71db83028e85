"""A chunked calendar sync killed with SIGKILL halfway leaves no half-planned state.

A child process plans a calendar of many appointments in chunks and kills itself with
SIGKILL inside the third chunk's transaction (its writes done, not committed). Then: every
occurrence is either wholly planned (row, reminder, outbox row, paid) or untouched, the
ledger is exact, and a restarted sync finishes the rest without planning anything twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from hub.sending.accounts import get_account
from hub.sending.credits import ledger_problems
from hub.store.db import session_scope
from hub.store.models import Calendar, CalendarEventRow, LedgerEntry, Message, Reminder

# Kills processes and counts what survived: slow, and run by CI all the same (no -m filter).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EVENTS = 600

CHILD = """
import json, os, signal, sys
from datetime import datetime, timedelta, UTC
from hub.ports.calendar import CalendarEvent, SyncResult, SyncWindow
from hub.store.db import make_engine
from hub.reminders import reconcile as planner
from tests.conftest import make_config
from pathlib import Path

db_url, data_dir = sys.argv[1], sys.argv[2]
calendar_id, kill_at = int(sys.argv[3]), int(sys.argv[4])
planner.FIRST_CHUNK = planner.MIN_CHUNK = planner.MAX_CHUNK = 100
engine = make_engine(db_url)
config = make_config(db_url, Path(data_dir))
base = datetime.fromisoformat(sys.argv[5])
events = [
    CalendarEvent(uid=f"ev{n}", occurrence="", start=base + timedelta(minutes=30 * n),
                  timezone="Europe/Paris", title=f"RDV {n}",
                  description=f"Tel: 06 {n // 100 % 100:02d} {n % 100:02d} 12 11")
    for n in range(int(sys.argv[6]))
]
window = SyncWindow(base - timedelta(days=2), base + timedelta(days=90))

def after_write(session, chunk):
    if chunk == kill_at:
        session.flush()
        os.kill(os.getpid(), signal.SIGKILL)

def finish(session, calendar):
    calendar.cursor = "done"

planner.reconcile_chunked(engine, config, calendar_id, SyncResult(events, [], full=True),
                          window, after_write=after_write, finish=finish)
print(json.dumps("finished"))
"""


def _run_child(db_url: str, data_dir: Path, calendar_id: int, kill_at: int, base: datetime):
    return subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            db_url,
            str(data_dir),
            str(calendar_id),
            str(kill_at),
            base.isoformat(),
            str(EVENTS),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _counts(engine) -> dict[str, int]:
    with session_scope(engine) as s:

        def count(model, *where):
            return int(s.exec(select(func.count()).select_from(model).where(*where)).one())

        rows = count(CalendarEventRow)
        reminders = count(Reminder, col(Reminder.status) == "scheduled")
        messages = count(Message)
        # Every row planned: exactly one scheduled reminder with its message.
        orphans = int(
            s.exec(
                select(func.count())
                .select_from(CalendarEventRow)
                .where(
                    ~select(Reminder.id).where(Reminder.event_id == CalendarEventRow.id).exists()
                )
            ).one()
        )
        twice = s.exec(
            select(Reminder.event_id, Reminder.rule)
            .group_by(col(Reminder.event_id), col(Reminder.rule))
            .having(func.count() > 1)
        ).all()
        charged = -int(
            s.exec(
                select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    LedgerEntry.kind == "charge"
                )
            ).one()
        )
        return {
            "rows": rows,
            "reminders": reminders,
            "messages": messages,
            "orphans": orphans,
            "twice": len(twice),
            "charged": charged,
            "ledger_problems": len(ledger_problems(s)),
            "balance": get_account(s, "acme").balance,
        }


def test_sync_killed_halfway_leaves_whole_occurrences_and_restart_finishes(
    engine, db_url, tmp_path
):
    from hub.sending.accounts import create_account
    from hub.sending.credits import top_up

    with session_scope(engine) as s:
        create_account(s, "acme", region="FR")
        top_up(s, "acme", 10_000)
        cal = Calendar(
            account_id=get_account(s, "acme").id,
            name="cabinet",
            source_type="ics",
            offsets="1d@09:00",
            timezone="Europe/Paris",
        )
        s.add(cal)
        s.flush()
        calendar_id = cal.id
    base = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    data_dir = tmp_path / "data"
    data_dir.mkdir()

    killed = _run_child(db_url, data_dir, calendar_id, 2, base)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    after_kill = _counts(engine)
    # Two chunks of 100 committed, the third rolled back with the process.
    assert after_kill["rows"] == 200, after_kill
    assert after_kill == {
        "rows": 200,
        "reminders": 200,
        "messages": 200,
        "orphans": 0,
        "twice": 0,
        "charged": 200,
        "ledger_problems": 0,
        "balance": 10_000 - 200,
    }
    with session_scope(engine) as s:
        assert s.get(Calendar, calendar_id).cursor is None  # the sync is not recorded as done

    finished = _run_child(db_url, data_dir, calendar_id, -1, base)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert json.loads(finished.stdout) == "finished"
    done = _counts(engine)
    assert done == {
        "rows": EVENTS,
        "reminders": EVENTS,
        "messages": EVENTS,
        "orphans": 0,
        "twice": 0,
        "charged": EVENTS,
        "ledger_problems": 0,
        "balance": 10_000 - EVENTS,
    }
    # One ledger row per chunk, not one per reminder.
    with session_scope(engine) as s:
        charges = s.exec(select(LedgerEntry).where(LedgerEntry.kind == "charge")).all()
        assert len(charges) == EVENTS // 100
        assert s.get(Calendar, calendar_id).cursor == "done"

    # A third sync of the same calendar plans nothing at all.
    again = _run_child(db_url, data_dir, calendar_id, -1, base)
    assert again.returncode == 0
    assert _counts(engine) == done
