"""The market-volatility drill at a reduced scale on a demo system of its own: the crash
trips the venue's breaker and the volatility rule, the market halts at once and reopens
through a phased resume, and nothing acknowledged is lost."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from haltguard.drill.runner import run_scenario
from haltguard.drill.scenario import DrillResult, Scale
from haltguard.drill.scenarios.market_volatility import SCENARIO
from haltguard.drill.surface import database
from haltguard.incidents import service as incidents
from haltguard.incidents.models import TimelineKind
from haltguard.venue.types import MarketState

REDUCED = Scale(orders=40, burst=20, timeout_s=15.0)


@dataclass(frozen=True)
class Outcome:
    result: DrillResult
    lines: list[str]
    category: str
    status: str
    kinds: list[TimelineKind]
    states: dict[str, MarketState]


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory, make_drill_system: Any) -> Iterator[Outcome]:
    base = tmp_path_factory.mktemp("market-volatility")
    lines: list[str] = []
    with make_drill_system(base / "data", lines, venue_process=False) as system:
        result = run_scenario(system, SCENARIO, scale=REDUCED, progress=lines.append,
                              report_dir=base / "reports")
        assert result.incident_id is not None, result.failures()
        with database(system) as session:
            incident = incidents.get(session, result.incident_id)
            kinds = [entry.kind for entry in incidents.timeline(session, incident.id)]
            category, status = incident.category.value, incident.status.value
        yield Outcome(result, lines, category, status, kinds,
                      system.venue_control.market_states())


def test_the_crash_trips_the_breaker_and_opens_a_volatility_incident(drill: Outcome) -> None:
    checks = {check.name: check for check in drill.result.checks}
    assert checks["circuit breaker tripped"].passed, checks["circuit breaker tripped"].seen
    assert drill.category == "market_volatility"
    assert TimelineKind.MARKET_ACTION in drill.kinds


def test_the_market_halts_within_the_target_and_reopens_through_phases(drill: Outcome) -> None:
    measured = drill.result.measurements
    assert measured.time_to_halt_s is not None and measured.time_to_halt_s <= 5.0
    assert measured.recovery_time_s is not None
    assert TimelineKind.RESUME in drill.kinds
    assert drill.states["BTC-JPY"] is MarketState.OPEN
    assert drill.status == "resolved"


def test_no_acknowledged_order_is_lost_and_the_ledger_holds(drill: Outcome) -> None:
    measured = drill.result.measurements
    assert int(measured.extra["acknowledged_orders"]) >= REDUCED.orders
    assert measured.acknowledged_orders_lost == 0
    assert measured.ledger_invariant_ok


def test_the_drill_passes_and_writes_its_reports(drill: Outcome) -> None:
    assert drill.result.passed, drill.result.failures()
    assert any(path.endswith("-postmortem.md") for path in drill.result.report_paths)
    assert any("phased resume" in note for note in drill.result.notes)
