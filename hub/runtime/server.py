"""`smshub run`: runs what hub.app builds in one asyncio process, and stops it gracefully.

SIGTERM and SIGINT stop claiming at once; then the doors close (SMTP sessions answered 421,
mailboxes and jobs stopped), the work in flight finishes or is handed back within
``[hub] stop_grace_seconds``, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from hub.app import Process, start_process
from hub.core.config import Config
from hub.runtime.heap import trim_periodically, tune_gc
from hub.runtime.listen import listen
from hub.runtime.logs import setup_logging
from hub.runtime.ops_http import OpsServer, start_ops

log = logging.getLogger("smshub")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: it would re-raise SIGTERM once its HTTP
    shutdown is done, killing the process (exit 143) before the dispatcher drains. `serve`
    handles the signals and sets `should_exit` itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Stop:
    """The signal handler: the first SIGTERM/SIGINT stops claiming at once (before anything
    else is awaited) and ends the HTTP server's loop; a second one is only logged."""

    def __init__(self, process: Process, server: _Server | None, grace: float) -> None:
        self.process = process
        self.server = server
        self.grace = grace
        self.requested = asyncio.Event()

    def __call__(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            log.warning("%s again: already stopping", name)
            return
        log.warning("%s: stopping (no new work; work in flight gets %g s)", name, self.grace)
        self.requested.set()
        dispatcher = self.process.hub.dispatcher
        if dispatcher is not None:
            dispatcher.begin_stop()
        if self.server is not None:
            self.server.should_exit = True


async def serve(config: Config, roles: set[str]) -> None:
    """Run until SIGINT/SIGTERM."""
    # Time stamps, [log] format and the instance id on every line (noisy libraries quieted).
    instance = setup_logging(config)
    process = await start_process(config, roles, instance)
    ops = await _start_ops(config, process, instance)
    tune_gc()
    grace = config.hub.stop_grace_seconds
    http = process.http_config(grace)
    server = _Server(http) if http is not None else None
    stop = _Stop(process, server, grace)
    loop = asyncio.get_running_loop()
    for signum in _SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    # Resident memory follows what is in use (hub.runtime.heap: measured allocator fragmentation).
    trimmer = asyncio.create_task(trim_periodically(), name="heap-trim")
    try:
        # Bound before the announcement: "running" means the HTTP port takes connections.
        sockets = [_listen_http(config)] if server is not None else None
        _announce(config, process, instance, ops)
        if server is not None:
            await server.serve(sockets=sockets)
        else:
            await stop.requested.wait()
    finally:
        await _shut_down(process, ops, grace)
        trimmer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trimmer
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
        log.warning("smshub stopped")


def _listen_http(config: Config) -> socket.socket:
    """The HTTP port's socket, for uvicorn to serve on."""
    return listen(
        config.http.host,
        config.http.port,
        key="http.port",
        remedy="choose another [http] port for this instance (or stop what holds it)",
    )


async def _start_ops(config: Config, process: Process, instance: str) -> OpsServer | None:
    """The operations port (/livez, /readyz, /metrics), probing what PROCESS runs."""
    return await start_ops(
        config,
        process.hub,
        process.roles,
        instance,
        smtp_server=process.smtp.server if process.smtp is not None else None,
        imap_sources=process.mailboxes,
        scheduler=process.scheduler,
    )


def _announce(config: Config, process: Process, instance: str, ops: OpsServer | None) -> None:
    """One line saying what this instance serves (HTTP only with the api role), and where
    the web console is."""
    roles = process.roles
    served = [f"HTTP on http://{config.http.host}:{config.http.port}"] if "api" in roles else []
    if process.smtp is not None:
        served.append(f"SMTP intake on {config.smtp.host}:{config.smtp.port}")
    if process.mailboxes:
        served.append(f"{len(process.mailboxes)} IMAP mailbox(es)")
    served.append(f"ops (/livez /readyz /metrics) on {ops.url}" if ops else "no ops port")
    log.warning(
        "smshub running (instance %s, roles: %s) — %s, database %s",
        instance,
        ", ".join(sorted(roles)),
        ", ".join(served),
        process.hub.engine.url.render_as_string(hide_password=True),
    )
    if "api" in roles and config.console.enabled:
        log.warning(
            "web console: http://%s:%d/console (log in with a user made by "
            "`smshub users add ACCOUNT NAME`)",
            config.http.host,
            config.http.port,
        )


async def _shut_down(process: Process, ops: OpsServer | None, grace: float) -> None:
    """No new work first (SMTP sessions answered 421, mailboxes and jobs stopped), then the
    work in flight finishes or is handed back, then the operations port closes."""
    if process.smtp is not None:
        await process.smtp.shut_down(grace)
    for source in process.mailboxes:
        await source.stop()
    # The periodic jobs under way and the hub's work in flight share the grace period; the
    # jobs' leader lock goes once they are done (another instance leads from its next try).
    stops = [process.hub.stop(grace)]
    if process.scheduler is not None:
        stops.append(process.scheduler.stop(grace))
    await asyncio.gather(*stops)
    if ops is not None:
        await ops.stop()
