"""Log set-up of `smshub run`: a time stamp and the instance's name on every line, as text or
as one JSON object per line (python-json-logger), for journald and log collectors alike."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

from hub.core.config import Config

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(instance)s] %(name)s: %(message)s"
JSON_FIELDS = ["asctime", "levelname", "instance", "name", "message"]
# Libraries whose INFO lines carry request URLs (callback secrets) or every SMTP command.
NOISY = ("httpx", "httpcore", "apscheduler", "mail.log", "alembic.runtime.plugins")


def instance_id(config: Config) -> str:
    """This instance's name: [hub] instance_id, else HOSTNAME-PID."""
    return config.hub.instance_id or f"{socket.gethostname()}-{os.getpid()}"


class InstanceFilter(logging.Filter):
    """Stamps every record with the instance's name (records of every library included)."""

    def __init__(self, instance: str) -> None:
        super().__init__()
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self.instance
        return True


def make_formatter(kind: str) -> logging.Formatter:
    """The formatter of [log] format KIND ("text" or "json"), both with ISO-8601 UTC times."""
    formatter: logging.Formatter
    if kind == "json":
        formatter = JsonFormatter(
            JSON_FIELDS,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
    # UTC with milliseconds and a Z: lines of instances in several time zones sort together.
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    return formatter


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is at each record (tests swap it; never a stale one)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def setup_logging(config: Config, stream: TextIO | None = None) -> str:
    """Send every log record to STREAM (stderr) in the configured format; returns the
    instance id stamped on each line."""
    instance = instance_id(config)
    handler: logging.Handler = StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(config.log.format))
    handler.addFilter(InstanceFilter(instance))
    root = logging.getLogger()
    # Replaces the plain handlers (`smshub`'s basicConfig, an earlier call's); handlers of
    # other kinds (a test runner's capture) stay.
    for old in list(root.handlers):
        if type(old) in (logging.StreamHandler, StderrHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.hub.log_level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return instance
