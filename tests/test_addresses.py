"""Which addresses may be fetched: every private spelling is refused before any connection."""

from __future__ import annotations

import ipaddress

import pytest

from engine.addresses import BlockedAddressError, classify, resolve_checked


@pytest.mark.parametrize(
    "address, reason",
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared address space"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "private"),
        ("240.0.0.1", "private"),
        ("192.0.2.1", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::127.0.0.1", "loopback"),
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("64:ff9b:1::1", "reserved"),
        ("2002:7f00:1::", "loopback"),
        ("2002:a9fe:a9fe::", "link-local"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
    ],
)
def test_addresses_are_classified_after_unwrapping_ipv4(address, reason):
    assert classify(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "2130706433", "0177.0.0.1", "0x7f000001", "0x7f.1", "127.1", "::1", "[::1]",
             "169.254.169.254", "0", "::ffff:127.0.0.1"],
)
def test_every_spelling_of_a_private_host_is_refused(host):
    with pytest.raises(BlockedAddressError) as caught:
        resolve_checked(host, 80, allow_private=False)
    assert "engine.allow_private_networks" in str(caught.value)
    assert resolve_checked(host, 80, allow_private=True)


def test_an_allowlisted_network_passes_and_others_stay_blocked():
    allowlist = (ipaddress.ip_network("127.0.0.1/32"),)
    assert resolve_checked("127.0.0.1", 80, allow_private=False, allowlist=allowlist)
    with pytest.raises(BlockedAddressError):
        resolve_checked("127.0.0.2", 80, allow_private=False, allowlist=allowlist)
