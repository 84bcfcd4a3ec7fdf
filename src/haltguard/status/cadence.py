"""The update cadence: when the next public update of each incident is due, from its
severity and when customers were last told.

Read by the status loop (:mod:`haltguard.status.flows` pages when an update is overdue)
and the operators' API. Builds on the components and the updates; nothing here writes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from haltguard.incidents import service as incidents
from haltguard.incidents.models import Incident
from haltguard.status.components import open_incidents
from haltguard.status.models import CadencePage, CadenceRead, PublicIncident
from haltguard.status.rules import UpdateStatus, cadence_due
from haltguard.status.settings import StatusSettings
from haltguard.status.updates import last_published_at, published_updates


def _publicly_unresolved(session: Session) -> list[Incident]:
    """Incidents customers were told about whose last public word is not "resolved"."""
    found = []
    for public in session.scalars(select(PublicIncident).order_by(PublicIncident.id)):
        updates = published_updates(session, incident_id=public.incident_id)
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
    candidates = {incident.id: incident for incident in open_incidents(session)}
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
