"""Number-in-address intake: ``+33612345678@sms.example.com`` names the recipient."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable

from hub.errors import InvalidInput

# What mail systems allow in a local part and people write for a number: an optional
# "+", digits, and dots or dashes (spaces, when quoted) between digit groups. "33…"
# (international without "+") and "06…" (national) are both returned as written: only
# the caller knows the account's default country and can tell them apart.
_NUMBER_LOCAL_PART = re.compile(r"\+?\d(?:[\d. \-]*\d)?")


def _address_only(value: str) -> str:
    value = value.strip()
    if "<" in value:
        return email.utils.parseaddr(value)[1] or value
    return value


def numbers_from_addresses(
    addresses: Iterable[str], intake_domains: Iterable[str]
) -> tuple[list[str], list[str]]:
    """Split addresses into (number tokens from intake-domain local parts, other addresses).

    An address counts as a number when its domain is one of ``intake_domains``
    (case-insensitive) and its local part is a phone number: ``+33612345678``,
    ``0033612345678``, ``33612345678``, ``0612345678``, ``06.12.34.56.78``,
    ``06-12-34-56-78``. Every other address, including a non-number on an intake domain
    (the intake address itself), is returned as is. Duplicates are removed, order kept.
    """
    domains = {domain.strip().lower().rstrip(".") for domain in intake_domains}
    numbers: list[str] = []
    others: list[str] = []
    for raw in addresses:
        address = _address_only(raw)
        local, at, domain = address.rpartition("@")
        local = local.strip('"').strip()
        if at and domain.lower().rstrip(".") in domains and _NUMBER_LOCAL_PART.fullmatch(local):
            if local not in numbers:
                numbers.append(local)
        elif address and address not in others:
            others.append(address)
    return numbers, others


def split_address(address: str) -> tuple[str, str]:
    """('local', 'domain') of an address, lower-cased; raises InvalidInput if it has no @."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not domain or "." not in domain:
        raise InvalidInput(f"{address!r} is not an e-mail address (expected name@domain)")
    return local.lower(), domain.lower().rstrip(".")
