"""An aiosmtpd sink that stores every envelope: the hub's outgoing mail lands here in tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from tests.servers._util import free_port


@dataclass
class SmtpSink:
    """Received mail, in order."""

    host: str = "127.0.0.1"
    port: int = 0
    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 2.0.0 stored"

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
