"""The security records on a real database (SQLite and PostgreSQL): insurance and the
incident it covers, training due dates, findings imported, re-imported and closed by an
update logged in a maintenance window; bad input refused with nothing stored."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from continuity_support import PIP_AUDIT, SARIF, add_person, policy
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from haltguard.continuity import service
from haltguard.continuity.errors import RecordInputError, RecordStateError
from haltguard.continuity.models import (
    FindingClose,
    FindingStatus,
    Severity,
    TrainingComplete,
    TrainingCreate,
    UpdateCreate,
    VulnerabilityFinding,
)
from haltguard.continuity.scanners import parse_pip_audit, parse_sarif
from haltguard.continuity.settings import ContinuitySettings
from haltguard.incidents import flows as incident_flows
from haltguard.incidents.models import IncidentCreate
from haltguard.incidents.rules import Category
from haltguard.incidents.rules import Severity as IncidentSeverity
from haltguard.responders.service import ManualClock
from haltguard.security.audit import verify as verify_audit_chain
from haltguard.status import service as status
from haltguard.status.models import MaintenanceCreate

NOW = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)
TODAY = NOW.date()
SETTINGS = ContinuitySettings()


def test_an_incident_links_the_policies_in_force_that_cover_its_category(
        session: Session) -> None:
    add_person(session, "alice")
    covering = service.add_insurance(session, policy(), actor="cli:test", now=NOW)
    service.add_insurance(session, policy(name="Old cyber", expires_on=date(2026, 11, 30),
                                          starts_on=date(2025, 12, 1)),
                          actor="cli:test", now=NOW)
    service.add_insurance(session, policy(name="Property", categories=["natural_disaster"]),
                          actor="cli:test", now=NOW)
    incident = incident_flows.open_incident(
        session, IncidentCreate(title="Hot wallet drained", category=Category.UNAUTHORIZED_ACCESS,
                                severity=IncidentSeverity.SEV1), actor="alice",
        clock=ManualClock(NOW))
    linked = service.insurance_for_incident(session, incident.id, TODAY)
    assert [each.id for each in linked.policies] == [covering.id]
    assert linked.policies[0].contacts == [
        {"name": "Claims desk", "role": "", "phone": "+81-3-0000-0000", "email": ""}]


def test_a_policy_with_an_owner_nobody_can_page_is_refused(session: Session) -> None:
    with pytest.raises(RecordInputError, match="'nobody' is not a person"):
        service.add_insurance(session, policy(owner="nobody"), actor="cli:test", now=NOW)
    assert service.list_insurance(session) == []


def test_training_is_overdue_after_its_due_date_until_completed(session: Session) -> None:
    add_person(session, "bob")
    record = service.add_training(session, TrainingCreate(
        person="bob", course="Phishing 2026", due_on=date(2026, 12, 1)),
        actor="cli:test", now=NOW)
    assert [r.id for r in service.list_training(session, today=TODAY, overdue_only=True)] == [
        record.id]
    done, following = service.complete_training(session, record.id, TrainingComplete(
        completed_on=date(2026, 12, 7), evidence="cert 42", next_due_on=date(2027, 12, 1)),
        actor="cli:test", now=NOW)
    assert following is not None and following.due_on == date(2027, 12, 1)
    assert service.list_training(session, today=TODAY, overdue_only=True) == []
    with pytest.raises(RecordStateError):
        service.complete_training(session, done.id, TrainingComplete(
            completed_on=date(2026, 12, 8)), actor="cli:test", now=NOW)


def test_findings_get_deadlines_by_severity_and_a_reimport_adds_no_copy(
        session: Session) -> None:
    add_person(session, "carol")
    sarif = parse_sarif(json.dumps(SARIF), "trivy.sarif")
    first = service.import_scan(session, sarif, owner="carol", actor="cli:test", now=NOW,
                                settings=SETTINGS)
    assert (first.found, first.new, first.seen_again) == (4, 4, 0)
    due = {f.identifier: f.due_on - TODAY for f in service.list_findings(session, today=TODAY)}
    assert due["CVE-2024-0001"] == timedelta(days=7)  # critical
    assert due["unlisted"] == timedelta(days=30)  # high
    assert due["CVE-2024-0002"] == timedelta(days=90)  # medium
    assert due["weak-hash"] == timedelta(days=180)  # low
    later = NOW + timedelta(days=8)
    again = service.import_scan(session, sarif, owner="carol", actor="cli:test", now=later,
                                settings=SETTINGS)
    assert (again.new, again.seen_again) == (0, 4)
    assert session.scalar(select(func.count()).select_from(VulnerabilityFinding)) == 4
    overdue = service.list_findings(session, today=later.date(), overdue_only=True)
    assert [f.identifier for f in overdue] == ["CVE-2024-0001"]
    assert service.count_findings(session, today=later.date())["overdue"] == 1


def test_an_update_in_a_maintenance_closes_the_findings_it_fixes(session: Session) -> None:
    add_person(session, "carol")
    scan = parse_pip_audit(json.dumps(PIP_AUDIT), "audit.json", severity=Severity.HIGH)
    service.import_scan(session, scan, owner="carol", actor="cli:test", now=NOW,
                        settings=SETTINGS)
    jinja = next(f for f in service.list_findings(session, today=TODAY) if f.package == "jinja2")
    keys = status.ensure_components(session, ["BTC-JPY"], now=NOW)
    maintenance, _ = status.schedule_maintenance(session, MaintenanceCreate(
        scheduled_for=NOW + timedelta(hours=1), scheduled_until=NOW + timedelta(hours=2),
        components=keys[:1]), actor="operator:carol", now=NOW)
    update = service.log_update(session, UpdateCreate(
        component="haltguard", from_version="1.4.0", to_version="1.4.1",
        applied_at=NOW + timedelta(minutes=90), maintenance_id=maintenance.id,
        fixes=[jinja.id]), actor="cli:test", now=NOW + timedelta(minutes=90))
    read = service.update_read(session, update)
    assert read.in_maintenance_window is True and read.maintenance_id == maintenance.id
    session.refresh(jinja)
    assert jinja.status == FindingStatus.FIXED and jinja.update_id == update.id
    reimported = service.import_scan(session, scan, owner="carol", actor="cli:test",
                                     now=NOW + timedelta(days=1), settings=SETTINGS)
    assert reimported.reopened == 1  # the scanner still finds it: the fix did not hold
    assert verify_audit_chain(session).ok


def test_an_update_naming_a_closed_finding_records_nothing(session: Session) -> None:
    add_person(session, "carol")
    service.import_scan(session, parse_sarif(json.dumps(SARIF), "t.sarif"), owner="carol",
                        actor="cli:test", now=NOW, settings=SETTINGS)
    first, second = service.list_findings(session, today=TODAY)[:2]
    service.close_finding(session, first.id, FindingClose(
        status=FindingStatus.ACCEPTED, note="not reachable from outside"),
        actor="cli:test", now=NOW)
    with pytest.raises(RecordInputError, match=f"finding {first.id} is not an open finding"):
        service.log_update(session, UpdateCreate(
            component="openssl", from_version="3.0.2", to_version="3.0.13", applied_at=NOW,
            fixes=[second.id, first.id]), actor="cli:test", now=NOW)
    session.refresh(second)
    assert second.status == FindingStatus.OPEN
    assert service.list_updates(session) == []
