"""Incidents over a real database (SQLite and PostgreSQL): opening, lifecycle, timeline,
tasks, metrics. Protective actions on the venue are in test_protective_actions.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from incident_helpers import START, Mailbox, open_incident
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from haltguard.incidents import flows, service
from haltguard.incidents.errors import IncidentError
from haltguard.incidents.models import (
    IncidentUpdate,
    PostmortemWrite,
    PublicUpdateCreate,
    TimelineEntry,
    TimelineKind,
    VenueEventLinkCreate,
)
from haltguard.incidents.rules import Category, IncidentStatus, Severity
from haltguard.incidents.runbook import runbook_for
from haltguard.responders.service import ManualClock
from haltguard.security import audit


def _kinds(session: Session, incident_id: int) -> list[TimelineKind]:
    return [entry.kind for entry in service.timeline(session, incident_id)]


def test_opening_lays_out_the_category_runbook_as_tasks_due_from_detection(
    session: Session, clock: ManualClock
) -> None:
    incident = open_incident(session, clock, category=Category.DDOS)
    runbook = runbook_for(Category.DDOS)
    assert incident.status == IncidentStatus.DETECTED
    assert incident.detected_at == START
    assert (incident.runbook_name, incident.runbook_version) == ("ddos", runbook.version)
    assert [task.step_key for task in incident.tasks] == [s.key for _p, s in runbook.steps()]
    first = incident.tasks[0]
    assert first.due_at == START + timedelta(minutes=runbook.steps()[0][1].due_minutes)
    assert service.progress(incident, START).model_dump() == {
        "done": 0, "total": len(runbook.steps()), "overdue": 0,
    }


def test_opening_is_in_the_timeline_and_the_audit_chain(
    session: Session, clock: ManualClock
) -> None:
    incident = open_incident(session, clock, incident_commander="carol")
    entries = service.timeline(session, incident.id)
    assert [e.kind for e in entries] == [TimelineKind.OPENED, TimelineKind.COMMANDER_ASSIGNED]
    assert entries[0].actor == "alice"
    audited, _total = audit.list_entries(session, newest_first=False)
    assert [(entry.action, entry.actor, entry.target) for entry in audited] == [
        ("incident.open", "operator:alice", incident.ref),
        ("incident.assign_commander", "operator:alice", incident.ref),
    ]
    assert audit.verify(session).ok


def test_an_illegal_transition_is_refused_and_changes_nothing(
    session: Session, clock: ManualClock
) -> None:
    incident = open_incident(session, clock)
    with pytest.raises(IncidentError, match="legal next states") as caught:
        service.transition(session, incident, IncidentStatus.CLOSED, actor="alice",
                           now=clock.now())
    assert caught.value.code == "transition_refused"
    assert incident.status == IncidentStatus.DETECTED
    assert _kinds(session, incident.id) == [TimelineKind.OPENED]


def test_leaving_detected_is_the_acknowledgement_and_gives_the_metrics(
    session: Session, clock: ManualClock
) -> None:
    incident = open_incident(session, clock, started_at=START - timedelta(minutes=5))
    clock.advance(timedelta(minutes=3))
    service.transition(session, incident, IncidentStatus.INVESTIGATING, actor="bob",
                       now=clock.now())
    clock.advance(timedelta(minutes=27))
    service.transition(session, incident, IncidentStatus.MONITORING, actor="bob",
                       now=clock.now())
    clock.advance(timedelta(minutes=30))
    service.transition(session, incident, IncidentStatus.RESOLVED, actor="bob",
                       now=clock.now(), market_states={})
    session.commit()
    metrics = service.metrics(incident)
    assert (metrics.time_to_detect_s, metrics.time_to_acknowledge_s,
            metrics.time_to_mitigate_s, metrics.time_to_resolve_s) == (300, 180, 1800, 3600)


def test_resolving_needs_an_answer_from_the_venue(session: Session, clock: ManualClock) -> None:
    incident = open_incident(session, clock)
    with pytest.raises(IncidentError) as caught:
        service.transition(session, incident, IncidentStatus.RESOLVED, actor="bob",
                           now=clock.now(), market_states=None)
    assert caught.value.code == "venue_unavailable"


def test_closing_needs_a_postmortem(session: Session, clock: ManualClock) -> None:
    incident = open_incident(session, clock)
    service.transition(session, incident, IncidentStatus.RESOLVED, actor="bob",
                       now=clock.now(), market_states={})
    with pytest.raises(IncidentError, match="write the postmortem"):
        service.transition(session, incident, IncidentStatus.CLOSED, actor="bob",
                           now=clock.now())
    service.write_postmortem(session, incident, PostmortemWrite(cause="disk full"),
                             actor="bob", now=clock.now())
    service.transition(session, incident, IncidentStatus.CLOSED, actor="bob", now=clock.now())
    session.commit()
    assert incident.status == IncidentStatus.CLOSED
    assert incident.cause == "disk full"
    with pytest.raises(IncidentError, match="closed"):
        service.comment(session, incident, "too late", actor="bob", now=clock.now())


def test_reopening_clears_the_resolution_time(session: Session, clock: ManualClock) -> None:
    incident = open_incident(session, clock)
    service.transition(session, incident, IncidentStatus.RESOLVED, actor="bob",
                       now=clock.now(), market_states={})
    service.transition(session, incident, IncidentStatus.INVESTIGATING, actor="bob",
                       now=clock.now(), note="it came back")
    assert incident.resolved_at is None
    assert service.metrics(incident).time_to_resolve_s is None


def test_the_timeline_cannot_be_edited_even_through_the_orm(
    session: Session, clock: ManualClock
) -> None:
    incident = open_incident(session, clock)
    entry = session.scalars(select(TimelineEntry).where(
        TimelineEntry.incident_id == incident.id)).one()
    entry.message = "nothing happened"
    with pytest.raises(DBAPIError, match="append-only"):
        session.commit()
    session.rollback()
    session.delete(session.get(TimelineEntry, entry.id))
    with pytest.raises(DBAPIError, match="append-only"):
        session.commit()


def test_comments_public_updates_and_venue_events_are_timeline_entries(
    session: Session, clock: ManualClock
) -> None:
    incident = open_incident(session, clock)
    service.comment(session, incident, "DB primary lost its disk", actor="bob", now=clock.now())
    service.post_public_update(
        session, incident,
        PublicUpdateCreate(message_ja="現在、取引を停止しています。",
                           message_en="Trading is halted."),
        actor="bob", now=clock.now(),
    )
    service.link_venue_event(
        session, incident,
        VenueEventLinkCreate(seq=1234, event_type="order_rejected", summary="BTC-JPY halted"),
        actor="bob", now=clock.now(),
    )
    session.commit()
    assert _kinds(session, incident.id)[1:] == [
        TimelineKind.COMMENT, TimelineKind.PUBLIC_UPDATE, TimelineKind.VENUE_EVENT_LINKED,
    ]
    public = service.timeline(session, incident.id)[2]
    assert public.details["message_ja"] == "現在、取引を停止しています。"
    assert [link.seq for link in service.venue_events(session, incident.id)] == [1234]


def test_completing_a_task_moves_progress_and_cannot_be_done_twice(
    session: Session, clock: ManualClock
) -> None:
    incident = open_incident(session, clock)
    clock.advance(timedelta(minutes=5))
    task = service.complete_task(session, incident, "assess_situation", actor="carol",
                                 now=clock.now(), note="DB primary down")
    session.commit()
    assert (task.done_by, task.done_at) == ("carol", clock.now())
    assert service.progress(incident, clock.now()).done == 1
    entry = service.timeline(session, incident.id)[-1]
    assert entry.kind == TimelineKind.TASK_DONE and entry.details["late"] is False
    with pytest.raises(IncidentError, match="was done by carol"):
        service.complete_task(session, incident, str(task.id), actor="carol", now=clock.now())
    with pytest.raises(IncidentError, match="no task"):
        service.complete_task(session, incident, "make_coffee", actor="carol", now=clock.now())


def test_tasks_past_their_due_time_are_overdue(session: Session, clock: ManualClock) -> None:
    incident = open_incident(session, clock)
    assert service.overdue_tasks(incident, clock.now()) == []
    clock.advance(timedelta(minutes=11))
    assert [t.step_key for t in service.overdue_tasks(incident, clock.now())] == [
        "assess_situation"
    ]
    service.complete_task(session, incident, "assess_situation", actor="c", now=clock.now())
    assert service.overdue_tasks(incident, clock.now()) == []
    assert service.timeline(session, incident.id)[-1].details["late"] is True


def test_a_sev1_or_sev2_pages_the_on_call_on_opening_and_a_sev3_does_not(
    session: Session, clock: ManualClock, oncall: Mailbox
) -> None:
    quiet = open_incident(session, clock, severity=Severity.SEV3,
                          responder_settings=oncall.settings)
    loud = open_incident(session, clock, severity=Severity.SEV1,
                         responder_settings=oncall.settings)
    assert TimelineKind.PAGE not in _kinds(session, quiet.id)
    pages = [e for e in service.timeline(session, loud.id) if e.kind == TimelineKind.PAGE]
    assert [(page.details["event"], page.details["people"]) for page in pages] == [
        ("paged", ["tanaka"])
    ]
    assert loud.ref in str(oncall.to("tanaka@example.test")[0]["Subject"])


def test_raising_the_severity_to_sev2_pages_and_keeps_the_peak(
    session: Session, clock: ManualClock, oncall: Mailbox
) -> None:
    paging = oncall.settings
    incident = open_incident(session, clock, severity=Severity.SEV3, responder_settings=paging)
    changed = flows.update_incident(session, incident, IncidentUpdate(severity=Severity.SEV2),
                                    actor="bob", clock=clock, responder_settings=paging)
    flows.update_incident(session, incident, IncidentUpdate(severity=Severity.SEV4),
                          actor="bob", clock=clock, responder_settings=paging)
    session.commit()
    assert changed == ["severity"]
    assert (incident.severity, incident.peak_severity) == (Severity.SEV4, Severity.SEV2)
    kinds = _kinds(session, incident.id)
    assert kinds.count(TimelineKind.SEVERITY_CHANGED) == 2
    assert TimelineKind.PAGE in kinds


def test_overdue_tasks_page_the_on_call_once_each(
    session: Session, clock: ManualClock, oncall: Mailbox
) -> None:
    paging = oncall.settings
    incident = open_incident(session, clock, responder_settings=paging)
    assert flows.page_overdue_tasks(session, incident, actor="bob", clock=clock,
                                    responder_settings=paging) == 0
    clock.advance(timedelta(minutes=16))
    assert flows.page_overdue_tasks(session, incident, actor="bob", clock=clock,
                                    responder_settings=paging) == 4
    assert flows.page_overdue_tasks(session, incident, actor="bob", clock=clock,
                                    responder_settings=paging) == 0
    session.commit()
    asked = [e for e in service.timeline(session, incident.id)
             if e.kind == TimelineKind.PAGE and e.actor == "bob"]
    assert len(asked) == 1
    assert "assess_situation" in asked[0].details["tasks"]


def test_period_metrics_average_the_incidents_detected_in_the_period(
    session: Session, clock: ManualClock
) -> None:
    first = open_incident(session, clock, severity=Severity.SEV2)
    clock.advance(timedelta(minutes=10))
    service.transition(session, first, IncidentStatus.INVESTIGATING, actor="b", now=clock.now())
    clock.advance(timedelta(hours=1))
    second = open_incident(session, clock, severity=Severity.SEV3)
    clock.advance(timedelta(minutes=20))
    service.transition(session, second, IncidentStatus.RESOLVED, actor="b", now=clock.now(),
                       market_states={})
    clock.advance(timedelta(days=2))
    open_incident(session, clock)  # outside the period
    session.commit()
    report = service.period_metrics(session, START, START + timedelta(days=1))
    assert report.incidents == 2
    assert report.by_severity == {"SEV1": 0, "SEV2": 1, "SEV3": 1, "SEV4": 0}
    assert report.mean_time_to_acknowledge_s == (600 + 1200) / 2
    assert report.mean_time_to_resolve_s == 1200
    with pytest.raises(IncidentError, match="until must be after since"):
        service.period_metrics(session, START, START)


def _tell(session: Session, incident_id: int, text: str, clock: ManualClock) -> None:
    service.post_public_update(session, service.get(session, incident_id),
                               PublicUpdateCreate(message_ja=f"{text}（日本語）", message_en=text),
                               actor="sam", now=clock.now())


def test_public_updates_since_returns_what_customers_were_told_from_then_on_oldest_first(
    session: Session, clock: ManualClock
) -> None:
    first = open_incident(session, clock)
    other = open_incident(session, clock)
    _tell(session, first.id, "Trading is halted.", clock)
    clock.advance(timedelta(minutes=10))
    checkpoint = clock.now()
    service.comment(session, first, "not for customers", actor="bob", now=clock.now())
    _tell(session, other.id, "Deposits are delayed.", clock)
    clock.advance(timedelta(minutes=5))
    _tell(session, first.id, "We found the cause.", clock)
    session.commit()
    since = service.public_updates_since(session, checkpoint)
    assert [(e.incident_id, e.message) for e in since] == [
        (other.id, "Deposits are delayed."), (first.id, "We found the cause.")]
    assert [e.message for e in service.public_updates_since(session, None, incident_id=first.id)
            ] == ["Trading is halted.", "We found the cause."]
    assert len(service.public_updates_since(session, None, limit=1)) == 1
    with pytest.raises(IncidentError, match="needs a time zone"):
        service.public_updates_since(session, checkpoint.replace(tzinfo=None))
    with pytest.raises(IncidentError, match="limit must be"):
        service.public_updates_since(session, None, limit=0)
