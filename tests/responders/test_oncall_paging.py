"""Paging end to end against real servers: SMTP (aiosmtpd) and an apprise JSON webhook
receiver; escalation driven by a manual clock."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import ManualClock
from haltguard.db.session import session_scope
from haltguard.responders import service
from haltguard.responders.ack_links import verify_ack_token
from haltguard.responders.models import (
    ContactIn,
    LevelIn,
    PageDeliveryAttempt,
    PolicyIn,
    RouteIn,
)
from haltguard.responders.paging import DELIVERY_ATTEMPTS_MAX
from haltguard.responders.settings import ResponderSettings
from haltguard.security import audit

from .conftest import ACK_SECRET, HttpReceiver, SmtpServer, add_person, free_port
from .oncall_setup import ACK_LINK, ACTOR, page_state, send_page, tick, two_level_policy

Factory = sessionmaker[Session]


def wait_for(condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_page_emails_level_one_with_incident_summary_and_ack_link_in_ja_and_en(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id = send_page(session_factory, clock, settings)

    [mail] = smtp_server.messages
    assert smtp_server.mailbox.recipients == [["tanaka@example.com"]]
    assert "INC-1" in mail["Subject"] and "matching stalled" in mail["Subject"]
    assert mail["From"] == "pager@haltguard.example.test"
    body = mail.get_content()
    assert "インシデント: INC-1" in body and "Incident: INC-1" in body
    assert "概要: BTC/JPY の約定が停止" in body and "Summary: BTC/JPY" in body
    links = ACK_LINK.findall(body)
    assert len(links) == 2 and {int(found_id) for _, found_id in links} == {page_id}
    token = links[0][0].split("token=")[1]
    grant = verify_ack_token(ACK_SECRET, token, page_id=page_id, now=clock.now())
    assert grant.responder == "tanaka"


def test_page_posts_to_the_apprise_json_webhook(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id = send_page(session_factory, clock, settings)

    [post] = http_receiver.bodies_to("/hooks/tanaka")
    assert "INC-1" in post["title"]
    assert "Incident: INC-1" in post["message"] and "インシデント: INC-1" in post["message"]
    assert f"/api/pages/{page_id}/ack?token=" in post["message"]
    shown = page_state(session_factory, page_id)
    statuses = [d.status for n in shown.notifications for d in n.deliveries]
    assert statuses == ["delivered", "delivered"]


def test_level_two_is_paged_only_after_level_one_times_out(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id = send_page(session_factory, clock, settings)

    clock.advance(timedelta(seconds=299))
    assert tick(session_factory, clock, settings).pages_escalated == 0
    assert smtp_server.to("kobayashi@example.com") == []

    clock.advance(timedelta(seconds=1))
    report = tick(session_factory, clock, settings)
    assert report.pages_escalated == 1
    assert len(smtp_server.to("kobayashi@example.com")) == 1
    shown = page_state(session_factory, page_id)
    assert shown.level_number == 2
    assert [e.kind for e in shown.events] == ["paged", "escalated"]
    assert "5 min" in shown.events[1].text_en and "kobayashi" in shown.events[1].text_en


def test_ticking_twice_at_the_same_moment_escalates_once(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    send_page(session_factory, clock, settings)
    clock.advance(timedelta(seconds=300))
    tick(session_factory, clock, settings)
    tick(session_factory, clock, settings)
    assert len(smtp_server.to("kobayashi@example.com")) == 1


def test_acknowledgement_stops_further_escalation(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id = send_page(session_factory, clock, settings)
    clock.advance(timedelta(seconds=100))
    with session_scope(session_factory) as session:
        service.acknowledge(session, page_id=page_id, actor="operator:tanaka", via="api",
                            clock=clock)

    clock.advance(timedelta(hours=5))
    assert tick(session_factory, clock, settings).pages_escalated == 0
    assert smtp_server.to("kobayashi@example.com") == []
    shown = page_state(session_factory, page_id)
    assert shown.status == "acknowledged" and shown.acknowledged_by == "operator:tanaka"
    assert shown.events[-1].kind == "acknowledged"
    assert shown.events[-1].details["seconds_since_page"] == 100


def test_escalation_repeats_a_bounded_number_of_times_then_ends(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver, repeat_count=1)
    page_id = send_page(session_factory, clock, settings)
    for _ in range(10):
        clock.advance(timedelta(minutes=10))
        tick(session_factory, clock, settings)

    assert len(smtp_server.to("tanaka@example.com")) == 2
    assert len(smtp_server.to("kobayashi@example.com")) == 2
    shown = page_state(session_factory, page_id)
    assert shown.status == "exhausted"
    assert [e.kind for e in shown.events] == [
        "paged", "escalated", "escalated", "escalated", "exhausted"]


def test_a_failing_channel_does_not_block_the_others(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    closed = f"json://127.0.0.1:{free_port()}/nobody-listens"
    add_person(session_factory, clock, "tanaka", webhooks=(closed,),
               emails=("tanaka@example.com",))
    with session_scope(session_factory) as session:
        service.put_policy(session, PolicyIn(name="direct", levels=[
            LevelIn(ack_timeout_s=300, targets=["person:tanaka"])]), actor=ACTOR, clock=clock)
        service.set_routes(session, [RouteIn(policy="direct")], actor=ACTOR, clock=clock)
    page_id = send_page(session_factory, clock, settings)

    assert len(smtp_server.to("tanaka@example.com")) == 1
    [notification] = page_state(session_factory, page_id).notifications
    mail, webhook = notification.deliveries
    assert (webhook.kind, webhook.status) == ("apprise", "retrying")
    assert webhook.attempts[0].error and not webhook.attempts[0].ok
    assert webhook.next_attempt_at == clock.now() + timedelta(seconds=30)
    assert (mail.kind, mail.status) == ("email", "delivered")


def test_failed_delivery_is_retried_with_backoff_then_given_up_loudly(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    http_receiver: HttpReceiver,
) -> None:
    http_receiver.statuses.extend([500] * DELIVERY_ATTEMPTS_MAX)
    add_person(session_factory, clock, "tanaka", webhooks=(http_receiver.url("/hooks/t"),))
    with session_scope(session_factory) as session:
        service.put_policy(session, PolicyIn(name="direct", levels=[
            LevelIn(ack_timeout_s=3600, targets=["person:tanaka"])]), actor=ACTOR, clock=clock)
        service.set_routes(session, [RouteIn(policy="direct")], actor=ACTOR, clock=clock)
    page_id = send_page(session_factory, clock, settings)

    clock.advance(timedelta(seconds=29))
    assert tick(session_factory, clock, settings).deliveries_retried == 0
    for wait_s in (1, 60, 120):
        clock.advance(timedelta(seconds=wait_s))
        assert tick(session_factory, clock, settings).deliveries_retried == 1
    clock.advance(timedelta(hours=1) - timedelta(seconds=211))
    assert tick(session_factory, clock, settings).deliveries_retried == 0

    assert len(http_receiver.bodies_to("/hooks/t")) == DELIVERY_ATTEMPTS_MAX
    shown = page_state(session_factory, page_id)
    [delivery] = shown.notifications[0].deliveries
    assert delivery.status == "failed" and len(delivery.attempts) == DELIVERY_ATTEMPTS_MAX
    failed = [e for e in shown.events if e.kind == "delivery_failed"]
    assert len(failed) == 1 and "tanaka" in failed[0].text_en and "4 attempts" in failed[0].text_en


def test_retry_delivers_once_the_receiver_recovers(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    http_receiver: HttpReceiver,
) -> None:
    http_receiver.statuses.append(503)
    add_person(session_factory, clock, "tanaka", webhooks=(http_receiver.url("/hooks/t"),))
    with session_scope(session_factory) as session:
        service.put_policy(session, PolicyIn(name="direct", levels=[
            LevelIn(ack_timeout_s=300, targets=["person:tanaka"])]), actor=ACTOR, clock=clock)
        service.set_routes(session, [RouteIn(policy="direct")], actor=ACTOR, clock=clock)
    page_id = send_page(session_factory, clock, settings)
    clock.advance(timedelta(seconds=30))
    tick(session_factory, clock, settings)

    [delivery] = page_state(session_factory, page_id).notifications[0].deliveries
    assert delivery.status == "delivered"
    assert [a.ok for a in delivery.attempts] == [False, True]
    with session_scope(session_factory) as session:
        stored = session.execute(select(PageDeliveryAttempt)).scalars().all()
        assert len(stored) == 2


def test_level_with_nobody_on_call_moves_on_at_once(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver, schedule_start=date(2026, 4, 6))
    page_id = send_page(session_factory, clock, settings)

    assert len(smtp_server.to("kobayashi@example.com")) == 1
    shown = page_state(session_factory, page_id)
    assert [e.kind for e in shown.events] == ["level_empty", "paged"]
    assert "nobody is on call for infra-primary" in shown.events[0].text_en
    assert shown.level_number == 2


def test_no_route_falls_back_to_the_contact_tree_primary_then_backup(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer,
) -> None:
    add_person(session_factory, clock, "ito", emails=("ito@example.com",), language="en")
    add_person(session_factory, clock, "kobayashi", emails=("kobayashi@example.com",))
    with session_scope(session_factory) as session:
        service.set_category_contacts(session, "unauthorized_access", [
            ContactIn(person="ito", backup="kobayashi", role="CISO")], actor=ACTOR, clock=clock)
    page_id = send_page(session_factory, clock, settings, category="unauthorized_access")
    assert len(smtp_server.to("ito@example.com")) == 1
    assert smtp_server.to("kobayashi@example.com") == []
    english_first = smtp_server.to("ito@example.com")[0].get_content()
    assert english_first.index("Incident:") < english_first.index("インシデント")

    clock.advance(timedelta(minutes=15))
    tick(session_factory, clock, settings)
    assert len(smtp_server.to("kobayashi@example.com")) == 1
    shown = page_state(session_factory, page_id)
    assert shown.policy == "contact-tree"
    assert shown.events[0].details["rule"] == "no route matched: contact tree fallback"


def test_most_specific_route_chooses_the_policy(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer,
) -> None:
    for handle in ("general", "db", "sev1", "dbsev1"):
        add_person(session_factory, clock, handle, emails=(f"{handle}@example.com",))
    with session_scope(session_factory) as session:
        for handle in ("general", "db", "sev1", "dbsev1"):
            service.put_policy(session, PolicyIn(name=handle, levels=[
                LevelIn(ack_timeout_s=300, targets=[f"person:{handle}"])]), actor=ACTOR,
                clock=clock)
        service.set_routes(session, [
            RouteIn(policy="general"), RouteIn(category="database", policy="db"),
            RouteIn(severity="SEV1", policy="sev1"),
            RouteIn(category="database", severity="SEV1", policy="dbsev1"),
        ], actor=ACTOR, clock=clock)
        chosen = {
            (c, s): service.choose_plan(session, c, s)[0].name
            for c in ("database", "network") for s in ("SEV1", "SEV3")
        }
    assert chosen == {("database", "SEV1"): "dbsev1", ("database", "SEV3"): "db",
                      ("network", "SEV1"): "sev1", ("network", "SEV3"): "general"}


def test_listeners_hear_every_event_and_a_failing_listener_undoes_the_page(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    heard: list[tuple[str, str, int | None]] = []
    stop = service.on_page_event(
        lambda _session, event: heard.append((event.kind.value, event.incident_id,
                                              event.level_number)))
    try:
        page_id = send_page(session_factory, clock, settings)
        clock.advance(timedelta(seconds=300))
        tick(session_factory, clock, settings)
        with session_scope(session_factory) as session:
            service.acknowledge(session, page_id=page_id, actor="cli:ops", via="cli",
                                clock=clock)
    finally:
        stop()
    assert heard == [("paged", "INC-1", 1), ("escalated", "INC-1", 2),
                     ("acknowledged", "INC-1", 2)]

    def refuse(_session: Session, _event: service.PageEvent) -> None:
        raise RuntimeError("timeline unavailable")

    stop = service.on_page_event(refuse)
    try:
        with pytest.raises(RuntimeError, match="timeline unavailable"):
            send_page(session_factory, clock, settings, incident_id="INC-2")
    finally:
        stop()
    with session_scope(session_factory) as session:
        pages, _ = service.list_pages(session, incident_id="INC-2")
        assert pages == []


def test_every_page_escalation_and_ack_is_in_the_audit_chain(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id = send_page(session_factory, clock, settings)
    clock.advance(timedelta(seconds=300))
    tick(session_factory, clock, settings)
    with session_scope(session_factory) as session:
        service.acknowledge(session, page_id=page_id, actor="operator:akiko", via="api",
                            clock=clock)
    with session_scope(session_factory) as session:
        entries, _ = audit.list_entries(session, limit=200, newest_first=False)
        page_entries = [(e.action, e.actor) for e in entries if e.target == f"page:{page_id}"]
        assert page_entries == [("page.send", "system:incidents"),
                                ("page.escalate", "system:escalation"),
                                ("page.ack", "operator:akiko")]
        assert audit.verify(session).ok


def test_cancelled_page_stops_escalating_and_cannot_be_acknowledged(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    send_page(session_factory, clock, settings)
    with session_scope(session_factory) as session:
        [cancelled] = service.cancel_pages_for_incident(
            session, incident_id="INC-1", actor="operator:akiko", reason="incident resolved",
            clock=clock)
    clock.advance(timedelta(hours=1))
    tick(session_factory, clock, settings)
    assert smtp_server.to("kobayashi@example.com") == []
    with session_scope(session_factory) as session, pytest.raises(
        service.ConflictError, match="cancelled"
    ):
        service.acknowledge(session, page_id=cancelled.id, actor="operator:x", via="api",
                            clock=clock)


def test_late_acknowledgement_of_an_exhausted_page_is_recorded(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id = send_page(session_factory, clock, settings)
    for _ in range(3):
        clock.advance(timedelta(minutes=10))
        tick(session_factory, clock, settings)
    assert page_state(session_factory, page_id).status == "exhausted"
    with session_scope(session_factory) as session:
        service.acknowledge(session, page_id=page_id, actor="operator:late", via="api",
                            clock=clock)
    shown = page_state(session_factory, page_id)
    assert shown.status == "acknowledged"
    assert shown.events[-1].details["status_before"] == "exhausted"


def test_bad_page_requests_are_refused_before_anything_is_written(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
) -> None:
    with session_scope(session_factory) as session:
        with pytest.raises(service.InvalidInputError, match="unknown incident category"):
            service.page(session, incident_id="INC-9", summary="x", category="earthquake",
                         severity="SEV1", clock=clock, settings=settings)
        with pytest.raises(service.InvalidInputError, match="unknown severity"):
            service.page(session, incident_id="INC-9", summary="x", category="ddos",
                         severity="P1", clock=clock, settings=settings)
        assert service.list_pages(session)[1] == 0


def test_background_loop_escalates_when_the_clock_passes_the_timeout(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    send_page(session_factory, clock, settings)
    thread, stop = service.start_escalation_thread(session_factory, clock, 0.05,
                                                   settings=settings)
    try:
        time.sleep(0.2)
        assert smtp_server.to("kobayashi@example.com") == []
        clock.advance(timedelta(seconds=300))
        wait_for(lambda: len(smtp_server.to("kobayashi@example.com")) == 1)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_without_a_configured_secret_links_use_one_kept_in_the_database(
    session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    unconfigured = ResponderSettings(smtp=settings.smtp, public_url=settings.public_url)
    two_level_policy(session_factory, clock, http_receiver)
    page_id = send_page(session_factory, clock, unconfigured)
    link = ACK_LINK.findall(smtp_server.messages[0].get_content())[0][0]
    token = link.split("token=")[1]
    with session_scope(session_factory) as session:
        stored = service.ack_secret(session, unconfigured)
        assert len(stored) >= 32 and stored != ACK_SECRET
        with pytest.raises(service.AckRefusedError, match="signature"):
            service.acknowledge_with_token(session, page_id=page_id, token=token, clock=clock,
                                           settings=settings)
    with session_scope(session_factory) as session:
        acked = service.acknowledge_with_token(session, page_id=page_id, token=token,
                                               clock=clock, settings=unconfigured)
        assert acked.acknowledged_by == "responder:tanaka"
