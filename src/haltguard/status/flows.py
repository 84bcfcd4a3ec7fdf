"""Multi-step status work: paging when an open incident's public update is overdue, and the
status loop that keeps the page current and checks the cadence.

An overdue update pages the incident commander directly through the responders (on-call
routing when there is no commander or they cannot be paged); the page's summary names what
is late, and the incident's timeline and the audit chain say which rule fired with which
values and who was paged.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from haltguard.common.clock import Clock
from haltguard.db.session import session_scope
from haltguard.incidents import service as incidents
from haltguard.incidents.models import Incident, TimelineKind
from haltguard.responders import service as responders
from haltguard.responders.service import ResponderSettings
from haltguard.status.cadence import cadence
from haltguard.status.components import SYSTEM_ACTOR
from haltguard.status.models import CadencePage
from haltguard.status.publisher import StatusPublisher
from haltguard.status.settings import LOOP_INTERVAL_S_MIN, StatusSettings

log = logging.getLogger(__name__)

SUMMARY_LENGTH_MAX = 2_000
STOP_TIMEOUT_S = 30.0
"""How long :meth:`StatusLoop.stop` waits by default for the tick in progress (a page sends
by SMTP and webhooks inside it)."""


@dataclass(frozen=True)
class _Paged:
    """Who an overdue update paged: the commander directly, the on-call by routing, or
    nobody (``error`` says why)."""

    page_id: int | None
    whom: str
    fallback_reason: str = ""
    error: str = ""


def _page_for_overdue(
    session: Session, incident: Incident, *, summary: str, reason: str, clock: Clock,
    responder_settings: ResponderSettings | None,
) -> _Paged:
    """Page the incident commander directly; when there is none, or they cannot be paged,
    page the on-call by routing and say why. Each attempt is all or nothing."""
    commander = incident.incident_commander
    fallback_reason = f"no incident commander assigned to {incident.ref}"
    if commander:
        try:
            with session.begin_nested():
                page = responders.page_person(
                    session, person=commander, incident_id=incident.ref, summary=summary,
                    category=incident.category.value, severity=incident.severity.value,
                    reason=reason, clock=clock, actor=SYSTEM_ACTOR,
                    settings=responder_settings,
                )
            return _Paged(page.id, "commander")
        except responders.RespondersError as exc:
            fallback_reason = f"the incident commander {commander} cannot be paged: {exc.message}"
    try:
        with session.begin_nested():
            page = responders.page(
                session, incident_id=incident.ref, summary=summary,
                category=incident.category.value, severity=incident.severity.value,
                clock=clock, actor=SYSTEM_ACTOR, settings=responder_settings,
            )
        return _Paged(page.id, "on_call", fallback_reason=fallback_reason)
    except responders.RespondersError as exc:
        return _Paged(None, "", fallback_reason=fallback_reason, error=exc.message)


def _late_text(late_s: int) -> str:
    """``45 s`` under a minute (the loop notices within seconds), else whole minutes."""
    return f"{late_s} s" if late_s < 60 else f"{late_s // 60} min"


def _overdue_message(incident: Incident, paged: _Paged, *, rule: str, late: str) -> str:
    told = f"public update overdue by {late} (rule: {rule})"
    if paged.whom == "commander":
        return (f"{told}; paged the incident commander {incident.incident_commander} "
                f"directly (page {paged.page_id})")
    if paged.whom == "on_call":
        return f"{told}; {paged.fallback_reason}, so paged the on-call (page {paged.page_id})"
    return (f"{told}; paging failed: {paged.error}; call the incident commander "
            f"({incident.incident_commander or 'none assigned'}) by hand")


def page_overdue_updates(
    session: Session, *, clock: Clock, settings: StatusSettings,
    responder_settings: ResponderSettings | None = None,
) -> list[str]:
    """Page once for each open incident whose public update is overdue; returns their refs.

    The incident commander is paged directly (unanswered, their page escalates by the
    on-call routing); with no commander, or one who cannot be paged, the on-call is paged by
    routing. The same lateness is paged once: after the next update the clock starts again.
    """
    now = clock.now()
    paged_refs = []
    for row in cadence(session, now=now, settings=settings):
        if not row.overdue or row.paged_at is not None:
            continue
        incident = incidents.get(session, row.incident_id)
        commander = incident.incident_commander or "no commander assigned"
        late_s = int((now - row.due_at).total_seconds())
        late = _late_text(late_s)
        rule = f"{incident.severity} every {row.every_minutes} min"
        last = row.last_published_at.isoformat() if row.last_published_at else "none yet"
        summary = (
            f"{incident.ref}: public status update overdue by {late} "
            f"({incident.severity}: one every {row.every_minutes} min; last {last}). "
            f"Incident commander ({commander}): publish an update (haltguard status draft)."
        )[:SUMMARY_LENGTH_MAX]
        paged = _page_for_overdue(
            session, incident, summary=summary, clock=clock,
            reason=f"incident commander of {incident.ref}: public update overdue by {late} "
                   f"({rule})",
            responder_settings=responder_settings,
        )
        session.add(CadencePage(incident_id=incident.id, due_at=row.due_at, paged_at=now,
                                page_id=paged.page_id))
        incidents.record(
            session, incident, kind=TimelineKind.PAGE, actor=SYSTEM_ACTOR, now=now,
            audit_action="status.update_overdue",
            message=_overdue_message(incident, paged, rule=rule, late=late),
            details={"rule": rule, "every_minutes": row.every_minutes,
                     "last_published_at": last, "due_at": row.due_at.isoformat(),
                     "late_s": late_s, "late_min": late_s // 60,
                     "incident_commander": incident.incident_commander,
                     "paged": paged.whom or None, "fallback_reason": paged.fallback_reason,
                     "page_id": paged.page_id, "error": paged.error},
        )
        paged_refs.append(incident.ref)
    return paged_refs


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


class StatusLoop:
    """The status loop as a part of a running service: :meth:`start` it once, :meth:`stop`
    it on shutdown. Each tick refreshes the page and pages on overdue updates."""

    def __init__(
        self, publisher: StatusPublisher, interval_s: float, *,
        responder_settings: ResponderSettings | None = None,
    ) -> None:
        if interval_s < LOOP_INTERVAL_S_MIN:
            raise ValueError(f"interval_s must be at least {LOOP_INTERVAL_S_MIN}")
        self.publisher = publisher
        self.interval_s = interval_s
        self.responder_settings = responder_settings
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self.stop_event.is_set():
                raise RuntimeError("this status loop was already started or stopped; "
                                   "make a new one")
            self._thread = threading.Thread(
                target=run_status_loop, name="haltguard-status", daemon=True,
                args=(self.stop_event, self.publisher, self.interval_s),
                kwargs={"responder_settings": self.responder_settings},
            )
            self._thread.start()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Let the tick in progress finish, then stop; True when stopped within
        ``timeout_s``. Safe to call twice."""
        self.stop_event.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()
