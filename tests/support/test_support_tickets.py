"""Tickets: linking to the open incident, idempotent intake, SLA timers and their alerts,
macros with variables, replies, ratings; through the API with each role."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support_desk import Desk, open_incident, post_update

from haltguard.common.taxonomy import Category
from haltguard.db.session import session_scope
from haltguard.support import service
from haltguard.support.models import TicketCategory

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_a_question_naming_the_halted_market_is_linked_with_the_reason(desk: Desk) -> None:
    accepted = desk.form(subject="注文について", body="BTC/JPY の注文がキャンセルできません")
    ref = accepted.json()["ref"]
    ticket = desk.client.get(f"/api/support/tickets/{ref.removeprefix('SUP-')}",
                             headers=desk.as_("sam")).json()
    assert ticket["incident_id"] == desk.incident_id
    assert ticket["category"] == "incident"
    assert "market BTC-JPY" in ticket["link_reason"]
    assert "キャンセル" in ticket["link_reason"]


def test_an_unrelated_question_is_not_linked_and_gets_a_topic(desk: Desk) -> None:
    accepted = desk.form(subject="本人確認", body="住所変更とログインについて教えてください")
    ticket_id = int(accepted.json()["ref"].removeprefix("SUP-"))
    ticket = desk.client.get(f"/api/support/tickets/{ticket_id}", headers=desk.as_("sam")).json()
    assert ticket["incident_id"] is None
    assert ticket["category"] == TicketCategory.ACCOUNT.value


def test_the_same_email_delivered_twice_is_one_ticket(desk: Desk) -> None:
    from haltguard.support import flows
    from haltguard.support.settings import SupportSettings

    raw = (b"From: Hanako <hanako@example.com>\r\nTo: support@example.com\r\n"
           b"Subject: halt\r\nMessage-ID: <abc@example.com>\r\n\r\nBTC-JPY is down\r\n")
    with session_scope(desk.factory) as session:
        first, created = flows.ticket_from_mail(session, raw, settings=SupportSettings(),
                                                now=desk.clock.now())
        again, created_again = flows.ticket_from_mail(session, raw, settings=SupportSettings(),
                                                      now=desk.clock.now())
        assert (created, created_again) == (True, False)
        assert first.id == again.id
        assert first.incident_id == desk.incident_id


def test_sla_timers_run_breach_and_are_alerted_once(desk: Desk) -> None:
    ticket_id = int(desk.form().json()["ref"].removeprefix("SUP-"))
    url = f"/api/support/tickets/{ticket_id}"
    sla = desk.client.get(url, headers=desk.as_("sam")).json()["sla"]
    assert sla["first_response"] == "running"
    assert sla["first_response_remaining_s"] == 3600
    desk.clock.advance(timedelta(minutes=61))
    sla = desk.client.get(url, headers=desk.as_("sam")).json()["sla"]
    assert sla["first_response"] == "breached"
    alerts = desk.client.post("/api/support/sla/alerts", headers=desk.as_("sam")).json()
    assert [(a["ref"], a["timer"]) for a in alerts["items"]] == [(f"SUP-{ticket_id}",
                                                                  "first_response")]
    assert desk.client.post("/api/support/sla/alerts", headers=desk.as_("sam")).json()[
        "items"] == []
    reply = desk.client.post(f"{url}/replies", json={"body": "確認しています"},
                             headers=desk.as_("sam"))
    assert reply.status_code == 201, reply.text
    sla = desk.client.get(url, headers=desk.as_("sam")).json()["sla"]
    assert sla["first_response"] == "breached"  # answered, but late: still a breach
    assert sla["resolution"] == "running"


def test_a_reply_in_time_meets_the_first_response_timer(desk: Desk) -> None:
    ticket_id = int(desk.form().json()["ref"].removeprefix("SUP-"))
    desk.clock.advance(timedelta(minutes=5))
    desk.client.post(f"/api/support/tickets/{ticket_id}/replies",
                     json={"macro": "resolved", "resolve": True}, headers=desk.as_("sam"))
    ticket = desk.client.get(f"/api/support/tickets/{ticket_id}",
                             headers=desk.as_("sam")).json()
    assert ticket["status"] == "resolved"
    assert (ticket["sla"]["first_response"], ticket["sla"]["resolution"]) == ("met", "met")


def test_a_macro_with_an_unknown_variable_is_refused_with_the_known_ones(desk: Desk) -> None:
    response = desk.client.post("/api/support/macros", json={
        "name": "bad", "subject_ja": "件名", "subject_en": "Subject",
        "body_ja": "{customer_name} 様 {password}", "body_en": "Dear {customer_name}"},
        headers=desk.as_("sam"))
    assert response.status_code == 422
    error = response.json()["error"]
    assert "password" in error["message"] and "customer_name" in error["message"]


def test_a_macro_reply_fills_in_the_customer_and_the_incident(desk: Desk) -> None:
    post_update(desk.factory, desk.clock, desk.incident_id, "原因を調査中です", "Investigating")
    ticket_id = int(desk.form().json()["ref"].removeprefix("SUP-"))
    created = desk.client.post("/api/support/macros", json={
        "name": "halt-info", "subject_ja": "{incident_ref} について",
        "subject_en": "About {incident_ref}",
        "body_ja": "{customer_name} 様、{incident_markets} は停止中です（{ticket_ref}）。",
        "body_en": "Dear {customer_name}, {incident_markets} is halted."},
        headers=desk.as_("sam"))
    assert created.status_code == 201, created.text
    reply = desk.client.post(f"/api/support/tickets/{ticket_id}/replies",
                             json={"macro": "halt-info"}, headers=desk.as_("sam")).json()
    assert reply["body"] == f"山田太郎 様、BTC-JPY は停止中です（SUP-{ticket_id}）。"


def test_a_resolved_ticket_can_be_rated_once_with_its_token(desk: Desk) -> None:
    ticket_id = int(desk.form().json()["ref"].removeprefix("SUP-"))
    with session_scope(desk.factory) as session:
        token = service.get_ticket(session, ticket_id).rating_token
    url = f"/api/support/public/tickets/{ticket_id}/rating"
    early = desk.client.post(url, json={"token": token, "score": 5})
    assert early.status_code == 409
    desk.client.post(f"/api/support/tickets/{ticket_id}/replies",
                     json={"body": "解決しました", "resolve": True}, headers=desk.as_("sam"))
    assert desk.client.post(url, json={"token": "wrong", "score": 5}).status_code == 404
    assert desk.client.post(url, json={"token": token, "score": 4,
                                       "comment": "早い"}).status_code == 204
    report = desk.client.get("/api/support/report", headers=desk.as_("sam")).json()
    assert (report["satisfaction_mean"], report["satisfaction_count"]) == (4.0, 1)


def test_viewers_cannot_read_customers_tickets_and_support_can(desk: Desk) -> None:
    desk.form()
    assert desk.client.get("/api/support/tickets", headers=desk.as_("vic")).status_code == 403
    listed = desk.client.get("/api/support/tickets", headers=desk.as_("sam")).json()
    assert listed["total"] == 1


def test_a_second_incident_gets_its_own_tickets(desk: Desk) -> None:
    other = open_incident(desk.factory, desk.clock, markets=["ETH-JPY"],
                          category=Category.MARKET_VOLATILITY)
    desk.form(body="ETH-JPY が急落して注文できません")
    desk.form(body="BTC-JPY のキャンセルができません")
    mine = desk.client.get("/api/support/tickets", params={"incident_id": other},
                           headers=desk.as_("sam")).json()
    assert mine["total"] == 1


def test_staffing_forecasts_from_the_incidents_own_arrivals(desk: Desk) -> None:
    empty = desk.client.get("/api/support/staffing", params={"incident_id": desk.incident_id},
                            headers=desk.as_("sam")).json()
    assert empty["forecast"]["source"] == "past incidents of the same category"
    for n in range(4):
        desk.form(body=f"BTC-JPY {n}", customer_email=f"c{n}@example.com")
        desk.clock.advance(timedelta(minutes=5))
    answer = desk.client.get("/api/support/staffing", params={
        "incident_id": desk.incident_id, "handle_s": 600}, headers=desk.as_("sam")).json()
    assert answer["forecast"]["source"] == "this incident"
    assert answer["forecast"]["tickets_counted"] == 4
    assert answer["arrivals_per_hour"] == pytest.approx(12.0)  # 4 in 20 minutes
    assert answer["load_erlangs"] == pytest.approx(2.0)
    assert answer["agents"] >= 3 and answer["answer"]["service_level"] >= 0.8
