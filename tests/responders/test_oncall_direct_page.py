"""Paging one named person directly (the incident commander, say): the same channels, ack
links, audit entries and page events as any page, and escalation by the routed policy when
they do not answer. Real SMTP (aiosmtpd) and a real HTTP receiver for the apprise webhook."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import ManualClock
from haltguard.db.session import session_scope
from haltguard.responders import service
from haltguard.responders.ack_links import verify_ack_token
from haltguard.responders.models import Page
from haltguard.responders.settings import ResponderSettings
from haltguard.security import audit
from haltguard.security.permissions import Role
from haltguard.security.testing import provision_operator

from .conftest import ACK_SECRET, HttpReceiver, SmtpServer, add_person
from .oncall_setup import ACK_LINK, page_state, tick, two_level_policy

Factory = sessionmaker[Session]
REASON = "incident commander of INC-7: public update overdue by 3 min"


def page_directly(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings, person: str,
) -> int:
    with session_scope(session_factory) as session:
        sent = service.page_person(
            session, person=person, incident_id="INC-7", summary="public update overdue",
            category="database", severity="SEV1", reason=REASON, clock=clock,
            actor="system:status", settings=settings,
        )
        return sent.id


def test_a_direct_page_reaches_only_that_person_on_each_of_their_channels_with_an_ack_link(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id = page_directly(session_factory, clock, settings, "kobayashi")

    assert smtp_server.mailbox.recipients == [["kobayashi@example.com"]]
    links = ACK_LINK.findall(smtp_server.messages[0].get_content())
    grant = verify_ack_token(ACK_SECRET, links[0][0].split("token=")[1], page_id=page_id,
                             now=clock.now())
    assert grant.responder == "kobayashi"
    shown = page_state(session_factory, page_id)
    assert shown.policy == service.DIRECT_PLAN_NAME and shown.level_number == 1
    assert [n.person for n in shown.notifications] == ["kobayashi"]
    (paged,) = shown.events
    assert paged.kind == "paged" and paged.actor == "system:status"
    assert paged.text_en == (f"Paged kobayashi directly ({REASON}); without an acknowledgement "
                             "within 5 min it escalates by policy 'infra'")
    assert paged.details["direct_to"] == "kobayashi" and paged.details["reason"] == REASON
    assert paged.details["rule"] == "direct page to kobayashi; then route */*"
    with session_scope(session_factory) as session:
        logged, _total = audit.list_entries(session, action="page.send")
        assert [(e.actor, e.target, json.loads(e.details_json)["reason"]) for e in logged] == [
            ("system:status", f"page:{page_id}", REASON)]


def test_a_direct_page_uses_the_persons_webhook_too(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id = page_directly(session_factory, clock, settings, "tanaka")
    (posted,) = http_receiver.bodies_to("/hooks/tanaka")
    assert "INC-7" in str(posted) and f"/api/pages/{page_id}/ack" in str(posted)
    assert smtp_server.mailbox.recipients == [["tanaka@example.com"]]


def test_an_unanswered_direct_page_escalates_through_the_routed_policy(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id = page_directly(session_factory, clock, settings, "kobayashi")
    clock.advance(timedelta(seconds=299))
    assert tick(session_factory, clock, settings).pages_escalated == 0
    clock.advance(timedelta(seconds=2))
    assert tick(session_factory, clock, settings).pages_escalated == 1
    assert [r for [r] in smtp_server.mailbox.recipients] == [
        "kobayashi@example.com", "tanaka@example.com"]  # tanaka is on call for infra-primary
    shown = page_state(session_factory, page_id)
    assert shown.level_number == 2 and shown.events[-1].kind == "escalated"


def test_paging_someone_unknown_or_unreachable_is_refused_and_nothing_is_sent(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    add_person(session_factory, clock, "sato")
    with pytest.raises(service.NotFoundError, match="no person 'nobody'"):
        page_directly(session_factory, clock, settings, "nobody")
    with pytest.raises(service.InvalidInputError, match="sato has no contact method"):
        page_directly(session_factory, clock, settings, "sato")
    with session_scope(session_factory) as session, \
            pytest.raises(service.InvalidInputError, match="say why"):
        service.page_person(session, person="tanaka", incident_id="INC-7", summary="late",
                            category="database", severity="SEV1", reason=" ", clock=clock,
                            settings=settings)
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Page)) == 0
    assert smtp_server.messages == []


def test_the_api_pages_a_person_for_operators_who_may_send_pages(
    *, api: TestClient, session_factory: Factory, clock: ManualClock,
    http_receiver: HttpReceiver, smtp_server: SmtpServer,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    viewer = provision_operator(session_factory, Role.VIEWER, now=clock.now())
    responder = provision_operator(session_factory, Role.RESPONDER, now=clock.now())
    body = {"incident_id": "INC-9", "summary": "call the DBA", "category": "database",
            "severity": "SEV2", "reason": "knows the replica set", "ack_timeout_s": 120}
    refused = api.post("/api/oncall/people/suzuki/page", headers=viewer.headers, json=body)
    assert refused.status_code == 403
    sent = api.post("/api/oncall/people/suzuki/page", headers=responder.headers, json=body)
    assert sent.status_code == 201, sent.text
    answer = sent.json()
    assert answer["policy"] == "direct" and answer["created_by"] == f"operator:{responder.username}"
    assert answer["events"][0]["details"]["ack_timeout_s"] == 120
    assert smtp_server.mailbox.recipients == [["suzuki@example.com"]]
    missing = api.post("/api/oncall/people/nobody/page", headers=responder.headers, json=body)
    assert missing.status_code == 404 and "oncall person add" in missing.json()["error"]["message"]
