"""Public updates: drafts written from the templates, edited, discarded and published,
and the public updates recorded straight on an incident that the page picks up.

What customers were told about an incident is recorded once, on the incident's timeline
(``incidents.service.post_public_update``); the page links each published update to that
entry. :func:`publish` is the one way to publish a draft, of an incident or of a
maintenance (whose own checks live in :mod:`haltguard.status.maintenance`). Builds on the
components, the maintenance and the notices; the cadence and the page build on this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from haltguard.incidents import service as incidents
from haltguard.incidents.models import Incident, PublicUpdateCreate, TimelineEntry
from haltguard.incidents.rules import IncidentStatus
from haltguard.notify import service as notify
from haltguard.status.components import (
    check_component_keys,
    incident_keys,
    mark_changed,
)
from haltguard.status.errors import conflict, invalid, not_found
from haltguard.status.maintenance import enqueue_maintenance_notice, publish_maintenance_update
from haltguard.status.models import (
    DraftEdit,
    IncidentDraftRequest,
    PublicIncident,
    StatusComponent,
    StatusUpdate,
    UpdateState,
)
from haltguard.status.notices import queue_update_notice
from haltguard.status.rules import (
    INCIDENT_UPDATE_STATUS,
    ComponentStatus,
    MaintenanceStatus,
    UpdateStatus,
)
from haltguard.status.settings import StatusSettings
from haltguard.status.texts import Bilingual, IncidentFacts, incident_name, incident_update_text

ABSORB_BATCH_MAX = 200


def get_update(session: Session, update_id: int) -> StatusUpdate:
    update = session.get(StatusUpdate, update_id)
    if update is None:
        raise not_found("update", update_id, "list the drafts with GET /api/status/updates")
    return update


def updates_query(
    *, state: UpdateState | None = None, incident_id: int | None = None,
    maintenance_id: int | None = None,
) -> Select[StatusUpdate]:
    query = select(StatusUpdate).order_by(StatusUpdate.id.desc())
    if state is not None:
        query = query.where(StatusUpdate.state == state)
    if incident_id is not None:
        query = query.where(StatusUpdate.incident_id == incident_id)
    if maintenance_id is not None:
        query = query.where(StatusUpdate.maintenance_id == maintenance_id)
    return query


def published_updates(session: Session, *, incident_id: int | None = None,
                      maintenance_id: int | None = None) -> list[StatusUpdate]:
    """The published updates of an incident or a maintenance, oldest first."""
    query = select(StatusUpdate).where(StatusUpdate.state == UpdateState.PUBLISHED)
    if incident_id is not None:
        query = query.where(StatusUpdate.incident_id == incident_id)
    if maintenance_id is not None:
        query = query.where(StatusUpdate.maintenance_id == maintenance_id)
    return list(session.scalars(query.order_by(StatusUpdate.published_at, StatusUpdate.id)))


def last_published_at(session: Session, incident_id: int) -> datetime | None:
    latest: datetime | None = session.scalar(
        select(func.max(StatusUpdate.published_at)).where(
            StatusUpdate.incident_id == incident_id,
            StatusUpdate.state == UpdateState.PUBLISHED,
        )
    )
    return latest


def draft_incident_update(
    session: Session, incident_id: int, request: IncidentDraftRequest, *, actor: str,
    now: datetime, settings: StatusSettings,
) -> StatusUpdate:
    """A draft public update of an incident, written from the template where the operator
    gave no text: affected components, start time (JST and UTC), cause, expected recovery
    and when the next update comes."""
    incident = incidents.get(session, incident_id)
    if incident.status == IncidentStatus.CLOSED:
        raise conflict("incident_closed", f"{incident.ref} is closed; nothing more is published")
    keys = (check_component_keys(session, request.components)
            if request.components is not None else incident_keys(session, incident))
    minutes = settings.update_every_minutes.get(incident.severity)
    resolved = request.status in {UpdateStatus.RESOLVED, UpdateStatus.POSTMORTEM}
    cause = None
    if request.cause_ja and request.cause_en:
        cause = Bilingual(request.cause_ja, request.cause_en)
    elif request.cause_ja or request.cause_en:
        raise invalid("cause_needs_both_languages", "give the cause in both cause_ja and "
                      "cause_en, or leave both out")
    facts = IncidentFacts(
        components=keys, started_at=incident.started_at or incident.detected_at, now=now,
        cause=cause, expected_recovery_at=request.expected_recovery_at,
        next_update_at=None if minutes is None or resolved else now + timedelta(minutes=minutes),
    )
    text = incident_update_text(request.status, facts)
    public = session.scalar(select(PublicIncident).where(PublicIncident.incident_id == incident.id))
    default_name = incident_name(keys) if public is None else None
    update = StatusUpdate(
        incident_id=incident.id, state=UpdateState.DRAFT, status=request.status.value,
        name_ja=request.name_ja or (default_name.ja if default_name else None),
        name_en=request.name_en or (default_name.en if default_name else None),
        body_ja=request.body_ja or text.ja, body_en=request.body_en or text.en,
        components=keys, affected=[], created_by=actor, created_at=now,
    )
    session.add(update)
    session.flush()
    return update


def _check_draft(update: StatusUpdate) -> None:
    if update.state != UpdateState.DRAFT:
        raise conflict("not_a_draft", f"update {update.id} is {update.state}; only a draft can "
                       "be edited, published or discarded (start a new draft)")


def _check_status(update: StatusUpdate, status: str) -> str:
    allowed = ([s.value for s in MaintenanceStatus] if update.maintenance_id is not None
               else [s.value for s in UpdateStatus])
    if status not in allowed:
        raise invalid("invalid_status", f"{status!r} is not a status here; use one of "
                      f"{', '.join(allowed)}")
    return status


def edit_draft(
    session: Session, update_id: int, edit: DraftEdit, *, actor: str, now: datetime
) -> StatusUpdate:
    update = get_update(session, update_id)
    _check_draft(update)
    values = edit.model_dump(exclude_unset=True)
    if values.get("status") is not None:
        update.status = _check_status(update, values["status"])
    for name in ("name_ja", "name_en", "body_ja", "body_en"):
        if values.get(name) is not None:
            setattr(update, name, values[name])
    if values.get("components") is not None:
        update.components = check_component_keys(session, values["components"])
    update.edited_by, update.edited_at = actor, now
    session.flush()
    return update


def discard_draft(session: Session, update_id: int, *, actor: str, now: datetime) -> StatusUpdate:
    update = get_update(session, update_id)
    _check_draft(update)
    update.state = UpdateState.DISCARDED
    update.edited_by, update.edited_at = actor, now
    session.flush()
    return update


def _affected(session: Session, keys: Sequence[str],
              previous: Mapping[str, ComponentStatus]) -> list[dict[str, Any]]:
    """Each component's status now against what the last update showed."""
    rows = {row.key: row for row in session.scalars(
        select(StatusComponent).where(StatusComponent.key.in_(list(keys)))
    )}
    return [
        {"code": key, "old_status": previous.get(key, ComponentStatus.OPERATIONAL).value,
         "new_status": rows[key].status.value}
        for key in keys if key in rows
    ]


def _previous_statuses(updates: Sequence[StatusUpdate]) -> dict[str, ComponentStatus]:
    found: dict[str, ComponentStatus] = {}
    for update in updates:
        for item in update.affected:
            found[item["code"]] = ComponentStatus(item["new_status"])
    return found


def _public_incident(session: Session, incident: Incident, update: StatusUpdate,
                     now: datetime) -> PublicIncident:
    public = session.scalar(select(PublicIncident).where(PublicIncident.incident_id == incident.id))
    if public is None:
        name = incident_name(update.components)
        public = PublicIncident(incident_id=incident.id, name_ja=update.name_ja or name.ja,
                                name_en=update.name_en or name.en, created_at=now)
        session.add(public)
    else:
        public.name_ja = update.name_ja or public.name_ja
        public.name_en = update.name_en or public.name_en
    return public


def publish(
    session: Session, update_id: int, *, actor: str, now: datetime, settings: StatusSettings
) -> StatusUpdate:
    """Publish a draft: an incident update is recorded on the incident's timeline (the one
    record of what customers were told) and a notice is queued for subscribers, in this
    transaction."""
    update = get_update(session, update_id)
    _check_draft(update)
    if update.incident_id is not None:
        _publish_incident_update(session, update, actor=actor, now=now)
    else:
        publish_maintenance_update(session, update, actor=actor, now=now)
    update.state = UpdateState.PUBLISHED
    update.published_by, update.published_at = actor, now
    session.flush()
    enqueue_notice_for(session, update, settings=settings, now=now)
    mark_changed(session, now)
    return update


def _publish_incident_update(session: Session, update: StatusUpdate, *, actor: str,
                             now: datetime) -> None:
    assert update.incident_id is not None
    incident = incidents.get(session, update.incident_id)
    earlier = published_updates(session, incident_id=incident.id)
    if update.status == UpdateStatus.POSTMORTEM and (
        not earlier or earlier[-1].status not in {UpdateStatus.RESOLVED, UpdateStatus.POSTMORTEM}
    ):
        raise conflict("postmortem_before_resolved", f"publish a resolved update of "
                       f"{incident.ref} before its postmortem")
    entry = incidents.post_public_update(
        session, incident,
        PublicUpdateCreate(message_ja=update.body_ja, message_en=update.body_en,
                           channels=["status-page", "subscribers"]),
        actor=actor, now=now,
    )
    update.timeline_entry_id = entry.id
    _public_incident(session, incident, update, now)
    update.affected = _affected(session, update.components, _previous_statuses(earlier))


def absorb_public_updates(session: Session, *, now: datetime, settings: StatusSettings) -> int:
    """Publish on the page every public update recorded straight on an incident (``haltguard
    incident public-update``), once; its status follows the incident's. Returns how many."""
    linked = select(StatusUpdate.timeline_entry_id).where(
        StatusUpdate.timeline_entry_id.is_not(None)
    )
    entries = list(session.scalars(
        incidents.public_updates_query()
        .where(TimelineEntry.id.not_in(linked))
        .limit(ABSORB_BATCH_MAX)
    ))
    for entry in entries:
        incident = incidents.get(session, entry.incident_id)
        earlier = published_updates(session, incident_id=incident.id)
        keys = incident_keys(session, incident)
        update = StatusUpdate(
            incident_id=incident.id, state=UpdateState.PUBLISHED,
            status=INCIDENT_UPDATE_STATUS[incident.status].value, name_ja=None, name_en=None,
            body_ja=str(entry.details.get("message_ja") or entry.message),
            body_en=str(entry.details.get("message_en") or entry.message),
            components=keys, created_by=entry.actor, created_at=entry.at,
            published_by=entry.actor, published_at=entry.at, timeline_entry_id=entry.id,
        )
        session.add(update)
        _public_incident(session, incident, update, entry.at)
        update.affected = _affected(session, keys, _previous_statuses(earlier))
        session.flush()
        enqueue_notice_for(session, update, settings=settings, now=now)
    if entries:
        mark_changed(session, now)
    return len(entries)


def enqueue_notice_for(
    session: Session, update: StatusUpdate, *, settings: StatusSettings, now: datetime
) -> None:
    """Queue the notice of a published update for subscribers (through
    :mod:`haltguard.status.notices`). Keyed by the update, so it is queued once."""
    if update.incident_id is None:
        enqueue_maintenance_notice(session, update, settings=settings, now=now)
        return
    incident = incidents.get(session, update.incident_id)
    public = session.scalar(
        select(PublicIncident).where(PublicIncident.incident_id == incident.id)
    )
    assert public is not None, "a published incident update has a public incident"
    queue_update_notice(
        session, update, name=Bilingual(public.name_ja, public.name_en),
        kind=notify.NoticeKind.INCIDENT_UPDATE,
        link=f"{settings.url}incidents/{incident.ref}.html", now=now,
    )
