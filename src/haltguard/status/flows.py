"""Multi-step status work: paging when an open incident's public update is overdue, and the
status loop that keeps the page current and checks the cadence.

Paging goes through the responders (their routing chooses who is paged); the page's summary
names the incident commander and what is late, and the incident's timeline and the audit
chain say which rule fired with which values.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from haltguard.db.session import session_scope
from haltguard.incidents import service as incidents
from haltguard.incidents.models import TimelineKind
from haltguard.responders import service as responders
from haltguard.responders.service import ResponderSettings
from haltguard.status import service
from haltguard.status.models import CadencePage
from haltguard.status.publisher import StatusPublisher
from haltguard.status.settings import LOOP_INTERVAL_S_MIN, StatusSettings
from haltguard.web.clock import Clock

log = logging.getLogger(__name__)

SUMMARY_LENGTH_MAX = 2_000


def page_overdue_updates(
    session: Session, *, clock: Clock, settings: StatusSettings,
    responder_settings: ResponderSettings | None = None,
) -> list[str]:
    """Page once for each open incident whose public update is overdue; returns their refs.

    The same lateness is paged once: after the next update the clock starts again."""
    now = clock.now()
    paged = []
    for row in service.cadence(session, now=now, settings=settings):
        if not row.overdue or row.paged_at is not None:
            continue
        incident = incidents.get(session, row.incident_id)
        commander = incident.incident_commander or "no commander assigned"
        late_min = int((now - row.due_at).total_seconds() // 60)
        last = row.last_published_at.isoformat() if row.last_published_at else "none yet"
        summary = (
            f"{incident.ref}: public status update overdue by {late_min} min "
            f"({incident.severity}: one every {row.every_minutes} min; last {last}). "
            f"Incident commander ({commander}): publish an update (haltguard status draft)."
        )[:SUMMARY_LENGTH_MAX]
        page_id: int | None = None
        error = ""
        try:
            page = responders.page(
                session, incident_id=incident.ref, summary=summary,
                category=incident.category.value, severity=incident.severity.value,
                clock=clock, actor=service.SYSTEM_ACTOR, settings=responder_settings,
            )
            page_id = page.id
        except responders.RespondersError as exc:
            error = exc.message
        session.add(CadencePage(incident_id=incident.id, due_at=row.due_at, paged_at=now,
                                page_id=page_id))
        incidents.record(
            session, incident, kind=TimelineKind.PAGE, actor=service.SYSTEM_ACTOR, now=now,
            audit_action="status.update_overdue",
            message=(f"public update overdue ({incident.severity}: every {row.every_minutes} "
                     f"min, due {row.due_at.isoformat()}); "
                     + (f"paged the on-call for the incident commander ({commander})"
                        if page_id is not None
                        else f"paging failed: {error}; call the incident commander by hand")),
            details={"rule": f"{incident.severity} every {row.every_minutes} min",
                     "last_published_at": last, "due_at": row.due_at.isoformat(),
                     "late_min": late_min, "incident_commander": incident.incident_commander,
                     "page_id": page_id, "error": error},
        )
        paged.append(incident.ref)
    return paged


@dataclass
class TickReport:
    page_changed: bool = False
    paged: list[str] = field(default_factory=list)


def status_tick(
    publisher: StatusPublisher, *, responder_settings: ResponderSettings | None = None
) -> TickReport:
    """One tick: refresh the page (exporting it if it changed), then check the cadence."""
    report = TickReport(page_changed=publisher.refresh())
    with session_scope(publisher.session_factory) as session:
        report.paged = page_overdue_updates(session, clock=publisher.clock,
                                            settings=publisher.settings,
                                            responder_settings=responder_settings)
    if report.paged:
        publisher.invalidate()
    return report


def run_status_loop(
    stop_event: threading.Event, publisher: StatusPublisher, interval_s: float, *,
    responder_settings: ResponderSettings | None = None,
) -> None:
    """Tick every ``interval_s`` seconds until ``stop_event`` is set; a failing tick is
    logged and tried again next time."""
    if interval_s < LOOP_INTERVAL_S_MIN:
        raise ValueError(f"interval_s must be at least {LOOP_INTERVAL_S_MIN}")
    while not stop_event.is_set():
        try:
            report = status_tick(publisher, responder_settings=responder_settings)
            if report.paged:
                log.warning("public updates overdue, paged: %s", ", ".join(report.paged))
        except Exception:
            log.exception("status tick failed; trying again in %s s", interval_s)
        stop_event.wait(interval_s)


def start_status_thread(
    publisher: StatusPublisher, interval_s: float, *,
    responder_settings: ResponderSettings | None = None,
) -> tuple[threading.Thread, threading.Event]:
    """Run :func:`run_status_loop` in a daemon thread; set the event to stop it."""
    stop_event = threading.Event()
    thread = threading.Thread(
        target=run_status_loop, name="haltguard-status", daemon=True,
        args=(stop_event, publisher, interval_s),
        kwargs={"responder_settings": responder_settings},
    )
    thread.start()
    return thread, stop_event
