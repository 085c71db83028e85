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
exec .venv/bin/pytest -q "$@"
