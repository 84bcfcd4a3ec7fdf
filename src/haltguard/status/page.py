"""The snapshot the page is drawn from: components with their uptime bars, the public
incidents with their published updates, and the announced maintenances, read from the
database as it is now.

Only reads; the renderers (``render``, ``statuspage``, ``feeds``) are pure functions of the
:class:`~haltguard.status.snapshot.Snapshot` built here. It keeps no more maintenances than
the Statuspage API shows (``statuspage.API_EVENTS_MAX``, one value for both). Builds on the
components and the updates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from haltguard.incidents import service as incidents
from haltguard.incidents.models import Incident
from haltguard.status.components import REVISION_ROW_ID, components_query, incident_keys
from haltguard.status.models import (
    ComponentHistory,
    Maintenance,
    PublicIncident,
    StatusRevision,
    StatusUpdate,
    UpdateState,
)
from haltguard.status.rules import (
    SEVERITY_IMPACT,
    ComponentStatus,
    Impact,
    UpdateStatus,
    page_indicator,
)
from haltguard.status.settings import StatusSettings
from haltguard.status.snapshot import (
    AffectedView,
    ComponentView,
    EventView,
    PageInfo,
    Snapshot,
    UpdateView,
)
from haltguard.status.statuspage import API_EVENTS_MAX
from haltguard.status.texts import Bilingual
from haltguard.status.updates import published_updates
from haltguard.status.uptime import UPTIME_DAYS, StatusSpan, uptime_bars

PUBLIC_INCIDENTS_MAX = 200
HISTORY_WINDOW = timedelta(days=UPTIME_DAYS + 1)


def _spans(history: Sequence[ComponentHistory]) -> list[StatusSpan]:
    spans = []
    for index, row in enumerate(history):
        end = history[index + 1].started_at if index + 1 < len(history) else None
        spans.append(StatusSpan(row.status, row.started_at, end))
    return spans


def _histories(session: Session, now: datetime) -> dict[int, list[ComponentHistory]]:
    """Each component's history over the uptime window, starting with the row in force at
    the window's start."""
    window_start = now - HISTORY_WINDOW
    found: dict[int, list[ComponentHistory]] = defaultdict(list)
    latest_before = (
        select(ComponentHistory.component_id, func.max(ComponentHistory.id).label("row_id"))
        .where(ComponentHistory.started_at < window_start)
        .group_by(ComponentHistory.component_id)
        .subquery()
    )
    for row in session.scalars(
        select(ComponentHistory).where(ComponentHistory.id.in_(select(latest_before.c.row_id)))
    ):
        found[row.component_id].append(row)
    for row in session.scalars(
        select(ComponentHistory).where(ComponentHistory.started_at >= window_start)
        .order_by(ComponentHistory.started_at, ComponentHistory.id)
    ):
        found[row.component_id].append(row)
    return found


def _component_views(session: Session, now: datetime) -> tuple[ComponentView, ...]:
    rows = list(session.scalars(components_query()))
    histories = _histories(session, now)
    children: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row.group_key:
            children[row.group_key].append(row.key)
    views: dict[str, ComponentView] = {}
    for row in rows:
        bars = uptime_bars(_spans(histories.get(row.id, [])), now=now)
        percent = bars.uptime_percent
        views[row.key] = ComponentView(
            key=row.key, name=Bilingual(row.name_ja, row.name_en),
            description=Bilingual(row.description_ja, row.description_en), status=row.status,
            group_key=row.group_key, children=tuple(children.get(row.key, ())),
            position=row.position, showcase=row.showcase,
            only_show_if_degraded=row.only_show_if_degraded, created_at=row.created_at,
            updated_at=row.updated_at,
            days=tuple((bar.day, bar.status) for bar in bars.days),
            uptime_percent=None if percent is None else f"{percent:.2f}",
        )
    ordered = []
    for row in rows:
        if row.group_key is None:
            ordered.append(views[row.key])
            ordered += [views[key] for key in children.get(row.key, ())]
    ordered += [views[row.key] for row in rows
                if row.group_key is not None and row.group_key not in views]
    return tuple(ordered)


def _update_view(update: StatusUpdate) -> UpdateView:
    assert update.published_at is not None
    return UpdateView(
        id=f"U-{update.id}", status=update.status, body=Bilingual(update.body_ja, update.body_en),
        published_at=update.published_at,
        affected=tuple(AffectedView(item["code"], ComponentStatus(item["old_status"]),
                                    ComponentStatus(item["new_status"]))
                       for item in update.affected),
    )


def _incident_view(session: Session, public: PublicIncident, incident: Incident,
                   updates: Sequence[StatusUpdate]) -> EventView:
    resolved_at: datetime | None = None
    monitoring_at: datetime | None = None
    for update in updates:
        at = update.published_at
        if update.status in {UpdateStatus.RESOLVED, UpdateStatus.POSTMORTEM}:
            resolved_at = resolved_at or at
        else:
            resolved_at = None
        if update.status == UpdateStatus.MONITORING:
            monitoring_at = monitoring_at or at
    keys = list(dict.fromkeys(
        [*incident_keys(session, incident), *(key for u in updates for key in u.components)]
    ))
    assert updates[-1].published_at is not None and updates[0].published_at is not None
    return EventView(
        id=incident.ref, kind="incident", name=Bilingual(public.name_ja, public.name_en),
        status=updates[-1].status, impact=SEVERITY_IMPACT[incident.peak_severity],
        created_at=updates[0].published_at, updated_at=updates[-1].published_at,
        started_at=incident.started_at or incident.detected_at, monitoring_at=monitoring_at,
        resolved_at=resolved_at, components=tuple(keys),
        updates=tuple(_update_view(update) for update in reversed(updates)),
    )


def _incident_views(session: Session, now: datetime) -> tuple[EventView, ...]:
    publics = list(session.scalars(
        select(PublicIncident).order_by(PublicIncident.created_at.desc(), PublicIncident.id.desc())
        .limit(PUBLIC_INCIDENTS_MAX)
    ))
    by_incident: dict[int, list[StatusUpdate]] = defaultdict(list)
    if publics:
        for update in session.scalars(
            select(StatusUpdate).where(
                StatusUpdate.state == UpdateState.PUBLISHED,
                StatusUpdate.incident_id.in_([p.incident_id for p in publics]),
            ).order_by(StatusUpdate.published_at, StatusUpdate.id)
        ):
            assert update.incident_id is not None
            by_incident[update.incident_id].append(update)
    views = []
    for public in publics:
        updates = by_incident.get(public.incident_id)
        if not updates:
            continue
        view = _incident_view(session, public, incidents.get(session, public.incident_id),
                              updates)
        if view.resolved_at is None or view.resolved_at >= now - timedelta(days=UPTIME_DAYS):
            views.append(view)
    return tuple(sorted(views, key=lambda v: (v.created_at, v.id), reverse=True))


def _maintenance_views(session: Session) -> tuple[EventView, ...]:
    rows = list(session.scalars(
        select(Maintenance).where(Maintenance.announced_at.is_not(None))
        .order_by(Maintenance.scheduled_for.desc(), Maintenance.id.desc()).limit(API_EVENTS_MAX)
    ))
    views = []
    for maintenance in rows:
        updates = published_updates(session, maintenance_id=maintenance.id)
        if not updates:
            continue
        assert maintenance.announced_at is not None and updates[-1].published_at is not None
        views.append(EventView(
            id=maintenance.ref, kind="maintenance",
            name=Bilingual(maintenance.name_ja, maintenance.name_en),
            status=maintenance.status.value, impact=Impact.MAINTENANCE,
            created_at=maintenance.announced_at, updated_at=updates[-1].published_at,
            started_at=maintenance.started_at or maintenance.scheduled_for,
            monitoring_at=None, resolved_at=maintenance.completed_at,
            components=tuple(maintenance.components),
            updates=tuple(_update_view(update) for update in reversed(updates)),
            scheduled_for=maintenance.scheduled_for,
            scheduled_until=maintenance.scheduled_until,
        ))
    return tuple(sorted(views, key=lambda v: (v.scheduled_for or v.created_at, v.id)))


def build_snapshot(session: Session, *, now: datetime, settings: StatusSettings) -> Snapshot:
    """Everything the page shows, from the database as it is now."""
    components = _component_views(session, now)
    incident_views = _incident_views(session, now)
    maintenance_views = _maintenance_views(session)
    leaves = [component.status for component in components if not component.is_group]
    impacts = [incident.impact for incident in incident_views if not incident.resolved]
    impacts += [m.impact for m in maintenance_views if m.status in {"in_progress", "verifying"}]
    moments = [component.updated_at for component in components]
    moments += [event.updated_at for event in (*incident_views, *maintenance_views)]
    revision_row = session.get(StatusRevision, REVISION_ROW_ID)
    if revision_row is not None:
        moments.append(revision_row.changed_at)
    return Snapshot(
        page=PageInfo(id=settings.page_id, name=settings.name, url=settings.url),
        updated_at=max(moments) if moments else now,
        indicator=page_indicator(leaves, impacts),
        components=components,
        incidents=incident_views,
        maintenances=maintenance_views,
    )
