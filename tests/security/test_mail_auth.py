"""Rule 1 for mail: trust comes from the connection, never from what the client writes.

Against the real SMTP listener and a real DNS server on 127.0.0.1 (tests/servers/dns.py)
publishing SPF, DKIM and DMARC records; mails are signed with dkimpy using a key made here.
The organisation's relay is played by connections from 127.0.0.2 (its configured network);
everything from 127.0.0.1 is a direct sender the hub checks itself.
"""

from __future__ import annotations

import asyncio
import base64
import smtplib
import ssl
import subprocess
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlmodel import select

from hub.core.config import Config
from hub.errors import ConfigError
from hub.mail.intake.addresses import add_intake_address, add_mail_user
from hub.mail.intake.policy import IntakePolicy, MailEnvelope
from hub.mail.intake.smtp import start_smtp
from hub.mail.replytokens import reply_address
from hub.store.db import session_scope
from hub.store.models import InboundMessage, Message, OutgoingMail
from tests.conftest import MakeHub, make_config
from tests.servers.dns import DnsZone, closed_port
from tests.servers.smtp_sink import SmtpSink

RELAY = "127.0.0.2"  # the organisation's relay: its network is trusted_relays' networks
DIRECT = "127.0.0.1"  # anyone else
PASSWORD = "correct horse battery"
REPLY_DOMAIN = "reply.hub.test"


@pytest.fixture(scope="module")
def dkim_key() -> tuple[bytes, str]:
    """(private key PEM, public key for the DKIM TXT record)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def _publish(zone: DnsZone, public_key: str) -> None:
    zone.txt.update(
        {
            # clinic.example signs its mail and sends from 192.0.2.0/24 only.
            "sel._domainkey.clinic.example": [f"v=DKIM1; k=rsa; p={public_key}"],
            "clinic.example": ["v=spf1 ip4:192.0.2.0/24 -all"],
            "_dmarc.clinic.example": ["v=DMARC1; p=reject"],
            # lab.example sends from here, signs nothing and publishes no DMARC policy.
            "mail.lab.example": ["v=spf1 ip4:127.0.0.0/8 -all"],
            # The parent of clinic.example: its SPF pass says nothing about clinic.example.
            "example": ["v=spf1 ip4:127.0.0.0/8 -all"],
        }
    )
    zone.slow.add("slow.example")


def _config(
    db_url: str, tmp_path: Path, sink: SmtpSink, tls: tuple[str, str], dns: dict[str, Any]
) -> Config:
    return make_config(
        db_url,
        tmp_path,
        smtp={
            "tls_cert_file": tls[0],
            "tls_key_file": tls[1],
            "trusted_relays": [{"authserv_id": "mx.clinic.example", "networks": [f"{RELAY}/32"]}],
            "reply_domain": REPLY_DOMAIN,
        },
        dns=dns,
        mail_out={
            "host": "127.0.0.1",
            "port": sink.port,
            "starttls": False,
            "from_address": "sms@hub.test",
        },
    )


async def _start(make_hub: MakeHub, config: Config, engine: Any) -> Any:
    with session_scope(engine) as s:
        add_intake_address(
            s,
            "acme",
            "sms@hub.test",
            allowed_senders=["@clinic.example", "@lab.example", "@slow.example"],
        )
        add_mail_user(s, "acme", "reception", PASSWORD)
        add_mail_user(s, "acme", "anne@clinic.example", PASSWORD)
    hub = await make_hub(config=config)
    server = await start_smtp(IntakePolicy(engine, config), config, port=0)
    return hub, server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def smtp(
    db_url: str,
    tmp_path: Path,
    engine: Any,
    account: str,
    smtp_sink: SmtpSink,
    tls_files: tuple[str, str],
    dns_zone: DnsZone,
    dkim_key: tuple[bytes, str],
    make_hub: MakeHub,
) -> Any:
    """(hub, port) with the hub's resolver on the test DNS server."""
    _publish(dns_zone, dkim_key[1])
    dns = {"nameservers": ["127.0.0.1"], "port": dns_zone.port, "timeout": 1.0}
    config = _config(db_url, tmp_path, smtp_sink, tls_files, dns)
    hub, server, port = await _start(make_hub, config, engine)
    yield hub, port
    server.close()
    await server.wait_closed()
    await hub.stop()


def _mail(
    subject: str = "0612345678",
    body: str = "Rendez-vous demain 9h",
    sender: str = "anne@clinic.example",
    to: str = "sms@hub.test",
    results: list[str] | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    for value in results or []:
        msg["Authentication-Results"] = value
    msg["From"] = f"Anne <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="clinic.example")
    msg.set_content(body)
    return msg


def _signed(msg: EmailMessage, key: bytes, domain: str = "clinic.example") -> bytes:
    raw = msg.as_bytes(policy=SMTP_POLICY)
    signature = dkim.sign(
        raw,
        b"sel",
        domain.encode(),
        key,
        include_headers=[b"from", b"to", b"subject", b"message-id"],
    )
    return bytes(signature) + raw


async def _send(
    port: int,
    raw: bytes | EmailMessage,
    *,
    source: str = DIRECT,
    mail_from: str = "anne@clinic.example",
    rcpt: str = "sms@hub.test",
    login: str | None = None,
) -> tuple[int, str]:
    """(code, text) of the hub's answer to DATA (250 included)."""
    data = raw.as_bytes(policy=SMTP_POLICY) if isinstance(raw, EmailMessage) else raw

    def go() -> tuple[int, str]:
        with smtplib.SMTP(
            "127.0.0.1",
            port,
            local_hostname="mail.clinic.example",
            source_address=(source, 0),
            timeout=20,
        ) as client:
            if login:
                client.starttls(context=ssl._create_unverified_context())  # noqa: S323
                client.login(login, PASSWORD)
            try:
                client.sendmail(mail_from, [rcpt], data)
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code, exc.smtp_error.decode()
            return 250, "OK"

    return await asyncio.to_thread(go)


def _messages(engine: Any, source: str = "mail") -> list[Message]:
    with session_scope(engine) as s:
        return list(s.exec(select(Message).where(Message.source == source)).all())


# -- direct senders: the hub checks DKIM, SPF and DMARC itself --------------------------------


async def test_signed_mail_from_allowed_sender_is_accepted(smtp, dkim_key):
    hub, port = smtp
    code, text = await _send(port, _signed(_mail(), dkim_key[0]))
    assert code == 250, text
    assert len(_messages(hub.engine)) == 1


async def test_tampered_body_is_refused(smtp, dkim_key):
    hub, port = smtp
    raw = _signed(_mail(body="Rendez-vous demain 9h"), dkim_key[0])
    code, text = await _send(port, raw.replace(b"demain 9h", b"demain 7h"))
    assert code == 550, text
    assert "5.7.26" in text
    assert "DMARC policy of clinic.example failed" in text
    assert "DKIM signature did not verify" in text and "SPF fail" in text
    assert _messages(hub.engine) == []


async def test_spf_fail_is_refused_and_aligned_spf_pass_accepted(smtp):
    hub, port = smtp
    code, text = await _send(port, _mail())  # unsigned, from outside clinic's SPF
    assert code == 550 and "SPF fail" in text and "no DKIM signature" in text, text
    # lab.example allows this address and publishes no DMARC: an aligned SPF pass is enough.
    code, text = await _send(
        port, _mail(sender="bob@lab.example"), mail_from="bounce@mail.lab.example"
    )
    assert code == 250, text
    assert len(_messages(hub.engine)) == 1


async def test_forged_authentication_results_from_untrusted_peer_is_refused(smtp):
    hub, port = smtp
    forged = _mail(results=["mx.clinic.example; dmarc=pass header.from=clinic.example"])
    code, text = await _send(port, forged, source=DIRECT)
    assert code == 550 and "could not verify" in text, text
    assert _messages(hub.engine) == []


async def test_parent_domain_spf_is_not_aligned(smtp):
    hub, port = smtp
    # SPF passes for the MAIL FROM domain "example", the parent of clinic.example.
    code, text = await _send(port, _mail(), mail_from="x@example")
    assert code == 550, text
    assert "SPF pass for example is not aligned with clinic.example" in text
    # The same through the relay: its spf=pass for x@example does not vouch either.
    relayed = _mail(results=["mx.clinic.example; spf=pass smtp.mailfrom=x@example"])
    code, text = await _send(port, relayed, source=RELAY)
    assert code == 550, text
    assert _messages(hub.engine) == []


async def test_dns_timeout_is_temporary(smtp, dns_zone):
    hub, port = smtp
    code, text = await _send(port, _mail(sender="anne@slow.example"), mail_from="anne@slow.example")
    assert code == 451 and "4.4.3" in text and "timed out" in text, text
    assert _messages(hub.engine) == []


async def test_dns_server_down_is_temporary(
    db_url, tmp_path, engine, account, smtp_sink, tls_files, make_hub
):
    dns = {"nameservers": ["127.0.0.1"], "port": closed_port(), "timeout": 1.0}
    hub, server, port = await _start(
        make_hub, _config(db_url, tmp_path, smtp_sink, tls_files, dns), engine
    )
    try:
        code, text = await _send(port, _mail())
        assert code == 451 and "4.4.3" in text, text
        assert _messages(hub.engine) == []
    finally:
        server.close()
        await server.wait_closed()
        await hub.stop()


# -- the relay: its network makes its verdict count, and only its topmost header -------------


async def test_relay_verdict_from_its_network_is_honoured(smtp):
    hub, port = smtp
    relayed = _mail(results=["mx.clinic.example; dmarc=pass header.from=clinic.example"])
    code, text = await _send(port, relayed, source=RELAY)
    assert code == 250, text
    assert len(_messages(hub.engine)) == 1


async def test_relay_dmarc_fail_beside_dkim_pass_is_refused(smtp):
    hub, port = smtp
    relayed = _mail(
        results=[
            "mx.clinic.example; dkim=pass header.d=clinic.example; "
            "dmarc=fail header.from=clinic.example"
        ]
    )
    code, text = await _send(port, relayed, source=RELAY)
    assert code == 550 and "DMARC fail" in text, text
    assert _messages(hub.engine) == []


async def test_relay_dmarc_pass_without_header_from_is_refused(smtp):
    hub, port = smtp
    relayed = _mail(results=["mx.clinic.example; dmarc=pass"])
    code, text = await _send(port, relayed, source=RELAY)
    assert code == 550 and "names no header.from" in text, text
    assert _messages(hub.engine) == []


async def test_only_the_relays_topmost_header_counts(smtp):
    hub, port = smtp
    # The relay's own verdict (on top) fails; the sender's forged copy below it passes.
    relayed = _mail(
        results=[
            "mx.clinic.example; dmarc=fail header.from=clinic.example",
            "mx.clinic.example; dmarc=pass header.from=clinic.example",
        ]
    )
    code, text = await _send(port, relayed, source=RELAY)
    assert code == 550 and "DMARC fail" in text, text
    assert _messages(hub.engine) == []


# -- answers to forwarded SMS (reply+TOKEN@) ---------------------------------------------------


async def test_reply_with_forged_authentication_results_is_refused(smtp):
    hub, port = smtp
    code, text = await _send(
        port,
        _mail(results=["mx.clinic.example; dmarc=pass header.from=clinic.example"]),
        source=RELAY,
    )
    assert code == 250, text
    await hub.dispatcher.drain()
    assert await hub.providers["simulator"].receive("+33612345678", "Qui est-ce ?")
    with session_scope(hub.engine) as s:
        inbound = s.exec(select(InboundMessage)).one()
        assert inbound.forwarded_to == "anne@clinic.example"
        address = reply_address(s, inbound.id, REPLY_DOMAIN)
    forged = _mail(
        subject="Re: SMS",
        body="C'est Anne",
        to=address,
        results=["mx.clinic.example; dmarc=pass header.from=clinic.example"],
    )
    code, text = await _send(port, forged, source=DIRECT, rcpt=address)
    assert code == 550 and "could not verify that this answer is from" in text, text
    assert _messages(hub.engine, "reply") == []
    # The same answer through the relay is sent.
    code, text = await _send(port, forged, source=RELAY, rcpt=address)
    assert code == 250, text
    assert len(_messages(hub.engine, "reply")) == 1


# -- confirmations go to the sender's own address only -----------------------------------------


def _confirmations(engine: Any) -> list[OutgoingMail]:
    with session_scope(engine) as s:
        return list(s.exec(select(OutgoingMail).where(OutgoingMail.kind == "confirmation")).all())


async def test_confirmation_is_not_sent_to_a_forged_from(smtp, dkim_key):
    hub, port = smtp
    victim = _mail(sender="victim@elsewhere.example")
    victim["Reply-To"] = "victim@elsewhere.example"
    # A login without an address: no confirmation at all, the From is only written text.
    code, text = await _send(port, victim, login="reception")
    assert code == 250, text
    assert _confirmations(hub.engine) == []
    # A login named by its address: the confirmation goes there, not to the From.
    victim.replace_header("Message-ID", make_msgid(domain="clinic.example"))
    code, text = await _send(port, victim, login="anne@clinic.example")
    assert code == 250, text
    [confirmation] = _confirmations(hub.engine)
    assert confirmation.recipient == "anne@clinic.example"
    # A From verified by DKIM (no login) gets its confirmation.
    code, text = await _send(port, _signed(_mail(subject="0698765432"), dkim_key[0]))
    assert code == 250, text
    assert sorted(c.recipient for c in _confirmations(hub.engine)) == [
        "anne@clinic.example",
        "anne@clinic.example",
    ]


# -- configuration ------------------------------------------------------------------------------


def test_old_trusted_relays_form_stops_startup_showing_the_new_form(tmp_path):
    with pytest.raises(ConfigError) as err:
        make_config("sqlite://", tmp_path, smtp={"trusted_relays": ["mx.clinic.example"]})
    message = str(err.value)
    assert "'smtp.trusted_relays.0'" in message
    assert '{authserv_id = "mx.clinic.example", networks = [' in message


# -- the IMAP door: the mailbox server is the relay ------------------------------------------


async def test_imap_mail_uses_the_mailbox_servers_verdict_or_the_hubs_own_dkim_check(
    smtp, dkim_key
):
    hub, _ = smtp
    policy = IntakePolicy(hub.engine, hub.config)
    forged = _mail(results=["imap.clinic.example; dmarc=pass header.from=clinic.example"])
    raw = forged.as_bytes(policy=SMTP_POLICY)

    def take(data: bytes, ids: tuple[str, ...]) -> Any:
        return policy.take(
            MailEnvelope(
                data, "anne@clinic.example", ["sms@hub.test"], source="imap", authserv_ids=ids
            )
        )

    # Without a configured id anyone's header is just text: the hub checks DKIM itself.
    outcome = await asyncio.to_thread(take, raw, ())
    assert outcome.reply.startswith("550 5.7.26"), outcome.reply
    assert "SPF not checked" in outcome.reply
    signed = _signed(_mail(subject="0698765432"), dkim_key[0])
    outcome = await asyncio.to_thread(take, signed, ())
    assert outcome.accepted, outcome.reply
    # With the mailbox server's id configured, its verdict counts.
    outcome = await asyncio.to_thread(take, raw, ("imap.clinic.example",))
    assert outcome.accepted, outcome.reply
    policy.connection.close()
