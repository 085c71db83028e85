"""Shared machinery of the crash tests: a hub child process, killed and restarted.

Each crash test writes a config file (`write_config`), runs `smshub --config CFG run --role
ROLES` as a child process (`HubProcess`), kills it with SIGKILL at random moments and restarts
it (`CrashHarness.kill_after`), then lets a last run settle everything while the test polls
the database with a deadline (`CrashHarness.settle`). What differs between the tests (roles,
config sections, what "settled" means, what else happens while a process lives) is passed in.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import col, select

from hub.store.db import session_scope
from hub.store.models import FINAL_STATUSES, Message

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("SMSHUB_CRASH_SEED", "20240611"))


def backend_of(db_url: str) -> str:
    """ "sqlite" or "postgresql", as the tests name the backend in seeds and summaries."""
    return "sqlite" if db_url.startswith("sqlite") else "postgresql"


def write_config(tmp_path: Path, db_url: str, sections: str, *, hub_extra: str = "") -> Path:
    """Write TMP_PATH/smshub.toml for the child and create its data directory.

    The `[hub]` (data_dir under TMP_PATH, warning log level, plus HUB_EXTRA lines) and
    `[database]` sections are common; SECTIONS is the rest of the file, the test's own.
    Without an `[ops]` section of its own the child opens no ops port (children of parallel
    tests would all want 9025).
    """
    if "[ops]" not in sections:
        sections += "\n[ops]\nport = 0\n"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = tmp_path / "smshub.toml"
    path.write_text(
        f"""
[hub]
data_dir = "{data_dir.as_posix()}"
log_level = "warning"
locale = "en"
{hub_extra}
[database]
url = "{db_url}"
{sections}""",
        "utf-8",
    )
    return path


def open_count(engine: Engine) -> int:
    """Messages not yet in a final state."""
    with session_scope(engine) as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(Message)
                .where(col(Message.status).not_in([s.value for s in FINAL_STATUSES]))
            ).one()
        )


def unsettled_messages(engine: Engine, timeout: float) -> Callable[[], str | None]:
    """A `settle` check: done once every message is final, else how many are not."""

    def pending() -> str | None:
        left = open_count(engine)
        if left > 0:
            return f"{left} message(s) still not final after {timeout:.0f} s"
        return None

    return pending


class HubProcess:
    """One `smshub run --role ROLES` child process; its output is kept for reports."""

    def __init__(
        self, config_path: Path, label: str, roles: str, *, ready_poll: float = 0.05
    ) -> None:
        self.label = label
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._ready_poll = ready_poll
        script = Path(sys.executable).with_name("smshub")
        command = (
            [str(script)]
            if script.exists()
            else [sys.executable, "-c", "from hub.cli.main import main; main()"]
        )
        env = dict(os.environ)
        # The child must use the config file's database, not one inherited from the shell.
        env.pop("SMSHUB_DATABASE_URL", None)
        env.pop("SMSHUB_CONFIG", None)
        self.proc = subprocess.Popen(
            [*command, "--config", str(config_path), "run", "--role", roles],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # Drained continuously so a chatty child never blocks on a full pipe.
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "smshub running" in line:
                self.ready.set()

    def wait_ready(self, timeout: float) -> None:
        """Wait until the hub has reconciled and started its roles (the start-up line is
        logged after listeners are bound and the dispatcher has entered its loop)."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(self._ready_poll):
            if self.proc.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"{self.label} exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"{self.label} not ready after {timeout:.0f} s:\n{self.output()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the child."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(5)

    def stop(self) -> None:
        """Polite stop at the end of the test (SIGTERM, then SIGKILL if it lingers)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(5)

    def output(self, last: int = 60) -> str:
        return "".join(self.lines[-last:])

    def errors(self) -> list[str]:
        """Error reports (ERROR log lines, tracebacks) in this process's output, with context."""
        blocks = []
        skip_to = 0
        for i, line in enumerate(self.lines):
            if i >= skip_to and line.startswith(("ERROR", "CRITICAL", "Traceback")):
                blocks.append("".join(self.lines[i : i + 40]))
                skip_to = i + 40
        return blocks


class CrashHarness:
    """Starts, kills and restarts `smshub run --role ROLES` on one config file."""

    def __init__(
        self,
        config_path: Path,
        roles: str,
        *,
        ready_timeout: float,
        ready_poll: float = 0.05,
    ) -> None:
        self.config_path = config_path
        self.roles = roles
        self.ready_timeout = ready_timeout
        self.ready_poll = ready_poll

    def spawn(self, label: str) -> HubProcess:
        """Start a child process (without waiting for it to be ready)."""
        return HubProcess(self.config_path, label, self.roles, ready_poll=self.ready_poll)

    def start(self, label: str) -> HubProcess:
        """Start a child process and wait until it is ready."""
        proc = self.spawn(label)
        proc.wait_ready(self.ready_timeout)
        return proc

    def kill_after(
        self,
        label: str,
        rng: random.Random,
        delay: tuple[float, float],
        *,
        during: Callable[[], None] | None = None,
        check_alive: bool = True,
    ) -> HubProcess:
        """Start a process, let it run a random DELAY (drawn from RNG), SIGKILL it.

        DURING runs once the process is ready, before the delay. With CHECK_ALIVE, a process
        that died on its own before its kill fails the test. The process is killed whatever
        happens; it is returned dead, for its output.
        """
        proc = self.spawn(label)
        try:
            proc.wait_ready(self.ready_timeout)
            if during is not None:
                during()
            time.sleep(rng.uniform(*delay))
            if check_alive and not proc.alive():
                pytest.fail(f"{proc.label} died before it was killed:\n{proc.output()}")
        finally:
            proc.kill()
        return proc

    def settle(
        self,
        label: str,
        pending: Callable[[], str | None],
        timeout: float,
        *,
        died: str,
        during: Callable[[], None] | None = None,
        extra: Callable[[], str] | None = None,
    ) -> HubProcess:
        """Run a last process until PENDING() returns None, polling with a deadline.

        PENDING returns what is still left to do (the head of the failure message) or None
        once all is settled. DURING runs once the process is ready, before the deadline
        starts. The test fails with DIED if the process dies, or with PENDING's description
        after TIMEOUT seconds; EXTRA() is appended to that report. The process is stopped
        politely whatever happens and returned, for its output.
        """
        final = self.spawn(label)
        try:
            final.wait_ready(self.ready_timeout)
            if during is not None:
                during()
            # Polling a separate process, with a deadline.
            deadline = time.monotonic() + timeout
            while (left := pending()) is not None:
                if not final.alive():
                    pytest.fail(f"{died}:\n{final.output()}")
                if time.monotonic() > deadline:
                    tail = extra() if extra is not None else ""
                    pytest.fail(f"{left}:\n{final.output()}{tail}")
                time.sleep(0.1)
        finally:
            final.stop()
        return final
