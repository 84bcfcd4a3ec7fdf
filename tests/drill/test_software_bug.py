"""The software-bug drill at a reduced scale: an armed fault makes the engine raise on one
order; the venue halts that market, quarantines the command and keeps running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haltguard.drill.runner import run_scenario
from haltguard.drill.scenario import DrillResult, Scale
from haltguard.drill.scenarios.software_bug import SCENARIO
from haltguard.drill.surface import database
from haltguard.incidents import service as incidents
from haltguard.incidents.models import TimelineKind

REDUCED = Scale(orders=200, burst=20, timeout_s=20.0)


@pytest.fixture(scope="module")
def drill(
    tmp_path_factory: pytest.TempPathFactory, make_drill_system: Any,
) -> Iterator[tuple[DrillResult, list[str], list[TimelineKind]]]:
    base = tmp_path_factory.mktemp("software-bug")
    lines: list[str] = []
    with make_drill_system(base / "data", lines, venue_process=True) as system:
        result = run_scenario(system, SCENARIO, scale=REDUCED, progress=lines.append,
                              report_dir=base / "reports")
        kinds: list[TimelineKind] = []
        if result.incident_id is not None:
            with database(system) as session:
                kinds = [e.kind for e in incidents.timeline(session, result.incident_id)]
        yield result, lines, kinds


def test_engine_fault_halts_only_its_market_and_quarantines_the_command(
    drill: tuple[DrillResult, list[str], list[TimelineKind]],
) -> None:
    result, lines, _ = drill
    by_name = {check.name: check for check in result.checks}
    assert by_name["venue alive after the engine fault"].passed, lines
    assert by_name["poison command quarantined and reported"].passed
    assert by_name["poison order not acknowledged"].passed
    halt = result.measurements.time_to_halt_s
    assert halt is not None and halt < 5


def test_engine_fault_loses_no_acknowledged_order_and_the_ledger_holds(
    drill: tuple[DrillResult, list[str], list[TimelineKind]],
) -> None:
    result, _, _ = drill
    assert result.measurements.extra["acknowledged orders"] == "200"
    assert result.measurements.acknowledged_orders_lost == 0
    assert result.measurements.ledger_invariant_ok


def test_engine_fault_market_reopens_through_a_phased_resume_with_reports(
    drill: tuple[DrillResult, list[str], list[TimelineKind]],
) -> None:
    result, _, kinds = drill
    assert TimelineKind.RESUME in kinds and TimelineKind.PUBLIC_UPDATE in kinds
    assert TimelineKind.REPORT in kinds
    names = [Path(path).name for path in result.report_paths]
    assert sum(name.startswith("INC-") for name in names) == 4
    report = next(Path(p) for p in result.report_paths if Path(p).name.startswith("drill-")
                  and p.endswith(".md"))
    halt = result.measurements.time_to_halt_s
    assert halt is not None
    assert f"取引停止までの時間 / Time to halt | {halt:.2f} 秒 / {halt:.2f} s" in \
        report.read_text(encoding="utf-8")


def test_software_bug_drill_passes_every_check(
    drill: tuple[DrillResult, list[str], list[TimelineKind]],
) -> None:
    result, _, _ = drill
    assert result.passed, result.failures()
