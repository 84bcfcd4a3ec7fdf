"""Update cadence: an open incident whose public update is late pages the on-call for its
incident commander, once per lateness, through a real SMTP server; the timeline and the
audit chain say which rule fired."""

from __future__ import annotations

from datetime import timedelta

import pytest
from status_support import SQLITE_ONLY, Mailbox, StatusApi

from haltguard.db.session import session_scope
from haltguard.incidents import service as incidents
from haltguard.incidents.models import TimelineKind
from haltguard.security import audit
from haltguard.status.flows import status_tick

pytestmark = [SQLITE_ONLY, pytest.mark.usefixtures("oncall")]


def _overdue_emails(mailbox: Mailbox) -> list[str]:
    return [str(message["Subject"]) + message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            for message in mailbox.messages
            if "public status update overdue" in message.get_body(("plain",)).get_content()]  # type: ignore[union-attr]


def test_a_late_public_update_pages_once_and_again_only_after_the_next_is_late(
    api: StatusApi, mailbox: Mailbox
) -> None:
    incident = api.open_incident(severity="SEV1", incident_commander="carol")
    api.clock.advance(timedelta(minutes=15))
    assert status_tick(api.publisher).paged == []  # due at 15 min: not late yet
    api.clock.advance(timedelta(minutes=1))
    assert status_tick(api.publisher).paged == [f"INC-{incident['id']}"]
    assert status_tick(api.publisher).paged == []  # the same lateness pages once
    (email,) = _overdue_emails(mailbox)
    assert "overdue by 1 min (SEV1: one every 15 min; last none yet)" in email
    assert "Incident commander (carol): publish an update" in email
    api.publish(incident["id"], "investigating")
    api.clock.advance(timedelta(minutes=15))
    assert status_tick(api.publisher).paged == []
    api.clock.advance(timedelta(minutes=1))
    assert status_tick(api.publisher).paged == [f"INC-{incident['id']}"]
    assert len(_overdue_emails(mailbox)) == 2


def test_the_overdue_page_is_explained_in_the_timeline_and_the_audit_chain(
    api: StatusApi, mailbox: Mailbox
) -> None:
    incident = api.open_incident(severity="SEV2")
    api.clock.advance(timedelta(minutes=31))
    status_tick(api.publisher)
    with session_scope(api.app.state.session_factory) as session:
        entries = [entry for entry in incidents.timeline(session, incident["id"])
                   if entry.kind == TimelineKind.PAGE and "rule" in entry.details]
        (entry,) = entries
        assert entry.details["rule"] == "SEV2 every 30 min"
        assert entry.details["due_at"] == "2025-01-06T01:00:00+00:00"
        assert entry.details["incident_commander"] is None
        assert "paged the on-call for the incident commander" in entry.message
        logged, _total = audit.list_entries(session, action="status.update_overdue")
        assert [item.target for item in logged] == [f"INC-{incident['id']}"]
    cadence = api.call("GET", "/api/status/cadence")["items"]
    assert cadence[0]["overdue"] is True and cadence[0]["paged_at"] is not None
    assert mailbox.messages


def test_incidents_without_a_cadence_or_already_resolved_page_nobody(
    api: StatusApi, mailbox: Mailbox
) -> None:
    api.open_incident(severity="SEV4")
    resolved = api.open_incident(severity="SEV3")
    api.call("POST", f"/api/incidents/{resolved['id']}/transition", body={"status": "resolved"})
    api.clock.advance(timedelta(hours=5))
    assert status_tick(api.publisher).paged == []
    assert _overdue_emails(mailbox) == []


def test_an_incident_resolved_inside_but_not_on_the_page_still_needs_its_update(
    api: StatusApi, mailbox: Mailbox
) -> None:
    incident = api.open_incident(severity="SEV3")
    api.publish(incident["id"], "investigating")
    api.call("POST", f"/api/incidents/{incident['id']}/transition", body={"status": "resolved"})
    api.clock.advance(timedelta(minutes=61))
    assert status_tick(api.publisher).paged == [f"INC-{incident['id']}"]
    api.publish(incident["id"], "resolved")
    api.clock.advance(timedelta(hours=3))
    assert status_tick(api.publisher).paged == []
