"""``bcp check`` from real evidence: a real venue backed up and the backup verified by the
backup domain, drill records written by the drill's report writer; it passes on fresh
evidence and fails, saying why, when a drill is too old. Reminders page each owner once a
day, and a reminder that cannot be sent does not stop the others."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from continuity_support import (
    PLAN_TEXT,
    REGISTER_TEXT,
    SARIF,
    Mailbox,
    add_person,
    drill_record,
    fill_contact_tree,
    policy,
    write,
)
from sqlalchemy.orm import Session, sessionmaker

from haltguard.backup import service as backups
from haltguard.backup.flows import create_backup, verify_backup
from haltguard.backup.settings import BackupSettings, BackupSources
from haltguard.common.clock import ManualClock, utc_now
from haltguard.continuity import flows, service
from haltguard.continuity.bcp import load_register
from haltguard.continuity.models import TrainingCreate
from haltguard.continuity.scanners import parse_sarif
from haltguard.continuity.settings import ContinuitySettings
from haltguard.db.session import session_scope
from haltguard.gateway.demo import set_up_demo
from haltguard.gateway.runtime import VenueRuntime
from haltguard.responders.settings import ResponderSettings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def backed_up_and_verified(session: Session, tmp_path: Path) -> str:
    """A real venue's data directory backed up to a directory and the backup verified; both
    recorded as the backup domain records them."""
    data_dir = tmp_path / "venue"
    runtime = VenueRuntime(data_dir).start()
    set_up_demo(runtime)
    runtime.stop()
    settings = BackupSettings(target_url=f"file://{tmp_path / 'backups'}")
    started = utc_now()
    manifest = create_backup(settings, BackupSources(data_dir=data_dir), now=started)
    backups.record_backup(session, manifest, settings.target_url, started_at=started,
                          finished_at=utc_now())
    outcome = verify_backup(settings, manifest.backup_id)
    assert outcome.ok, outcome.problems
    backups.record_verification(session, outcome, finished_at=utc_now())
    return manifest.backup_id


def settings_for(tmp_path: Path) -> ContinuitySettings:
    return ContinuitySettings(
        plan_file=write(tmp_path / "bcp.yaml", PLAN_TEXT),
        register_file=write(tmp_path / "risks.yaml", REGISTER_TEXT),
        drill_report_dirs=(tmp_path / "drills",), report_dir=tmp_path / "report")


def test_bcp_check_passes_on_fresh_real_evidence_and_writes_its_report(
        session: Session, tmp_path: Path) -> None:
    add_person(session, "alice")
    add_person(session, "bob")
    fill_contact_tree(session, "alice", "bob")
    backup_id = backed_up_and_verified(session, tmp_path)
    drill_record(tmp_path / "drills" / "run-1", "server-down", utc_now() - timedelta(days=2))
    settings = settings_for(tmp_path)
    outcome = flows.check_plan(session, settings, utc_now())
    assert outcome.assessment.passed, [
        p.en for v in outcome.assessment.services for r in v.rows for p in r.problems]
    names = sorted(path.name for path in outcome.paths)
    assert names[-2:] == ["risk-heatmap-inherent.svg", "risk-heatmap-residual.svg"]
    markdown = next(p for p in outcome.paths if p.suffix == ".md").read_text(encoding="utf-8")
    html = next(p for p in outcome.paths if p.suffix == ".html").read_text(encoding="utf-8")
    assert "合格 / PASS" in markdown and backup_id in markdown
    assert "![固有リスク / Inherent risk](risk-heatmap-inherent.svg)" in markdown
    assert html.count("<svg ") == 2 and 'data-risks="R-01 R-02"' in html
    assert "不合格" not in markdown


def test_bcp_check_fails_when_a_drill_is_older_than_allowed(
        session: Session, tmp_path: Path) -> None:
    add_person(session, "alice")
    add_person(session, "bob")
    fill_contact_tree(session, "alice", "bob")
    backed_up_and_verified(session, tmp_path)
    old = utc_now() - timedelta(days=45)
    drill_record(tmp_path / "drills" / "run-1", "server-down", old)
    outcome = flows.check_plan(session, settings_for(tmp_path), utc_now())
    assert not outcome.assessment.passed
    markdown = next(p for p in outcome.paths if p.suffix == ".md").read_text(encoding="utf-8")
    assert "drill server-down is stale (45.0 days old, limit 30.0 days)" in markdown
    assert f"{old:%Y-%m-%d}" in markdown  # the evidence's own date is shown
    drill_record(tmp_path / "drills" / "run-2", "server-down", utc_now())  # drilled again
    assert flows.check_plan(session, settings_for(tmp_path), utc_now(),
                            write=False).assessment.passed


def test_the_newest_drill_record_of_a_scenario_is_the_evidence(
        session: Session, tmp_path: Path) -> None:
    backed_up_and_verified(session, tmp_path)
    fill_contact_tree_people(session)
    drill_record(tmp_path / "drills" / "a", "server-down", utc_now() - timedelta(days=1),
                 passed=False)
    drill_record(tmp_path / "drills" / "b", "server-down", utc_now() - timedelta(days=9))
    evidence = flows.gather_evidence(session, settings_for(tmp_path))
    assert evidence.drills["server-down"].passed is False  # newest wins, even a failure
    (tmp_path / "drills" / "c").mkdir()
    (tmp_path / "drills" / "c" / "drill-server-down-x.json").write_text("{not json")
    assert flows.gather_evidence(session, settings_for(tmp_path)).drills[
        "server-down"].passed is False  # a damaged file is skipped, never trusted


def fill_contact_tree_people(session: Session) -> None:
    add_person(session, "alice")
    add_person(session, "bob")
    fill_contact_tree(session, "alice", "bob")


def test_owners_are_paged_once_a_day_for_what_is_overdue_or_expiring(
        session: Session, tmp_path: Path, mailbox: tuple[Mailbox, ResponderSettings]) -> None:
    inbox, paging = mailbox
    for person in ("alice", "bob", "carol"):
        add_person(session, person)
    now = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)
    service.add_insurance(session, policy(owner="bob", expires_on=date(2027, 1, 15)),
                          actor="test", now=now)  # within the 60 days' window
    service.add_insurance(session, policy(owner="bob", name="Far", expires_on=date(2028, 1, 1)),
                          actor="test", now=now)
    service.add_training(session, TrainingCreate(person="carol", course="Key handling",
                                                 due_on=date(2026, 12, 1)), actor="test",
                         now=now)
    service.import_scan(session, parse_sarif(json.dumps(SARIF), "t.sarif"), owner="carol",
                        actor="test", now=now - timedelta(days=10),
                        settings=ContinuitySettings())
    register = load_register(write(tmp_path / "risks.yaml", REGISTER_TEXT))
    clock = ManualClock(now)
    sent = flows.send_reminders(session, register, ContinuitySettings(), clock, paging=paging)
    assert sorted(result.subject for result in sent) == [
        "finding:1", "insurance:1", "risk:R-01", "training:1"]
    assert all(result.page_id is not None and not result.error for result in sent)
    assert len(inbox.to("alice@example.com")) == 1  # R-01's review was due 2026-11-30
    assert len(inbox.to("bob@example.com")) == 1
    assert len(inbox.to("carol@example.com")) == 2
    assert flows.send_reminders(session, register, ContinuitySettings(), clock,
                                paging=paging) == []  # nobody twice on one day
    clock.advance(timedelta(days=1))
    assert len(flows.send_reminders(session, register, ContinuitySettings(), clock,
                                    paging=paging)) == 4


def test_a_reminder_that_cannot_be_sent_is_recorded_and_the_others_go_out(
        session: Session, tmp_path: Path, mailbox: tuple[Mailbox, ResponderSettings]) -> None:
    inbox, paging = mailbox
    add_person(session, "alice")  # R-01's owner; nobody named bob exists
    register = load_register(write(tmp_path / "risks.yaml", REGISTER_TEXT.replace(
        "review_by: 2027-06-30", "review_by: 2026-12-01", 1)))
    clock = ManualClock(datetime(2026, 12, 8, 1, 0, tzinfo=UTC))
    sent = {result.subject: result for result in flows.send_reminders(
        session, register, ContinuitySettings(), clock, paging=paging)}
    assert sent["risk:R-01"].page_id is not None
    assert sent["risk:R-02"].page_id is None and "bob" in sent["risk:R-02"].error
    assert len(inbox.to("alice@example.com")) == 1


def test_the_reminder_loop_of_serve_reminds_then_stops(
        session_factory: sessionmaker[Session], tmp_path: Path,
        mailbox: tuple[Mailbox, ResponderSettings]) -> None:
    inbox, paging = mailbox
    with session_scope(session_factory) as session:
        add_person(session, "alice")
    settings = ContinuitySettings(register_file=write(tmp_path / "risks.yaml", REGISTER_TEXT))
    loop = flows.ReminderLoop(session_factory, settings,
                              ManualClock(datetime(2026, 12, 8, 1, 0, tzinfo=UTC)), 10.0,
                              paging=paging).start()
    try:
        deadline = time.monotonic() + 10
        while not inbox.to("alice@example.com") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        loop.stop(5.0)
    assert len(inbox.to("alice@example.com")) == 1  # R-01; bob is not in the directory
    assert loop.tick() == []  # already reminded today


def test_a_risk_control_naming_no_rule_or_drill_is_a_finding(
        session: Session, tmp_path: Path) -> None:
    fill_contact_tree_people(session)
    backed_up_and_verified(session, tmp_path)
    drill_record(tmp_path / "drills" / "a", "server-down", utc_now())
    settings = settings_for(tmp_path)
    settings = ContinuitySettings(**{**settings.__dict__, "register_file": write(
        tmp_path / "risks2.yaml", REGISTER_TEXT.replace(
            "controls: [{kind: drill, ref: server-down}]",
            "controls: [{kind: drill, ref: server-down}, {kind: rule, ref: venue-process-exited},"
            " {kind: rule, ref: no-such-rule}, {kind: drill, ref: meteor}]"))})
    outcome = flows.check_plan(session, settings, utc_now(), write=False)
    assert [finding.en for finding in outcome.assessment.findings] == [
        "risk R-01: control rule:no-such-rule does not exist",
        "risk R-01: control drill:meteor does not exist"]
    assert not outcome.assessment.passed
