"""Which network addresses the server may fetch from (SPEC 4, "Safety rules for every fetch").

Loopback, private, link-local, multicast, reserved and other non-public addresses are
refused unless `engine.allow_private_networks` is set. IPv6 forms that wrap an IPv4 address
(IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) are unwrapped first, because Python's
`is_global` calls some of them global. Decimal, octal, hex and short IPv4 spellings need no
special case: the resolver turns them into the address that is then checked.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class BlockedAddressError(Exception):
    """A host that resolves to an address the server must not fetch from."""


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address wraps, if it is one of the wrapping forms."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    return None


def classify(ip: IPAddress) -> str | None:
    """None for a public address, else a short reason such as "loopback" or "private"."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "link-local"
        wrapped = embedded_ipv4(ip)
        if wrapped is not None:
            return classify(wrapped)
        if ip in _NAT64_LOCAL:
            return "reserved"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("shared address space", isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED),
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("non-public", not ip.is_global),
    )
    for reason, applies in checks:
        if applies:
            return reason
    return None


def resolve_checked(
    host: str, port: int, *, allow_private: bool, allowlist: tuple[Network, ...] = ()
) -> list[tuple[int, tuple]]:
    """(family, sockaddr) pairs for `host`, every one of them allowed; raises
    BlockedAddressError if any is not (a mixed answer may be a rebinding trick) and
    socket.gaierror when the name does not resolve. Addresses in `allowlist` pass."""
    answers = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    checked = []
    for family, _type, _proto, _name, sockaddr in answers:
        if not allow_private:
            ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            if isinstance(ip, ipaddress.IPv6Address) and (len(sockaddr) > 3 and sockaddr[3] or "%" in sockaddr[0]):
                reason = "link-local"
            elif any(ip.version == network.version and ip in network for network in allowlist):
                reason = None
            else:
                reason = classify(ip)
            if reason:
                raise BlockedAddressError(
                    f"{host} resolves to {ip}, a {reason} address; fetching from private networks is "
                    "disabled (engine.allow_private_networks)"
                )
        checked.append((family, sockaddr))
    return checked
