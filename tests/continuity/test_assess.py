"""The plan judged by its evidence (pure: the evidence and ``now`` are given): fresh, passing
evidence within every target passes; an old drill, a missed RTO or RPO, a missing backup or
restore, a missing failover and an overdue plan review each fail, saying why."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from continuity_support import PLAN_TEXT, write

from haltguard.backup.models import BackupEvidence
from haltguard.continuity.assess import Evidence, EvidenceKind, assess, failover_of
from haltguard.continuity.bcp import Plan, load_plan
from haltguard.drill.records import DrillRecord

NOW = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)


def plan(tmp_path: Path, text: str = PLAN_TEXT) -> Plan:
    return load_plan(write(tmp_path / "bcp.yaml", text))


def drill(scenario: str = "server-down", *, age: timedelta = timedelta(days=3),
          passed: bool = True, recovery_time_s: float | None = 42.0,
          orders_lost: int = 0) -> DrillRecord:
    return DrillRecord(scenario=scenario, passed=passed, completed=True,
                       finished_at=NOW - age, started_at=None,
                       recovery_time_s=recovery_time_s, acknowledged_orders_lost=orders_lost,
                       ledger_invariant_ok=True, incident_id=1, path=Path("r.json"), extra={})


def backups(*, backup_age: timedelta = timedelta(hours=2),
            verified_age: timedelta = timedelta(days=1)) -> BackupEvidence:
    return BackupEvidence(last_good_backup_at=NOW - backup_age, last_good_backup_id="b1",
                          last_verified_at=NOW - verified_age, last_verified_backup_id="b1")


def fresh() -> Evidence:
    return Evidence(drills={"server-down": drill()}, backup=backups())


def problems(assessment_rows: object) -> list[str]:
    return [problem.en for verdict in assessment_rows.services  # type: ignore[attr-defined]
            for row in verdict.rows for problem in row.problems]


def test_fresh_passing_evidence_within_every_target_passes(tmp_path: Path) -> None:
    assessment = assess(plan(tmp_path), fresh(), NOW)
    assert assessment.passed, problems(assessment)
    ledger = next(v for v in assessment.services if v.service.id == "ledger")
    assert [row.kind for row in ledger.rows] == [
        EvidenceKind.DRILL, EvidenceKind.BACKUP, EvidenceKind.RESTORE]
    assert all(row.at is not None for row in ledger.rows)  # every piece of evidence is dated


def test_a_drill_older_than_allowed_fails_as_stale(tmp_path: Path) -> None:
    evidence = replace(fresh(), drills={"server-down": drill(age=timedelta(days=31))})
    assessment = assess(plan(tmp_path), evidence, NOW)
    assert not assessment.passed
    assert "drill server-down is stale (31.0 days old, limit 30.0 days)" in problems(assessment)


def test_a_scenarios_own_age_limit_overrides_the_plans(tmp_path: Path) -> None:
    text = PLAN_TEXT.replace("    drill: server-down\n",
                             "    drill: server-down\n    drill_age_days_max: 60\n")
    evidence = replace(fresh(), drills={"server-down": drill(age=timedelta(days=31))})
    assert assess(plan(tmp_path, text), evidence, NOW).passed


def test_a_recovery_slower_than_the_rto_fails_that_service_only(tmp_path: Path) -> None:
    evidence = replace(fresh(), drills={"server-down": drill(recovery_time_s=900.0)})
    assessment = assess(plan(tmp_path), evidence, NOW)
    verdicts = {v.service.id: v.passed for v in assessment.services}
    assert verdicts == {"trading": False, "ledger": True}  # RTO 600 s vs 3600 s
    assert "recovery 900.0 s missed the RTO of 600 s" in problems(assessment)


def test_a_lost_acknowledged_order_fails_a_service_with_rpo_zero(tmp_path: Path) -> None:
    evidence = replace(fresh(), drills={"server-down": drill(orders_lost=1)})
    verdicts = {v.service.id: v.passed for v in assess(plan(tmp_path), evidence, NOW).services}
    assert verdicts == {"trading": False, "ledger": True}


def test_a_failed_or_missing_drill_fails(tmp_path: Path) -> None:
    failed = assess(plan(tmp_path), replace(fresh(), drills={"server-down": drill(
        passed=False)}), NOW)
    assert "drill server-down failed" in problems(failed)
    missing = assess(plan(tmp_path), replace(fresh(), drills={}), NOW)
    assert "drill server-down has never been run" in problems(missing)


def test_no_backup_or_an_old_restore_verification_fails_the_service_restored_from_backup(
        tmp_path: Path) -> None:
    none = assess(plan(tmp_path), replace(fresh(), backup=BackupEvidence()), NOW)
    assert {"no good backup exists", "no restore has ever been verified"} <= set(problems(none))
    old = assess(plan(tmp_path), replace(fresh(), backup=backups(
        backup_age=timedelta(hours=30), verified_age=timedelta(days=8))), NOW)
    verdicts = {v.service.id: v.passed for v in old.services}
    assert verdicts == {"trading": True, "ledger": False}
    assert len(problems(old)) == 2


def test_a_newer_failed_backup_fails_even_with_an_older_good_one(tmp_path: Path) -> None:
    evidence = replace(fresh(), backup=BackupEvidence(
        **{**backups().model_dump(), "last_failed_backup_at": NOW - timedelta(minutes=5),
           "last_failure": "target unreachable"}))
    assert "the newest backup failed: target unreachable" in problems(
        assess(plan(tmp_path), evidence, NOW))


def test_the_disk_loss_drill_counts_from_the_backup_domains_record(tmp_path: Path) -> None:
    text = PLAN_TEXT.replace("scenarios: [server-down]\n    restored_from_backup",
                             "scenarios: [disk-loss]\n    restored_from_backup").replace(
        "scenarios:\n  - id: server-down",
        "scenarios:\n  - {id: disk-loss, name: {ja: ディスク喪失, en: Disk loss}, "
        "runbook: database, drill: disk-loss}\n  - id: server-down")
    base = backups().model_dump()
    within = replace(fresh(), backup=BackupEvidence(**{
        **base, "last_drill_at": NOW - timedelta(days=1), "last_drill_passed": True,
        "last_drill_restore_s": 30.0, "last_drill_data_lost_s": 45.0}))
    assert assess(plan(tmp_path, text), within, NOW).passed
    beyond = replace(within, backup=within.backup.model_copy(
        update={"last_drill_data_lost_s": 75.0}))
    assert "data lost 75 s missed the RPO of 60 s" in problems(
        assess(plan(tmp_path, text), beyond, NOW))


def test_a_service_that_fails_over_has_no_evidence_until_a_failover_is_recorded(
        tmp_path: Path) -> None:
    text = PLAN_TEXT.replace("    scenarios: [server-down]\n  - id: ledger",
                             "    scenarios: [server-down]\n    fails_over: true\n"
                             "  - id: ledger")
    assessment = assess(plan(tmp_path, text), fresh(), NOW)
    assert "no evidence of a failover to the alternate site" in problems(assessment)
    site_loss = replace(drill("site-loss", recovery_time_s=3.2), acknowledged_orders_lost=0)
    recorded = replace(fresh(), failover=failover_of(site_loss))
    assert assess(plan(tmp_path, text), recorded, NOW).passed
    lossy = replace(fresh(), failover=failover_of(replace(site_loss, acknowledged_orders_lost=2)))
    assert "2 acknowledged orders lost in the failover (RPO 0)" in problems(
        assess(plan(tmp_path, text), lossy, NOW))


def test_an_overdue_plan_review_and_contact_tree_gaps_are_findings(tmp_path: Path) -> None:
    later = NOW + timedelta(days=400)
    evidence = replace(fresh(), drills={"server-down": drill(age=timedelta(days=-400 + 3))},
                       backup=backups(backup_age=timedelta(hours=-400 * 24 + 2),
                                      verified_age=timedelta(days=-399)),
                       contact_tree_gaps=("malware",))
    assessment = assess(plan(tmp_path), evidence, later)
    assert all(verdict.passed for verdict in assessment.services)
    assert not assessment.passed
    findings = [finding.en for finding in assessment.findings]
    assert any("overdue for review" in finding for finding in findings)
    assert any("malware" in finding for finding in findings)


def test_a_disk_loss_drill_records_data_loss_is_judged_against_the_rpo(tmp_path: Path) -> None:
    text = PLAN_TEXT.replace("scenarios: [server-down]\n    restored_from_backup",
                             "scenarios: [disk-loss]\n    restored_from_backup").replace(
        "scenarios:\n  - id: server-down",
        "scenarios:\n  - {id: disk-loss, name: {ja: ディスク喪失, en: Disk loss}, "
        "runbook: database, drill: disk-loss}\n  - id: server-down")
    record = replace(drill("disk-loss"), extra={"data lost (s of journal time)": "61.500"})
    evidence = replace(fresh(), drills={"server-down": drill(), "disk-loss": record})
    assert "data lost 61.5 s missed the RPO of 60 s" in problems(
        assess(plan(tmp_path, text), evidence, NOW))
