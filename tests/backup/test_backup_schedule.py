"""The schedule inside serve: backups taken when due and recorded, failures and an old last
backup turned into signals the shipped rules open incidents from, and the age on /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from backup_support import workload, write_journal
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.orm import Session, sessionmaker

from haltguard.backup import service
from haltguard.backup.schedule import BackupMetrics, BackupScheduler
from haltguard.backup.settings import BackupSettings, BackupSources
from haltguard.common.clock import ManualClock
from haltguard.detection.decisions import ActionKind
from haltguard.detection.policies import PolicyEngine
from haltguard.detection.rulesfile import DEFAULT_RULES_PATH, load_rules_file
from haltguard.detection.signals import Signal

START = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)


def _scheduler(
    tmp_path: Path, session_factory: sessionmaker[Session], target: Path,
) -> tuple[BackupScheduler, ManualClock, list[Signal], CollectorRegistry]:
    venue_dir = tmp_path / "venue"
    if not venue_dir.exists():
        write_journal(venue_dir, workload(200))
    clock = ManualClock(START)
    signals: list[Signal] = []
    registry = CollectorRegistry()
    settings = BackupSettings(target_url=target.as_uri(), interval_s=3600, age_alert_s=7200,
                              keep_hourly=2, keep_daily=0, keep_weekly=0)
    scheduler = BackupScheduler(settings, BackupSources(venue_dir), session_factory, clock,
                                signals.append, BackupMetrics(registry, clock))
    return scheduler, clock, signals, registry


def test_the_schedule_takes_a_backup_when_due_and_keeps_by_retention(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    scheduler, clock, signals, registry = _scheduler(tmp_path, session_factory,
                                                     tmp_path / "backups")
    scheduler.tick()
    clock.advance(timedelta(minutes=30))
    scheduler.tick()  # not due yet
    for _ in range(3):
        clock.advance(timedelta(hours=1))
        scheduler.tick()

    with session_factory() as session:
        records = service.list_backups(session)
    assert [record.status for record in records] == ["ok"] * 4
    assert all(record.scheduled for record in records)
    assert len(list((tmp_path / "backups").iterdir())) == 2  # keep_hourly=2
    assert signals == []
    metrics = generate_latest(registry).decode()
    assert "haltguard_backup_last_good_age_seconds 0.0" in metrics


def test_a_failing_backup_and_an_old_last_backup_open_incidents(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    scheduler, clock, signals, registry = _scheduler(
        tmp_path, session_factory, tmp_path / "unmounted" / "backups")
    scheduler.tick()
    clock.advance(timedelta(hours=3))
    scheduler.tick()

    with session_factory() as session:
        evidence = service.latest_evidence(session)
    assert evidence.last_good_backup_at is None
    assert evidence.last_failure is not None and "does not exist" in evidence.last_failure
    failed = [signal for signal in signals if signal.name == "backup.failed"]
    assert [int(signal.value) for signal in failed] == [1, 2]
    assert any(signal.name == "backup.too_old" for signal in signals)
    assert "haltguard_backup_failures_consecutive 2.0" in generate_latest(registry).decode()

    rules = PolicyEngine(load_rules_file(DEFAULT_RULES_PATH))
    decisions = [decision for signal in signals for decision in rules.evaluate(signal)]
    fired = {decision.rule_id for decision in decisions}
    assert {"backup-failed", "backup-too-old"} <= fired
    assert all(any(action.kind is ActionKind.OPEN_OR_UPDATE_INCIDENT
                   for action in decision.actions) for decision in decisions)
