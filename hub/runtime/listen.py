"""Listening sockets bound before a port is announced, with an error naming the setting.

`smshub run` binds its HTTP and ops ports itself and hands the sockets to uvicorn, so that
"smshub running … HTTP on …" is only logged once the port takes connections (clients that
connect before uvicorn accepts wait in the backlog instead of being refused), and a port in
use is a ConfigError saying which key to change rather than uvicorn's bare errno.
"""

from __future__ import annotations

import socket

from hub.errors import ConfigError


def listen(host: str, port: int, *, key: str, remedy: str) -> socket.socket:
    """A non-blocking socket listening on HOST:PORT; a port that cannot be bound is a
    ConfigError naming KEY and saying what to do (REMEDY)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"'{key}': cannot listen on {host}:{port} ({exc.strerror}); {remedy}"
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock
