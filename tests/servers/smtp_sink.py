"""An aiosmtpd sink that stores every envelope: the hub's outgoing mail lands here in tests.

``smtp_oauth_sink`` is the same sink requiring AUTH XOAUTH2 (as Microsoft 365 and Gmail
do for client submission): the bearer token is checked against the token-introspection
endpoint (tests/servers/oauth_introspection.py), a refused token gets the providers' 334
error challenge then ``535``, and mail from an unauthenticated session is refused.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from tests.servers._util import free_port
from tests.servers.oauth_introspection import Introspection


@dataclass
class SmtpSink:
    """Received mail, in order."""

    host: str = "127.0.0.1"
    port: int = 0
    envelopes: list[Envelope] = field(default_factory=list)

    # With XOAUTH2: (user, token) -> whether the token is that user's; who signed in.
    check_token: Callable[[str, str], bool] | None = None
    logins: list[tuple[str, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.check_token is not None and not session.authenticated:
            return "530 5.7.57 Client not authenticated to send mail"
        self.envelopes.append(envelope)
        return "250 2.0.0 stored"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        """SASL XOAUTH2: "user=U^Aauth=Bearer T^A^A", base64, as the initial response or
        after an empty challenge."""
        assert self.check_token is not None
        if len(args) > 1:
            blob = args[1].encode()
        else:
            answer = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            blob = base64.b64encode(answer)
        try:
            fields = dict(
                part.split("=", 1)
                for part in base64.b64decode(blob).decode().split("\x01")
                if "=" in part
            )
        except ValueError:
            return AuthResult(success=False, handled=False, message="501 5.5.2 malformed XOAUTH2")
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        good = await asyncio.to_thread(self.check_token, user, token)
        self.logins.append((user, good))
        if good:
            return AuthResult(success=True, auth_data=user)
        # As Google and Microsoft do: the error as a challenge, the client answers empty.
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "SMTP.Send"})
        await server.challenge_auth(error)
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )

    @property
    def messages(self) -> list[EmailMessage]:
        """The received mails, parsed."""
        parsed = []
        for env in self.envelopes:
            msg = message_from_bytes(env.original_content or b"", policy=default)
            assert isinstance(msg, EmailMessage)
            parsed.append(msg)
        return parsed


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A running sink on a free port (its own thread and loop, as aiosmtpd's Controller does)."""
    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture
def smtp_oauth_sink(introspection: Introspection) -> Iterator[SmtpSink]:
    """A sink requiring AUTH XOAUTH2 with a token the introspection endpoint accepts."""
    sink = SmtpSink(port=free_port(), check_token=introspection.check)
    controller = Controller(
        sink,
        hostname=sink.host,
        port=sink.port,
        auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN", "PLAIN"],
    )
    controller.start()
    yield sink
    controller.stop()
