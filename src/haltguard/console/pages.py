"""What each console page shows, read through the domains' own services in one transaction.

Plain functions over a session with ``now`` passed in, returning plain data the templates
draw; no decisions are made here (the permission checks are the route's, the rules the
domains'). Every list is bounded: the overview shows at most ``OPEN_INCIDENTS_SHOWN_MAX``
incidents, an incident page the newest ``TIMELINE_SHOWN_MAX`` timeline entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from haltguard.console.settings import OVERVIEW_DECISIONS_MAX, TIMELINE_SHOWN_MAX
from haltguard.console.venue_watch import VenueSummary
from haltguard.detection.models import DecisionRecord
from haltguard.detection.records import decisions_query
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import (
    Approval,
    ApprovalStatus,
    Incident,
    IncidentTask,
    ProtectiveHold,
    TimelineEntry,
)
from haltguard.incidents.rules import OPEN_STATUSES, Severity
from haltguard.responders import directory, paging
from haltguard.responders.models import Page, PageStatus
from haltguard.responders.models import ShiftOut as Shift
from haltguard.status import service as status
from haltguard.status.models import CadenceRead, StatusUpdate, UpdateState
from haltguard.status.settings import StatusSettings

OPEN_INCIDENTS_SHOWN_MAX = 100
SCHEDULES_SHOWN_MAX = 20
PAGES_SHOWN_MAX = 20
APPROVALS_SHOWN_MAX = 50
SEVERITY_ORDER = {severity: index for index, severity in enumerate(Severity)}


@dataclass(frozen=True)
class Overview:
    venue: VenueSummary
    round_trip_ms: float | None
    queue_depth: int | None
    incidents: list[Incident]
    incidents_by_severity: dict[str, int]
    on_call: list[Shift]
    unacknowledged_pages: list[Page]
    decisions: list[DecisionRecord]
    approvals: list[Approval]


def overview(session: Session, *, now: datetime, venue: VenueSummary,
             round_trip_ms: float | None, queue_depth: int | None) -> Overview:
    found = list(session.scalars(
        incidents.list_query(open_only=True).limit(OPEN_INCIDENTS_SHOWN_MAX)))
    found.sort(key=lambda incident: (SEVERITY_ORDER.get(incident.severity, 99), -incident.id))
    by_severity: dict[str, int] = {}
    for severity, count in session.execute(
        select(Incident.severity, func.count())
        .where(Incident.status.in_(OPEN_STATUSES)).group_by(Incident.severity)
    ):
        by_severity[str(severity)] = int(count)
    schedules, _ = directory.list_schedules(session, offset=0, limit=SCHEDULES_SHOWN_MAX)
    on_call = [directory.on_call(session, schedule.name, now) for schedule in schedules]
    pages, _ = paging.list_pages(session, status=PageStatus.TRIGGERED, limit=PAGES_SHOWN_MAX)
    decisions = list(session.scalars(decisions_query().limit(OVERVIEW_DECISIONS_MAX)))
    approvals = list(session.scalars(
        incident_flows.approvals_query(None, ApprovalStatus.PENDING).limit(APPROVALS_SHOWN_MAX)))
    return Overview(venue=venue, round_trip_ms=round_trip_ms, queue_depth=queue_depth,
                    incidents=found, incidents_by_severity=by_severity, on_call=on_call,
                    unacknowledged_pages=pages, decisions=decisions, approvals=approvals)


@dataclass(frozen=True)
class IncidentPage:
    incident: Incident
    progress: Any
    timeline: list[TimelineEntry]
    timeline_total: int
    tasks: list[IncidentTask]
    approvals: list[Approval]
    holds: list[ProtectiveHold]
    drafts: list[StatusUpdate]
    cadence: CadenceRead | None
    pages: list[Page]
    venue: VenueSummary
    markets: list[str] = field(default_factory=list)


def incident_page(session: Session, incident_id: int, *, now: datetime, venue: VenueSummary,
                  status_settings: StatusSettings) -> IncidentPage:
    incident = incidents.get(session, incident_id)
    total = int(session.scalar(select(func.count()).select_from(TimelineEntry).where(
        TimelineEntry.incident_id == incident_id)) or 0)
    newest = list(session.scalars(
        select(TimelineEntry).where(TimelineEntry.incident_id == incident_id)
        .order_by(TimelineEntry.id.desc()).limit(TIMELINE_SHOWN_MAX)))
    approvals = list(session.scalars(
        incident_flows.approvals_query(incident_id, None).limit(APPROVALS_SHOWN_MAX)))
    holds = list(session.scalars(select(ProtectiveHold).where(
        ProtectiveHold.incident_id == incident_id).order_by(ProtectiveHold.id)))
    drafts = list(session.scalars(status.updates_query(
        state=UpdateState.DRAFT, incident_id=incident_id)))
    cadence = next((row for row in status.cadence(session, now=now, settings=status_settings)
                    if row.incident_id == incident_id), None)
    pages, _ = paging.list_pages(session, incident_id=incident.ref, limit=PAGES_SHOWN_MAX)
    markets = sorted({row.market for row in venue.markets} | set(incident.affected_markets))
    return IncidentPage(
        incident=incident, progress=incidents.progress(incident, now), timeline=newest,
        timeline_total=total, tasks=list(incident.tasks), approvals=approvals, holds=holds,
        drafts=drafts, cadence=cadence, pages=pages, venue=venue, markets=markets,
    )
