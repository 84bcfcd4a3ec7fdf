"""The facts both reports share, gathered once from an incident's record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from haltguard.impact.models import ImpactFigures
from haltguard.incidents import service
from haltguard.incidents.models import (
    HoldKind,
    Incident,
    Postmortem,
    TimelineEntry,
    TimelineKind,
)

# Entries about the record itself, not about the incident: left out of reports.
NOT_REPORTED = frozenset({TimelineKind.REPORT})


@dataclass(frozen=True)
class Impact:
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    markets_halted: tuple[str, ...]
    all_markets_halted: bool  # the kill switch was engaged
    withdrawals_frozen: tuple[str, ...]
    orders_rejected: int | None
    customers_affected: int | None


@dataclass(frozen=True)
class IncidentFacts:
    incident: Incident
    impact: Impact
    timeline: tuple[TimelineEntry, ...]
    postmortem: Postmortem | None
    figures: ImpactFigures | None = None  # counted from the venue's journal, where it is read


def gather(
    session: Session, incident: Incident, figures: ImpactFigures | None = None
) -> IncidentFacts:
    """The incident's facts; ``figures`` (impact analysis of the journal) fill in the
    affected customers and refused orders a person would otherwise have to."""
    holds = service.holds(session, incident.id)
    markets = tuple(sorted({hold.target for hold in holds if hold.kind == HoldKind.MARKET}))
    frozen = tuple(sorted({hold.target for hold in holds if hold.kind == HoldKind.WITHDRAWALS}))
    started = incident.started_at or incident.detected_at
    ended = incident.resolved_at
    orders_rejected = incident.orders_rejected
    if orders_rejected is None:
        rejected_links = [link for link in service.venue_events(session, incident.id)
                          if link.event_type == "order_rejected"]
        orders_rejected = len(rejected_links) if rejected_links else None
    impact = Impact(
        started_at=started,
        ended_at=ended,
        duration_s=(ended - started).total_seconds() if ended is not None else None,
        markets_halted=markets,
        all_markets_halted=any(hold.kind == HoldKind.KILL_SWITCH for hold in holds),
        withdrawals_frozen=frozen,
        orders_rejected=orders_rejected,
        customers_affected=incident.estimated_affected_customers,
    )
    entries = tuple(entry for entry in service.timeline(session, incident.id)
                    if entry.kind not in NOT_REPORTED)
    return IncidentFacts(incident, impact, entries, service.postmortem(session, incident.id),
                         figures)
