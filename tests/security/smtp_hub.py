"""A running hub with its real SMTP listener, for the SMTP input tests and the fuzz test.

Mail is sent as an SMTP AUTH user (after STARTTLS), so what is tested is the input's
handling, not sender authorization.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from hub.app import Hub
from hub.mail.intake.addresses import add_intake_address, add_mail_user
from hub.mail.intake.policy import IntakePolicy
from hub.mail.intake.smtp import start_smtp
from hub.store.db import session_scope
from hub.store.models import InboundMail, Message
from tests.conftest import MakeHub, make_config

PASSWORD = "correct horse battery"
INTAKE = "sms@hub.test"


@dataclass
class SmtpHub:
    hub: Hub
    policy: IntakePolicy
    port: int
    engine: Engine

    def client(self) -> smtplib.SMTP:
        """A client logged in as the account's SMTP user."""
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
        client.starttls(context=ssl._create_unverified_context())  # noqa: S323 (self-signed)
        client.login("reception", PASSWORD)
        return client

    def send(self, raw: bytes, rcpt: str = INTAKE) -> tuple[int, bytes]:
        """RAW sent through the listener: (code, text) of the answer to DATA."""
        with self.client() as client:
            client.ehlo()
            client.mail("anne@clinic.example")
            code, text = client.rcpt(rcpt)
            if code != 250:
                return code, text
            return client.data(raw)

    def counts(self) -> tuple[int, int]:
        """(SMS rows, stored mails) in the database."""
        with session_scope(self.engine) as s:
            messages = s.exec(select(func.count()).select_from(Message)).one()[0]
            mails = s.exec(select(func.count()).select_from(InboundMail)).one()[0]
        return int(messages), int(mails)


def raw_exchange(port: int, lines: list[bytes]) -> list[bytes]:
    """Each of LINES sent as is on a plain connection, with the raw answer to each
    (the greeting first): what a client that ignores the rules sees."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        answers = [_reply(reader)]
        for line in lines:
            sock.sendall(line + b"\r\n")
            answers.append(_reply(reader))
        return answers


def _reply(reader: Any) -> bytes:
    lines = []
    while True:
        line = reader.readline()
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return b"".join(lines)


# Registered under NAME: test modules import the functions, and a test's parameter of the
# fixture's name does not shadow an import.
@pytest.fixture(scope="session", name="tls_pair")
def tls_pair_fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate and key for STARTTLS."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


@pytest.fixture(name="smtp_hub")
async def smtp_hub_fixture(
    db_url: str,
    tmp_path: Path,
    engine: Engine,
    account: str,
    tls_pair: tuple[str, str],
    make_hub: MakeHub,
) -> AsyncIterator[SmtpHub]:
    """A started hub and its SMTP listener on a free port; INTAKE takes SMTP AUTH users."""
    config = make_config(
        db_url,
        tmp_path,
        smtp={
            "tls_cert_file": tls_pair[0],
            "tls_key_file": tls_pair[1],
            "max_message_size": 200_000,
            "mails_per_sender_per_minute": 10_000,
            "sms_per_account_per_hour": 100_000,
        },
    )
    with session_scope(engine) as s:
        add_intake_address(s, account, INTAKE, require_auth=True)
        add_mail_user(s, account, "reception", PASSWORD)
    hub = await make_hub(config=config)
    policy = IntakePolicy(engine, config)
    server = await start_smtp(policy, config, on_accepted=hub.after_intake, port=0)
    try:
        yield SmtpHub(hub, policy, server.sockets[0].getsockname()[1], engine)
    finally:
        server.close()
        await server.wait_closed()
        await hub.stop()
