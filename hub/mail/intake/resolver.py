"""DNS for the hub's own sender checks (SPF, DKIM, DMARC): one configured resolver.

``[dns]`` names the servers, port and timeout; without servers the system's resolver
(/etc/resolv.conf) is used. "No such record" and "a server could not answer" are kept
apart: the first is an answer (no policy, no key), the second is temporary (a 451).
"""

from __future__ import annotations

import logging

import dns.exception
import dns.resolver

from hub.core.config import DnsSection
from hub.errors import DnsTrouble

log = logging.getLogger("smshub.intake")


def make_resolver(section: DnsSection) -> dns.resolver.Resolver:
    """The resolver ``[dns]`` describes."""
    try:
        resolver = dns.resolver.Resolver(configure=not section.nameservers)
    except dns.resolver.NoResolverConfiguration:
        # No /etc/resolv.conf: the hub still starts (relays and logins need no DNS); its
        # own checks answer 451 until [dns] nameservers is set.
        log.warning("no system DNS resolver found; set [dns] nameservers for sender checks")
        resolver = dns.resolver.Resolver(configure=False)
    if section.nameservers:
        resolver.nameservers = [str(a) for a in section.nameservers]
    resolver.port = section.port
    resolver.timeout = section.timeout
    resolver.lifetime = section.timeout
    return resolver


def txt_records(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """The TXT strings of NAME (each record's pieces joined), [] when there are none;
    raises DnsTrouble when no server answered."""
    try:
        answer = resolver.resolve(name, "TXT", search=False, raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        raise DnsTrouble(f"DNS lookup of {name} failed ({_why(exc)})") from None
    return [
        b"".join(rdata.strings).decode("utf-8", "replace")
        for rdata in answer
        if hasattr(rdata, "strings")
    ]


def _why(exc: dns.exception.DNSException) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "timed out"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "no name server answered"
    return type(exc).__name__
