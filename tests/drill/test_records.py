"""Every drill report comes with a machine-readable record that reads back as the same
result (continuity's evidence); anything that is not a complete record is never trusted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from haltguard.drill.records import latest_records, read_record
from haltguard.drill.report import write_files
from haltguard.drill.scenario import Check, DrillResult, Measurements, Targets
from haltguard.status.texts import Bilingual

FINISHED = datetime(2026, 12, 1, 7, 1, tzinfo=UTC)


def result(finished_at: datetime, *, passed: bool = True) -> DrillResult:
    return DrillResult(
        "server-down", 7,
        Measurements(recovery_time_s=42.5, acknowledged_orders_lost=2, ledger_invariant_ok=True,
                     extra={"restarts": "1"}),
        [Check("ledger", passed, "holds", "holds")], started_at=finished_at - timedelta(
            seconds=50), finished_at=finished_at)


def test_the_record_beside_a_report_reads_back_as_its_result(tmp_path: Path) -> None:
    write_files(result(FINISHED), Targets(), Bilingual("訓練", "Drill"), tmp_path)
    path = tmp_path / "drill-server-down-20261201T070100Z.json"
    record = read_record(path)
    assert record is not None
    assert (record.scenario, record.passed, record.finished_at) == ("server-down", True,
                                                                     FINISHED)
    assert (record.recovery_time_s, record.acknowledged_orders_lost) == (42.5, 2)
    assert record.incident_id == 7 and record.extra == {"restarts": "1"}


def test_the_newest_record_of_each_scenario_is_found_and_damaged_ones_are_skipped(
        tmp_path: Path) -> None:
    title = Bilingual("訓練", "Drill")
    write_files(result(FINISHED), Targets(), title, tmp_path / "a")
    write_files(result(FINISHED + timedelta(days=1), passed=False), Targets(), title,
                tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "drill-server-down-20991231T000000Z.json").write_text('{"format": 1}')
    newest = latest_records([tmp_path, tmp_path / "missing"])
    assert list(newest) == ["server-down"]
    assert newest["server-down"].finished_at == FINISHED + timedelta(days=1)
    assert newest["server-down"].passed is False
