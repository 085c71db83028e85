"""Mail to SMS over SMTP, end to end: smtplib and swaks → hub → simulator."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import ssl
import subprocess
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from hub.mail.intake.addresses import add_intake_address, add_mail_user
from hub.mail.intake.policy import IntakePolicy
from hub.mail.intake.smtp import start_smtp
from hub.store.db import session_scope
from hub.store.models import InboundMail, Message
from tests.conftest import MakeHub, make_config, require_server
from tests.servers.smtp_sink import SmtpSink

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for STARTTLS."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


@pytest.fixture
async def smtp(
    db_url: str,
    tmp_path: Path,
    engine: Any,
    account: str,
    tls_files: tuple[str, str],
    smtp_sink: SmtpSink,
    make_hub: MakeHub,
) -> Any:
    """A hub with SMTP intake on a free port, confirmations to the sink; yields (hub, port)."""
    config = make_config(
        db_url,
        tmp_path,
        smtp={
            "tls_cert_file": tls_files[0],
            "tls_key_file": tls_files[1],
            "trusted_relays": [{"authserv_id": "mx.clinic.example", "networks": ["127.0.0.0/8"]}],
            "max_message_size": 20_000,
        },
        mail_out={
            "host": "127.0.0.1",
            "port": smtp_sink.port,
            "starttls": False,
            "from_address": "sms@hub.test",
        },
    )
    with session_scope(engine) as s:
        add_intake_address(s, "acme", "sms@hub.test", allowed_senders=["@clinic.example"])
        add_intake_address(s, "acme", "*@sms.hub.test", require_auth=True)
        add_mail_user(s, "acme", "reception", PASSWORD)
        add_mail_user(s, "acme", "anne@clinic.example", PASSWORD)
    hub = await make_hub(config=config)
    server = await start_smtp(IntakePolicy(engine, config), config, port=0)
    port = server.sockets[0].getsockname()[1]
    yield hub, port
    server.close()
    await server.wait_closed()
    await hub.stop()


def _mail(
    subject: str,
    body: str = "Rendez-vous demain 9h",
    sender: str = "anne@clinic.example",
    to: str = "sms@hub.test",
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Anne <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="clinic.example")
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    return msg


def _client(port: int, login: bool = True, user: str = "reception") -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    if login:
        client.starttls(context=ssl._create_unverified_context())  # noqa: S323 (self-signed)
        client.login(user, PASSWORD)
    return client


async def _send(port: int, msg: EmailMessage, login: bool = True, user: str = "reception") -> Any:
    def go() -> Any:
        with _client(port, login, user) as c:
            return c.send_message(msg)

    return await asyncio.to_thread(go)


def _messages(engine: Any) -> list[Message]:
    with session_scope(engine) as s:
        return list(s.exec(select(Message).order_by(Message.recipient)).all())


async def test_authenticated_mail_becomes_sms(smtp):
    hub, port = smtp
    await _send(port, _mail("06 12 34 56 78, +41 79 123 45 67; 01 23 45 67 89"))
    messages = _messages(hub.engine)
    assert [m.recipient for m in messages] == ["+33612345678", "+41791234567"]
    assert {m.text for m in messages} == {"Rendez-vous demain 9h"}
    assert {m.source for m in messages} == {"mail"}
    await hub.dispatcher.drain()
    sent = [e for e in hub.providers["simulator"].read_log() if e["kind"] == "mt"]
    assert sorted(e["to"] for e in sent) == ["+33612345678", "+41791234567"]


async def test_reply_tells_what_was_queued_and_left_out(smtp):
    _, port = smtp

    def go() -> tuple[int, bytes]:
        with _client(port) as c:
            c.ehlo()
            c.mail("anne@clinic.example")
            c.rcpt("sms@hub.test")
            return c.data(_mail("0612345678, 0123456789").as_bytes(policy=SMTP_POLICY))

    code, text = await asyncio.to_thread(go)
    assert code == 250, text
    assert b"queued 1 SMS" in text and b"landline" in text


async def test_number_in_address_needs_auth_and_accepts_all_forms(smtp):
    hub, port = smtp
    msg = _mail("", to="+33612345678@sms.hub.test, 0033698765432@sms.hub.test")
    msg.replace_header("Subject", "rappel")
    with pytest.raises(smtplib.SMTPDataError, match="authentication required"):
        await _send(port, msg, login=False)

    def go() -> None:
        with _client(port) as c:
            c.send_message(
                msg,
                to_addrs=[
                    "+33612345678@sms.hub.test",
                    "0033698765432@sms.hub.test",
                    "33611111111@sms.hub.test",
                    "0622222222@sms.hub.test",
                ],
            )

    await asyncio.to_thread(go)
    assert [m.recipient for m in _messages(hub.engine)] == [
        "+33611111111",
        "+33612345678",
        "+33622222222",
        "+33698765432",
    ]


async def test_no_open_relay(smtp):
    _, port = smtp

    def go() -> tuple[int, bytes]:
        with _client(port, login=False) as c:
            c.ehlo()
            c.mail("anne@clinic.example")
            return c.rcpt("someone@gmail.com")

    code, text = await asyncio.to_thread(go)
    assert code == 550 and b"relaying denied" in text


async def test_auth_without_tls_is_refused(smtp):
    _, port = smtp

    def go() -> tuple[int, bytes]:
        with _client(port, login=False) as c:
            c.ehlo()
            assert not c.has_extn("auth")
            return c.docmd("AUTH", "PLAIN AHJlY2VwdGlvbgBjb3JyZWN0IGhvcnNlIGJhdHRlcnk=")

    code, _ = await asyncio.to_thread(go)
    assert code == 538


async def test_forged_sender_is_refused_and_trusted_relay_verdict_accepted(smtp):
    hub, port = smtp
    with pytest.raises(smtplib.SMTPDataError) as err:
        await _send(port, _mail("0612345678"), login=False)
    assert err.value.smtp_code == 550 and b"could not verify" in err.value.smtp_error
    forged = _mail(
        "0612345678",
        headers={
            "Authentication-Results": "mx.evil.example; dmarc=pass header.from=clinic.example"
        },
    )
    with pytest.raises(smtplib.SMTPDataError):
        await _send(port, forged, login=False)
    outsider = _mail(
        "0612345678",
        sender="eve@other.example",
        headers={
            "Authentication-Results": "mx.clinic.example; dmarc=pass header.from=other.example"
        },
    )
    with pytest.raises(smtplib.SMTPDataError, match="not allowed"):
        await _send(port, outsider, login=False)
    assert _messages(hub.engine) == []
    genuine = _mail(
        "0612345678",
        headers={
            "Authentication-Results": "mx.clinic.example; spf=pass smtp.mailfrom=clinic.example; "
            "dkim=pass header.d=clinic.example"
        },
    )
    await _send(port, genuine, login=False)
    assert len(_messages(hub.engine)) == 1


async def test_same_message_id_twice_sends_once(smtp):
    hub, port = smtp
    msg = _mail("0612345678")
    await _send(port, msg)
    await _send(port, msg)
    assert len(_messages(hub.engine)) == 1
    with session_scope(hub.engine) as s:
        mails = s.exec(select(InboundMail)).all()
    assert len(mails) == 1 and mails[0].raw.startswith(b"From:") or b"From:" in mails[0].raw


async def test_bad_mails_get_a_human_reason(smtp):
    hub, port = smtp
    cases = [
        (_mail("hello there"), "no phone number found"),
        (_mail("0612345678", body="   "), "no text"),
        (_mail("0612345678", body="x" * 1500), "max_parts"),
        (_mail("0612345678", body="y" * 30_000), "552"),
    ]
    for msg, words in cases:
        with pytest.raises(smtplib.SMTPException) as err:
            await _send(port, msg)
        assert words in str(err.value), (words, err.value)
    assert _messages(hub.engine) == []


async def test_bare_lf_is_refused(smtp):
    _, port = smtp
    raw = _mail("0612345678").as_bytes(policy=SMTP_POLICY)

    def go() -> tuple[int, bytes]:
        with _client(port) as c:
            c.ehlo()
            c.mail("anne@clinic.example")
            c.rcpt("sms@hub.test")
            c.putcmd("data")
            c.getreply()
            c.send(raw.replace(b"Rendez", b"Ren\ndez") + b"\r\n.\r\n")
            return c.getreply()

    code, text = await asyncio.to_thread(go)
    assert code == 550 and b"bare LF" in text


async def test_swaks_end_to_end(smtp):
    if shutil.which("swaks") is None:
        require_server("swaks", "install it with `make system-deps`")
    hub, port = smtp
    proc = await asyncio.create_subprocess_exec(
        "swaks",
        "--server",
        f"127.0.0.1:{port}",
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "reception",
        "--auth-password",
        PASSWORD,
        "--from",
        "anne@clinic.example",
        "--to",
        "sms@hub.test",
        "--header",
        "Subject: +33612345678",
        "--body",
        "Bonjour de swaks",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    assert [m.text for m in _messages(hub.engine)] == ["Bonjour de swaks"]


async def test_sender_gets_a_confirmation(smtp, smtp_sink):
    hub, port = smtp
    msg = _mail("0612345678, 0123456789, 06 98 76 54 32")
    # Confirmations go to the login's own address (see tests/security/test_mail_auth.py).
    await _send(port, msg, user="anne@clinic.example")
    await _send(port, msg, user="anne@clinic.example")  # the same mail: no second confirmation
    assert await hub.mail_outbox.send_due() == 1
    [confirmation] = smtp_sink.messages
    assert confirmation["To"] == "anne@clinic.example"
    assert confirmation["Subject"].startswith("SMS sent: 0612345678")
    assert confirmation["In-Reply-To"] == msg["Message-ID"]
    body = confirmation.get_content()
    assert "+33612345678" in body and "+33698765432" in body
    assert "0123456789: a landline number cannot receive SMS" in body
    assert "Credits used: 2; balance now 98." in body
