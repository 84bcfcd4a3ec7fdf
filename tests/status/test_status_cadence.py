"""Update cadence: an open incident whose public update is late pages its incident commander
directly (the on-call by routing when there is none), once per lateness, through a real SMTP
server; the timeline and the audit chain say which rule fired, how late, and who was paged."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from status_support import SQLITE_ONLY, Mailbox, StatusApi

from haltguard.db.session import session_scope
from haltguard.incidents import service as incidents
from haltguard.incidents.models import TimelineEntry, TimelineKind
from haltguard.responders import service as responders
from haltguard.responders.models import ContactMethodIn, PersonIn
from haltguard.responders.service import ManualClock
from haltguard.security import audit
from haltguard.status.flows import StatusLoop
from haltguard.web.context import context_of

pytestmark = [SQLITE_ONLY, pytest.mark.usefixtures("oncall", "commander_on_call")]


@pytest.fixture
def commander_on_call(session_factory: sessionmaker[Session], clock: ManualClock) -> None:
    """carol, an incident commander, can be paged by email; tanaka is the routed on-call."""
    with session_scope(session_factory) as session:
        responders.put_person(session, PersonIn(
            handle="carol", display_name="Carol", language="en",
            contacts=[ContactMethodIn(kind="email", address="carol@example.test")],
        ), actor="system:test-setup", clock=clock)


def _overdue_entry(api: StatusApi, incident_id: int) -> TimelineEntry:
    with session_scope(context_of(api.app).session_factory) as session:
        (entry,) = [entry for entry in incidents.timeline(session, incident_id)
                    if entry.kind == TimelineKind.PAGE and "rule" in entry.details]
        session.expunge(entry)
        return entry


def _overdue_emails(mailbox: Mailbox, to: str = "") -> list[str]:
    return [str(message["Subject"]) + message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            for message in mailbox.messages
            if "public status update overdue" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            and to in str(message["To"])]


def test_a_late_public_update_pages_once_and_again_only_after_the_next_is_late(
    api: StatusApi, mailbox: Mailbox
) -> None:
    incident = api.open_incident(severity="SEV1", incident_commander="carol")
    api.clock.advance(timedelta(minutes=15))
    assert api.tick().paged == []  # due at 15 min: not late yet
    api.clock.advance(timedelta(minutes=1))
    assert api.tick().paged == [f"INC-{incident['id']}"]
    assert api.tick().paged == []  # the same lateness pages once
    (email,) = _overdue_emails(mailbox)
    assert "overdue by 1 min (SEV1: one every 15 min; last none yet)" in email
    assert "Incident commander (carol): publish an update" in email
    api.publish(incident["id"], "investigating")
    api.clock.advance(timedelta(minutes=15))
    assert api.tick().paged == []
    api.clock.advance(timedelta(minutes=1))
    assert api.tick().paged == [f"INC-{incident['id']}"]
    assert len(_overdue_emails(mailbox)) == 2


def test_a_late_public_update_pages_the_incident_commander_directly_and_says_why(
    api: StatusApi, mailbox: Mailbox
) -> None:
    incident = api.open_incident(severity="SEV2", incident_commander="carol")
    ref = f"INC-{incident['id']}"
    api.clock.advance(timedelta(minutes=33))
    api.tick()
    assert len(_overdue_emails(mailbox, to="carol@example.test")) == 1
    assert _overdue_emails(mailbox, to="tanaka@example.test") == []  # only if carol is silent
    entry = _overdue_entry(api, incident["id"])
    assert entry.message.startswith(
        "public update overdue by 3 min (rule: SEV2 every 30 min); paged the incident "
        "commander carol directly (page ")
    assert {key: entry.details[key] for key in ("rule", "every_minutes", "due_at", "late_s",
                                               "late_min", "paged", "incident_commander")} == {
        "rule": "SEV2 every 30 min", "every_minutes": 30, "due_at": "2025-01-06T01:00:00+00:00",
        "late_s": 180, "late_min": 3, "paged": "commander", "incident_commander": "carol"}
    with session_scope(context_of(api.app).session_factory) as session:
        page = responders.get_page(session, int(str(entry.details["page_id"])))
        assert page.policy_name == responders.DIRECT_PLAN_NAME
        assert page.incident_id == ref and page.created_by == "system:status"
        logged, _total = audit.list_entries(session, action="status.update_overdue")
        assert [item.target for item in logged] == [ref]
        paged_entries = [e.message for e in incidents.timeline(session, incident["id"])
                         if e.kind == TimelineKind.PAGE and e.details.get("page_id") == page.id
                         and "event" in e.details]
        assert paged_entries == [
            f"Paged carol directly (incident commander of {ref}: public update overdue by "
            "3 min (SEV2 every 30 min)); without an acknowledgement within 5 min it "
            "escalates by policy 'exchange'"]


def test_without_a_commander_a_late_update_pages_the_on_call_by_routing(
    api: StatusApi, mailbox: Mailbox
) -> None:
    incident = api.open_incident(severity="SEV2")
    api.clock.advance(timedelta(minutes=30, seconds=20))
    api.tick()
    entry = _overdue_entry(api, incident["id"])
    assert entry.details["incident_commander"] is None and entry.details["paged"] == "on_call"
    assert entry.message.startswith(
        "public update overdue by 20 s (rule: SEV2 every 30 min); no incident commander "
        f"assigned to INC-{incident['id']}, so paged the on-call (page ")
    assert len(_overdue_emails(mailbox, to="tanaka@example.test")) == 1
    cadence = api.call("GET", "/api/status/cadence")["items"]
    assert cadence[0]["overdue"] is True and cadence[0]["paged_at"] is not None


def test_a_commander_who_cannot_be_paged_falls_back_to_the_on_call(
    api: StatusApi, mailbox: Mailbox
) -> None:
    incident = api.open_incident(severity="SEV1", incident_commander="bob")
    api.clock.advance(timedelta(minutes=16))
    api.tick()
    entry = _overdue_entry(api, incident["id"])
    assert entry.details["paged"] == "on_call"
    assert "the incident commander bob cannot be paged: no person 'bob'" in str(
        entry.details["fallback_reason"])
    assert len(_overdue_emails(mailbox, to="tanaka@example.test")) == 1


def test_an_update_told_straight_on_the_incident_resets_the_clock_before_the_page_absorbs_it(
    api: StatusApi, mailbox: Mailbox
) -> None:
    incident = api.open_incident(severity="SEV1", incident_commander="carol")
    api.clock.advance(timedelta(minutes=10))
    api.call("POST", f"/api/incidents/{incident['id']}/public-updates", expect=201,
             body={"message_ja": "調査中です。", "message_en": "We are investigating."})
    api.clock.advance(timedelta(minutes=10))
    (row,) = api.call("GET", "/api/status/cadence")["items"]
    assert row["overdue"] is False and row["due_at"] == "2025-01-06T00:55:00Z"
    assert api.tick().paged == []
    assert _overdue_emails(mailbox) == []


def test_incidents_without_a_cadence_or_already_resolved_page_nobody(
    api: StatusApi, mailbox: Mailbox
) -> None:
    api.open_incident(severity="SEV4")
    resolved = api.open_incident(severity="SEV3")
    api.call("POST", f"/api/incidents/{resolved['id']}/transition", body={"status": "resolved"})
    api.clock.advance(timedelta(hours=5))
    assert api.tick().paged == []
    assert _overdue_emails(mailbox) == []


def test_an_incident_resolved_inside_but_not_on_the_page_still_needs_its_update(
    api: StatusApi, mailbox: Mailbox
) -> None:
    incident = api.open_incident(severity="SEV3")
    api.publish(incident["id"], "investigating")
    api.call("POST", f"/api/incidents/{incident['id']}/transition", body={"status": "resolved"})
    api.clock.advance(timedelta(minutes=61))
    assert api.tick().paged == [f"INC-{incident['id']}"]
    api.publish(incident["id"], "resolved")
    api.clock.advance(timedelta(hours=3))
    assert api.tick().paged == []


def test_the_status_loop_pages_in_the_background_until_stopped(
    api: StatusApi, mailbox: Mailbox
) -> None:
    api.open_incident(severity="SEV1", incident_commander="carol")
    api.clock.advance(timedelta(minutes=16))
    loop = StatusLoop(api.publisher, 0.5, responder_settings=api.paging)
    loop.start()
    try:
        assert loop.running
        deadline = time.monotonic() + 10
        while not _overdue_emails(mailbox, to="carol@example.test"):
            assert time.monotonic() < deadline, "the loop did not page in time"
            time.sleep(0.05)
    finally:
        assert loop.stop(timeout_s=10)
    assert not loop.running and loop.stop()
    with pytest.raises(RuntimeError, match="make a new one"):
        loop.start()
