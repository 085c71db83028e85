"""The hub checks a sender itself: DKIM (dkimpy), SPF (pyspf) and DMARC.

For mail that did not come through a trusted relay. The DMARC verdict decides when the
From's domain publishes a policy; otherwise an aligned DKIM or SPF pass does (the same
test, with relaxed alignment). Alignment uses organisational domains from the Public
Suffix List (``hub.mail.intake.alignment``). ``authheaders`` combines the three too, but it
reads DNS through the system resolver (SPF), folds timeouts into "fail" or "none" and
brings a 2019 suffix list: here every lookup goes through the configured resolver and a
lookup that got no answer makes the verdict ``temperror`` (a 451), never a fail.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dkim
import dns.exception
import dns.resolver
import spf

from hub.errors import DnsTrouble
from hub.mail.intake.alignment import aligned, domain_of, org_domain
from hub.mail.intake.resolver import txt_records
from hub.mail.intake.sender_auth import Verdict

log = logging.getLogger("smshub.intake.auth")

# Signatures checked per mail: each costs a DNS lookup and an RSA verification.
MAX_SIGNATURES = 5
# Seconds the whole SPF evaluation may take (RFC 7208 §4.6.4 suggests 20).
SPF_TIME_LIMIT = 20.0
_CODE = "5.7.26"  # RFC 7372: multiple authentication checks failed

# pyspf reads DNS through its module-level DNSLookup hook (the way it switches between DNS
# libraries); the hook below sends its lookups to the resolver of the check under way.
_RESOLVER: contextvars.ContextVar[dns.resolver.Resolver | None] = contextvars.ContextVar(
    "spf_resolver", default=None
)


def _spf_lookup(
    name: str, qtype: str, strict: Any = True, timeout: float = 30
) -> list[tuple[tuple[str, str], Any]]:
    resolver = _RESOLVER.get() or dns.resolver.get_default_resolver()
    found: list[tuple[tuple[str, str], Any]] = []
    try:
        # pyspf passes its whole time budget as TIMEOUT: one lookup gets [dns] timeout.
        lifetime = min(timeout, resolver.lifetime)
        answers = resolver.resolve(name, qtype, lifetime=lifetime, search=False)
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
        return found
    except dns.exception.DNSException as exc:
        raise spf.TempError(f"DNS {exc}") from None
    for rdata in answers:
        if qtype in ("A", "AAAA"):
            found.append(((name, qtype), rdata.address))
        elif qtype == "MX":
            found.append(((name, qtype), (rdata.preference, rdata.exchange)))
        elif qtype == "PTR":
            found.append(((name, qtype), rdata.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            found.append(((name, qtype), rdata.strings))
    return found


spf.DNSLookup = _spf_lookup


@contextmanager
def _resolving(resolver: dns.resolver.Resolver) -> Iterator[None]:
    token = _RESOLVER.set(resolver)
    try:
        yield
    finally:
        _RESOLVER.reset(token)


@dataclass
class _Dkim:
    domain: str
    result: str  # pass, fail, temperror
    why: str = ""


def _check_dkim(raw: bytes, resolver: dns.resolver.Resolver) -> list[_Dkim]:
    def txt(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        records = txt_records(resolver, text.rstrip("."))  # raises DnsTrouble
        return records[0].encode() if records else None

    found: list[_Dkim] = []
    try:
        headers, _ = dkim.rfc822_parse(raw)
        count = sum(name.lower() == b"dkim-signature" for name, _ in headers)
    except Exception as exc:  # a mail dkimpy cannot even split into headers and body
        return [_Dkim("", "fail", f"the mail cannot be read for DKIM ({exc})")]
    for index in range(min(count, MAX_SIGNATURES)):
        checker = dkim.DKIM(raw, timeout=resolver.lifetime)
        try:
            ok = checker.verify(idx=index, dnsfunc=txt)
            result, why = ("pass", "") if ok else ("fail", "DKIM signature did not verify")
        except DnsTrouble as exc:
            result, why = "temperror", str(exc)
        except dkim.ValidationError as exc:
            changed = " (the body was changed)" if "body hash" in str(exc) else ""
            result, why = "fail", f"DKIM signature did not verify{changed}"
        except dkim.DKIMException as exc:
            result, why = "fail", f"DKIM signature unusable ({str(exc)[:100]})"
        fields = getattr(checker, "signature_fields", None) or {}
        signer = fields.get(b"d", b"").decode("ascii", "replace").lower()
        found.append(_Dkim(signer, result, why))
    return found


@dataclass
class _Dmarc:
    domain: str  # where the record was found
    adkim_strict: bool
    aspf_strict: bool


def _dmarc_record(resolver: dns.resolver.Resolver, from_domain: str) -> _Dmarc | None:
    """The DMARC policy for FROM_DOMAIN (its own, else its organisational domain's);
    raises DnsTrouble."""
    candidates = [from_domain]
    org = org_domain(from_domain)
    if org and org != from_domain:
        candidates.append(org)
    for domain in candidates:
        records = [
            r for r in txt_records(resolver, f"_dmarc.{domain}") if r.lower().startswith("v=dmarc1")
        ]
        if len(records) == 1:
            tags = {}
            for piece in records[0].split(";"):
                key, _, value = piece.partition("=")
                tags[key.strip().lower()] = value.strip().lower()
            return _Dmarc(domain, tags.get("adkim") == "s", tags.get("aspf") == "s")
    return None


def verify_sender(
    raw: bytes,
    from_addr: str,
    resolver: dns.resolver.Resolver,
    *,
    peer: str = "",
    helo: str = "",
    mail_from: str = "",
) -> Verdict:
    """Check FROM_ADDR of the mail RAW ourselves. PEER is the connecting address, HELO and
    MAIL_FROM what it said (SPF); without a PEER (a mailbox), SPF cannot be checked."""
    from_domain = domain_of(from_addr)
    trouble: list[str] = []
    with _resolving(resolver):
        signatures = _check_dkim(raw, resolver)
        spf_result, spf_domain = "", ""
        if peer:
            spf_domain = domain_of(mail_from) if "@" in mail_from else domain_of(helo)
            try:
                spf_result, _ = spf.check2(
                    i=peer,
                    s=mail_from or f"postmaster@{helo}",
                    h=helo or "unknown",
                    timeout=resolver.lifetime,
                    querytime=SPF_TIME_LIMIT,
                )
            except Exception as exc:  # pyspf raises on arguments it cannot use
                spf_result = "permerror"
                log.info("SPF check of %s from %s failed: %s", mail_from, peer, exc)
            spf_result = str(spf_result).lower()
        try:
            policy = _dmarc_record(resolver, from_domain)
        except DnsTrouble as exc:
            policy = None
            trouble.append(str(exc))
    trouble += [s.why for s in signatures if s.result == "temperror"]
    if spf_result == "temperror":
        trouble.append(f"the SPF lookup for {spf_domain} failed")

    def passes(strict_dkim: bool, strict_spf: bool) -> str | None:
        for s in signatures:
            if s.result == "pass" and aligned(s.domain, from_domain, strict_dkim):
                return f"aligned DKIM signature of {s.domain}"
        if spf_result == "pass" and aligned(spf_domain, from_domain, strict_spf):
            return f"aligned SPF pass for {spf_domain}"
        return None

    if policy is None and trouble:
        # Without the policy only an exact match aligns under every policy.
        how = passes(True, True)
        if how:
            return Verdict("pass", f"{how} for {from_domain}")
        return Verdict("temperror", "; ".join(trouble))
    how = passes(policy.adkim_strict, policy.aspf_strict) if policy else passes(False, False)
    if how:
        kind = "DMARC pass" if policy else "no DMARC policy"
        return Verdict("pass", f"{kind} for {from_domain}: {how}")
    if trouble:
        return Verdict("temperror", "; ".join(trouble))
    details = _failures(signatures, spf_result, spf_domain, from_domain, bool(peer))
    if policy is not None:
        return Verdict("fail", f"DMARC policy of {policy.domain} failed: {details}", _CODE)
    return Verdict(
        "fail",
        f"{from_domain} publishes no DMARC policy and nothing aligned passed: {details}",
        _CODE,
    )


def _failures(
    signatures: list[_Dkim], spf_result: str, spf_domain: str, from_domain: str, checked: bool
) -> str:
    parts: list[str] = []
    if not signatures:
        parts.append("no DKIM signature")
    for s in signatures:
        if s.result == "pass":
            parts.append(f"DKIM signature of {s.domain} is not aligned with {from_domain}")
        else:
            parts.append(s.why)
    if not checked:
        parts.append("SPF not checked (no connection to check it against)")
    elif spf_result == "pass":
        parts.append(f"SPF pass for {spf_domain or 'nothing'} is not aligned with {from_domain}")
    else:
        parts.append(f"SPF {spf_result or 'none'}")
    return ", ".join(parts)
