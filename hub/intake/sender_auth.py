"""Is the From of a relayed mail genuine? Read the verdicts of a trusted relay (RFC 8601).

The hub does not repeat SPF and DKIM itself: the organisation's own mail server already
checked them and wrote an Authentication-Results header. Only headers whose authserv-id is
configured in ``smtp.trusted_relays`` count; anyone can forge the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PROP = re.compile(r"([a-z]+)\.([a-z0-9_-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)", re.I)
_COMMENT = re.compile(r"\([^()]*\)")


@dataclass(frozen=True)
class Verdict:
    method: str  # spf, dkim, dmarc
    result: str  # pass, fail, ...
    props: dict[str, str] = field(default_factory=dict)


def parse_authentication_results(value: str) -> tuple[str, list[Verdict]]:
    """(authserv-id, verdicts) of one Authentication-Results header value."""
    text = value
    while _COMMENT.search(text):
        text = _COMMENT.sub(" ", text)
    pieces = [p.strip() for p in text.split(";")]
    authserv = pieces[0].split()[0].lower() if pieces and pieces[0] else ""
    verdicts = []
    for piece in pieces[1:]:
        head = re.match(r"\s*([a-z0-9_-]+)\s*=\s*([a-z]+)", piece, re.I)
        if not head:
            continue
        props = {
            f"{m.group(1).lower()}.{m.group(2).lower()}": m.group(3).strip('"').lower()
            for m in _PROP.finditer(piece[head.end() :])
        }
        verdicts.append(Verdict(head.group(1).lower(), head.group(2).lower(), props))
    return authserv, verdicts


def _aligned(domain: str, from_domain: str) -> bool:
    # Relaxed alignment: the same domain, or one a subdomain of the other.
    domain = domain.lower().rpartition("@")[2]
    return (
        domain == from_domain
        or from_domain.endswith("." + domain)
        or domain.endswith("." + from_domain)
    )


def from_is_authenticated(
    headers: list[str], from_addr: str | None, trusted_relays: list[str]
) -> tuple[bool, str]:
    """(ok, why): does a trusted relay vouch for FROM_ADDR's domain (DMARC, or aligned
    SPF or DKIM pass)?"""
    if not from_addr or "@" not in from_addr:
        return False, "the mail has no usable From address"
    if not trusted_relays:
        return False, "no trusted relay is configured (smtp.trusted_relays)"
    trusted = {r.lower() for r in trusted_relays}
    from_domain = from_addr.rpartition("@")[2].lower()
    seen_trusted = False
    for value in headers:
        authserv, verdicts = parse_authentication_results(value)
        if authserv not in trusted:
            continue
        seen_trusted = True
        for v in verdicts:
            if v.result != "pass":
                continue
            if v.method == "dmarc" and _aligned(
                v.props.get("header.from", from_domain), from_domain
            ):
                return True, f"DMARC pass for {from_domain} at {authserv}"
            if v.method == "dkim" and _aligned(v.props.get("header.d", ""), from_domain):
                return True, f"aligned DKIM pass at {authserv}"
            if v.method == "spf" and _aligned(
                v.props.get("smtp.mailfrom", v.props.get("smtp.helo", "")), from_domain
            ):
                return True, f"aligned SPF pass at {authserv}"
    if not seen_trusted:
        return False, "no Authentication-Results from a trusted relay"
    return False, f"no aligned SPF, DKIM or DMARC pass for {from_domain}"
