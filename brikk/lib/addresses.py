"""Which network addresses a server-side request (a webhook push) may reach: no server-side request forgery.

Refused: loopback, private, link-local, multicast, reserved, unspecified, shared (100.64/10), benchmarking and
documentation ranges, IPv4-mapped and -translated IPv6 forms of any of them (checked as the IPv4 address they
carry), 6to4 and Teredo relays of them — unless an operator opened a range with BRIKK_WEBHOOK_ALLOWED_NETWORKS
(the tests' 127.0.0.1 receiver). The check applies to the address actually connected to, after resolution
(coordination/push.py connects to the checked address itself), so DNS rebinding cannot slip past it.
"""

import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges `is_global` does not already exclude in every Python we run on, named for the reader.
EXTRA_BLOCKED = [
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "192.0.0.0/24",
        "192.0.2.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "64:ff9b::/96",  # NAT64: checked through its IPv4 address below
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
]


class AddressRefused(ValueError):
    """The URL's host is, or resolves to, an address a push may not reach."""

    def __init__(self, message: str, address: str | None = None):
        super().__init__(message)
        self.address = address


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """BRIKK_WEBHOOK_ALLOWED_NETWORKS: CIDR ranges (``127.0.0.1/32``, ``10.1.0.0/16``, ``fd00::/8``)."""
    return [ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip()]


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    embedded = _embedded_ipv4(address)
    if embedded is not None and not is_public(embedded):
        return False
    if any(address in network for network in EXTRA_BLOCKED if network.version == address.version):
        return embedded is not None and address in ipaddress.ip_network("64:ff9b::/96")
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_link_local)


def allowed(address: IPAddress, allowed_networks: Iterable[IPNetwork]) -> bool:
    address = ipaddress.ip_address(address)
    if any(address.version == network.version and address in network for network in allowed_networks):
        return True
    return is_public(address)


def check_address(value: str, allowed_networks: Iterable[IPNetwork]) -> IPAddress:
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])  # no IPv6 zone: link-local anyway
    except ValueError:
        raise AddressRefused(f"{value!r} is not an IP address.", value) from None
    if not allowed(address, allowed_networks):
        raise AddressRefused(f"{address} is not a public address.", str(address))
    return address


def resolve(host: str, port: int, allowed_networks: Iterable[IPNetwork]) -> list[IPAddress]:
    """Every address ``host`` resolves to, each allowed, or AddressRefused (one refused address refuses the
    host: a name that can point inside is refused, whichever record a resolver would pick)."""
    networks = list(allowed_networks)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise AddressRefused(f"{host} does not resolve ({error.__class__.__name__}).") from None
    addresses = []
    for info in infos:
        address = check_address(info[4][0], networks)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise AddressRefused(f"{host} does not resolve.")
    return addresses
