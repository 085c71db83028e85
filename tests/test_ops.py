"""Operating the hub: the ops port (/livez, /readyz, /metrics) of every role, log lines with
time stamps and the instance's name, and smshub_submitted_total for every door."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine
from sqlmodel import Session

from hub.core.config import Config
from hub.errors import ConfigError
from hub.mail.intake.policy import IntakePolicy
from hub.mail.intake.smtp import start_smtp
from hub.runtime.logs import setup_logging
from hub.runtime.ops_http import OpsServer, bind, ops_app
from hub.runtime.readiness import Readiness, smtp_probe, task_probe
from hub.sending import submit as sending
from hub.store.db import make_engine
from hub.store.schema_check import head_revision
from tests.conftest import make_config
from tests.servers._util import free_ports, wait_until
from tests.test_smtp_intake import _mail, _send, smtp, tls_files  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[1]


def submitted(source: str) -> float:
    return REGISTRY.get_sample_value("smshub_submitted_total", {"source": source}) or 0.0


# -- smshub_submitted_total, for every door --------------------------------------------------------
def test_every_door_is_counted_once_its_messages_are_committed(
    engine: Engine, config: Config, account: str
) -> None:
    doors = ["cli", "calendar", "campaign", "reply", "imap"]
    before = {d: submitted(d) for d in doors}
    for door in doors[:4]:
        req = sending.SubmitRequest(account, ["0612345678", "0612345679"], "x", source=door)
        sending.submit(engine, config, req)
    # Mail read from a mailbox: source "mail" in the outbox, door "imap" in the metrics.
    sending.submit(
        engine,
        config,
        sending.SubmitRequest(account, ["0612345670"], "x", source="mail", door="imap"),
    )
    assert {d: submitted(d) - before[d] for d in doors} == {
        "cli": 2,
        "calendar": 2,
        "campaign": 2,
        "reply": 2,
        "imap": 1,
    }
    # A retry with the same key queues nothing; a rolled-back transaction counts nothing.
    retry = sending.SubmitRequest(account, ["0612345671"], "x", source="cli", idempotency_key="k")
    sending.submit(engine, config, retry)
    sending.submit(engine, config, retry)
    with Session(engine) as session:
        sending.submit_in(session, config, sending.SubmitRequest(account, ["0612345672"], "y"))
        session.rollback()
    assert submitted("cli") - before["cli"] == 3


async def test_mail_over_smtp_is_counted_as_smtp(smtp: Any) -> None:  # noqa: F811
    hub, port = smtp
    before = submitted("smtp")
    await _send(port, _mail("06 12 34 56 78, +41 79 123 45 67"))
    assert submitted("smtp") - before == 2


# -- /readyz ---------------------------------------------------------------------------------------
async def _get(app: Any, path: str, client: tuple[str, int] = ("127.0.0.1", 5000)) -> Any:
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as http:
        return await http.get(path)


async def test_readyz_names_no_database_host_when_it_is_unreachable() -> None:
    secret_host = "db-primary.internal.example"
    engine = make_engine(f"postgresql://smshub@{secret_host}:1/billing_db?connect_timeout=1")
    readiness = Readiness(engine, "i-1", ["dispatcher"], head_revision())
    response = await _get(ops_app(readiness, None), "/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready" and body["checks"]["database"]["status"] == "fail"
    assert "unreachable" in body["checks"]["database"]["reason"]
    assert secret_host not in response.text and "billing_db" not in response.text
    live = await _get(ops_app(readiness, None), "/livez")
    assert live.status_code == 200 and live.json()["instance"] == "i-1"


async def test_readyz_fails_on_a_schema_behind_and_on_a_stuck_loop(engine: Engine) -> None:
    readiness = Readiness(engine, "i-1", ["dispatcher"], "9999_newer")
    stuck = asyncio.get_running_loop().create_future()
    readiness.add("dispatcher", task_probe(lambda: stuck, last_beat=lambda: time.monotonic() - 500))
    response = await _get(ops_app(readiness, None), "/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert "smshub db upgrade" in checks["database"]["reason"]
    assert checks["dispatcher"] == {
        "status": "fail",
        "reason": "no progress for 500 s",
        "last_progress_seconds": 500.0,
    }
    stuck.cancel()


async def test_the_smtp_check_needs_a_listener_that_greets(config: Config, engine: Engine) -> None:
    server = await start_smtp(IntakePolicy(engine, config), config, port=0)
    port = server.sockets[0].getsockname()[1]
    probe = smtp_probe(server, "127.0.0.1", port)
    assert (await probe())["status"] == "ok"
    server.close()
    await server.wait_closed()
    assert (await probe())["status"] == "fail"


async def test_ops_metrics_follow_the_api_metrics_rule(engine: Engine) -> None:
    readiness = Readiness(engine, "i-1", ["dispatcher"], head_revision())
    local = await _get(ops_app(readiness, None), "/metrics")
    assert local.status_code == 200 and "smshub_queue_depth 0.0" in local.text
    remote = await _get(ops_app(readiness, None), "/metrics", client=("203.0.113.9", 5000))
    assert remote.status_code == 403
    with_token = await _get(ops_app(readiness, "s3cret"), "/metrics")
    assert with_token.status_code == 401


def test_an_ops_port_in_use_is_an_error_naming_the_key() -> None:
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match=r"'ops.port'.*0 to turn the ops port off"):
            OpsServer(
                Readiness(make_engine("sqlite://"), "i", [], "0001"),
                "127.0.0.1",
                taken.getsockname()[1],
                None,
            )
    finally:
        taken.close()


# -- logs ------------------------------------------------------------------------------------------
def test_log_lines_carry_a_time_stamp_and_the_instance(tmp_path: Path) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        for kind in ("text", "json"):
            config = make_config(
                "sqlite://", tmp_path, hub={"instance_id": "hub-a"}, log={"format": kind}
            )
            setup_logging(config, stream)
            logging.getLogger("smshub.test").warning("claimed %d", 3)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    text_line, json_line = stream.getvalue().splitlines()[-2:]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING \[hub-a\] smshub\.test: claimed 3",
        text_line,
    )
    record = json.loads(json_line)
    assert record["instance"] == "hub-a" and record["message"] == "claimed 3"
    assert record["level"] == "WARNING" and record["logger"] == "smshub.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])


# -- instances as processes ---------------------------------------------------------------------
def _start(tmp_path: Path, db_url: str, name: str, roles: str, ops_port: int) -> Any:
    home = tmp_path / name
    home.mkdir()
    http_port, smtp_port = free_ports(2)
    config = home / "smshub.toml"
    config.write_text(
        f'[hub]\ndata_dir = "{home}"\ninstance_id = "{name}"\n'
        f'[database]\nurl = "{db_url}"\n[http]\nport = {http_port}\n'
        f'[smtp]\nport = {smtp_port}\n[ops]\nport = {ops_port}\n[log]\nformat = "json"\n'
    )
    log = (home / "log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "--config", str(config), "run", "--role", roles],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return process, home / "log"


def _readyz(port: int) -> httpx.Response | httpx.HTTPError:
    """The instance's /readyz answer, or why there was none."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    except httpx.HTTPError as exc:
        return exc


def _ready(port: int) -> dict[str, Any] | None:
    answer = _readyz(port)
    if isinstance(answer, httpx.HTTPError) or answer.status_code != 200:
        return None
    return answer.json()


def _ready_text(port: int) -> str:
    answer = _readyz(port)
    if isinstance(answer, httpx.HTTPError):
        return f"unreachable ({answer})"
    return f"{answer.status_code} {answer.text[:500]}"


def test_roles_without_api_serve_ops_and_tell_who_leads(tmp_path: Path, db_url: str) -> None:
    ports = free_ports(2)
    names = ["disp-a", "disp-b"] if db_url.startswith("postgresql") else ["disp-a"]
    started = [
        _start(tmp_path, db_url, name, "dispatcher,scheduler,smtp", port)
        for name, port in zip(names, ports, strict=False)
    ]
    try:
        bodies: dict[str, dict[str, Any]] = {}

        def all_ready() -> bool:
            for name, port in zip(names, ports, strict=False):
                body = _ready(port)
                if body is None or body["checks"]["scheduler"]["leader"] is None:
                    return False
                bodies[name] = body
            return True

        def logs() -> str:
            # What each instance said (and its last /readyz answer), to tell why it was not.
            told = []
            for (_, log), name, port in zip(started, names, ports, strict=False):
                tail = "\n".join(log.read_text().splitlines()[-15:])
                told.append(f"--- {name}: /readyz {_ready_text(port)}\n{tail}")
            return "\n".join(told)

        wait_until(all_ready, 60, "every instance ready with a known leader", details=logs)
        leaders = {b["checks"]["scheduler"]["leader"] for b in bodies.values()}
        leading = [n for n, b in bodies.items() if b["checks"]["scheduler"]["leading"]]
        assert len(leading) == 1, bodies
        if len(names) == 2:
            assert leaders == {leading[0]}, "every instance names the same leader"
        else:
            assert leaders == {"this instance"}
        for name, port in zip(names, ports, strict=False):
            body = bodies[name]
            assert body["instance"] == name
            assert set(body["checks"]) >= {"database", "dispatcher", "scheduler", "smtp"}
            assert all(c["status"] == "ok" for c in body["checks"].values())
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            flag = 1.0 if name in leading else 0.0
            assert f"smshub_scheduler_leader {flag}" in metrics
            assert "smshub_oldest_queued_seconds" in metrics
            assert httpx.get(f"http://127.0.0.1:{port}/livez").status_code == 200
    finally:
        for process, _ in started:
            process.send_signal(signal.SIGTERM)
        for process, _ in started:
            process.wait(30)
    for (_, log), name, port in zip(started, names, ports, strict=False):
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert lines and all(rec["instance"] == name and rec["time"] for rec in lines)
        start = next(rec["message"] for rec in lines if "smshub running" in rec["message"])
        assert "HTTP on" not in start, "no HTTP address for a role without api"
        assert f"ops (/livez /readyz /metrics) on http://127.0.0.1:{port}" in start
        assert "SMTP intake on" in start
