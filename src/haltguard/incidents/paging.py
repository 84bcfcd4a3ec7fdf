"""Pages in the incident timeline: every page event (paged, escalated, acknowledged, ...)
for an incident becomes a timeline entry in the transaction that caused it.

Subscribing happens once, when this module is imported (the incident flows import it), so
escalations made by the responders' background loop land in the timeline too. The
responders domain already writes each page event to the audit chain; this adds only the
timeline entry.
"""

from __future__ import annotations

import re
import threading

from sqlalchemy.orm import Session

from haltguard.incidents.models import Incident, TimelineEntry, TimelineKind
from haltguard.responders.service import PageEvent, on_page_event

_INCIDENT_REF = re.compile(r"^INC-(\d{1,12})$")
_subscribe_lock = threading.Lock()
_subscribed: list[bool] = []


def incident_id_of(ref: str) -> int | None:
    match = _INCIDENT_REF.match(ref)
    return int(match.group(1)) if match else None


def record_page_event(session: Session, event: PageEvent) -> None:
    """Append ``event`` to its incident's timeline; events of unknown incidents are skipped."""
    incident_id = incident_id_of(event.incident_id)
    if incident_id is None or session.get(Incident, incident_id) is None:
        return
    session.add(
        TimelineEntry(
            incident_id=incident_id,
            at=event.at,
            actor=event.actor,
            kind=TimelineKind.PAGE,
            message=event.text_en,
            details={
                "page_id": event.page_id,
                "event": event.kind.value,
                "level": event.level_number,
                "people": list(event.people),
                "message_ja": event.text_ja,
            },
        )
    )
    session.flush()


def subscribe() -> None:
    """Idempotent: the listener is registered at most once per process."""
    with _subscribe_lock:
        if _subscribed:
            return
        _subscribed.append(True)
        on_page_event(record_page_event)


subscribe()
