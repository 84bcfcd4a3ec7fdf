"""A failover of the venue's primary becomes a server_down incident with its figures (in
the timeline and the audit chain) and a published status-page update."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.taxonomy import Category, Severity
from haltguard.db.session import session_scope
from haltguard.incidents import service as incidents
from haltguard.incidents.models import Incident, IncidentCreate, TimelineEntry
from haltguard.replication.failover import (
    AUDIT_FAILOVER,
    AUDIT_LOST,
    PUBLIC_COMPONENT,
    FailoverRecorder,
)
from haltguard.replication.processes import PrimaryChange
from haltguard.security.models import AuditEntry
from haltguard.status.components import ensure_components
from haltguard.status.models import StatusUpdate, UpdateState
from haltguard.status.settings import StatusSettings

NOW = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)


def _recorder(session_factory: sessionmaker[Session]) -> FailoverRecorder:
    with session_scope(session_factory) as session:
        ensure_components(session, ["XRP-JPY"], now=NOW)
    return FailoverRecorder(session_factory, StatusSettings(), lambda: NOW)


def _failover(recorder: FailoverRecorder) -> None:
    """Start (a serves), a stops answering, b serves: what PrimaryWatch reports."""
    recorder(PrimaryChange("", "a", 1, 0.0, {"a": 0, "b": 0}))
    recorder(PrimaryChange("a", "", 2, 0.12, {"a": 41, "b": 40}))
    recorder(PrimaryChange("", "b", 3, 1.37, {"a": 41, "b": 41}))
    recorder.close()
    for written in recorder.written:
        written.result()


def test_a_failover_opens_a_server_down_incident_with_its_figures_in_timeline_and_audit(
    session_factory: sessionmaker[Session],
) -> None:
    _failover(_recorder(session_factory))
    with session_factory() as session:
        (incident,) = session.scalars(select(Incident)).all()
        assert incident.category == Category.SERVER_DOWN
        entries = session.scalars(select(TimelineEntry).where(
            TimelineEntry.incident_id == incident.id)).all()
        figures = [e.details for e in entries if "failover_ms" in e.details]
        assert figures == [{"old_node": "a", "new_node": "b", "time_to_detect_ms": 120,
                            "failover_ms": 1370, "last_seq_by_node": {"a": 41, "b": 41}}]
        lost = [e.details for e in entries if e.details.get("new_node", "") is None]
        assert lost and lost[0]["time_to_detect_ms"] == 120
        audit = {entry.action: json.loads(entry.details_json) for entry in
                 session.scalars(select(AuditEntry))}
        assert AUDIT_LOST in audit and AUDIT_FAILOVER in audit
        assert "1370" in json.dumps(audit[AUDIT_FAILOVER])


def test_a_failover_publishes_a_status_page_update_on_the_order_api(
    session_factory: sessionmaker[Session],
) -> None:
    _failover(_recorder(session_factory))
    with session_factory() as session:
        (update,) = session.scalars(select(StatusUpdate)).all()
        assert update.state == UpdateState.PUBLISHED and update.status == "monitoring"
        assert update.components == [PUBLIC_COMPONENT]
        assert "予備系" in update.body_ja and "standby" in update.body_en


def test_a_failover_adds_to_the_venue_incident_detection_already_opened(
    session_factory: sessionmaker[Session],
) -> None:
    recorder = _recorder(session_factory)
    with session_scope(session_factory) as session:
        opened = incidents.open_incident(session, IncidentCreate(
            title="The venue process exited", summary="by detection",
            category=Category.SERVER_DOWN, severity=Severity.SEV2,
            affected_components=["venue"]), actor="system:detection", now=NOW)
        opened_id = opened.id
    _failover(recorder)
    with session_factory() as session:
        assert [i.id for i in session.scalars(select(Incident))] == [opened_id]
        assert session.scalars(select(StatusUpdate)).one().incident_id == opened_id


def test_the_first_primary_at_start_is_not_a_failover(
    session_factory: sessionmaker[Session],
) -> None:
    recorder = _recorder(session_factory)
    recorder(PrimaryChange("", "a", 1, 0.0, {"a": 0, "b": 0}))
    recorder.close()
    assert recorder.written == []
    with session_factory() as session:
        assert session.scalars(select(Incident)).all() == []


def test_both_steps_of_one_failover_stay_in_one_incident_when_another_opens_between(
    session_factory: sessionmaker[Session],
) -> None:
    recorder = _recorder(session_factory)
    recorder(PrimaryChange("a", "", 2, 0.12, {"a": 41, "b": 40}))
    recorder.written[-1].result()
    with session_scope(session_factory) as session:  # detection's exit incident, later
        incidents.open_incident(session, IncidentCreate(
            title="The venue process exited", summary="by detection",
            category=Category.SERVER_DOWN, severity=Severity.SEV2,
            affected_components=["venue"]), actor="system:detection", now=NOW)
    recorder(PrimaryChange("", "b", 3, 1.37, {"a": 41, "b": 41}))
    recorder.close()
    recorder.written[-1].result()
    with session_factory() as session:
        first = session.scalars(select(Incident).order_by(Incident.id)).first()
        assert first is not None
        details = [e.details for e in session.scalars(select(TimelineEntry).where(
            TimelineEntry.incident_id == first.id))]
        assert any("failover_ms" in d for d in details)
        assert session.scalars(select(StatusUpdate)).one().incident_id == first.id
