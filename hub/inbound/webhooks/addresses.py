"""Where a webhook may point: an absolute http(s) URL, and for customers a public one
(checked by name and literal address when added, and by the outbound guard, ``hub.outbound``,
at each delivery).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from hub.errors import InvalidInput, OutboundRefused
from hub.outbound import check_url, host_refusal


def validate_url(url: str) -> str:
    """URL if it is an absolute http(s) URL; InvalidInput says what is wrong otherwise."""
    url = url.strip()
    if not url or len(url) > 1000 or any(c.isspace() for c in url):
        raise InvalidInput(f"webhook URL {url!r} must be one http(s) URL of at most 1000 chars")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise InvalidInput(f"webhook URL {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in {"http", "https"}:
        raise InvalidInput(f"webhook URL {url!r} must start with https:// (or http://)")
    if not parts.hostname:
        raise InvalidInput(f"webhook URL {url!r} has no host name")
    if parts.fragment:
        raise InvalidInput(f"webhook URL {url!r} must not have a #fragment")
    return url


def check_public_url(url: str) -> str:
    """URL, validated, if it does not name this machine or a private network by address.

    Customers add webhooks from the console and the API; a URL aimed at the hub's own
    network would let them make the hub call internal services and read the start of their
    answers in the delivery log. This gives the immediate error for names and literal
    addresses; names that resolve to such addresses are refused by the sender at each
    delivery (the same outbound guard, ``hub.outbound``).
    """
    url = validate_url(url)
    reason = host_refusal(urlsplit(url).hostname or "")
    if reason is not None:
        raise InvalidInput(
            f"webhook URL {url!r} points at a private or local address: {reason}; use a "
            "public one (the hub administrator can add others with `smshub webhooks add`)"
        )
    return url


def check_resolves_public(url: str) -> None:
    """Refuse now a URL whose host already resolves to the hub's own network, which every
    delivery would refuse; a name that does not resolve (yet) is accepted. Blocking, and
    brief (the outbound guard's own lookup timeout): run it in a thread."""
    try:
        check_url(url)
    except OutboundRefused as exc:
        raise InvalidInput(
            f"webhook URL {url!r} cannot be used: {exc.reason}; use a public address "
            "(the hub administrator can add others with `smshub webhooks add`)"
        ) from None
