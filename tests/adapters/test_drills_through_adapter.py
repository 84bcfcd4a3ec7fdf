"""Drills with the venue reached through the HTTP adapter: the system's every brake and
market-state read goes through the adapter file describing our venue's /v1/admin API (the
venue a supervised process, as in production), and the drills pass as they do directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from adapter_support import OURS_FILE

from haltguard.adapters.control import AdapterVenueControl
from haltguard.app.config import load_config
from haltguard.app.drill_system import own_system
from haltguard.app.system import System
from haltguard.drill.runner import run_scenario
from haltguard.drill.scenario import DrillResult, Scale
from haltguard.drill.scenarios.market_volatility import SCENARIO as MARKET_VOLATILITY
from haltguard.drill.scenarios.software_bug import SCENARIO as SOFTWARE_BUG
from haltguard.venue.types import MarketState

ADMIN_TOKEN = "adapter-drill-admin-token-0123456789"
REDUCED = Scale(orders=40, burst=20, timeout_s=20.0)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    data_dir = tmp_path_factory.mktemp("adapter-drills") / "data"
    config = load_config(None, environ={}, overrides={
        "data_dir": str(data_dir), "venue.admin_token": ADMIN_TOKEN, "venue.process": True,
        "drill.enabled": True, "venue.adapter_file": str(OURS_FILE)})
    with own_system(config, lambda _line: None) as running:
        yield running


def _run(system: System, scenario: object, reports: Path) -> DrillResult:
    return run_scenario(system, scenario, scale=REDUCED, progress=lambda _line: None,
                        report_dir=reports)  # type: ignore[arg-type]


def test_the_system_works_the_venue_through_the_adapter(system: System) -> None:
    assert isinstance(system.venue_control, AdapterVenueControl)
    assert system.venue_control.spec.variables["admin_token"] == ADMIN_TOKEN
    assert system.venue_control.market_states()["BTC-JPY"] is MarketState.OPEN


def test_the_market_volatility_drill_passes_through_the_adapter(
    system: System, tmp_path: Path
) -> None:
    result = _run(system, MARKET_VOLATILITY, tmp_path)
    assert result.passed, result.failures()
    assert result.measurements.time_to_halt_s is not None
    assert system.venue_control.market_states()["BTC-JPY"] is MarketState.OPEN


def test_the_software_bug_drill_passes_through_the_adapter(
    system: System, tmp_path: Path
) -> None:
    result = _run(system, SOFTWARE_BUG, tmp_path)
    assert result.passed, result.failures()
