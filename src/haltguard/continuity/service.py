"""The continuity records as plain functions over a session, ``now`` (or ``today``) passed
in: insurance policies, training and drill participation, vulnerability findings, the
software-update log. Every change writes the audit chain in the same transaction.

An owner or person named must be a person of ``haltguard oncall``, since that is who a
reminder pages; a name nobody can be paged at is refused when it is given, not discovered
when the reminder is due.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.orm import Session

from haltguard.common.errors import HaltguardError
from haltguard.continuity.errors import RecordInputError, RecordStateError, not_found
from haltguard.continuity.models import (
    FindingClose,
    FindingRead,
    FindingStatus,
    ImportSummary,
    IncidentInsurance,
    InsuranceCreate,
    InsurancePolicy,
    InsuranceRead,
    Severity,
    SoftwareUpdate,
    TrainingComplete,
    TrainingCreate,
    TrainingRead,
    TrainingRecord,
    UpdateCreate,
    UpdateRead,
    VulnerabilityFinding,
)
from haltguard.continuity.scanners import Scan
from haltguard.continuity.settings import ContinuitySettings
from haltguard.incidents import service as incidents
from haltguard.responders import service as responders
from haltguard.security import audit
from haltguard.status import service as status

LIST_MAX = 1_000
LOOKUP_BATCH = 1_000
"""Finding keys looked up per query on import (within every database's parameter limit)."""


def _require_person(session: Session, handle: str, what: str) -> None:
    try:
        responders.get_person(session, handle)
    except HaltguardError:
        raise RecordInputError(
            f"{what} {handle!r} is not a person of the on-call directory, so no reminder "
            "could reach them",
            message_ja=f"{what} {handle!r} は連絡先に登録されていないため、督促を送れません",
            next_step=f"add them first with `haltguard oncall person add {handle} --name ... "
                      "--email ...`, or name someone who is there",
        ) from None


# --- insurance ------------------------------------------------------------------------------


def insurance_read(policy: InsurancePolicy, today: date) -> InsuranceRead:
    return InsuranceRead(
        id=policy.id, name=policy.name, insurer=policy.insurer,
        policy_number=policy.policy_number, cover_ja=policy.cover_ja,
        cover_en=policy.cover_en, categories=list(policy.categories),
        limit_minor=policy.limit_minor, currency=policy.currency,
        contacts=list(policy.contacts), owner=policy.owner, starts_on=policy.starts_on,
        expires_on=policy.expires_on,
        in_force=policy.starts_on <= today <= policy.expires_on,
        days_to_expiry=(policy.expires_on - today).days)


def add_insurance(session: Session, data: InsuranceCreate, *, actor: str,
                  now: datetime) -> InsurancePolicy:
    _require_person(session, data.owner, "the policy's owner")
    policy = InsurancePolicy(
        name=data.name, insurer=data.insurer, policy_number=data.policy_number,
        cover_ja=data.cover_ja, cover_en=data.cover_en,
        categories=[category.value for category in data.categories],
        limit_minor=data.limit_minor, currency=data.currency,
        contacts=[contact.model_dump() for contact in data.contacts], owner=data.owner,
        starts_on=data.starts_on, expires_on=data.expires_on, created_by=actor,
        created_at=now)
    session.add(policy)
    session.flush()
    audit.record(session, actor=actor, action="continuity.insurance_add",
                 target=f"insurance:{policy.id}",
                 details={"name": data.name, "insurer": data.insurer,
                          "expires_on": data.expires_on.isoformat()}, at=now)
    return policy


def get_insurance(session: Session, policy_id: int) -> InsurancePolicy:
    policy = session.get(InsurancePolicy, policy_id)
    if policy is None:
        raise not_found("insurance policy", policy_id,
                        "list them with: haltguard insurance list")
    return policy


def list_insurance(session: Session) -> list[InsurancePolicy]:
    return list(session.scalars(select(InsurancePolicy).order_by(
        InsurancePolicy.expires_on, InsurancePolicy.id).limit(LIST_MAX)))


def insurance_for_incident(session: Session, incident_id: int, today: date) -> IncidentInsurance:
    """The policies in force today that cover the incident's category, with their claim
    contacts: what the incident page links to."""
    incident = incidents.get(session, incident_id)
    category = str(incident.category)
    covering = [insurance_read(policy, today) for policy in list_insurance(session)
                if category in policy.categories]
    return IncidentInsurance(incident_id=incident_id, category=category,
                             policies=[policy for policy in covering if policy.in_force])


# --- training ---------------------------------------------------------------------------------


def training_read(record: TrainingRecord, today: date) -> TrainingRead:
    return TrainingRead(id=record.id, person=record.person, kind=record.kind,
                        course=record.course, due_on=record.due_on,
                        completed_on=record.completed_on, evidence=record.evidence,
                        overdue=record.completed_on is None and record.due_on < today)


def add_training(session: Session, data: TrainingCreate, *, actor: str,
                 now: datetime) -> TrainingRecord:
    _require_person(session, data.person, "the person")
    record = TrainingRecord(person=data.person, kind=data.kind.value, course=data.course,
                            due_on=data.due_on, completed_on=None, evidence="",
                            recorded_by=actor, recorded_at=now)
    session.add(record)
    session.flush()
    audit.record(session, actor=actor, action="continuity.training_assign",
                 target=f"training:{record.id}",
                 details={"person": data.person, "course": data.course,
                          "due_on": data.due_on.isoformat()}, at=now)
    return record


def complete_training(session: Session, record_id: int, data: TrainingComplete, *,
                      actor: str, now: datetime) -> tuple[TrainingRecord, TrainingRecord | None]:
    """Mark a record done; with ``next_due_on`` the next round is assigned at once."""
    record = session.get(TrainingRecord, record_id)
    if record is None:
        raise not_found("training record", record_id, "list them with: haltguard training list")
    if record.completed_on is not None:
        raise RecordStateError(
            f"training record {record_id} was already completed on {record.completed_on}",
            message_ja=f"研修記録 {record_id} は {record.completed_on} に完了済みです",
            next_step="assign the next round with `haltguard training assign`")
    if data.next_due_on is not None and data.next_due_on <= data.completed_on:
        raise RecordInputError(
            "next_due_on must come after completed_on",
            message_ja="次回期限は完了日より後でなければなりません",
            next_step="give a later --next-due date")
    record.completed_on = data.completed_on
    record.evidence = data.evidence
    following = None
    if data.next_due_on is not None:
        following = TrainingRecord(person=record.person, kind=record.kind, course=record.course,
                                   due_on=data.next_due_on, completed_on=None, evidence="",
                                   recorded_by=actor, recorded_at=now)
        session.add(following)
    session.flush()
    audit.record(session, actor=actor, action="continuity.training_complete",
                 target=f"training:{record.id}",
                 details={"completed_on": data.completed_on.isoformat(),
                          "next_due_on": None if data.next_due_on is None
                          else data.next_due_on.isoformat()}, at=now)
    return record, following


def list_training(session: Session, *, today: date, person: str | None = None,
                  overdue_only: bool = False) -> list[TrainingRecord]:
    query = select(TrainingRecord).order_by(TrainingRecord.due_on, TrainingRecord.id)
    if person is not None:
        query = query.where(TrainingRecord.person == person)
    if overdue_only:
        query = query.where(TrainingRecord.completed_on.is_(None),
                            TrainingRecord.due_on < today)
    return list(session.scalars(query.limit(LIST_MAX)))


# --- vulnerability findings ------------------------------------------------------------------


def finding_read(finding: VulnerabilityFinding, today: date) -> FindingRead:
    return FindingRead(
        id=finding.id, scanner=finding.scanner, identifier=finding.identifier,
        package=finding.package, installed_version=finding.installed_version,
        fix_versions=list(finding.fix_versions), location=finding.location,
        title=finding.title, severity=finding.severity, owner=finding.owner,
        first_seen_at=finding.first_seen_at, last_seen_at=finding.last_seen_at,
        due_on=finding.due_on, status=finding.status,
        overdue=finding.status == FindingStatus.OPEN and finding.due_on < today,
        closed_at=finding.closed_at, closed_by=finding.closed_by,
        closure_note=finding.closure_note, update_id=finding.update_id)


def import_scan(session: Session, scan: Scan, *, owner: str, actor: str, now: datetime,
                settings: ContinuitySettings) -> ImportSummary:
    """Store a scan's findings: a new finding gets its deadline by severity from today; one
    already tracked is marked seen again (and reopened if it had been closed as fixed,
    since the scanner still finds it). Rows are written in bulk: a scan of 20,000 findings
    is one import, not 20,000 (``benchmarks/bench_continuity.py``)."""
    _require_person(session, owner, "the findings' owner")
    keys = [finding.key for finding in scan.findings]
    known: dict[str, tuple[int, str, str]] = {}
    for start in range(0, len(keys), LOOKUP_BATCH):
        for row in session.execute(select(
                VulnerabilityFinding.id, VulnerabilityFinding.finding_key,
                VulnerabilityFinding.status, VulnerabilityFinding.closure_note).where(
                VulnerabilityFinding.finding_key.in_(keys[start:start + LOOKUP_BATCH]))):
            known[row.finding_key] = (row.id, row.status, row.closure_note)
    new_rows: list[dict[str, object]] = []
    seen_rows: list[dict[str, object]] = []
    reopened = 0
    for finding in scan.findings:
        found = known.get(finding.key)
        if found is None:
            days = settings.finding_days[finding.severity]
            new_rows.append({
                "finding_key": finding.key, "scanner": finding.scanner,
                "identifier": finding.identifier, "package": finding.package,
                "installed_version": finding.installed_version,
                "fix_versions": list(finding.fix_versions), "location": finding.location,
                "title": finding.title, "severity": finding.severity.value, "owner": owner,
                "first_seen_at": now, "last_seen_at": now,
                "due_on": now.date() + timedelta(days=days), "status": FindingStatus.OPEN.value,
                "closed_at": None, "closed_by": "", "closure_note": "", "update_id": None})
            continue
        finding_id, status, note = found
        if status == FindingStatus.FIXED:
            seen_rows.append({
                "id": finding_id, "last_seen_at": now, "status": FindingStatus.OPEN.value,
                "closed_at": None, "closure_note": f"reopened {now.date()}: still reported "
                                                   f"by {scan.scanner}; {note}"})
            reopened += 1
        else:
            seen_rows.append({"id": finding_id, "last_seen_at": now})
    if new_rows:
        session.execute(insert(VulnerabilityFinding), new_rows)
    if seen_rows:
        session.execute(update(VulnerabilityFinding), seen_rows)
    session.flush()
    audit.record(session, actor=actor, action="continuity.findings_import",
                 target=f"scanner:{scan.scanner}"[:200],
                 details={"found": len(scan.findings), "new": len(new_rows),
                          "seen_again": len(seen_rows), "reopened": reopened,
                          "owner": owner}, at=now)
    return ImportSummary(scanner=scan.scanner, found=len(scan.findings), new=len(new_rows),
                         seen_again=len(seen_rows), reopened=reopened)


def findings_query(*, today: date, status: FindingStatus | None = None,
                   overdue_only: bool = False,
                   severity: Severity | None = None) -> Select[VulnerabilityFinding]:
    query = select(VulnerabilityFinding).order_by(VulnerabilityFinding.due_on,
                                                  VulnerabilityFinding.id)
    if status is not None:
        query = query.where(VulnerabilityFinding.status == status.value)
    if severity is not None:
        query = query.where(VulnerabilityFinding.severity == severity.value)
    if overdue_only:
        query = query.where(VulnerabilityFinding.status == FindingStatus.OPEN.value,
                            VulnerabilityFinding.due_on < today)
    return query


def list_findings(session: Session, *, today: date, status: FindingStatus | None = None,
                  overdue_only: bool = False,
                  severity: Severity | None = None) -> list[VulnerabilityFinding]:
    return list(session.scalars(findings_query(
        today=today, status=status, overdue_only=overdue_only, severity=severity).limit(LIST_MAX)))


def count_findings(session: Session, *, today: date) -> dict[str, int]:
    """Open findings by severity, and how many of them are overdue."""
    rows = session.execute(select(VulnerabilityFinding.severity, func.count()).where(
        VulnerabilityFinding.status == FindingStatus.OPEN.value).group_by(
        VulnerabilityFinding.severity)).all()
    counts = {str(severity): int(count) for severity, count in rows}
    counts["overdue"] = int(session.scalar(select(func.count()).select_from(
        findings_query(today=today, overdue_only=True).subquery())) or 0)
    return counts


def close_finding(session: Session, finding_id: int, data: FindingClose, *, actor: str,
                  now: datetime, update_id: int | None = None) -> VulnerabilityFinding:
    finding = session.get(VulnerabilityFinding, finding_id)
    if finding is None:
        raise not_found("finding", finding_id, "list them with: haltguard vuln list")
    if finding.status != FindingStatus.OPEN:
        raise RecordStateError(
            f"finding {finding_id} is already {finding.status}",
            message_ja=f"指摘 {finding_id} は既に {finding.status} です",
            next_step="only an open finding can be closed")
    if data.status is FindingStatus.OPEN:
        raise RecordInputError("a finding is closed as fixed or accepted, not open",
                               message_ja="指摘は fixed か accepted で閉じてください",
                               next_step="give --status fixed or --status accepted")
    finding.status = data.status.value
    finding.closed_at = now
    finding.closed_by = actor
    finding.closure_note = data.note
    finding.update_id = update_id
    session.flush()
    audit.record(session, actor=actor, action="continuity.finding_close",
                 target=f"finding:{finding.id}",
                 details={"status": data.status.value, "note": data.note[:500],
                          "update_id": update_id}, at=now)
    return finding


# --- the software-update log ---------------------------------------------------------------


def update_read(session: Session, update: SoftwareUpdate) -> UpdateRead:
    maintenance = None
    if update.maintenance_id is not None:
        try:
            maintenance = status.get_maintenance(session, update.maintenance_id)
        except HaltguardError:
            maintenance = None
    window = None if maintenance is None else [maintenance.scheduled_for,
                                                maintenance.scheduled_until]
    return UpdateRead(
        id=update.id, component=update.component, from_version=update.from_version,
        to_version=update.to_version, applied_at=update.applied_at,
        applied_by=update.applied_by, note=update.note,
        maintenance_id=update.maintenance_id,
        maintenance_name_en=None if maintenance is None else maintenance.name_en,
        maintenance_name_ja=None if maintenance is None else maintenance.name_ja,
        maintenance_window=window,
        in_maintenance_window=None if window is None
        else window[0] <= update.applied_at <= window[1],
        fixes=list(update.fixes))


def log_update(session: Session, data: UpdateCreate, *, actor: str,
               now: datetime) -> SoftwareUpdate:
    """Record an applied update; the maintenance it names must exist, and each finding it
    fixes must be open (all are closed with it, or nothing is recorded)."""
    if data.maintenance_id is not None:
        status.get_maintenance(session, data.maintenance_id)
    findings = []
    for finding_id in dict.fromkeys(data.fixes):
        finding = session.get(VulnerabilityFinding, finding_id)
        if finding is None or finding.status != FindingStatus.OPEN:
            raise RecordInputError(
                f"finding {finding_id} is not an open finding; nothing was recorded",
                message_ja=f"指摘 {finding_id} は未対応の指摘ではありません。何も記録していません",
                next_step="list the open ones with `haltguard vuln list --status open`")
        findings.append(finding)
    update = SoftwareUpdate(component=data.component, from_version=data.from_version,
                            to_version=data.to_version, applied_at=data.applied_at,
                            applied_by=actor, note=data.note,
                            maintenance_id=data.maintenance_id,
                            fixes=[finding.id for finding in findings])
    session.add(update)
    session.flush()
    audit.record(session, actor=actor, action="continuity.update_log",
                 target=f"update:{update.id}",
                 details={"component": data.component, "to_version": data.to_version,
                          "maintenance_id": data.maintenance_id,
                          "fixes": update.fixes}, at=now)
    for finding in findings:
        close_finding(session, finding.id, FindingClose(
            status=FindingStatus.FIXED,
            note=f"fixed by update {update.id}: {data.component} {data.to_version}"),
            actor=actor, now=now, update_id=update.id)
    return update


def list_updates(session: Session) -> list[SoftwareUpdate]:
    return list(session.scalars(select(SoftwareUpdate).order_by(
        SoftwareUpdate.applied_at.desc(), SoftwareUpdate.id.desc()).limit(LIST_MAX)))
