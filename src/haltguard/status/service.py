"""The status page as plain functions over a session: components and their statuses,
overrides, drafts and published updates, maintenance, and the snapshot the page is drawn
from.

Time is always passed in (``now``), never read here. Every change a customer could see bumps
the revision counter in the same transaction, so each process serving the page notices it.
What customers were told about an incident is recorded once, on the incident's timeline
(``incidents.service.post_public_update``); the status page links each published update to
that entry, and picks up public updates recorded on an incident directly
(:func:`absorb_public_updates`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from haltguard.incidents import service as incidents
from haltguard.incidents.models import (
    HoldKind,
    Incident,
    PublicUpdateCreate,
    TimelineEntry,
)
from haltguard.incidents.rules import IncidentStatus
from haltguard.notify import service as notify
from haltguard.notify.models import NoticeText
from haltguard.security import audit
from haltguard.status.errors import conflict, invalid, not_found
from haltguard.status.models import (
    CadencePage,
    CadenceRead,
    ComponentHistory,
    ComponentKind,
    DraftEdit,
    IncidentDraftRequest,
    Maintenance,
    MaintenanceCreate,
    MaintenanceDraftRequest,
    PublicIncident,
    StatusComponent,
    StatusRevision,
    StatusUpdate,
    UpdateState,
)
from haltguard.status.rules import (
    INCIDENT_UPDATE_STATUS,
    SEVERITY_IMPACT,
    ComponentStatus,
    Contribution,
    Impact,
    MaintenanceStatus,
    UpdateStatus,
    cadence_due,
    decide,
    incident_contribution,
    market_contribution,
    page_indicator,
    worst,
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
from haltguard.status.texts import (
    GROUP_FUNDS,
    GROUP_MARKETS,
    GROUP_SERVICES,
    SERVICE_NAMES,
    Bilingual,
    IncidentFacts,
    MaintenanceFacts,
    component_description,
    component_name,
    incident_name,
    incident_update_text,
    maintenance_name,
    maintenance_update_text,
    update_label,
)
from haltguard.status.uptime import UPTIME_DAYS, StatusSpan, uptime_bars
from haltguard.venue.types import MarketState

SYSTEM_ACTOR = "system:status"
REVISION_ROW_ID = 1
ABSORB_BATCH_MAX = 200
PUBLIC_INCIDENTS_MAX = 200
API_EVENTS_MAX = 50
MAINTENANCE_DURATION_MAX = timedelta(days=7)
HISTORY_WINDOW = timedelta(days=UPTIME_DAYS + 1)

_GROUP_OF_KIND = {
    ComponentKind.MARKET: GROUP_MARKETS,
    ComponentKind.DEPOSITS: GROUP_FUNDS,
    ComponentKind.WITHDRAWALS: GROUP_FUNDS,
    ComponentKind.SERVICE: GROUP_SERVICES,
}
_GROUP_ORDER = (GROUP_MARKETS, GROUP_FUNDS, GROUP_SERVICES)

# Names an incident may give a component in ``affected_components``.
_SERVICE_ALIASES = {
    "order-api": "order-api", "order_api": "order-api", "api": "order-api",
    "website": "website", "web": "website", "site": "website",
    "mobile-app": "mobile-app", "mobile_app": "mobile-app", "mobile": "mobile-app",
    "app": "mobile-app",
}


def audit_actor(actor: str) -> str:
    return actor if ":" in actor else f"operator:{actor}"


# --- revision -------------------------------------------------------------------------------


def mark_changed(session: Session, now: datetime) -> int:
    """Count one change customers can see; returns the new revision."""
    row = session.get(StatusRevision, REVISION_ROW_ID)
    if row is None:
        row = StatusRevision(id=REVISION_ROW_ID, revision=0, changed_at=now)
        session.add(row)
    row.revision += 1
    row.changed_at = now
    session.flush()
    return row.revision


def revision(session: Session) -> int:
    row = session.get(StatusRevision, REVISION_ROW_ID)
    return 0 if row is None else row.revision


# --- components -----------------------------------------------------------------------------


def _kind_and_subject(key: str) -> tuple[ComponentKind, str]:
    if key.startswith("group:"):
        return ComponentKind.GROUP, key
    if key in SERVICE_NAMES:
        return ComponentKind.SERVICE, key
    kind, _, subject = key.partition(":")
    return ComponentKind(kind), subject


def component_keys_for_markets(markets: Iterable[str]) -> list[str]:
    """Every component the page shows for these markets, in display order."""
    symbols = sorted(set(markets))
    assets = sorted({asset for symbol in symbols for asset in symbol.split("-") if asset})
    keys = list(_GROUP_ORDER)
    keys += [f"market:{symbol}" for symbol in symbols]
    for asset in assets:
        keys += [f"deposits:{asset}", f"withdrawals:{asset}"]
    keys += list(SERVICE_NAMES)
    return keys


def ensure_components(session: Session, markets: Iterable[str], *, now: datetime) -> list[str]:
    """Create the components of ``markets`` (and the fixed ones) that do not exist yet;
    returns the keys created. Existing components keep their names and positions."""
    existing = {row.key: row for row in session.scalars(select(StatusComponent))}
    wanted = component_keys_for_markets(markets)
    created = []
    order = {key: index for index, key in enumerate(wanted)}
    for key in wanted:
        if key in existing:
            continue
        kind, _ = _kind_and_subject(key)
        name, description = component_name(key), component_description(key)
        component = StatusComponent(
            key=key, kind=kind, group_key=_GROUP_OF_KIND.get(kind), position=order[key] + 1,
            name_ja=name.ja, name_en=name.en, description_ja=description.ja,
            description_en=description.en, showcase=True, only_show_if_degraded=False,
            status=ComponentStatus.OPERATIONAL, automatic_status=ComponentStatus.OPERATIONAL,
            reason="created", override_note="", created_at=now, updated_at=now,
        )
        session.add(component)
        session.flush()
        session.add(ComponentHistory(component_id=component.id, status=component.status,
                                     started_at=now, reason="component created"))
        created.append(key)
    if created:
        # Keep the display order when markets are added later: renumber everything.
        rows = list(session.scalars(select(StatusComponent)))
        full = component_keys_for_markets(
            [row.key.partition(":")[2] for row in rows if row.kind == ComponentKind.MARKET]
        )
        positions = {key: index + 1 for index, key in enumerate(full)}
        for row in rows:
            row.position = positions.get(row.key, row.position)
        mark_changed(session, now)
    return created


def components_query() -> Select[StatusComponent]:
    return select(StatusComponent).order_by(StatusComponent.position, StatusComponent.id)


def get_component(session: Session, key: str) -> StatusComponent:
    component = session.scalar(select(StatusComponent).where(StatusComponent.key == key))
    if component is None:
        known = ", ".join(row.key for row in session.scalars(components_query()))
        raise not_found("component", key, f"the components are: {known or 'none yet'}")
    return component


def incident_component_keys(
    markets: Sequence[str], components: Sequence[str], known: Iterable[str]
) -> list[str]:
    """The components an incident names, through its markets and its component names
    (``order-api``, ``website``, ``mobile-app``, ``deposits:BTC``, ``withdrawals`` ...)."""
    known_keys = list(known)
    known_set = set(known_keys)
    found: list[str] = [f"market:{market}" for market in markets]
    for raw in components:
        name = raw.strip()
        lowered = name.lower()
        if name in known_set:
            found.append(name)
        elif lowered in _SERVICE_ALIASES:
            found.append(_SERVICE_ALIASES[lowered])
        elif f"market:{name.upper()}" in known_set:
            found.append(f"market:{name.upper()}")
        elif ":" in name:
            kind, _, subject = name.partition(":")
            found.append(f"{kind.lower()}:{subject.upper()}")
        elif lowered in {"deposits", "withdrawals"}:
            found += [key for key in known_keys if key.startswith(f"{lowered}:")]
    return [key for key in dict.fromkeys(found) if key in known_set]


def _open_incidents(session: Session) -> list[Incident]:
    return list(session.scalars(incidents.list_query(open_only=True)))


def _active_maintenance_by_component(session: Session) -> dict[str, str]:
    active = session.scalars(
        select(Maintenance).where(
            Maintenance.status.in_([MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING])
        ).order_by(Maintenance.id)
    )
    found: dict[str, str] = {}
    for maintenance in active:
        for key in maintenance.components:
            found.setdefault(key, maintenance.ref)
    return found


def _set_status(
    session: Session, component: StatusComponent, status: ComponentStatus, reason: str,
    now: datetime,
) -> bool:
    """Show ``status``; a change is written to the history with its reason."""
    if component.status == status:
        return False
    component.status = status
    component.updated_at = now
    session.add(ComponentHistory(component_id=component.id, status=status, started_at=now,
                                 reason=reason[:2_000]))
    return True


def refresh_statuses(
    session: Session, *, now: datetime, market_states: Mapping[str, MarketState] | None
) -> list[str]:
    """Recompute every component's status from the venue's market states, the open
    incidents, frozen withdrawals and maintenance in progress; returns the keys whose shown
    status changed. Without ``market_states`` (venue not reachable) markets keep their last
    known status rather than look broken because of the status page's own connection."""
    components = list(session.scalars(components_query()))
    known = [component.key for component in components]
    contributions: dict[str, list[Contribution]] = defaultdict(list)
    for component in components:
        if component.kind != ComponentKind.MARKET:
            continue
        market = component.key.partition(":")[2]
        if market_states is None:
            contributions[component.key].append(
                Contribution(component.automatic_status, "venue not reachable: last known "
                             f"status {component.automatic_status} kept")
            )
        elif market in market_states:
            contributions[component.key].append(
                market_contribution(market, market_states[market])
            )
    for incident in _open_incidents(session):
        contribution = incident_contribution(incident.ref, incident.severity, incident.status)
        if contribution is not None:
            for key in incident_component_keys(incident.affected_markets,
                                               incident.affected_components, known):
                contributions[key].append(contribution)
        for hold in incidents.active_holds(session, incident.id):
            if hold.kind == HoldKind.WITHDRAWALS:
                contributions[f"withdrawals:{hold.target}"].append(Contribution(
                    ComponentStatus.MAJOR_OUTAGE,
                    f"withdrawals of {hold.target} frozen by {incident.ref} (-> major_outage)",
                ))
    maintenance = _active_maintenance_by_component(session)
    changed = []
    members: dict[str, list[ComponentStatus]] = defaultdict(list)
    for component in components:
        if component.kind == ComponentKind.GROUP:
            continue
        decision = decide(contributions[component.key], maintenance=maintenance.get(component.key),
                          override=component.override_status,
                          override_note=component.override_note)
        component.automatic_status = decision.automatic
        component.reason = "; ".join(decision.reasons)
        if _set_status(session, component, decision.status, component.reason, now):
            changed.append(component.key)
        if component.group_key:
            members[component.group_key].append(component.status)
    for group in (c for c in components if c.kind == ComponentKind.GROUP):
        member_status = worst(members[group.key])
        decision = decide([Contribution(member_status, f"worst of its members: {member_status}")],
                          override=group.override_status, override_note=group.override_note)
        group.automatic_status = decision.automatic
        group.reason = "; ".join(decision.reasons)
        if _set_status(session, group, decision.status, group.reason, now):
            changed.append(group.key)
    if changed:
        mark_changed(session, now)
    session.flush()
    return changed


def set_override(
    session: Session, key: str, status: ComponentStatus, reason: str, *, actor: str,
    now: datetime,
) -> StatusComponent:
    """Show ``status`` whatever the rules say, until cleared; recorded in the audit chain."""
    component = get_component(session, key)
    previous = component.status
    component.override_status = status
    component.override_note = reason.strip()
    component.override_by = actor
    component.override_at = now
    _set_status(session, component, status, f"override by {actor}: {reason.strip()}", now)
    audit.record(
        session, actor=audit_actor(actor), action="status.override", target=f"component:{key}",
        details={"status": status.value, "previous": previous.value,
                 "automatic": component.automatic_status.value, "reason": reason.strip()},
        at=now,
    )
    mark_changed(session, now)
    return component


def clear_override(
    session: Session, key: str, reason: str, *, actor: str, now: datetime
) -> StatusComponent:
    """Go back to the status the rules chose; recorded in the audit chain."""
    component = get_component(session, key)
    if component.override_status is None:
        raise conflict("no_override", f"{key} has no override; it shows {component.status} "
                       f"because: {component.reason}")
    overridden = component.override_status
    component.override_status = None
    component.override_note = ""
    component.override_by = None
    component.override_at = None
    _set_status(session, component, component.automatic_status,
                f"override cleared by {actor}: {reason.strip()}", now)
    audit.record(
        session, actor=audit_actor(actor), action="status.override_clear",
        target=f"component:{key}",
        details={"was": overridden.value, "status": component.status.value,
                 "reason": reason.strip()},
        at=now,
    )
    mark_changed(session, now)
    return component


# --- updates --------------------------------------------------------------------------------


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


def _known_keys(session: Session) -> list[str]:
    return list(session.scalars(select(StatusComponent.key).order_by(StatusComponent.position)))


def _check_keys(session: Session, keys: Sequence[str]) -> list[str]:
    known = _known_keys(session)
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise invalid("unknown_component", f"no component {', '.join(unknown)}; the components "
                      f"are: {', '.join(known) or 'none yet'}")
    return list(keys)


def _published_updates(session: Session, *, incident_id: int | None = None,
                       maintenance_id: int | None = None) -> list[StatusUpdate]:
    """Oldest first."""
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


def _incident_keys(session: Session, incident: Incident) -> list[str]:
    return incident_component_keys(incident.affected_markets, incident.affected_components,
                                   _known_keys(session))


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
    keys = _check_keys(session, request.components) if request.components is not None \
        else _incident_keys(session, incident)
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
        update.components = _check_keys(session, values["components"])
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
        _publish_maintenance_update(session, update, actor=actor, now=now)
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
    earlier = _published_updates(session, incident_id=incident.id)
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
        earlier = _published_updates(session, incident_id=incident.id)
        keys = _incident_keys(session, incident)
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


# --- notices to subscribers -----------------------------------------------------------------


def _subject(label: str, name: str) -> str:
    return f"[{label}] {name}"[:200]


def enqueue_notice_for(
    session: Session, update: StatusUpdate, *, settings: StatusSettings, now: datetime
) -> None:
    """Queue the notice of a published update for subscribers: the one place the status page
    hands anything to the notify domain. Keyed by the update, so it is queued once."""
    if update.incident_id is not None:
        incident = incidents.get(session, update.incident_id)
        public = session.scalar(
            select(PublicIncident).where(PublicIncident.incident_id == incident.id)
        )
        assert public is not None, "a published incident update has a public incident"
        name = Bilingual(public.name_ja, public.name_en)
        kind = notify.NoticeKind.INCIDENT_UPDATE
        link = f"{settings.url}incidents/{incident.ref}.html"
    else:
        assert update.maintenance_id is not None
        maintenance = get_maintenance(session, update.maintenance_id)
        name = Bilingual(maintenance.name_ja, maintenance.name_en)
        kind = notify.NoticeKind.MAINTENANCE
        link = f"{settings.url}#{maintenance.ref}"
    notice = notify.Notice(
        key=f"status-update-{update.id}",
        kind=kind,
        affected_component_ids=list(update.components),
        ja=NoticeText(subject=_subject(update_label(update.status, "ja"), name.ja),
                      body=update.body_ja),
        en=NoticeText(subject=_subject(update_label(update.status, "en"), name.en),
                      body=update.body_en),
        link=link,
    )
    notify.enqueue_notice(session, notice, now=now)


# --- maintenance ----------------------------------------------------------------------------


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
    keys = _check_keys(session, data.components)
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
        session, actor=audit_actor(actor), action="status.maintenance_schedule",
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


def _publish_maintenance_update(session: Session, update: StatusUpdate, *, actor: str,
                                now: datetime) -> None:
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
        session, actor=audit_actor(actor), action="status.maintenance_publish",
        target=maintenance.ref, details={"update": update.id, "status": status.value}, at=now,
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
        enqueue_notice_for(session, update, settings=settings, now=now)
        moved.append(maintenance.ref)
    if moved:
        mark_changed(session, now)
    return moved


# --- update cadence -------------------------------------------------------------------------


def _publicly_unresolved(session: Session) -> list[Incident]:
    """Incidents customers were told about whose last public word is not "resolved"."""
    found = []
    for public in session.scalars(select(PublicIncident).order_by(PublicIncident.id)):
        updates = _published_updates(session, incident_id=public.incident_id)
        if updates and updates[-1].status not in {UpdateStatus.RESOLVED,
                                                   UpdateStatus.POSTMORTEM}:
            found.append(incidents.get(session, public.incident_id))
    return found


def last_told_at(session: Session, incident_id: int) -> datetime | None:
    """When customers were last told about the incident: on the page, or straight on the
    incident (``haltguard incident public-update``) before the page has absorbed it."""
    last = last_published_at(session, incident_id)
    told = incidents.public_updates_since(session, last, incident_id=incident_id)
    return max([entry.at for entry in told] + ([last] if last else []), default=None)


def cadence(session: Session, *, now: datetime, settings: StatusSettings) -> list[CadenceRead]:
    """When the next public update is due for every open incident, and for every incident
    resolved inside but not yet on the page (customers still read "investigating")."""
    rows = []
    candidates = {incident.id: incident for incident in _open_incidents(session)}
    for incident in _publicly_unresolved(session):
        candidates.setdefault(incident.id, incident)
    for incident in sorted(candidates.values(), key=lambda each: each.id, reverse=True):
        last = last_told_at(session, incident.id)
        due = cadence_due(incident.severity, detected_at=incident.detected_at,
                          last_published_at=last,
                          every_minutes=settings.update_every_minutes)
        if due is None:
            continue
        paged = session.scalar(select(CadencePage).where(
            CadencePage.incident_id == incident.id, CadencePage.due_at == due.due_at,
        ))
        rows.append(CadenceRead(
            incident_id=incident.id, ref=incident.ref, severity=incident.severity.value,
            every_minutes=due.every_minutes, last_published_at=last, due_at=due.due_at,
            overdue=due.overdue(now), paged_at=paged.paged_at if paged else None,
        ))
    return rows


# --- the snapshot the page is drawn from ------------------------------------------------------


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
        [*_incident_keys(session, incident), *(key for u in updates for key in u.components)]
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
        updates = _published_updates(session, maintenance_id=maintenance.id)
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
