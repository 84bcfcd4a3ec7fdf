"""The disk-loss drill at a reduced scale: a venue's data directory is deleted and rebuilt
from the newest backup; the drill measures the recovery time and what was lost, and leaves
the restore as backup evidence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haltguard.backup import service as backups
from haltguard.drill.runner import run_scenario
from haltguard.drill.scenario import DrillResult, Scale
from haltguard.drill.scenarios import SCENARIOS
from haltguard.drill.surface import database

REDUCED = Scale(orders=400, burst=20, timeout_s=20.0)


@pytest.fixture(scope="module")
def drill(
    tmp_path_factory: pytest.TempPathFactory, make_drill_system: Any,
) -> Iterator[tuple[DrillResult, list[str], Any, Path]]:
    base = tmp_path_factory.mktemp("disk-loss")
    lines: list[str] = []
    with make_drill_system(base / "data", lines, venue_process=False) as system:
        live_before = sorted(path.name for path in (base / "data").iterdir())
        result = run_scenario(system, SCENARIOS["disk-loss"], scale=REDUCED,
                              progress=lines.append, report_dir=base / "reports")
        with database(system) as session:
            evidence = backups.latest_evidence(session)
        live_after = sorted(path.name for path in (base / "data").iterdir())
        assert live_after == live_before, "the drill touched the system's data directory"
        yield result, lines, evidence, base


def test_disk_loss_restores_the_venue_as_the_backup_held_it(drill: Any) -> None:
    result, lines, _, _ = drill
    assert result.passed, (result.failures(), lines)
    same = next(c for c in result.checks
                if c.name == "restored venue equals the journal at the backup's seq")
    assert same.passed, same.seen
    assert result.measurements.ledger_invariant_ok
    assert result.measurements.acknowledged_orders_lost == 0


def test_disk_loss_measures_what_was_lost_after_the_backup(drill: Any) -> None:
    result, _, _, _ = drill
    extra = result.measurements.extra
    assert int(extra["commands lost after the backup"]) == REDUCED.orders // 4
    assert float(extra["data lost (s of journal time)"]) > 0
    recovery = result.measurements.recovery_time_s
    assert recovery is not None and 0 < recovery < 60


def test_disk_loss_leaves_its_figures_as_backup_evidence(drill: Any) -> None:
    result, _, evidence, _ = drill
    assert evidence.last_drill_passed is True
    assert evidence.last_drill_commands_lost == REDUCED.orders // 4
    assert evidence.last_drill_restore_s is not None and evidence.last_drill_restore_s > 0
    assert result.report_paths
