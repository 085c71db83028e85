"""Benchmark: server time of every console page with 1,000,000 messages in history (PostgreSQL).

The issue's target: "no page slower than 200 ms server time with 1,000,000 messages in
history (PostgreSQL, indexed queries, pagination)". This script

1. creates a PostgreSQL database of its own (dropped at the end unless --keep), migrates it,
   and fills it with set-based SQL (INSERT ... SELECT generate_series, not timed):
   N messages over about a year, in batches of 20 sharing their creation time, spread over
   seven accounts (acme and its sub-accounts acme-lyon and acme-paris hold 70%), eight
   sources, nine states and 200,000 numbers, plus one "hot" number that gets 2% of all
   messages; 200 campaigns of those batches and one big campaign of --big messages sent at
   once (one batch, one creation time) with a short link per recipient and some clicks; one
   event per message, a ledger entry per batch and per refund, and inbound SMS;
2. logs in as alice (account acme: her scope is acme and its two sub-accounts) and requests
   each page in-process through httpx's ASGITransport on the hub's real FastAPI app, so a
   figure is the time from request to full response (server time, no network): the history
   with each filter and a deep page, the newer-page link, a message's detail, the first chunk
   of the CSV export, the campaign list, a campaign report, and every other GET route under
   /console that takes no path parameter (home, account, replies, calendars, ... whatever
   exists when it runs);
3. times a baseline through the same stack in the same run: a route added to the app for
   the benchmark that checks the session (the same ``User`` dependency as every page) and
   runs ``SELECT 1`` in a worker thread, rendering nothing;

and prints per page the median and p95 of --repeat requests (after one warm-up request) and
the median's ratio to the baseline's. The exit status is 1 when a page's median is over
200 ms (or a page does not answer 200).

    .venv/bin/python bench/console.py [--n 1000000] [--big 100000] [--repeat 15]
                                      [--pg-url postgresql://postgres@127.0.0.1:5432/test]
                                      [--keep] [--db-url URL_OF_A_KEPT_DATABASE] [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, text

# Runnable as a plain script from a checkout (`python bench/console.py`).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._pg import pg_database, pg_unreachable  # noqa: E402
from hub.core.config import Config, parse_config  # noqa: E402
from hub.mail.intake.addresses import add_mail_user  # noqa: E402
from hub.sending.accounts import create_account  # noqa: E402
from hub.sending.credits import top_up  # noqa: E402
from hub.store.db import make_engine, session_scope, upgrade  # noqa: E402

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_MS = 200.0
PASSWORD = "bench password 1234"
HOT_NUMBER = "+33612345678"
# Accounts in the order the fill spreads batches over them (10 slots: acme holds 4).
ACCOUNT_SLOTS = ["acme"] * 4 + ["acme-lyon"] * 2 + ["acme-paris", "other", "bulk1", "bulk2"]
SOURCE_SLOTS = (
    ["api"] * 4 + ["mail"] * 4 + ["calendar"] * 3 + ["console", "campaign", "campaign"]
) + ["reply", "autoreply", "alert"]
CAMPAIGNS = 200
BATCH = 20
MESSAGE_COLUMNS = (
    "id, account_id, charged_account_id, batch_id, idempotency_key, recipient, sender, text,"
    " encoding, segments, credits, type, source, status, reason, detail, scheduled,"
    " campaign_id, created_at, due_at, attempts, send_seq, provider, provider_message_id,"
    " sent_at, first_sent_at, final_at, updated_at"
)


# -- the database -------------------------------------------------------------------------------
def _array(values: list[str]) -> str:
    return "(ARRAY[" + ", ".join(f"'{v}'" for v in values) + "])"


def fill(engine: Engine, n: int, big: int) -> None:
    """Accounts, users and N messages (BIG of them in one campaign) with their side tables."""
    with session_scope(engine) as session:
        for name in ("acme", "other", "bulk1", "bulk2"):
            create_account(session, name, region="FR")
            top_up(session, name, 1_000_000)
        create_account(session, "acme-lyon", parent="acme", credit_mode="unlimited")
        create_account(session, "acme-paris", parent="acme", credit_mode="unlimited")
        add_mail_user(session, "acme", "alice", PASSWORD)
    with engine.begin() as conn:
        ids = dict(conn.execute(text("SELECT name, id FROM accounts")).all())
        slots = "(ARRAY[" + ", ".join(str(ids[a]) for a in ACCOUNT_SLOTS) + "])"
        payer = (
            f"CASE WHEN {slots}[1 + (b % 10)] IN ({ids['acme-lyon']}, {ids['acme-paris']}) "
            f"THEN {ids['acme']} ELSE {slots}[1 + (b % 10)] END"
        )
        generic = n - big
        conn.execute(
            text(
                "INSERT INTO campaigns (id, account_id, name, text, type, sender, send_at, status,"
                " recipients, credits, created_at) "
                f"SELECT k, {slots}[1 + ((k - 1) % 10)], 'Campagne ' || k,"
                " 'Promo {{ first_name }}', 'marketing', NULL, NULL, 'sending', 0, 0,"
                " now() - (k || ' days')::interval "
                f"FROM generate_series(1, {CAMPAIGNS}) AS k"
            )
        )
        conn.execute(
            text(
                "INSERT INTO campaigns (id, account_id, name, text, type, sender, send_at, status,"
                " recipients, credits, created_at) VALUES "
                f"({CAMPAIGNS + 1}, {ids['acme']}, 'Soldes d''été', 'Soldes: -50% https://x.example/s',"
                f" 'marketing', 'ACME', now() - interval '2 days', 'sending', {big}, {big},"
                " now() - interval '2 days')"
            )
        )
        conn.execute(text(f"SELECT setval('campaigns_id_seq', {CAMPAIGNS + 1})"))
        # status by a multiplicative hash of i, so states do not line up with accounts/sources.
        status = (
            "CASE WHEN h < 80 THEN 'delivered' WHEN h < 85 THEN 'undelivered'"
            " WHEN h < 88 THEN 'failed' WHEN h < 91 THEN 'dr_unavailable'"
            " WHEN h < 95 THEN 'sent' WHEN h < 97 THEN 'cancelled'"
            " WHEN h < 99 THEN 'queued' ELSE 'unknown' END"
        )
        source = f"{_array(SOURCE_SLOTS)}[1 + ((b / 10) % {len(SOURCE_SLOTS)})]"
        conn.execute(
            text(
                f"INSERT INTO messages ({MESSAGE_COLUMNS}) "
                f"SELECT md5('m' || i), {slots}[1 + (b % 10)], {payer}, 'b' || b, 'bench:' || i,"
                f" CASE WHEN i % 50 = 0 THEN '{HOT_NUMBER}'"
                "  ELSE '+3361' || lpad(((i * 7919) % 200000)::text, 7, '0') END,"
                " NULL, 'Rappel : votre rendez-vous ' || i || ' est demain a 09:00.', 'GSM-7',"
                " 1 + (i % 7 = 0)::int, 1 + (i % 7 = 0)::int, 'alert', src, st,"
                " CASE WHEN st IN ('undelivered', 'failed') THEN 'network_error' END, '',"
                " st = 'queued',"
                f" CASE WHEN src = 'campaign' THEN 1 + (b % {CAMPAIGNS}) END,"
                " at, CASE WHEN st = 'queued' THEN now() + interval '1 day' ELSE at END,"
                " (st <> 'queued')::int, 0, 'simulator', 'sim-' || i, at + interval '2 seconds',"
                " at + interval '2 seconds', at + interval '30 seconds', at "
                "FROM (SELECT i, b, now() - (b * interval '10 minutes') AS at,"
                f" {source} AS src, {status} AS st"
                f"  FROM (SELECT i, i / {BATCH} AS b, (i * 2654435761) % 100 AS h"
                f"   FROM generate_series(0::bigint, {generic - 1}) AS i) AS g) AS r"
            )
        )
        conn.execute(
            text(
                f"INSERT INTO messages ({MESSAGE_COLUMNS}) "
                f"SELECT md5('c' || i), {ids['acme']}, {ids['acme']}, 'bigcampaign',"
                " 'campaign:big:' || i, '+3362' || lpad(i::text, 7, '0'), 'ACME',"
                " 'Soldes: -50% https://s.example/s/' || substr(md5('l' || i), 1, 12), 'GSM-7',"
                " 1, 1, 'marketing', 'campaign',"
                " CASE WHEN i % 10 = 0 THEN 'undelivered' ELSE 'delivered' END, NULL, '', false,"
                f" {CAMPAIGNS + 1}, now() - interval '2 days', now() - interval '2 days', 1, 0,"
                " 'simulator', 'simc-' || i, now() - interval '2 days', now() - interval '2 days',"
                " now() - interval '2 days', now() - interval '2 days' "
                f"FROM generate_series(0, {big - 1}) AS i"
            )
        )
        conn.execute(
            text(
                "INSERT INTO message_events (message_id, status, reason, detail, provider,"
                " event_key, created_at) "
                "SELECT id, status, reason, '', 'simulator', 'ev-' || id, updated_at"
                " FROM messages"
            )
        )
        conn.execute(
            text(
                "INSERT INTO ledger (account_id, origin_account_id, kind, amount, balance_after,"
                " message_id, batch_id, note, created_at) "
                "SELECT min(charged_account_id), min(account_id), 'charge', -sum(credits), 0,"
                " NULL, batch_id, 'bench', min(created_at) FROM messages GROUP BY batch_id"
            )
        )
        conn.execute(
            text(
                "INSERT INTO ledger (account_id, origin_account_id, kind, amount, balance_after,"
                " message_id, batch_id, note, created_at) "
                "SELECT charged_account_id, account_id, 'refund', credits, 0, id, batch_id,"
                " 'cancelled before sending', final_at FROM messages WHERE status = 'cancelled'"
            )
        )
        conn.execute(
            text(
                "INSERT INTO short_links (account_id, code, target_url, message_id, number,"
                " created_at) "
                "SELECT account_id,"
                " substr(md5('l' || replace(recipient, '+3362', '')::int), 1, 12),"
                " 'https://x.example/s', id, recipient, created_at"
                f" FROM messages WHERE campaign_id = {CAMPAIGNS + 1}"
            )
        )
        conn.execute(
            text(
                "INSERT INTO link_clicks (link_id, number, user_agent, clicked_at) "
                "SELECT id, number, 'bench', created_at + interval '1 hour'"
                " FROM short_links WHERE id % 20 = 0"
            )
        )
        conn.execute(
            text(
                "INSERT INTO inbound_messages (provider, event_key, account_id, sender, recipient,"
                " text, reply_to_message_id, handling, forwarded_to, received_at) "
                "SELECT 'simulator', 'in-' || id, account_id, recipient, '+33700000000',"
                " 'Merci, c''est noté', id, 'forwarded', '', created_at + interval '5 minutes'"
                " FROM messages WHERE idempotency_key LIKE 'bench:%' AND"
                " (substr(id, 1, 2) = '00' OR substr(id, 1, 1) = 'f')"
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


# -- the requests -------------------------------------------------------------------------------
@dataclass
class Timing:
    """One page's request times in milliseconds."""

    name: str
    url: str
    ms: list[float] = field(default_factory=list)
    status: int = 0
    error: str = ""
    # Found among the app's routes rather than listed here: a 4xx answer means the route
    # needs parameters (an OAuth callback, say) and is skipped, not failed.
    discovered: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.ms) if self.ms else float("nan")

    @property
    def p95(self) -> float:
        if not self.ms:
            return float("nan")
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def bench_config(db_url: str, data_dir: Path) -> Config:
    """The hub's config: the simulator only, no dispatcher (nothing is sent)."""
    return parse_config(
        {
            "hub": {"data_dir": str(data_dir), "log_level": "warning"},
            "database": {"url": db_url},
            "dispatcher": {"enabled": False},
            "providers": {"simulator": {"type": "simulator", "send_reports": False}},
        },
        "bench config",
    )


def add_baseline_route(app: Any) -> None:
    """GET /console/_bench_baseline: the session check and a SELECT 1 in a worker thread."""
    from fastapi import Request
    from fastapi.responses import PlainTextResponse

    from hub.console.auth import User
    from hub.store.db import read_scope

    async def baseline(request: Request, user: User) -> PlainTextResponse:
        engine = request.app.state.hub.engine

        def _one() -> int:
            with read_scope(engine) as session:
                return int(session.execute(text("SELECT 1")).scalar_one())

        return PlainTextResponse(str(await asyncio.to_thread(_one)))

    # This module's annotations are strings (PEP 563) naming local imports: give FastAPI
    # the real objects.
    baseline.__annotations__ = {"request": Request, "user": User, "return": PlainTextResponse}

    app.add_api_route("/console/_bench_baseline", baseline, methods=["GET"])


async def login(client: httpx.AsyncClient, username: str) -> None:
    """Log in through the console's form (its CSRF cookie and token included)."""
    form = await client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if token is None:
        raise RuntimeError(f"no login form: {form.status_code} {form.text[:200]}")
    answer = await client.post(
        "/console/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token.group(1)},
    )
    if answer.status_code != 303:
        raise RuntimeError(f"login failed: {answer.status_code} {answer.text[:200]}")


async def time_page(client: httpx.AsyncClient, timing: Timing, repeat: int) -> None:
    """One warm-up request, then REPEAT timed ones (full response read)."""
    for round_no in range(repeat + 1):
        started = time.perf_counter()
        response = await client.get(timing.url)
        elapsed = (time.perf_counter() - started) * 1000
        timing.status = response.status_code
        if response.status_code != 200:
            timing.error = re.sub(r"\s+", " ", response.text)[:200]
            return
        if round_no:
            timing.ms.append(elapsed)


async def time_first_chunk(app: Any, cookies: httpx.Cookies, timing: Timing, repeat: int) -> None:
    """Time to the first body chunk of a streamed response, then hang up (ASGI, in-process).

    httpx's ASGITransport reads a whole body before returning; the CSV export of a million
    rows is meant to be streamed, so this drives the app directly and disconnects after its
    first chunk, as a browser's "cancel download" would.
    """
    path, _, query = timing.url.partition("?")
    cookie = "; ".join(f"{c.name}={c.value}" for c in cookies.jar)
    for round_no in range(repeat + 1):
        first = asyncio.Event()
        status: list[int] = []

        async def receive(first: asyncio.Event = first) -> dict[str, Any]:
            if not getattr(receive, "sent", False):
                receive.sent = True  # type: ignore[attr-defined]
                return {"type": "http.request", "body": b"", "more_body": False}
            await first.wait()
            return {"type": "http.disconnect"}

        async def send(
            message: dict[str, Any], first: asyncio.Event = first, status: list[int] = status
        ) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body" and message.get("body"):
                first.set()

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"hub"), (b"cookie", cookie.encode())],
            "client": ("127.0.0.1", 1),
            "server": ("hub", 80),
        }
        started = time.perf_counter()
        task = asyncio.create_task(app(scope, receive, send))
        await first.wait()
        elapsed = (time.perf_counter() - started) * 1000
        try:
            await asyncio.wait_for(task, timeout=30)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        timing.status = status[0] if status else 0
        if timing.status != 200:
            timing.error = "streamed response did not start with 200"
            return
        if round_no:
            timing.ms.append(elapsed)


def sample_ids(engine: Engine) -> dict[str, str]:
    """Ids and cursors the page URLs need, read from the filled database."""
    with engine.connect() as conn:

        def one(sql: str) -> str:
            return str(conn.execute(text(sql)).scalar_one())

        acme = one("SELECT id FROM accounts WHERE name = 'acme'")
        return {
            "message": one(
                f"SELECT id FROM messages WHERE account_id = {acme} AND status = 'delivered'"
                " ORDER BY created_at DESC LIMIT 1 OFFSET 5000"
            ),
            "queued": one(
                f"SELECT id FROM messages WHERE account_id = {acme} AND status = 'queued'"
                " ORDER BY created_at DESC LIMIT 1"
            ),
            "batch": one(
                f"SELECT batch_id FROM messages WHERE account_id = {acme} AND source = 'api'"
                " ORDER BY created_at DESC LIMIT 1 OFFSET 20000"
            ),
            "campaign": one(
                f"SELECT id FROM campaigns WHERE account_id = {acme} AND id <= {CAMPAIGNS}"
                " ORDER BY id LIMIT 1"
            ),
            "big_campaign": str(CAMPAIGNS + 1),
            # A "before" cursor halfway down acme's history, as 250 "Older" clicks would give.
            "deep": one(
                "SELECT (extract(epoch FROM created_at) * 1000000)::bigint || '~' || id"
                f" FROM messages WHERE account_id = {acme}"
                " ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET 300000"
            ),
            "number": one(
                f"SELECT recipient FROM messages WHERE account_id = {acme}"
                f" AND recipient <> '{HOT_NUMBER}' ORDER BY created_at DESC LIMIT 1 OFFSET 777"
            ),
        }


def page_list(app: Any, ids: dict[str, str]) -> list[Timing]:
    """Every page to time: the history in its forms, then each parameterless GET route."""
    pages = [
        Timing("baseline: session + SELECT 1", "/console/_bench_baseline"),
        Timing("history", "/console/messages"),
        Timing("history ?state=failed", "/console/messages?state=failed"),
        Timing("history ?state=queued", "/console/messages?state=queued"),
        Timing("history ?source=reply", "/console/messages?source=reply"),
        Timing("history ?source=calendar", "/console/messages?source=calendar"),
        Timing("history ?number=", f"/console/messages?number={ids['number']}"),
        Timing("history ?number=(2% of all)", "/console/messages?number=06%2012%2034%2056%2078"),
        Timing("history ?since=&until=", "/console/messages?since=2025-01-01&until=2025-02-28"),
        Timing("history ?account=acme-paris", "/console/messages?account=acme-paris"),
        Timing("history ?campaign=(small)", f"/console/messages?campaign={ids['campaign']}"),
        Timing("history ?campaign=(100k)", f"/console/messages?campaign={ids['big_campaign']}"),
        Timing("history ?batch=", f"/console/messages?batch={ids['batch']}"),
        Timing("history ?batch=(100k)", "/console/messages?batch=bigcampaign"),
        Timing(
            "history state+source+account",
            "/console/messages?state=undelivered&source=mail&account=acme-lyon",
        ),
        Timing("history deep page (before=)", f"/console/messages?before={ids['deep']}"),
        Timing("history newer page (after=)", f"/console/messages?after={ids['deep']}"),
        Timing("message detail", f"/console/messages/{ids['message']}"),
        Timing("message detail (queued)", f"/console/messages/{ids['queued']}"),
        Timing("messages.csv first chunk", "/console/messages.csv"),
        Timing("campaigns", "/console/campaigns"),
        Timing("campaign report (small)", f"/console/campaigns/{ids['campaign']}"),
        Timing("campaign report (100k)", f"/console/campaigns/{ids['big_campaign']}"),
    ]
    timed = {p.url for p in pages}
    for path in get_paths(app.routes):
        page = path.startswith("/console") and "{" not in path and not path.endswith(".csv")
        if page and path not in timed:
            pages.append(Timing(path, path, discovered=True))
            timed.add(path)
    return pages


def get_paths(routes: list[Any], prefix: str = "") -> Iterator[str]:
    """Paths of the GET routes among ROUTES, with included routers' prefixes."""
    from fastapi.routing import APIRoute

    for route in routes:
        # FastAPI keeps an included router as one entry that points at the original.
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from get_paths(inner.routes, prefix + str(getattr(context, "prefix", "")))
        elif isinstance(route, APIRoute) and "GET" in route.methods:
            # A route that needs query parameters (an OAuth callback) is not a page.
            needs = any(p.field_info.is_required() for p in route.dependant.query_params)
            if not needs:
                yield prefix + route.path


async def run_pages(config: Config, engine: Engine, repeat: int) -> list[Timing]:
    """Log in and time every page."""
    from hub.app import Hub

    hub = Hub(config, engine=engine)
    add_baseline_route(hub.api)
    ids = sample_ids(engine)
    pages = page_list(hub.api, ids)
    transport = httpx.ASGITransport(app=hub.api)
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://hub") as client,
            httpx.AsyncClient(transport=transport, base_url="http://hub") as anonymous,
        ):
            await login(client, "alice")
            for timing in pages:
                if timing.url.endswith(".csv") or ".csv?" in timing.url:
                    await time_first_chunk(hub.api, client.cookies, timing, repeat)
                else:
                    # The login form is for visitors (a logged-in user is sent on).
                    who = anonymous if timing.url == "/console/login" else client
                    await time_page(who, timing, repeat)
                print(f"  {timing.name}: {timing.median:.1f} ms", flush=True)
    finally:
        await hub.stop()
    return pages


def explain(engine: Engine) -> None:
    """Print the plans of the history's queries (what --explain is for)."""
    from sqlalchemy.dialects import postgresql

    from hub.console import history_query as hq

    with engine.connect() as conn:
        scope = [
            r[0]
            for r in conn.execute(
                text("SELECT id FROM accounts WHERE name IN ('acme', 'acme-lyon', 'acme-paris')")
            )
        ]
    for label, statement in hq.sample_statements(scope):
        compiled = statement.compile(
            dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
            compile_kwargs={"literal_binds": True},
        )
        with engine.connect() as conn:
            plan = conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}")).all()
        print(f"--- {label}")
        print("\n".join(r[0] for r in plan))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a page is over the target or fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="messages (default 1,000,000)")
    parser.add_argument(
        "--big", type=int, default=100_000, help="messages of the big campaign (default 100,000)"
    )
    parser.add_argument("--repeat", type=int, default=15, help="timed requests per page")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server to use")
    parser.add_argument("--keep", action="store_true", help="keep the database for another run")
    parser.add_argument("--db-url", help="use this already filled database (from --keep)")
    parser.add_argument("--explain", action="store_true", help="print the history query plans")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.big >= args.n:
        parser.error("--big must be smaller than --n")

    why = pg_unreachable(args.db_url or args.pg_url)
    if why is not None:
        print(f"postgresql not reachable ({why}); nothing measured")
        return 1

    @contextmanager
    def database() -> Iterator[str]:
        if args.db_url:
            yield args.db_url
        else:
            with pg_database(args.pg_url, args.keep) as url:
                yield url

    with database() as url, tempfile.TemporaryDirectory(prefix="smshub-bench-console-") as tmp:
        engine = make_engine(url)
        try:
            if not args.db_url:
                upgrade(engine)
                started = time.perf_counter()
                fill(engine, args.n, args.big)
                print(f"filled {args.n:,} messages in {time.perf_counter() - started:.0f} s")
            if args.explain:
                explain(engine)
            pages = asyncio.run(run_pages(bench_config(url, Path(tmp)), engine, args.repeat))
        finally:
            engine.dispose()

    baseline = pages[0].median
    print(
        f"\nserver time per page, {args.n:,} messages, {args.repeat} requests each "
        f"(median, p95; ratio = median / baseline median {baseline:.1f} ms; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):"
    )
    ok = True
    width = max(len(p.name) for p in pages)
    for timing in pages:
        if timing.discovered and 400 <= timing.status < 500:
            print(f"  {timing.name:<{width}}  skipped: HTTP {timing.status} without parameters")
            continue
        if timing.error or not timing.ms:
            ok = False
            print(f"  {timing.name:<{width}}  FAIL: HTTP {timing.status} {timing.error}")
            continue
        passed = timing.median <= TARGET_MS
        ok &= passed
        print(
            f"  {timing.name:<{width}}  {timing.median:7.1f} ms  p95 {timing.p95:7.1f} ms"
            f"  x{timing.median / baseline:5.1f}  {'PASS' if passed else 'FAIL'}"
        )
    print(f"target: every median <= {TARGET_MS:.0f} ms: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
