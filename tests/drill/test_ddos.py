"""The ddos drill at a reduced scale: two loopback addresses standing for the internet
flood the venue API; each is rate limited with Retry-After, then blocked, the block opens a
ddos incident explained by the rule and the limiter's values, the status page and a
legitimate customer keep being answered, and the exempt networks are put back after."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from haltguard.common.network import PRIVATE_NETWORKS
from haltguard.drill.runner import run_scenario
from haltguard.drill.scenario import DrillResult, Scale
from haltguard.drill.scenarios.ddos import SCENARIO, without_attackers
from haltguard.drill.surface import database
from haltguard.incidents import service as incidents

REDUCED = Scale(orders=20, burst=20, timeout_s=15.0)


@dataclass(frozen=True)
class Outcome:
    result: DrillResult
    category: str
    exempt_after: tuple[Any, ...]
    blocks_after: int


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory, make_drill_system: Any) -> Iterator[Outcome]:
    base = tmp_path_factory.mktemp("ddos")
    lines: list[str] = []
    with make_drill_system(base / "data", lines, venue_process=False) as system:
        result = run_scenario(system, SCENARIO, scale=REDUCED, progress=lines.append,
                              report_dir=None)
        assert result.incident_id is not None, result.failures()
        with database(system) as session:
            category = incidents.get(session, result.incident_id).category.value
        guard = system.load_guard
        assert guard is not None and guard.flood is not None
        yield Outcome(result, category, guard.flood.settings.exempt_networks,
                      len(guard.flood.limiter.blocks))


def test_each_flooding_address_is_rate_limited_then_blocked(drill: Outcome) -> None:
    checks = {check.name: check for check in drill.result.checks}
    assert checks["flood rate limited with Retry-After"].passed
    assert checks["every attacker blocked"].passed, checks["every attacker blocked"].seen
    assert "requests over the rate limit" in checks["every attacker blocked"].seen
    assert int(drill.result.measurements.extra["refused_while_blocked"]) > 0


def test_the_block_opens_a_ddos_incident_explained_by_the_rule(drill: Outcome) -> None:
    checks = {check.name: check for check in drill.result.checks}
    assert drill.category == "ddos"
    assert checks["block explained in the timeline"].passed
    assert drill.result.measurements.time_to_detect_s is not None


def test_the_status_page_and_a_customer_are_served_during_the_flood(drill: Outcome) -> None:
    extra = drill.result.measurements.extra
    assert int(extra["status_page_requests"]) > 0
    assert float(extra["status_page_p99_ms"]) <= 1_000.0
    checks = {check.name: check for check in drill.result.checks}
    assert checks["a legitimate customer gets through"].passed


def test_the_exempt_networks_are_restored_and_the_blocks_lifted(drill: Outcome) -> None:
    assert drill.exempt_after == PRIVATE_NETWORKS
    assert drill.blocks_after == 0
    assert drill.result.passed, drill.result.failures()


def test_the_attacker_network_is_carved_out_of_loopback_only() -> None:
    carved = without_attackers(PRIVATE_NETWORKS)
    inside = [n for n in carved if ipaddress.ip_address("127.0.0.65") in n]
    assert inside == []
    assert any(ipaddress.ip_address("127.0.0.1") in n for n in carved)
    assert any(ipaddress.ip_address("10.1.2.3") in n for n in carved)
