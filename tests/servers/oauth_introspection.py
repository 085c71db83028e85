"""A token-introspection endpoint (RFC 7662) on 127.0.0.1, as mail servers use to check an
OAuth bearer token: Dovecot's ``oauth2`` passdb (``introspection_mode = post``) and the
XOAUTH2 SMTP sink ask it whether a token is active and whose it is.

Tests say which tokens are good with :meth:`Introspection.accept`: a function from a token to
the mailbox user it belongs to (None: not active), typically looking the token up in the
Microsoft or Google stand-in that issued it, so a token those revoke or expire is refused
by the mail servers at once. Answers: ``{"active": true, "username": USER}`` or
``{"active": false}``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from tests.servers._util import BackgroundServer

Resolver = Callable[[str], "str | None"]


@dataclass
class Introspection:
    url: str = ""
    resolvers: list[Resolver] = field(default_factory=list)
    # (token, user or None) of every question, for assertions.
    asked: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, resolver: Resolver) -> None:
        with self.lock:
            self.resolvers.append(resolver)

    def user_of(self, token: str) -> str | None:
        with self.lock:
            resolvers = list(self.resolvers)
        user = next((u for r in resolvers if (u := r(token))), None)
        with self.lock:
            self.asked.append((token, user))
        return user

    def check(self, user: str, token: str) -> bool:
        """Ask the endpoint over HTTP, as a mail server does: is TOKEN USER's?"""
        answer = httpx.post(self.url, data={"token": token}, timeout=10).json()
        return bool(answer.get("active")) and answer.get("username") == user


class _Handler(BaseHTTPRequestHandler):
    service: Introspection
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet."""

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = parse_qs(raw.decode()).get("token", [""])[-1]
        user = self.service.user_of(token) if token else None
        body = {"active": True, "username": user} if user else {"active": False}
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="session")
def introspection_service() -> Iterator[Introspection]:
    service = Introspection()
    handler = type("IntrospectionHandler", (_Handler,), {"service": service})
    with BackgroundServer(handler) as server:
        service.url = f"{server.url}/introspect"
        yield service


@pytest.fixture
def introspection(introspection_service: Introspection) -> Iterator[Introspection]:
    """The session's introspection endpoint, accepting nothing until the test says so."""
    introspection_service.resolvers.clear()
    introspection_service.asked.clear()
    yield introspection_service
    introspection_service.resolvers.clear()
