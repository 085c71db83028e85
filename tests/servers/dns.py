"""A real DNS server on 127.0.0.1 for the SPF, DKIM and DMARC tests (dnslib).

It listens on one free port over UDP and TCP and serves TXT records from a dict the test
fills (``zone.txt[name] = [...]``). UDP answers longer than 512 bytes come back truncated,
as from a server without EDNS, so long DKIM keys travel over TCP as they often do for real.
Names in ``zone.slow`` are answered only after ``zone.delay`` seconds (a server that
times out); ``zone.failing`` names get SERVFAIL.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer


@dataclass
class DnsZone:
    """What the server answers; the test changes it freely while the server runs."""

    port: int = 0
    txt: dict[str, list[str]] = field(default_factory=dict)
    slow: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    delay: float = 3.0
    queries: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.txt.clear()
        self.slow.clear()
        self.failing.clear()
        self.queries.clear()


class _Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: DnsZone) -> None:
        self.zone = zone

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        self.zone.queries.append(qname)
        if any(qname == s or qname.endswith("." + s) for s in self.zone.slow):
            time.sleep(self.zone.delay)
        if qname in self.zone.failing:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if request.q.qtype in (QTYPE.TXT, QTYPE.ANY):
            for text in self.zone.txt.get(qname, []):
                # A TXT string holds at most 255 bytes: long records are several strings.
                pieces = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
                reply.add_answer(RR(qname, QTYPE.TXT, rdata=TXT(pieces), ttl=1))
        if not reply.rr and not any(k == qname or k.endswith("." + qname) for k in self.zone.txt):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class _Handler(DNSHandler):  # type: ignore[misc]
    udplen = 512

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:
            pass  # the server stopped while a slow answer was waiting: nobody to answer


def _free_udp_tcp_port() -> int:
    for _ in range(50):
        with ExitStack() as stack:
            tcp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


@pytest.fixture
def dns_zone() -> Iterator[DnsZone]:
    """A DNS server on 127.0.0.1 (UDP and TCP, one free port) serving the zone's TXT."""
    zone = DnsZone(port=_free_udp_tcp_port())
    resolver = _Resolver(zone)
    quiet = DNSLogger(log="-send,-recv,-request,-reply,-truncated,-error,-data", logf=print)
    servers = [
        DNSServer(resolver, "127.0.0.1", zone.port, tcp=tcp, logger=quiet, handler=_Handler)
        for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    yield zone
    for server in servers:
        server.stop()
        server.server.server_close()


def closed_port() -> int:
    """A port where nothing answers DNS (bound, then closed)."""
    return _free_udp_tcp_port()
