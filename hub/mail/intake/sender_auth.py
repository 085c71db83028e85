"""Is the From of a relayed mail genuine? Read the verdicts of a trusted relay (RFC 8601).

A relay is trusted by the connection, never by what the mail says: its verdicts count only
when the mail came from one of its networks (``smtp.trusted_relays``) or from the mailbox
whose server it is (``trusted_authserv_id`` of an ``[[imap]]`` table). Of the headers that
carry its authserv-id only the topmost counts: the relay adds its own on top and anything
below was written by whoever sent the mail to it (RFC 8601 §5). The headers are read with
the ``authres`` library.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from authres import AuthenticationResultsHeader
from authres.core import AuthResError

from hub.core.config import TrustedRelay
from hub.mail.intake.alignment import aligned, domain_of


@dataclass(frozen=True)
class Verdict:
    """Whether a mail's From is genuine: ``temperror`` when a retry may tell (DNS)."""

    status: Literal["pass", "fail", "temperror"]
    why: str
    # The enhanced status code of the refusal (RFC 3463 / RFC 7372).
    code: str = "5.7.1"

    @property
    def ok(self) -> bool:
        return self.status == "pass"


def relay_ids_for(relays: Iterable[TrustedRelay], peer: str) -> tuple[str, ...]:
    """The authserv-ids of the RELAYS whose networks hold PEER (the connection's address)."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return ()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return tuple(r.authserv_id for r in relays if any(address in n for n in r.networks))


def _prop(result: Any, ptype: str, name: str) -> str:
    for prop in result.properties:
        if prop.type.lower() == ptype and prop.name.lower() == name:
            return str(prop.value or "")
    return ""


def _first_token(value: str) -> str:
    return value.split(";", 1)[0].strip().split(" ", 1)[0].lower()


def relay_verdict(
    headers: list[str], from_addr: str | None, authserv_ids: Iterable[str]
) -> Verdict:
    """The verdict of the topmost Authentication-Results header (HEADERS in mail order)
    whose authserv-id is one of AUTHSERV_IDS, on FROM_ADDR.

    The relay's DMARC result decides when it has one (a ``dmarc=fail`` beside a
    ``dkim=pass`` is a fail; a ``dmarc=pass`` must name the From's domain in
    ``header.from``); without one (or with ``dmarc=none``: no policy), an SPF or DKIM pass
    for a domain aligned with the From's."""
    if not from_addr or "@" not in from_addr:
        return Verdict("fail", "the mail has no usable From address")
    trusted = {i.lower() for i in authserv_ids}
    header = _relay_header(headers, trusted)
    if isinstance(header, Verdict):
        return header
    from_domain = domain_of(from_addr)
    relay = str(header.authserv_id).lower()
    results = list(header.results)
    dmarc = [r for r in results if str(r.method).lower() == "dmarc"]
    decided = [r for r in dmarc if str(r.result).lower() != "none"]
    if decided:
        return _dmarc_verdict(decided, from_domain, relay)
    for r in results:
        verdict = _aligned_pass(r, from_domain, relay)
        if verdict is not None:
            return verdict
    return Verdict(
        "fail", f"no DMARC result and no SPF or DKIM pass aligned with {from_domain} at {relay}"
    )


def _relay_header(headers: list[str], trusted: set[str]) -> Any:
    """The topmost parsed header of a TRUSTED relay, or the fail Verdict when there is none
    (or when the relay's own header cannot be read)."""
    for value in headers:
        value = " ".join(value.split())
        try:
            parsed = AuthenticationResultsHeader.parse_value(value)
        except AuthResError:
            if _first_token(value) in trusted:
                # The relay's own header, unreadable: nothing below it may stand in for it.
                return Verdict(
                    "fail", f"the Authentication-Results of {_first_token(value)} cannot be read"
                )
            continue
        if str(parsed.authserv_id).lower() in trusted:
            return parsed
    return Verdict(
        "fail",
        f"no Authentication-Results from a trusted relay ({', '.join(sorted(trusted))})",
    )


def _dmarc_verdict(decided: list[Any], from_domain: str, relay: str) -> Verdict:
    """The verdict of the relay's DMARC results other than ``none``: every one a pass for
    the From's domain."""
    for r in decided:
        result = str(r.result).lower()
        if result != "pass":
            return Verdict("fail", f"DMARC {result} for {from_domain} at {relay}")
        named = domain_of(_prop(r, "header", "from"))
        if not named:
            return Verdict("fail", f"the DMARC pass at {relay} names no header.from")
        if named != from_domain:
            return Verdict("fail", f"the DMARC pass at {relay} is for {named}, not {from_domain}")
    return Verdict("pass", f"DMARC pass for {from_domain} at {relay}")


def _aligned_pass(result: Any, from_domain: str, relay: str) -> Verdict | None:
    """A pass Verdict when RESULT is a DKIM or SPF pass aligned with the From's domain."""
    if str(result.result).lower() != "pass":
        return None
    method = str(result.method).lower()
    if method == "dkim":
        signer = _prop(result, "header", "d") or _prop(result, "header", "i")
        if aligned(signer, from_domain):
            return Verdict("pass", f"aligned DKIM pass ({domain_of(signer)}) at {relay}")
    elif method == "spf":
        identity = _prop(result, "smtp", "mailfrom") or _prop(result, "smtp", "helo")
        if aligned(identity, from_domain):
            return Verdict("pass", f"aligned SPF pass ({domain_of(identity)}) at {relay}")
    return None
