"""Maintenance: scheduled ahead with a drafted announcement, reported on by published
updates, and started and completed on time by the status loop.

Nothing is public until the announcement is published. Drafts and publishing are shared
with incident updates (:mod:`haltguard.status.updates`, whose ``publish`` calls
:func:`publish_maintenance_update` for a maintenance's update); this module imports only
the components and the notices, never the updates.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from haltguard.incidents import service as incidents
from haltguard.notify import service as notify
from haltguard.security import audit
from haltguard.status.components import SYSTEM_ACTOR, check_component_keys, mark_changed
from haltguard.status.errors import conflict, invalid, not_found
from haltguard.status.models import (
    Maintenance,
    MaintenanceCreate,
    MaintenanceDraftRequest,
    StatusUpdate,
    UpdateState,
)
from haltguard.status.notices import queue_update_notice
from haltguard.status.rules import MaintenanceStatus
from haltguard.status.settings import StatusSettings
from haltguard.status.texts import (
    Bilingual,
    MaintenanceFacts,
    maintenance_name,
    maintenance_update_text,
)

MAINTENANCE_DURATION_MAX = timedelta(days=7)


def get_maintenance(session: Session, maintenance_id: int) -> Maintenance:
    maintenance = session.get(Maintenance, maintenance_id)
    if maintenance is None:
        raise not_found("maintenance", maintenance_id,
                        "list them with GET /api/status/maintenances")
    return maintenance


def maintenances_query() -> Select[Maintenance]:
    return select(Maintenance).order_by(Maintenance.scheduled_for.desc(), Maintenance.id.desc())


def schedule_maintenance(
    session: Session, data: MaintenanceCreate, *, actor: str, now: datetime
) -> tuple[Maintenance, StatusUpdate]:
    """Schedule a maintenance and draft its announcement; nothing is public until the
    announcement is published."""
    for name, moment in (("scheduled_for", data.scheduled_for),
                         ("scheduled_until", data.scheduled_until)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise invalid("naive_time", f"{name} needs a time zone, e.g. 2025-01-10T02:00+09:00")
    if data.scheduled_until <= data.scheduled_for:
        raise invalid("empty_window", "scheduled_until must be after scheduled_for")
    if data.scheduled_until - data.scheduled_for > MAINTENANCE_DURATION_MAX:
        raise invalid("window_too_long", f"a maintenance lasts at most "
                      f"{MAINTENANCE_DURATION_MAX.days} days; split it")
    if data.scheduled_for <= now:
        raise invalid("not_ahead", "a maintenance is announced ahead: scheduled_for must be "
                      "in the future")
    keys = check_component_keys(session, data.components)
    if (data.details_ja is None) != (data.details_en is None):
        raise invalid("details_need_both_languages", "give details_ja and details_en, or "
                      "leave both out")
    default = maintenance_name(keys)
    maintenance = Maintenance(
        name_ja=data.name_ja or default.ja, name_en=data.name_en or default.en,
        scheduled_for=data.scheduled_for, scheduled_until=data.scheduled_until, components=keys,
        status=MaintenanceStatus.SCHEDULED, created_by=actor, created_at=now,
    )
    session.add(maintenance)
    session.flush()
    details = Bilingual(data.details_ja, data.details_en) \
        if data.details_ja and data.details_en else None
    draft = _maintenance_draft(session, maintenance, MaintenanceStatus.SCHEDULED, None, None,
                               actor=actor, now=now, details=details)
    audit.record(
        session, actor=incidents.audit_actor(actor), action="status.maintenance_schedule",
        target=maintenance.ref,
        details={"scheduled_for": data.scheduled_for.isoformat(),
                 "scheduled_until": data.scheduled_until.isoformat(), "components": keys},
        at=now,
    )
    return maintenance, draft


def _maintenance_draft(
    session: Session, maintenance: Maintenance, status: MaintenanceStatus,
    body_ja: str | None, body_en: str | None, *, actor: str, now: datetime,
    details: Bilingual | None = None,
) -> StatusUpdate:
    text = maintenance_update_text(status, MaintenanceFacts(
        components=maintenance.components, scheduled_for=maintenance.scheduled_for,
        scheduled_until=maintenance.scheduled_until, details=details,
    ))
    update = StatusUpdate(
        maintenance_id=maintenance.id, state=UpdateState.DRAFT, status=status.value,
        body_ja=body_ja or text.ja, body_en=body_en or text.en,
        components=list(maintenance.components), affected=[], created_by=actor, created_at=now,
    )
    session.add(update)
    session.flush()
    return update


def draft_maintenance_update(
    session: Session, maintenance_id: int, request: MaintenanceDraftRequest, *, actor: str,
    now: datetime,
) -> StatusUpdate:
    maintenance = get_maintenance(session, maintenance_id)
    if maintenance.status == MaintenanceStatus.COMPLETED:
        raise conflict("maintenance_completed", f"{maintenance.ref} is completed")
    return _maintenance_draft(session, maintenance, request.status, request.body_ja,
                              request.body_en, actor=actor, now=now)


def _move_maintenance(maintenance: Maintenance, status: MaintenanceStatus, now: datetime) -> None:
    maintenance.status = status
    if status in {MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING}:
        maintenance.started_at = maintenance.started_at or now
    if status == MaintenanceStatus.COMPLETED:
        maintenance.started_at = maintenance.started_at or now
        maintenance.completed_at = now


def publish_maintenance_update(session: Session, update: StatusUpdate, *, actor: str,
                               now: datetime) -> None:
    """The maintenance's part of publishing ``update``: check it may be told now, move the
    maintenance to the update's status and audit it. Called by ``updates.publish``, the one
    way to publish a draft, which then marks the update published and queues its notice."""
    assert update.maintenance_id is not None
    maintenance = get_maintenance(session, update.maintenance_id)
    if maintenance.status == MaintenanceStatus.COMPLETED:
        raise conflict("maintenance_completed", f"{maintenance.ref} is completed")
    status = MaintenanceStatus(update.status)
    if maintenance.announced_at is None and status != MaintenanceStatus.SCHEDULED:
        raise conflict("not_announced", f"announce {maintenance.ref} (publish its scheduled "
                       "update) before reporting its progress")
    maintenance.announced_at = maintenance.announced_at or now
    if status != maintenance.status:
        _move_maintenance(maintenance, status, now)
    audit.record(
        session, actor=incidents.audit_actor(actor), action="status.maintenance_publish",
        target=maintenance.ref, details={"update": update.id, "status": status.value}, at=now,
    )


def enqueue_maintenance_notice(
    session: Session, update: StatusUpdate, *, settings: StatusSettings, now: datetime
) -> None:
    """Queue the notice of a maintenance's published update for subscribers."""
    assert update.maintenance_id is not None
    maintenance = get_maintenance(session, update.maintenance_id)
    queue_update_notice(
        session, update, name=Bilingual(maintenance.name_ja, maintenance.name_en),
        kind=notify.NoticeKind.MAINTENANCE, link=f"{settings.url}#{maintenance.ref}", now=now,
    )


def advance_maintenances(session: Session, *, now: datetime, settings: StatusSettings) -> list[str]:
    """Start announced maintenances whose time has come and complete those whose window
    ended, each with a published update from the template (audited with the rule)."""
    moved = []
    announced = session.scalars(
        select(Maintenance).where(
            Maintenance.announced_at.is_not(None),
            Maintenance.status != MaintenanceStatus.COMPLETED,
        ).order_by(Maintenance.id)
    )
    for maintenance in list(announced):
        if now >= maintenance.scheduled_until:
            target, rule = MaintenanceStatus.COMPLETED, "scheduled_until reached"
        elif maintenance.status == MaintenanceStatus.SCHEDULED and now >= maintenance.scheduled_for:
            target, rule = MaintenanceStatus.IN_PROGRESS, "scheduled_for reached"
        else:
            continue
        update = _maintenance_draft(session, maintenance, target, None, None,
                                    actor=SYSTEM_ACTOR, now=now)
        _move_maintenance(maintenance, target, now)
        update.state = UpdateState.PUBLISHED
        update.published_by, update.published_at = SYSTEM_ACTOR, now
        audit.record(
            session, actor=SYSTEM_ACTOR, action="status.maintenance_auto", target=maintenance.ref,
            details={"status": target.value, "rule": rule,
                     "scheduled_for": maintenance.scheduled_for.isoformat(),
                     "scheduled_until": maintenance.scheduled_until.isoformat()},
            at=now,
        )
        session.flush()
        enqueue_maintenance_notice(session, update, settings=settings, now=now)
        moved.append(maintenance.ref)
    if moved:
        mark_changed(session, now)
    return moved
