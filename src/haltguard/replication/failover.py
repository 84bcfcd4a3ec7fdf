"""A failover of the venue's primary as an incident and a status-page event.

When ``serve``'s replica set changes primary, people must learn it with its figures, not by
reading logs: the change is added to the open ``server_down`` incident of the venue (or
opens one), with the old and new node, the time to detect, the failover time and the last
seq each node reported, in the timeline and the audit chain (one writer:
``incidents.service.record``); and a public update goes out on the status page (one way:
``status.updates.publish``). :class:`FailoverRecorder` listens to the replica set's changes
and writes each on a thread of its own, so the watch that moves the forwarder never waits
on the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.taxonomy import Category, Severity
from haltguard.db.session import session_scope
from haltguard.incidents import service as incidents
from haltguard.incidents.models import Incident, IncidentCreate, TimelineKind
from haltguard.incidents.rules import OPEN_STATUSES
from haltguard.replication.processes import PrimaryChange
from haltguard.status import updates as status_updates
from haltguard.status.components import known_keys
from haltguard.status.models import IncidentDraftRequest
from haltguard.status.rules import UpdateStatus
from haltguard.status.settings import StatusSettings

log = logging.getLogger(__name__)

ACTOR = "system:replication"
VENUE_COMPONENT = "venue"
PUBLIC_COMPONENT = "order-api"  # what customers see of the venue on the status page
AUDIT_LOST = "replication.primary_lost"
AUDIT_FAILOVER = "replication.failover"


@dataclass(frozen=True)
class FailoverFigures:
    """One step of a failover: the primary stopped answering (``current`` empty), or a node
    serves again after one did (``failover_s`` set)."""

    previous: str
    current: str
    detect_s: float  # last answer of the old primary -> the watch saw it gone
    failover_s: float | None  # last answer of the old primary -> first of the new one
    last_seqs: dict[str, int]

    def as_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "old_node": self.previous, "new_node": self.current or None,
            "time_to_detect_ms": round(self.detect_s * 1000),
            "last_seq_by_node": dict(self.last_seqs),
        }
        if self.failover_s is not None:
            details["failover_ms"] = round(self.failover_s * 1000)
        return details


def _venue_incident(session: Session, incident_id: int | None) -> Incident | None:
    """``incident_id`` while still open (the incident of this failover's first step), else
    the open server_down incident naming the venue (detection opens one on a node's exit),
    the newest first."""
    if incident_id is not None:
        earlier = session.get(Incident, incident_id)
        if earlier is not None and earlier.status in OPEN_STATUSES:
            return earlier
    query = incidents.list_query(category=Category.SERVER_DOWN, open_only=True)
    for incident in session.scalars(query):
        if VENUE_COMPONENT in (incident.affected_components or []):
            return incident
    return None


def _seqs_text(figures: FailoverFigures) -> str:
    return ", ".join(f"{name} {seq}" for name, seq in sorted(figures.last_seqs.items()))


def record_failover(session: Session, figures: FailoverFigures, *, now: datetime,
                    settings: StatusSettings, incident_id: int | None = None) -> Incident:
    """Add this step to ``incident_id`` or the venue's open server_down incident (opening
    one if none), in its timeline and the audit chain; once a node serves again, publish a
    status-page update saying so. All in the caller's transaction."""
    incident = _venue_incident(session, incident_id)
    components = [PUBLIC_COMPONENT] if PUBLIC_COMPONENT in known_keys(session) else []
    if incident is None:
        incident = incidents.open_incident(session, IncidentCreate(
            title="The venue's primary stopped serving; failing over to the standby",
            summary="Opened automatically by the replica set's watch when the primary venue "
                    "node stopped answering.",
            category=Category.SERVER_DOWN, severity=Severity.SEV2,
            affected_components=[VENUE_COMPONENT, *components],
        ), actor=ACTOR, now=now)
    detect_ms = round(figures.detect_s * 1000)
    if figures.failover_s is None:
        message = (f"venue primary {figures.previous} stopped answering; detected in "
                   f"{detect_ms} ms; last seq seen: {_seqs_text(figures)} / "
                   f"プライマリ {figures.previous} が応答停止（検知 {detect_ms} ms）")
        audit = AUDIT_LOST
    else:
        failover_ms = round(figures.failover_s * 1000)
        message = (f"venue failover {figures.previous or '?'} -> {figures.current}: detected in "
                   f"{detect_ms} ms, serving again after {failover_ms} ms; last seq: "
                   f"{_seqs_text(figures)} / フェイルオーバー {figures.previous or '?'} → "
                   f"{figures.current}（検知 {detect_ms} ms、復旧まで {failover_ms} ms）")
        audit = AUDIT_FAILOVER
    incidents.record(session, incident, kind=TimelineKind.DETECTION, actor=ACTOR, now=now,
                     audit_action=audit, message=message, details=figures.as_details())
    if figures.failover_s is not None:
        draft = status_updates.draft_incident_update(session, incident.id, IncidentDraftRequest(
            status=UpdateStatus.MONITORING, components=components or None,
            cause_ja="取引サーバーの障害により予備系へ切り替えました。注文は予備系で受け付けています。",
            cause_en="A trading server failed and the standby took over; orders are being "
                     "accepted by the standby.",
        ), actor=ACTOR, now=now, settings=settings)
        status_updates.publish(session, draft.id, actor=ACTOR, now=now, settings=settings)
    return incident


class FailoverRecorder:
    """Turns the replica set's primary changes into :func:`record_failover` calls, one at a
    time on its own thread. The first primary at start is not a failover."""

    def __init__(self, session_factory: sessionmaker[Session], settings: StatusSettings,
                 clock: Callable[[], datetime]) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.clock = clock
        self._lost: FailoverFigures | None = None  # a primary gone, none serving yet
        self._incident_id: int | None = None  # where this failover's first step went
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="failover-record")
        self.written: list[Future[None]] = []

    def __call__(self, change: PrimaryChange) -> None:
        figures = self._figures(change)
        if figures is not None:
            self.written.append(self._writer.submit(self._write, figures))

    def _figures(self, change: PrimaryChange) -> FailoverFigures | None:
        if change.previous and not change.current:  # the primary stopped answering
            self._lost = FailoverFigures(change.previous, "", change.without_primary_s, None,
                                         dict(change.last_seqs))
            return self._lost
        if change.current and change.previous:  # moved in one poll: detected as it served
            return FailoverFigures(change.previous, change.current, change.without_primary_s,
                                   change.without_primary_s, dict(change.last_seqs))
        lost, self._lost = self._lost, None
        if change.current and lost is not None:
            return FailoverFigures(lost.previous, change.current, lost.detect_s,
                                   change.without_primary_s, dict(change.last_seqs))
        return None  # the first primary at start

    def _write(self, figures: FailoverFigures) -> None:
        try:
            with session_scope(self.session_factory) as session:
                incident = record_failover(session, figures, now=self.clock(),
                                           settings=self.settings,
                                           incident_id=self._incident_id)
                # the next step of this failover goes to the same incident; a new one looks
                self._incident_id = incident.id if figures.failover_s is None else None
        except Exception:
            log.exception("recording the venue failover %s -> %s failed",
                          figures.previous, figures.current or "none")
            raise

    def close(self) -> None:
        self._writer.shutdown(wait=True)
