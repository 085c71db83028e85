"""`smshub run` says it is running only once its HTTP port takes connections, and a port in
use stops it with an error naming the setting (not uvicorn's bare errno after start-up)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.reliability._harness import REPO, HubProcess, write_config
from tests.servers._util import free_ports


def _config(tmp_path: Path, db_url: str, http_port: int, smtp_port: int) -> Path:
    return write_config(
        tmp_path,
        db_url,
        f"""
[http]
port = {http_port}

[smtp]
port = {smtp_port}

[providers.simulator]
type = "simulator"
""",
    )


def test_running_means_the_http_port_takes_connections(db_url: str, tmp_path: Path) -> None:
    http_port, smtp_port = free_ports(2)
    proc = HubProcess(_config(tmp_path, db_url, http_port, smtp_port), "hub", "api,smtp")
    try:
        proc.wait_ready(60)
        # At once, no retry: a client started by the "running" line must not be refused.
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
            assert conn.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        proc.stop()


def test_an_http_port_in_use_is_an_error_naming_the_key(db_url: str, tmp_path: Path) -> None:
    http_port, smtp_port = free_ports(2)
    config = _config(tmp_path, db_url, http_port, smtp_port)
    # The child must use the config file's database, not one inherited from the shell.
    env = {k: v for k, v in os.environ.items() if k not in ("SMSHUB_DATABASE_URL", "SMSHUB_CONFIG")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", http_port))
        taken.listen()
        done = subprocess.run(
            [sys.executable, "-m", "hub", "--config", str(config), "run", "--role", "api"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env=env,
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"'http.port': cannot listen on 127.0.0.1:{http_port}" in done.stderr
    assert "choose another [http] port" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
