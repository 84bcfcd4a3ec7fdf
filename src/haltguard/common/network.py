"""Network addresses: parsing allow-lists, matching an address against them, and telling
whether two addresses belong to the same client (IPv4 exactly, IPv6 by its /64)."""

from __future__ import annotations

import ipaddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr) for cidr in (
        "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7",
    )
)
"""Loopback and the private ranges, where an exchange's own gateway and monitoring live."""


def parse_networks(text: str, source: str = "network list") -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 2001:db8::/32"`` as networks; a bad entry is an error naming it and
    ``source`` (the setting it came from)."""
    networks: list[IPNetwork] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{source}: {item!r} is not a network; write CIDRs such as 10.0.0.0/8, "
                "separated by commas"
            ) from None
    return tuple(networks)


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address (an IPv4-mapped IPv6 address as its IPv4 one), or None if
    it is not one (a Unix socket, a test client's name)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def written_address(text: str) -> str | None:
    """``text`` as an IP address in its one written form (``2001:DB8::07`` is
    ``2001:db8::7``), or None if it is not an IP address."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def address_allowed(host: str | None, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether a client address is within ``networks``; no list means everyone is.

    A host that is not an IP address (a Unix socket, a test client) is outside any list.
    """
    if not networks:
        return True
    if host is None:
        return False
    kept, answers = _ANSWERS.get(id(networks), (None, None))
    if kept is not networks or answers is None:
        if len(_ANSWERS) >= _ANSWERS_LISTS_MAX:
            _ANSWERS.clear()
        answers = {}
        _ANSWERS[id(networks)] = (networks, answers)
    allowed = answers.get(host)
    if allowed is None:
        if len(answers) >= _ANSWERS_PER_LIST_MAX:
            answers.clear()
        address = parse_address(host)
        allowed = answers[host] = (address is not None
                                   and any(address in network for network in networks))
    return allowed


# Remembered answers per allow-list (kept alive with it, so its id is not reused) and
# address: the flood limiter asks for every request, and parsing an address is not cheap.
_ANSWERS: dict[int, tuple[tuple[IPNetwork, ...], dict[str, bool]]] = {}
_ANSWERS_LISTS_MAX = 64
_ANSWERS_PER_LIST_MAX = 4_096


def same_network(known: str, address: str) -> bool:
    """Whether ``address`` counts as the known address ``known``: IPv4 exactly, IPv6 by the
    /64 (clients change the rest on their own), anything else only if identical."""
    if not known or not address:
        return False
    first, second = parse_address(known), parse_address(address)
    if first is None or second is None:
        return known == address
    if isinstance(first, ipaddress.IPv6Address) and isinstance(second, ipaddress.IPv6Address):
        return ipaddress.ip_network(f"{first}/64", strict=False) == ipaddress.ip_network(
            f"{second}/64", strict=False
        )
    return first == second
