"""Components and what each shows: created from the venue's markets, their statuses
recomputed from market states, open incidents, frozen withdrawals and maintenance in
progress, and operators' overrides; plus the revision counter every change customers can
see bumps.

The base of the status service: updates, maintenance, the cadence and the page build on
this module and it imports none of them. It also resolves the components an incident
names, which both the status rules here and the public updates need.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from haltguard.incidents import service as incidents
from haltguard.incidents.models import HoldKind, Incident
from haltguard.security import audit
from haltguard.status.errors import conflict, invalid, not_found
from haltguard.status.models import (
    ComponentHistory,
    ComponentKind,
    Maintenance,
    StatusComponent,
    StatusRevision,
)
from haltguard.status.rules import (
    ComponentStatus,
    Contribution,
    MaintenanceStatus,
    decide,
    incident_contribution,
    market_contribution,
    worst,
)
from haltguard.status.texts import (
    GROUP_FUNDS,
    GROUP_MARKETS,
    GROUP_SERVICES,
    SERVICE_NAMES,
    component_description,
    component_name,
)
from haltguard.venue.types import MarketState

SYSTEM_ACTOR = "system:status"
REVISION_ROW_ID = 1

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


def known_keys(session: Session) -> list[str]:
    """Every component's key, in display order."""
    return list(session.scalars(select(StatusComponent.key).order_by(StatusComponent.position)))


def check_component_keys(session: Session, keys: Sequence[str]) -> list[str]:
    """``keys`` as given when each names a component; otherwise an error listing them."""
    known = known_keys(session)
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise invalid("unknown_component", f"no component {', '.join(unknown)}; the components "
                      f"are: {', '.join(known) or 'none yet'}")
    return list(keys)


def incident_component_keys(
    markets: Sequence[str], components: Sequence[str], known: Iterable[str]
) -> list[str]:
    """The components an incident names, through its markets and its component names
    (``order-api``, ``website``, ``mobile-app``, ``deposits:BTC``, ``withdrawals`` ...)."""
    known_in_order = list(known)
    known_set = set(known_in_order)
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
            found += [key for key in known_in_order if key.startswith(f"{lowered}:")]
    return [key for key in dict.fromkeys(found) if key in known_set]


def incident_keys(session: Session, incident: Incident) -> list[str]:
    """The existing components ``incident`` names (see :func:`incident_component_keys`)."""
    return incident_component_keys(incident.affected_markets, incident.affected_components,
                                   known_keys(session))


def open_incidents(session: Session) -> list[Incident]:
    return list(session.scalars(incidents.list_query(open_only=True)))


# --- statuses -------------------------------------------------------------------------------


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
    for incident in open_incidents(session):
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


# --- overrides ------------------------------------------------------------------------------


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
        session, actor=incidents.audit_actor(actor), action="status.override",
        target=f"component:{key}",
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
        session, actor=incidents.audit_actor(actor), action="status.override_clear",
        target=f"component:{key}",
        details={"was": overridden.value, "status": component.status.value,
                 "reason": reason.strip()},
        at=now,
    )
    mark_changed(session, now)
    return component
