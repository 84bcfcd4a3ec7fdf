"""The one parser of network lists and the one rule for "the same client address"."""

from __future__ import annotations

import pytest

from haltguard.common.network import (
    address_allowed,
    parse_networks,
    same_network,
    written_address,
)


def test_a_bad_network_entry_is_named_with_the_setting_it_came_from() -> None:
    with pytest.raises(ValueError, match="HALTGUARD_X: 'office' is not a network"):
        parse_networks("10.0.0.0/8, office", "HALTGUARD_X")


def test_a_network_list_skips_blanks_and_keeps_hosts_bits_loosely() -> None:
    networks = parse_networks(" 10.1.2.3/8, ,2001:db8::/32 ")
    assert [str(n) for n in networks] == ["10.0.0.0/8", "2001:db8::/32"]


def test_an_ipv4_mapped_address_matches_its_ipv4_network() -> None:
    networks = parse_networks("10.0.0.0/8")
    assert address_allowed("::ffff:10.1.2.3", networks)
    assert not address_allowed("testclient", networks)
    assert not address_allowed(None, networks)
    assert address_allowed(None, ())


def test_ipv6_addresses_of_one_slash_64_are_the_same_client_and_ipv4_only_if_equal() -> None:
    assert same_network("2001:db8:1:2::1", "2001:db8:1:2:ffff::9")
    assert not same_network("2001:db8:1:2::1", "2001:db8:1:3::1")
    assert same_network("::ffff:203.0.113.7", "203.0.113.7")
    assert not same_network("203.0.113.7", "203.0.113.8")
    assert same_network("unix-socket", "unix-socket") and not same_network("", "")


def test_an_address_has_one_written_form() -> None:
    assert written_address("2001:DB8::07") == "2001:db8::7"
    assert written_address("not-an-address") is None
