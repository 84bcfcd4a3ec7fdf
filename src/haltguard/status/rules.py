"""The status page's rules, pure: what a component's status is, what the page says overall,
and how often an open incident must tell customers something.

Nothing here touches a database, a clock or the network; the service asks these functions
and records their answers with the reason they give.

How market states map to component statuses (decided here, one place):

========================  ========================  ===========================================
market state              component status          why
========================  ========================  ===========================================
open                      operational               everything works
post_only, limit_only     degraded_performance      trading goes on; some order types are
                                                    refused (no taking liquidity / no market
                                                    orders)
cancel_only, auction      partial_outage            part of the service works: customers can
                                                    cancel (cancel-only) or place orders that
                                                    wait for the uncross (auction), but nothing
                                                    trades continuously
halted, closed            major_outage              no trading at all
========================  ========================  ===========================================

Open incidents count by severity (SEV1 major outage, SEV2 partial outage, SEV3 degraded,
SEV4 nothing); an incident in ``monitoring`` has its fix in place and counts at most as
degraded. A maintenance in progress shows ``under_maintenance``; an operator's override
beats everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from haltguard.incidents.rules import IncidentStatus, Severity
from haltguard.venue.types import MarketState


class ComponentStatus(StrEnum):
    OPERATIONAL = "operational"
    DEGRADED_PERFORMANCE = "degraded_performance"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"
    UNDER_MAINTENANCE = "under_maintenance"

    @property
    def rank(self) -> int:
        """How bad it is: 0 is fine, 3 is the worst; maintenance ranks as fine."""
        return _STATUS_RANK[self]


_STATUS_RANK = {
    ComponentStatus.OPERATIONAL: 0,
    ComponentStatus.UNDER_MAINTENANCE: 0,
    ComponentStatus.DEGRADED_PERFORMANCE: 1,
    ComponentStatus.PARTIAL_OUTAGE: 2,
    ComponentStatus.MAJOR_OUTAGE: 3,
}


class UpdateStatus(StrEnum):
    """The status of a public incident update (Statuspage's incident statuses)."""

    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"
    POSTMORTEM = "postmortem"


class MaintenanceStatus(StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    VERIFYING = "verifying"
    COMPLETED = "completed"


class Impact(StrEnum):
    NONE = "none"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"
    MAINTENANCE = "maintenance"


class Indicator(StrEnum):
    """The page's overall status, as Statuspage's ``status.indicator``."""

    NONE = "none"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"
    MAINTENANCE = "maintenance"


MARKET_STATE_STATUS: dict[MarketState, ComponentStatus] = {
    MarketState.OPEN: ComponentStatus.OPERATIONAL,
    MarketState.POST_ONLY: ComponentStatus.DEGRADED_PERFORMANCE,
    MarketState.LIMIT_ONLY: ComponentStatus.DEGRADED_PERFORMANCE,
    MarketState.CANCEL_ONLY: ComponentStatus.PARTIAL_OUTAGE,
    MarketState.AUCTION: ComponentStatus.PARTIAL_OUTAGE,
    MarketState.HALTED: ComponentStatus.MAJOR_OUTAGE,
    MarketState.CLOSED: ComponentStatus.MAJOR_OUTAGE,
}

SEVERITY_STATUS: dict[Severity, ComponentStatus] = {
    Severity.SEV1: ComponentStatus.MAJOR_OUTAGE,
    Severity.SEV2: ComponentStatus.PARTIAL_OUTAGE,
    Severity.SEV3: ComponentStatus.DEGRADED_PERFORMANCE,
    Severity.SEV4: ComponentStatus.OPERATIONAL,
}

SEVERITY_IMPACT: dict[Severity, Impact] = {
    Severity.SEV1: Impact.CRITICAL,
    Severity.SEV2: Impact.MAJOR,
    Severity.SEV3: Impact.MINOR,
    Severity.SEV4: Impact.NONE,
}

# The public update status an incident's own status suggests, for a template or for a
# public update recorded straight on the incident.
INCIDENT_UPDATE_STATUS: dict[IncidentStatus, UpdateStatus] = {
    IncidentStatus.DETECTED: UpdateStatus.INVESTIGATING,
    IncidentStatus.INVESTIGATING: UpdateStatus.INVESTIGATING,
    IncidentStatus.IDENTIFIED: UpdateStatus.IDENTIFIED,
    IncidentStatus.MITIGATING: UpdateStatus.IDENTIFIED,
    IncidentStatus.MONITORING: UpdateStatus.MONITORING,
    IncidentStatus.RESOLVED: UpdateStatus.RESOLVED,
    IncidentStatus.CLOSED: UpdateStatus.RESOLVED,
}

INCIDENT_OPEN_STATUSES = frozenset(set(IncidentStatus) - {IncidentStatus.RESOLVED,
                                                          IncidentStatus.CLOSED})


@dataclass(frozen=True)
class Contribution:
    """One reason a component has a status: which rule, with which values."""

    status: ComponentStatus
    reason: str


def worst(statuses: Iterable[ComponentStatus]) -> ComponentStatus:
    """The worst of ``statuses``; maintenance shows when nothing is worse."""
    chosen = ComponentStatus.OPERATIONAL
    for status in statuses:
        if status.rank > chosen.rank or (
            status == ComponentStatus.UNDER_MAINTENANCE and chosen == ComponentStatus.OPERATIONAL
        ):
            chosen = status
    return chosen


def market_contribution(market: str, state: MarketState) -> Contribution:
    status = MARKET_STATE_STATUS[state]
    return Contribution(status, f"market {market} is {state.value} ({state.value} -> {status})")


def incident_contribution(
    ref: str, severity: Severity, incident_status: IncidentStatus
) -> Contribution | None:
    """What an incident that names a component does to it; ``None`` once it is over."""
    if incident_status not in INCIDENT_OPEN_STATUSES:
        return None
    status = SEVERITY_STATUS[severity]
    rule = f"{severity} -> {status}"
    if incident_status == IncidentStatus.MONITORING and status.rank > 1:
        status = ComponentStatus.DEGRADED_PERFORMANCE
        rule = f"{severity} in monitoring -> {status}"
    return Contribution(status, f"{ref} {severity} {incident_status} names it ({rule})")


@dataclass(frozen=True)
class Decision:
    """A component's status with the reasons that made it."""

    status: ComponentStatus
    automatic: ComponentStatus
    reasons: tuple[str, ...]


def decide(
    contributions: Iterable[Contribution],
    *,
    maintenance: str | None = None,
    override: ComponentStatus | None = None,
    override_note: str = "",
) -> Decision:
    """The status shown: the override if set, else maintenance in progress, else the worst
    contribution (operational with none). ``automatic`` is what it would be without the
    override, so an operator sees what they are overriding."""
    contributions = list(contributions)
    if maintenance is not None:
        automatic = ComponentStatus.UNDER_MAINTENANCE
        reasons = [f"maintenance {maintenance} in progress (-> under_maintenance)"]
    else:
        automatic = worst(contribution.status for contribution in contributions)
        reasons = [c.reason for c in contributions if c.status.rank > 0] or ["nothing wrong"]
    if override is not None:
        return Decision(override, automatic, (f"override -> {override}: {override_note}",
                                              *reasons))
    return Decision(automatic, automatic, tuple(reasons))


# --- the page as a whole ----------------------------------------------------------------------

INDICATOR_DESCRIPTION: dict[Indicator, tuple[str, str]] = {
    Indicator.NONE: ("すべてのシステムが正常に稼働しています", "All Systems Operational"),
    Indicator.MINOR: ("一部のサービスに軽微な障害が発生しています", "Minor Service Outage"),
    Indicator.MAJOR: ("一部のシステムで障害が発生しています", "Partial System Outage"),
    Indicator.CRITICAL: ("重大な障害が発生しています", "Major System Outage"),
    Indicator.MAINTENANCE: ("メンテナンスを実施しています", "Service Under Maintenance"),
}

_STATUS_INDICATOR = {
    ComponentStatus.DEGRADED_PERFORMANCE: Indicator.MINOR,
    ComponentStatus.PARTIAL_OUTAGE: Indicator.MAJOR,
    ComponentStatus.MAJOR_OUTAGE: Indicator.CRITICAL,
}
_IMPACT_INDICATOR = {
    Impact.MINOR: Indicator.MINOR,
    Impact.MAJOR: Indicator.MAJOR,
    Impact.CRITICAL: Indicator.CRITICAL,
}
_INDICATOR_RANK = {Indicator.NONE: 0, Indicator.MAINTENANCE: 0, Indicator.MINOR: 1,
                   Indicator.MAJOR: 2, Indicator.CRITICAL: 3}


def page_indicator(
    component_statuses: Iterable[ComponentStatus], unresolved_impacts: Iterable[Impact]
) -> Indicator:
    """Statuspage's rule: the worst of the components and of the unresolved incidents;
    ``maintenance`` when only maintenance is going on."""
    found = Indicator.NONE
    maintenance = False
    candidates: list[Indicator] = []
    for status in component_statuses:
        maintenance |= status == ComponentStatus.UNDER_MAINTENANCE
        if status in _STATUS_INDICATOR:
            candidates.append(_STATUS_INDICATOR[status])
    for impact in unresolved_impacts:
        maintenance |= impact == Impact.MAINTENANCE
        if impact in _IMPACT_INDICATOR:
            candidates.append(_IMPACT_INDICATOR[impact])
    for candidate in candidates:
        if _INDICATOR_RANK[candidate] > _INDICATOR_RANK[found]:
            found = candidate
    if found == Indicator.NONE and maintenance:
        return Indicator.MAINTENANCE
    return found


# --- update cadence ---------------------------------------------------------------------------

UPDATE_EVERY_MINUTES_DEFAULT: dict[Severity, int | None] = {
    Severity.SEV1: 15,
    Severity.SEV2: 30,
    Severity.SEV3: 60,
    Severity.SEV4: None,
}
UPDATE_EVERY_MINUTES_MIN = 1
UPDATE_EVERY_MINUTES_MAX = 24 * 60


def parse_update_every(text: str) -> dict[Severity, int | None]:
    """``"SEV1=15,SEV2=30,SEV3=60,SEV4=off"`` -> minutes per severity (``None``: no cadence).
    Severities not named keep their default."""
    chosen = dict(UPDATE_EVERY_MINUTES_DEFAULT)
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        name, separator, value = part.partition("=")
        try:
            severity = Severity(name.strip().upper())
        except ValueError:
            raise ValueError(
                f"{name.strip()!r} is not a severity; write e.g. SEV1=15,SEV2=30,SEV3=60,SEV4=off"
            ) from None
        if not separator:
            raise ValueError(f"{part!r} needs a value: {severity}=<minutes> or {severity}=off")
        value = value.strip().lower()
        if value == "off":
            chosen[severity] = None
            continue
        if not value.isdigit() or not (
            UPDATE_EVERY_MINUTES_MIN <= int(value) <= UPDATE_EVERY_MINUTES_MAX
        ):
            raise ValueError(
                f"{severity}={value}: give whole minutes from {UPDATE_EVERY_MINUTES_MIN} to "
                f"{UPDATE_EVERY_MINUTES_MAX}, or off"
            )
        chosen[severity] = int(value)
    return chosen


@dataclass(frozen=True)
class CadenceDue:
    """When an open incident's next public update is due, counted from ``since``."""

    since: datetime
    due_at: datetime
    every_minutes: int

    def overdue(self, now: datetime) -> bool:
        return now > self.due_at


def cadence_due(
    severity: Severity,
    *,
    detected_at: datetime,
    last_published_at: datetime | None,
    every_minutes: Mapping[Severity, int | None],
) -> CadenceDue | None:
    """The next update is due ``every_minutes[severity]`` after the last one published, or
    after detection when none was; ``None`` when the severity has no cadence."""
    minutes = every_minutes.get(severity)
    if minutes is None:
        return None
    since = last_published_at if last_published_at is not None else detected_at
    return CadenceDue(since=since, due_at=since + timedelta(minutes=minutes),
                      every_minutes=minutes)
