"""Security settings: network allow-list parsing and matching, bounds on the knobs."""

from __future__ import annotations

import re

import pytest

from haltguard.app.config import load_config
from haltguard.common.network import address_allowed, parse_networks
from haltguard.security.config import SecuritySettings


def test_bad_network_setting_names_the_bad_entry() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33' is not a network")):
        parse_networks("10.0.0.0/8,10.0.0.0/33")


def test_networks_come_from_the_environment() -> None:
    settings = load_config(None, environ={"HALTGUARD_OPERATOR_NETWORKS": "10.0.0.0/8"}).security
    assert [str(network) for network in settings.allowed_networks] == ["10.0.0.0/8"]
    assert load_config(None, environ={}).security.allowed_networks == ()


def test_no_allow_list_admits_everyone_and_a_list_admits_only_its_members() -> None:
    networks = parse_networks("10.0.0.0/8")
    assert address_allowed("203.0.113.9", ())
    assert address_allowed("10.9.9.9", networks)
    assert not address_allowed("203.0.113.9", networks)
    assert not address_allowed("testclient", networks), "a non-IP host is outside any list"


def test_lockout_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match=re.escape("lockout_failures_max must be 1..100")):
        SecuritySettings(lockout_failures_max=0)
