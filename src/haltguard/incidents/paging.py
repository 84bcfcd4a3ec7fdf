"""Pages in the incident timeline: every page event (paged, escalated, acknowledged, ...)
for an incident becomes a timeline entry in the transaction that caused it.

The composition root (``app/operations.py``) calls :func:`subscribe` at start-up, and so
does every other process that pages (``haltguard oncall tick`` / ``run-loop``), so
escalations made by the responders' background loop land in the timeline too. The entry is
written by :func:`haltguard.incidents.service.record`; the responders domain already writes
each page event to the audit chain, so this adds only the timeline entry.
"""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from haltguard.incidents import service
from haltguard.incidents.models import Incident, TimelineKind
from haltguard.incidents.rules import incident_id_of
from haltguard.responders.service import PageEvent, on_page_event

_subscribe_lock = threading.Lock()
_subscribed: list[bool] = []


def record_page_event(session: Session, event: PageEvent) -> None:
    """Append ``event`` to its incident's timeline; events of unknown incidents are skipped."""
    incident_id = incident_id_of(event.incident_id)
    if incident_id is None:
        return
    incident = session.get(Incident, incident_id)
    if incident is None:
        return
    service.record(
        session, incident, kind=TimelineKind.PAGE, actor=event.actor, message=event.text_en,
        now=event.at, audit_action=None,
        details={
            "page_id": event.page_id,
            "event": event.kind.value,
            "level": event.level_number,
            "people": list(event.people),
            "message_ja": event.text_ja,
        },
    )


def subscribe() -> None:
    """Put page events in the timeline from now on. Idempotent: the listener is registered
    at most once per process, however many apps the process builds."""
    with _subscribe_lock:
        if _subscribed:
            return
        _subscribed.append(True)
        on_page_event(record_page_event)
