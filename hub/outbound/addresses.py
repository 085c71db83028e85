"""Which addresses a customer's URL may reach: the classifier behind the outbound guard.

An address is refused when a connection to it would end up inside the hub's own machine or
network (loopback, private, link-local, CGNAT...) or somewhere no public service lives
(reserved, documentation, multicast). IPv6 forms that carry an IPv4 address (IPv4-mapped,
NAT64, 6to4) are judged by the IPv4 address they reach. The tables are explicit: Python's
``ipaddress.is_global`` differs between versions and calls 2002:7f00:1:: (6to4 of 127.0.0.1)
or fec0::1 (site-local) global.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Address = IPv4Address | IPv6Address

_METADATA = IPv4Address("169.254.169.254")

# First match wins; the text completes "ADDRESS is ..." / "NAME resolves to ADDRESS, ...".
_V4: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/32", "the unspecified address (this machine)"),
        ("0.0.0.0/8", "a 'this network' address (0.0.0.0/8)"),
        ("127.0.0.0/8", "a loopback address (this machine)"),
        ("10.0.0.0/8", "a private address"),
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"),
        ("100.64.0.0/10", "a shared address (carrier-grade NAT, 100.64.0.0/10)"),
        ("169.254.0.0/16", "a link-local address"),
        ("192.0.0.0/24", "an IETF protocol address (192.0.0.0/24)"),
        ("192.0.2.0/24", "a documentation address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay address (reserved)"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)

# IPv6 ranges refused whatever they hold (those carrying IPv4 are handled before).
_V6: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("::/128", "the unspecified address (this machine)"),
        ("::1/128", "a loopback address (this machine)"),
        ("::/96", "an IPv4-compatible address (deprecated)"),
        ("::ffff:0:0:0/96", "an IPv4-translated address (reserved)"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/32", "a Teredo tunnel address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("fc00::/7", "a unique local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local (private) address"),
        ("ff00::/8", "a multicast address"),
    )
)
_MAPPED = IPv6Network("::ffff:0:0/96")
_NAT64 = IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = IPv6Network("2002::/16")
# Global unicast: every public IPv6 address is in it.
_GLOBAL_UNICAST = IPv6Network("2000::/3")


def _v4_reason(ip: IPv4Address) -> str | None:
    for net, why in _V4:
        if ip in net:
            if ip == _METADATA:
                return f"{why} (the cloud metadata service)"
            return why
    return None if ip.is_global else "not a public address"


def _embedded(ip: IPv6Address) -> tuple[str, IPv4Address] | None:
    """(the form, the IPv4 address) when IP carries an IPv4 address a connection reaches."""
    if ip in _MAPPED:
        return "an IPv4-mapped address", IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64:
        return "a NAT64 address", IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return "a 6to4 address", IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
    return None


def _v6_reason(ip: IPv6Address) -> str | None:
    carried = _embedded(ip)
    if carried is not None:
        form, v4 = carried
        inner = _v4_reason(v4)
        return None if inner is None else f"{form} of {v4}, {inner}"
    for net, why in _V6:
        if ip in net:
            return why
    if ip not in _GLOBAL_UNICAST:
        return "a reserved address"
    return None if ip.is_global else "not a public address"


def parse_address(text: str) -> Address | None:
    """TEXT as an IP address (brackets and an IPv6 zone allowed), or None for a name."""
    text = text.strip().removeprefix("[").removesuffix("]")
    try:
        return ip_address(text)
    except ValueError:
        return None


def address_refusal(address: str | Address) -> str | None:
    """Why a customer's URL must not reach ADDRESS ("a loopback address (this machine)"...),
    or None when it is a public address."""
    ip = parse_address(address) if isinstance(address, str) else address
    if ip is None:
        raise ValueError(f"{address!r} is not an IP address")
    if isinstance(ip, IPv6Address):
        return _v6_reason(ip)
    return _v4_reason(ip)


# Names of this machine (RFC 6761 reserves *.localhost for it): refused whatever they resolve to.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def host_refusal(host: str, addresses: Iterable[str] = ()) -> str | None:
    """Why HOST (a URL's host) must not be reached, given what it resolves to (ADDRESSES;
    none needed for an IP literal), or None. ANY refused address refuses the host. The
    reason names what was found: "cal.example resolves to 127.0.0.1, a loopback address
    (this machine)", "10.1.2.3 is a private address"."""
    name = host.strip().removeprefix("[").removesuffix("]")
    literal = parse_address(name)
    if literal is not None:
        why = address_refusal(literal)
        return f"{name} is {why}" if why else None
    for address in addresses:
        why = address_refusal(address)
        if why:
            return f"{host} resolves to {address}, {why}"
    bare = name.rstrip(".").lower()
    if bare in LOCAL_NAMES or bare.endswith(".localhost"):
        return f"{host} names the hub itself"
    return None
