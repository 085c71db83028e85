"""Identifier alignment (DMARC, RFC 7489 §3.1): does a checked domain stand for the From's?

Relaxed alignment compares organisational domains, found with the Public Suffix List
shipped inside the ``publicsuffixlist`` package (never fetched at run time): for
``clinic.example`` the organisational domain is ``clinic.example`` itself, so
``mail.clinic.example`` aligns with it but its parent ``example`` (a public suffix)
does not.
"""

from __future__ import annotations

from functools import cache

from publicsuffixlist import PublicSuffixList


@cache
def _psl() -> PublicSuffixList:
    # Reading the bundled list takes a few tens of milliseconds: once per process.
    return PublicSuffixList()


def domain_of(identity: str) -> str:
    """The domain of an address or a bare domain, lower-cased, without a trailing dot."""
    return identity.strip().strip("<>").rpartition("@")[2].lower().rstrip(".")


def org_domain(domain: str) -> str | None:
    """The organisational (registrable) domain of DOMAIN; None for a public suffix."""
    domain = domain_of(domain)
    if not domain:
        return None
    found: str | None = _psl().privatesuffix(domain)
    return found


def aligned(domain: str, from_domain: str, strict: bool = False) -> bool:
    """True if DOMAIN (a DKIM d=, an SPF identity) aligns with FROM_DOMAIN."""
    domain, from_domain = domain_of(domain), domain_of(from_domain)
    if not domain or not from_domain:
        return False
    if strict:
        return domain == from_domain
    org = org_domain(from_domain)
    return org is not None and org == org_domain(domain)
