#!/usr/bin/env bash
# Runs the test suite on SQLite, and on PostgreSQL too when it answers (required in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
PG_URL="${SMSHUB_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}"
if .venv/bin/python - "$PG_URL" <<'PY'
import sys, psycopg
try:
    psycopg.connect(sys.argv[1], connect_timeout=3).close()
except Exception as exc:
    print(f"PostgreSQL at {sys.argv[1]} is not reachable: {exc}", file=sys.stderr)
    sys.exit(1)
PY
then
  export SMSHUB_TEST_DATABASE_URL="$PG_URL"
  echo "tests run on SQLite and on PostgreSQL ($PG_URL)"
elif [ "${CI:-}" = "true" ]; then
  echo "CI=true and PostgreSQL is unreachable: failing (the suite must run on both databases)" >&2
  exit 1
else
  unset SMSHUB_TEST_DATABASE_URL
  echo "PostgreSQL not reachable: tests run on SQLite only"
fi
# The crash and multi-process tests start `smshub run` children by the dozen; where
# PYTHONDONTWRITEBYTECODE is set (as on this machine kind) each one compiled the hub's
# 54,000 lines again (~0.5 s CPU per child): compiled once here, the children read the .pyc.
.venv/bin/python -m compileall -q hub connectors scheduler >/dev/null
# Two workers (pytest-xdist): much of the suite waits on child processes, servers and
# sleeps rather than computing, so two workers on two cores take ~40% off the wall time.
# Each worker has its own PostgreSQL database, temp dirs and free ports (tests/conftest.py).
# worksteal: the crash tests (tens of seconds each) come first in collection order and
# plain load scheduling left them mostly on one worker (894 s of work against 695 s); an
# idle worker takes tests queued for the other. Pass -n 0 to run in one process.
exec .venv/bin/pytest -q -n 2 --dist worksteal "$@"
