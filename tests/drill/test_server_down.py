"""The server-down drill at a reduced scale: the venue child is killed with SIGKILL under
order load and the supervisor brings it back from its journal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haltguard.drill.runner import run_scenario
from haltguard.drill.scenario import DrillResult, Scale
from haltguard.drill.scenarios.server_down import SCENARIO
from haltguard.drill.surface import database
from haltguard.incidents import service as incidents

REDUCED = Scale(orders=200, burst=20, timeout_s=20.0)


@pytest.fixture(scope="module")
def drill(
    tmp_path_factory: pytest.TempPathFactory, make_drill_system: Any,
) -> Iterator[tuple[DrillResult, list[str], str]]:
    base = tmp_path_factory.mktemp("server-down")
    lines: list[str] = []
    with make_drill_system(base / "data", lines, venue_process=True) as system:
        result = run_scenario(system, SCENARIO, scale=REDUCED, progress=lines.append,
                              report_dir=base / "reports")
        status = ""
        if result.incident_id is not None:
            with database(system) as session:
                status = incidents.get(session, result.incident_id).status.value
        yield result, lines, status


def test_killed_venue_loses_no_acknowledged_order(drill: tuple[DrillResult, list[str], str]
                                                  ) -> None:
    result, lines, _ = drill
    extra = result.measurements.extra
    assert extra.get("acknowledged orders") == "200", lines
    assert int(extra["restarts"]) >= 1
    assert result.measurements.acknowledged_orders_lost == 0
    assert result.measurements.ledger_invariant_ok


def test_killed_venue_comes_back_and_trades_again_within_the_target(
    drill: tuple[DrillResult, list[str], str],
) -> None:
    result, _, _ = drill
    recovery = result.measurements.recovery_time_s
    assert recovery is not None and 0 < recovery < 60
    restarted = next(c for c in result.checks if c.name == "venue restarted by the supervisor")
    assert restarted.passed, restarted.seen
    halted = next(c for c in result.checks
                  if c.name == "markets halted after the unplanned restart")
    assert halted.passed, halted.seen
    halt = result.measurements.time_to_halt_s
    assert halt is not None and halt < 30


def test_server_down_incident_is_told_in_both_languages_and_resolved_with_reports(
    drill: tuple[DrillResult, list[str], str],
) -> None:
    result, _, status = drill
    assert result.incident_id is not None
    assert status == "resolved"
    update = next(c for c in result.checks if c.name == "public update in Japanese and English")
    assert update.passed, update.seen
    timeline = next(c for c in result.checks if c.name == "incident timeline complete")
    assert timeline.passed, timeline.seen
    names = sorted(Path(path).name for path in result.report_paths)
    assert any(name.endswith("-postmortem.md") for name in names)
    assert any(name.endswith("-regulatory.html") for name in names)
    report = next(Path(p) for p in result.report_paths if Path(p).name.startswith("drill-")
                  and p.endswith(".md"))
    text = report.read_text(encoding="utf-8")
    assert "受付済み注文の消失 / Acknowledged orders lost | 0 件 / 0" in text
    assert f"{result.measurements.recovery_time_s:.2f} s" in text


def test_server_down_drill_passes_every_check(drill: tuple[DrillResult, list[str], str]) -> None:
    result, lines, _ = drill
    assert result.passed, (result.failures(), lines)
    detected = next(c for c in result.checks
                    if c.name == "incident opened from the process-exit signal")
    assert detected.passed, detected.seen
    assert result.measurements.time_to_detect_s is not None
