"""PostgreSQL for the benchmarks: a scratch database per run, and why PostgreSQL is unusable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import make_url


@contextmanager
def pg_database(pg_url: str, keep: bool = False) -> Iterator[str]:
    """A fresh PostgreSQL database next to PG_URL's, dropped on exit unless KEEP."""
    import psycopg

    base = make_url(pg_url)
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"smshub_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.set(drivername="postgresql+psycopg", database=name).render_as_string(
        hide_password=False
    )
    try:
        yield url
    finally:
        if keep:
            print(f"database kept: --db-url {url}", flush=True)
        else:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_unreachable(pg_url: str) -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    admin = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"{pg_url}: {str(exc).strip().splitlines()[0]}"
