"""The database-down drill at a reduced scale: the operations database refuses connections
for a few seconds while orders keep flowing to the venue."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haltguard.drill.runner import judge, run_scenario
from haltguard.drill.scenario import DrillResult, Scale, Targets
from haltguard.drill.scenarios.database_down import SCENARIO
from haltguard.drill.surface import database
from haltguard.incidents import service as incidents
from haltguard.incidents.models import TimelineKind

REDUCED = Scale(orders=200, burst=20, timeout_s=20.0)


@pytest.fixture(scope="module")
def drill(
    tmp_path_factory: pytest.TempPathFactory, make_drill_system: Any,
) -> Iterator[tuple[DrillResult, list[str], list[TimelineKind]]]:
    base = tmp_path_factory.mktemp("database-down")
    lines: list[str] = []
    with make_drill_system(base / "data", lines, venue_process=False) as system:
        result = run_scenario(system, SCENARIO, scale=REDUCED, progress=lines.append,
                              report_dir=base / "reports")
        kinds: list[TimelineKind] = []
        if result.incident_id is not None:
            with database(system) as session:
                kinds = [e.kind for e in incidents.timeline(session, result.incident_id)]
        yield result, lines, kinds


def test_venue_keeps_trading_while_the_operations_database_is_unreachable(
    drill: tuple[DrillResult, list[str], list[TimelineKind]],
) -> None:
    result, lines, _ = drill
    by_name = {check.name: check for check in result.checks}
    assert by_name["database unreachable during the outage"].passed, lines
    assert by_name["venue kept trading during the outage"].passed
    assert int(result.measurements.extra["orders acknowledged during the outage"]) > 0
    assert result.measurements.acknowledged_orders_lost == 0
    assert result.measurements.ledger_invariant_ok


def test_database_down_incident_has_a_bilingual_update_and_reports(
    drill: tuple[DrillResult, list[str], list[TimelineKind]],
) -> None:
    result, _, kinds = drill
    assert result.incident_id is not None
    assert TimelineKind.PUBLIC_UPDATE in kinds and TimelineKind.POSTMORTEM in kinds
    update = next(c for c in result.checks if c.name == "public update in Japanese and English")
    assert update.passed, update.seen
    recovery = result.measurements.recovery_time_s
    assert recovery is not None and recovery >= 3.0
    report = next(Path(p) for p in result.report_paths if p.endswith(".html")
                  and Path(p).name.startswith("drill-"))
    text = report.read_text(encoding="utf-8")
    assert "復旧時間 / Recovery time" in text and f"{recovery:.2f} s" in text


def test_a_drill_that_cannot_reach_its_target_fails_with_the_reason(
    drill: tuple[DrillResult, list[str], list[TimelineKind]],
) -> None:
    result, _, _ = drill
    measured = dataclasses.replace(result, checks=[c for c in result.checks
                                                   if not c.name.startswith("target:")])
    judge(measured, Targets(recovery_time_s=0.001))
    assert not measured.passed
    reasons = measured.failures()
    assert any(reason.startswith("target: recovery time: expected <= 0.001 s; seen ")
               for reason in reasons), reasons


def test_database_down_drill_passes_every_check(
    drill: tuple[DrillResult, list[str], list[TimelineKind]],
) -> None:
    result, lines, _ = drill
    assert result.passed, (result.failures(), lines)
    kept = next(c for c in result.checks if c.name == "decision made during the outage kept")
    assert kept.seen == "incident opened"
