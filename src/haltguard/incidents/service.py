"""Incidents as plain functions over a session.

Every change goes through :func:`record`, which appends to the incident timeline and to the
audit chain in the same transaction: an action either appears in both or did not happen.
Time is always passed in (``now``), never read here, so tests drive it exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from haltguard.incidents.errors import ErrorKind, IncidentError, not_found
from haltguard.incidents.models import (
    HoldKind,
    Incident,
    IncidentCreate,
    IncidentTask,
    IncidentUpdate,
    PeriodMetricsRead,
    Postmortem,
    PostmortemWrite,
    ProtectiveHold,
    PublicUpdateCreate,
    TaskProgress,
    TimelineEntry,
    TimelineKind,
    VenueEventLink,
    VenueEventLinkCreate,
)
from haltguard.incidents.rules import (
    OPEN_STATUSES,
    Category,
    IllegalTransitionError,
    IncidentStatus,
    ResponseMetrics,
    ResponseTimes,
    Severity,
    check_transition,
    mean,
    response_metrics,
)
from haltguard.incidents.runbook import runbook_for
from haltguard.security import audit
from haltguard.venue.types import MarketState

SYSTEM_ACTOR = "system:incidents"


def audit_actor(actor: str) -> str:
    """The audit chain's spelling: ``operator:<username>`` unless already qualified."""
    return actor if ":" in actor else f"operator:{actor}"


# --- the one writer of the timeline ---------------------------------------------------------


def record(
    session: Session,
    incident: Incident,
    *,
    kind: TimelineKind,
    actor: str,
    message: str,
    now: datetime,
    audit_action: str | None,
    details: Mapping[str, Any] | None = None,
) -> TimelineEntry:
    """Append one timeline entry and the matching audit entry. Nothing else writes either
    for incidents, and nothing ever changes or removes an entry once written.

    ``audit_action`` is ``None`` only for an event another domain has already sealed in the
    audit chain in this transaction (a page event: the responders write it), so the chain
    holds it once."""
    payload = dict(details or {})
    entry = TimelineEntry(
        incident_id=incident.id, at=now, actor=actor, kind=kind, message=message, details=payload
    )
    session.add(entry)
    if audit_action is not None:
        audit.record(
            session,
            actor=audit_actor(actor),
            action=audit_action,
            target=incident.ref,
            details={"message": message, **payload},
            at=now,
        )
    session.flush()
    return entry


def record_report(
    session: Session, incident: Incident, *, report: str, output: str, actor: str,
    now: datetime,
) -> TimelineEntry:
    """Note that a report was generated, so the record shows who saw what when."""
    return record(
        session, incident, kind=TimelineKind.REPORT, actor=actor, now=now,
        audit_action="report.generate", message=f"{report} report generated ({output})",
        details={"report": report, "format": output},
    )


def timeline_query(incident_id: int) -> Select[TimelineEntry]:
    return (
        select(TimelineEntry)
        .where(TimelineEntry.incident_id == incident_id)
        .order_by(TimelineEntry.id)
    )


def timeline(session: Session, incident_id: int) -> list[TimelineEntry]:
    return list(session.scalars(timeline_query(incident_id)))


# --- incidents ------------------------------------------------------------------------------


def get(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise not_found("incident", incident_id)
    return incident


def list_query(
    *,
    status: IncidentStatus | None = None,
    severity: Severity | None = None,
    category: Category | None = None,
    open_only: bool = False,
) -> Select[Incident]:
    query = select(Incident).order_by(Incident.id.desc())
    if status is not None:
        query = query.where(Incident.status == status)
    if severity is not None:
        query = query.where(Incident.severity == severity)
    if category is not None:
        query = query.where(Incident.category == category)
    if open_only:
        query = query.where(Incident.status.in_(sorted(OPEN_STATUSES)))
    return query


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise IncidentError(
            ErrorKind.INVALID, "naive_time",
            f"{name} needs a time zone, e.g. 2025-01-01T09:00+09:00",
        )


def open_incident(
    session: Session, data: IncidentCreate, *, actor: str, now: datetime
) -> Incident:
    """Create the incident in ``detected`` and lay out its runbook as tasks."""
    _require_aware(now, "now")
    if data.started_at is not None:
        _require_aware(data.started_at, "started_at")
        if data.started_at > now:
            raise IncidentError(
                ErrorKind.INVALID, "started_in_future",
                "started_at is after the time of detection; give when the impact began",
            )
    runbook = runbook_for(data.category)
    incident = Incident(
        title=data.title.strip(),
        summary=data.summary,
        category=data.category,
        severity=data.severity,
        peak_severity=data.severity,
        status=IncidentStatus.DETECTED,
        affected_markets=list(data.affected_markets),
        affected_components=list(data.affected_components),
        estimated_affected_customers=data.estimated_affected_customers,
        incident_commander=data.incident_commander,
        runbook_name=runbook.name,
        runbook_version=runbook.version,
        runbook_digest=runbook.digest,
        started_at=data.started_at,
        detected_at=now,
        created_by=actor,
        created_at=now,
        cause="",
    )
    session.add(incident)
    session.flush()
    for position, (phase, step) in enumerate(runbook.steps()):
        session.add(
            IncidentTask(
                incident_id=incident.id,
                position=position,
                phase=phase.key,
                step_key=step.key,
                title_ja=step.ja,
                title_en=step.en,
                owner_role=step.owner_role.value,
                due_at=now + timedelta(minutes=step.due_minutes),
                note="",
            )
        )
    session.flush()
    session.refresh(incident, ["tasks"])
    record(
        session, incident, kind=TimelineKind.OPENED, actor=actor, now=now,
        audit_action="incident.open",
        message=f"{incident.ref} opened as {incident.severity} {incident.category}: "
        f"{incident.title}",
        details={
            "severity": incident.severity.value,
            "category": incident.category.value,
            "runbook": f"{runbook.name} v{runbook.version}",
            "tasks": len(incident.tasks),
        },
    )
    if data.incident_commander:
        record(
            session, incident, kind=TimelineKind.COMMANDER_ASSIGNED, actor=actor, now=now,
            audit_action="incident.assign_commander",
            message=f"{data.incident_commander} is the incident commander",
            details={"incident_commander": data.incident_commander},
        )
    return incident


def _check_open(incident: Incident) -> None:
    if incident.status == IncidentStatus.CLOSED:
        raise IncidentError(
            ErrorKind.CONFLICT, "incident_closed",
            f"{incident.ref} is closed; open a new incident to record more",
        )


def update(
    session: Session, incident: Incident, data: IncidentUpdate, *, actor: str, now: datetime
) -> list[str]:
    """Apply the fields given; returns the names of those that changed."""
    _check_open(incident)
    changes: dict[str, Any] = {}
    for name, value in data.model_dump(exclude_unset=True).items():
        if value is None and name in {"title", "severity", "affected_markets",
                                      "affected_components", "summary", "cause"}:
            raise IncidentError(ErrorKind.INVALID, "field_required", f"{name} cannot be emptied")
        if name == "started_at" and value is not None:
            _require_aware(value, "started_at")
            if value > incident.detected_at:
                raise IncidentError(
                    ErrorKind.INVALID, "started_after_detection",
                    "started_at must be at or before the time the incident was detected",
                )
        if getattr(incident, name) != value:
            changes[name] = value
    if not changes:
        return []
    changed = sorted(changes)
    old_severity = incident.severity
    for name, value in changes.items():
        setattr(incident, name, value)
    if "severity" in changes:
        new_severity = Severity(changes.pop("severity"))
        if new_severity.rank < incident.peak_severity.rank:
            incident.peak_severity = new_severity
        record(
            session, incident, kind=TimelineKind.SEVERITY_CHANGED, actor=actor, now=now,
            audit_action="incident.update",
            message=f"severity {old_severity} -> {new_severity}",
            details={"old": old_severity.value, "new": new_severity.value},
        )
    if changes:
        shown = {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in changes.items()
        }
        record(
            session, incident, kind=TimelineKind.UPDATED, actor=actor, now=now,
            audit_action="incident.update",
            message="updated " + ", ".join(sorted(shown)),
            details={"changes": shown},
        )
    return changed


def assign_commander(
    session: Session, incident: Incident, username: str, *, actor: str, now: datetime
) -> None:
    _check_open(incident)
    previous = incident.incident_commander
    incident.incident_commander = username
    record(
        session, incident, kind=TimelineKind.COMMANDER_ASSIGNED, actor=actor, now=now,
        audit_action="incident.assign_commander",
        message=f"{username} is the incident commander"
        + (f" (was {previous})" if previous else ""),
        details={"incident_commander": username, "previous": previous},
    )


def outstanding_holds(
    session: Session, incident: Incident, market_states: Mapping[str, MarketState]
) -> list[str]:
    """What still keeps this incident from being resolved, one line per hold."""
    problems = []
    for hold in active_holds(session, incident.id):
        if hold.kind == HoldKind.MARKET:
            state = market_states.get(hold.target)
            if state == MarketState.OPEN:
                continue
            problems.append(
                f"market {hold.target} is {state or 'unknown to the venue'}: resume it or hand "
                "it to another incident"
            )
        elif hold.kind == HoldKind.KILL_SWITCH:
            problems.append("the kill switch is engaged: release it (with approval) or hand it "
                            "to another incident")
        else:
            problems.append(f"withdrawals of {hold.target} are frozen: unfreeze them or hand "
                            "them to another incident")
    return problems


def active_holds(session: Session, incident_id: int) -> list[ProtectiveHold]:
    return list(
        session.scalars(
            select(ProtectiveHold)
            .where(
                ProtectiveHold.incident_id == incident_id,
                ProtectiveHold.released_at.is_(None),
                ProtectiveHold.handed_to_incident_id.is_(None),
            )
            .order_by(ProtectiveHold.id)
        )
    )


def holds(session: Session, incident_id: int) -> list[ProtectiveHold]:
    return list(
        session.scalars(
            select(ProtectiveHold)
            .where(ProtectiveHold.incident_id == incident_id)
            .order_by(ProtectiveHold.id)
        )
    )


def transition(
    session: Session,
    incident: Incident,
    target: IncidentStatus,
    *,
    actor: str,
    now: datetime,
    note: str = "",
    market_states: Mapping[str, MarketState] | None = None,
) -> None:
    """Move the incident along its lifecycle, enforcing the guard rules.

    Resolving needs every market the incident halted to be open again (``market_states``
    is the venue's answer) or handed to another incident; closing needs a postmortem.
    """
    try:
        check_transition(incident.status, target)
    except IllegalTransitionError as exc:
        raise IncidentError(ErrorKind.CONFLICT, "transition_refused", str(exc)) from None
    if target == IncidentStatus.RESOLVED:
        if market_states is None:
            raise IncidentError(
                ErrorKind.VENUE, "venue_unavailable",
                "cannot check the venue's market states, so the incident cannot be resolved; "
                "retry when the venue answers",
            )
        problems = outstanding_holds(session, incident, market_states)
        if problems:
            raise IncidentError(
                ErrorKind.CONFLICT, "holds_outstanding",
                f"{incident.ref} cannot be resolved yet: " + "; ".join(problems),
            )
        for hold in active_holds(session, incident.id):
            hold.released_at, hold.released_by = now, actor
    if target == IncidentStatus.CLOSED and postmortem(session, incident.id) is None:
        raise IncidentError(
            ErrorKind.CONFLICT, "postmortem_missing",
            f"write the postmortem of {incident.ref} before closing it",
        )
    old = incident.status
    incident.status = target
    if old == IncidentStatus.DETECTED and incident.acknowledged_at is None:
        incident.acknowledged_at = now
    if target in {IncidentStatus.MONITORING, IncidentStatus.RESOLVED}:
        incident.mitigated_at = incident.mitigated_at or now
        incident.acknowledged_at = incident.acknowledged_at or now
    if target == IncidentStatus.RESOLVED:
        incident.resolved_at = now
    if old == IncidentStatus.RESOLVED and target != IncidentStatus.CLOSED:
        incident.resolved_at = None  # reopened: MTTR counts to the final resolution
    if target == IncidentStatus.CLOSED:
        incident.closed_at = now
    record(
        session, incident, kind=TimelineKind.STATUS_CHANGED, actor=actor, now=now,
        audit_action="incident.transition",
        message=f"{old} -> {target}" + (f": {note}" if note else ""),
        details={"old": old.value, "new": target.value, "note": note},
    )


def comment(
    session: Session, incident: Incident, text: str, *, actor: str, now: datetime
) -> TimelineEntry:
    _check_open(incident)
    return record(
        session, incident, kind=TimelineKind.COMMENT, actor=actor, now=now,
        audit_action="incident.comment", message=text.strip(),
    )


def post_public_update(
    session: Session, incident: Incident, data: PublicUpdateCreate, *, actor: str, now: datetime
) -> TimelineEntry:
    """Record what customers were told (manual 2.3); the status page publishes from here."""
    _check_open(incident)
    return record(
        session, incident, kind=TimelineKind.PUBLIC_UPDATE, actor=actor, now=now,
        audit_action="incident.public_update",
        message=data.message_en,
        details={"message_ja": data.message_ja, "message_en": data.message_en,
                 "channels": data.channels},
    )


PUBLIC_UPDATES_MAX = 200


def public_updates_query(
    *, since: datetime | None = None, incident_id: int | None = None
) -> Select[TimelineEntry]:
    """Public updates recorded on incidents (what customers were told), oldest first."""
    query = select(TimelineEntry).where(TimelineEntry.kind == TimelineKind.PUBLIC_UPDATE)
    if since is not None:
        query = query.where(TimelineEntry.at >= since)
    if incident_id is not None:
        query = query.where(TimelineEntry.incident_id == incident_id)
    return query.order_by(TimelineEntry.at, TimelineEntry.id)


def public_updates_since(
    session: Session, since: datetime | None, *, incident_id: int | None = None,
    limit: int = PUBLIC_UPDATES_MAX,
) -> list[TimelineEntry]:
    """What customers were told at or after ``since`` (everything when None), oldest first,
    at most ``limit`` entries: the status page's cadence and the drills read it here rather
    than from the timeline table."""
    if since is not None:
        _require_aware(since, "since")
    if not 1 <= limit <= PUBLIC_UPDATES_MAX:
        raise IncidentError(ErrorKind.INVALID, "limit_out_of_range",
                            f"limit must be 1..{PUBLIC_UPDATES_MAX}, got {limit}")
    return list(session.scalars(
        public_updates_query(since=since, incident_id=incident_id).limit(limit)
    ))


def link_venue_event(
    session: Session, incident: Incident, data: VenueEventLinkCreate, *, actor: str, now: datetime
) -> VenueEventLink:
    _check_open(incident)
    link = VenueEventLink(
        incident_id=incident.id, seq=data.seq, event_type=data.event_type,
        summary=data.summary, linked_at=now, linked_by=actor,
    )
    session.add(link)
    record(
        session, incident, kind=TimelineKind.VENUE_EVENT_LINKED, actor=actor, now=now,
        audit_action="incident.link_venue_event",
        message=f"venue event {data.event_type}"
        + (f" #{data.seq}" if data.seq is not None else "") + f": {data.summary}",
        details={"seq": data.seq, "event_type": data.event_type},
    )
    return link


def venue_events(session: Session, incident_id: int) -> list[VenueEventLink]:
    return list(
        session.scalars(
            select(VenueEventLink)
            .where(VenueEventLink.incident_id == incident_id)
            .order_by(VenueEventLink.id)
        )
    )


# --- tasks ----------------------------------------------------------------------------------


def is_overdue(task: IncidentTask, now: datetime) -> bool:
    return task.done_at is None and task.due_at < now


def progress(incident: Incident, now: datetime) -> TaskProgress:
    return TaskProgress(
        done=sum(1 for task in incident.tasks if task.done_at is not None),
        total=len(incident.tasks),
        overdue=sum(1 for task in incident.tasks if is_overdue(task, now)),
    )


def get_task(incident: Incident, task_ref: str) -> IncidentTask:
    """A task by its id or its runbook step key."""
    for task in incident.tasks:
        if str(task.id) == task_ref or task.step_key == task_ref:
            return task
    raise not_found("task", f"{task_ref} in {incident.ref}")


def complete_task(
    session: Session, incident: Incident, task_ref: str, *, actor: str, now: datetime,
    note: str = "",
) -> IncidentTask:
    _check_open(incident)
    task = get_task(incident, task_ref)
    if task.done_at is not None:
        raise IncidentError(
            ErrorKind.CONFLICT, "task_already_done",
            f"task {task.step_key} was done by {task.done_by} at {task.done_at.isoformat()}",
        )
    task.done_at, task.done_by, task.note = now, actor, note
    late = task.due_at < now
    done = sum(1 for each in incident.tasks if each.done_at is not None)
    record(
        session, incident, kind=TimelineKind.TASK_DONE, actor=actor, now=now,
        audit_action="task.done",
        message=f"task done: {task.title_en}" + (f" ({note})" if note else ""),
        details={"task": task.step_key, "title_ja": task.title_ja, "late": late,
                 "progress": f"{done}/{len(incident.tasks)}"},
    )
    return task


def overdue_tasks(incident: Incident, now: datetime) -> list[IncidentTask]:
    return [task for task in incident.tasks if is_overdue(task, now)]


# --- postmortem and handoffs ------------------------------------------------------------------


def postmortem(session: Session, incident_id: int) -> Postmortem | None:
    return session.scalar(select(Postmortem).where(Postmortem.incident_id == incident_id))


def write_postmortem(
    session: Session, incident: Incident, data: PostmortemWrite, *, actor: str, now: datetime
) -> Postmortem:
    """Write or rewrite the postmortem; it can be written once the incident is resolved."""
    _check_open(incident)
    if incident.status != IncidentStatus.RESOLVED:
        raise IncidentError(
            ErrorKind.CONFLICT, "incident_not_resolved",
            f"{incident.ref} is {incident.status}; write the postmortem once it is resolved",
        )
    existing = postmortem(session, incident.id)
    document = existing or Postmortem(incident_id=incident.id)
    document.summary = data.summary
    document.cause = data.cause
    document.went_well = list(data.went_well)
    document.went_badly = list(data.went_badly)
    document.recurrence_prevention = list(data.recurrence_prevention)
    document.action_items = [item.model_dump() for item in data.action_items]
    document.written_by, document.written_at = actor, now
    if existing is None:
        session.add(document)
    if not incident.cause:
        incident.cause = data.cause
    record(
        session, incident, kind=TimelineKind.POSTMORTEM, actor=actor, now=now,
        audit_action="incident.postmortem",
        message=("postmortem rewritten" if existing else "postmortem written")
        + f" with {len(data.action_items)} action items",
        details={"action_items": len(data.action_items)},
    )
    return document


def add_hold(
    session: Session, incident: Incident, kind: HoldKind, target: str, *, actor: str,
    now: datetime,
) -> ProtectiveHold:
    """Remember that this incident put ``kind``/``target`` on the venue (idempotent)."""
    for hold in active_holds(session, incident.id):
        if hold.kind == kind and hold.target == target:
            return hold
    hold = ProtectiveHold(
        incident_id=incident.id, kind=kind, target=target, placed_at=now, placed_by=actor
    )
    session.add(hold)
    session.flush()
    return hold


def release_holds(
    session: Session, incident: Incident, kind: HoldKind, target: str, *, actor: str,
    now: datetime,
) -> int:
    released = 0
    for hold in active_holds(session, incident.id):
        if hold.kind == kind and hold.target == target:
            hold.released_at, hold.released_by = now, actor
            released += 1
    return released


def hand_off(
    session: Session, incident: Incident, target: str, to_incident: Incident, *, actor: str,
    now: datetime, note: str = "",
) -> None:
    """Pass a hold (a halted market, the kill switch as ``kill_switch``, or frozen
    withdrawals as ``withdrawals:ASSET``) to another open incident that takes it over."""
    _check_open(incident)
    if to_incident.id == incident.id:
        raise IncidentError(ErrorKind.INVALID, "handoff_to_self",
                            "hand the hold to a different incident")
    if to_incident.status not in OPEN_STATUSES:
        raise IncidentError(
            ErrorKind.CONFLICT, "handoff_target_not_open",
            f"{to_incident.ref} is {to_incident.status}; hand over to an open incident",
        )
    kind, key = _hold_key(target)
    matching = [hold for hold in active_holds(session, incident.id)
                if hold.kind == kind and hold.target == key]
    if not matching:
        held = ", ".join(_hold_name(hold) for hold in active_holds(session, incident.id))
        raise IncidentError(
            ErrorKind.NOT_FOUND, "hold_not_found",
            f"{incident.ref} holds no {target}; it holds: {held or 'nothing'}",
        )
    for hold in matching:
        hold.handed_to_incident_id = to_incident.id
    add_hold(session, to_incident, kind, key, actor=actor, now=now)
    details = {"hold": target, "from": incident.ref, "to": to_incident.ref, "note": note}
    record(session, incident, kind=TimelineKind.HANDOFF, actor=actor, now=now,
           audit_action="incident.handoff",
           message=f"{target} handed to {to_incident.ref}" + (f": {note}" if note else ""),
           details=details)
    record(session, to_incident, kind=TimelineKind.HANDOFF, actor=actor, now=now,
           audit_action="incident.handoff",
           message=f"{target} taken over from {incident.ref}" + (f": {note}" if note else ""),
           details=details)


def _hold_key(target: str) -> tuple[HoldKind, str]:
    if target == HoldKind.KILL_SWITCH.value:
        return HoldKind.KILL_SWITCH, ""
    if target.startswith("withdrawals:"):
        return HoldKind.WITHDRAWALS, target.removeprefix("withdrawals:")
    return HoldKind.MARKET, target


def _hold_name(hold: ProtectiveHold) -> str:
    if hold.kind == HoldKind.KILL_SWITCH:
        return HoldKind.KILL_SWITCH.value
    if hold.kind == HoldKind.WITHDRAWALS:
        return f"withdrawals:{hold.target}"
    return hold.target


# --- response metrics -----------------------------------------------------------------------


def metrics(incident: Incident) -> ResponseMetrics:
    return response_metrics(
        ResponseTimes(
            started_at=incident.started_at,
            detected_at=incident.detected_at,
            acknowledged_at=incident.acknowledged_at,
            mitigated_at=incident.mitigated_at,
            resolved_at=incident.resolved_at,
        )
    )


PERIOD_INCIDENTS_MAX = 10_000


def period_metrics(session: Session, since: datetime, until: datetime) -> PeriodMetricsRead:
    """Mean response times of the incidents detected in ``[since, until)``."""
    _require_aware(since, "since")
    _require_aware(until, "until")
    if until <= since:
        raise IncidentError(ErrorKind.INVALID, "empty_period", "until must be after since")
    in_period = (Incident.detected_at >= since, Incident.detected_at < until)
    count = session.scalar(select(func.count()).select_from(Incident).where(*in_period)) or 0
    if count > PERIOD_INCIDENTS_MAX:
        raise IncidentError(
            ErrorKind.INVALID, "period_too_large",
            f"{count} incidents in the period; ask for at most {PERIOD_INCIDENTS_MAX} at once",
        )
    incidents = list(session.scalars(select(Incident).where(*in_period)))
    each = [metrics(incident) for incident in incidents]
    by_severity = {severity.value: 0 for severity in Severity}
    for incident in incidents:
        by_severity[incident.severity.value] += 1
    return PeriodMetricsRead(
        since=since,
        until=until,
        incidents=len(incidents),
        by_severity=by_severity,
        mean_time_to_detect_s=mean([m.time_to_detect_s for m in each]),
        mean_time_to_acknowledge_s=mean([m.time_to_acknowledge_s for m in each]),
        mean_time_to_mitigate_s=mean([m.time_to_mitigate_s for m in each]),
        mean_time_to_resolve_s=mean([m.time_to_resolve_s for m in each]),
    )


def first_detected_since(session: Session, category: Category, since: datetime) -> int | None:
    """The id of the first incident of ``category`` detected at or after ``since`` (a drill
    looking for the incident its fault caused), or ``None``."""
    _require_aware(since, "since")
    found = session.scalar(
        select(Incident.id)
        .where(Incident.category == category, Incident.detected_at >= since)
        .order_by(Incident.id)
        .limit(1)
    )
    return None if found is None else int(found)
