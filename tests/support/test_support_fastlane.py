"""The contact form's fast path answers exactly what the route answers, with the same checks
(address, honeypot, per-address limit) and the same writer; everything else reaches the app."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support_desk import Desk

from haltguard.db.session import session_scope
from haltguard.support.fastlane import ContactFormLane
from haltguard.support.models import SupportTicket

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

FORM = {"subject": "取引できない", "body": "BTC-JPY の注文がキャンセルできません",
        "customer_email": "taro@example.com", "customer_name": "山田太郎"}

CASES: list[tuple[str, dict[str, Any]]] = [
    ("plain", FORM),
    ("english", {**FORM, "language": "en", "customer_email": "ann@example.com"}),
    ("unusable address", {**FORM, "customer_email": "not-an-address"}),
    ("honeypot filled", {**FORM, "website": "http://spam.example"}),
    ("missing body", {k: v for k, v in FORM.items() if k != "body"}),
    ("unknown field", {**FORM, "extra": "x"}),
]


def _comparable(response: Any) -> tuple[int, Any]:
    """Status and JSON, with the one thing that must differ (the new ticket's number)
    written the same."""
    return response.status_code, _without_refs(response.json())


def _without_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_refs(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_refs(item) for item in value]
    return re.sub(r"SUP-\d+", "SUP-n", value) if isinstance(value, str) else value


@SQLITE
@pytest.mark.parametrize(("case", "form"), CASES, ids=[case for case, _ in CASES])
def test_the_fast_path_answers_as_the_route_does(desk: Desk, case: str,
                                                 form: dict[str, Any]) -> None:
    lane = ContactFormLane(desk.app)
    fast = TestClient(lane).post("/api/support/public/tickets", json=form)
    full = desk.client.post("/api/support/public/tickets", json=form)
    assert _comparable(fast) == _comparable(full), case
    expected_answered = 0 if case in {"missing body", "unknown field"} else 1
    assert lane.answered == expected_answered


@SQLITE
def test_the_fast_path_writes_through_the_intake_and_links_the_open_incident(
        desk: Desk) -> None:
    answer = TestClient(ContactFormLane(desk.app)).post("/api/support/public/tickets",
                                                       json=FORM)
    assert answer.status_code == 201, answer.text
    assert answer.json()["incident_ref"] == f"INC-{desk.incident_id}"
    with session_scope(desk.factory) as session:
        ticket = session.query(SupportTicket).one()
        assert (ticket.channel, ticket.incident_id) == ("form", desk.incident_id)


@SQLITE
def test_a_flood_from_one_address_is_refused_on_either_path_by_the_same_limit(
        desk: Desk) -> None:
    lane = TestClient(ContactFormLane(desk.app))
    answers = [lane.post("/api/support/public/tickets",
                         json={**FORM, "customer_email": f"c{n}@example.com"})
               for n in range(5)]
    assert [answer.status_code for answer in answers] == [201] * 5
    fast = lane.post("/api/support/public/tickets", json=FORM)
    full = desk.client.post("/api/support/public/tickets", json=FORM)
    assert fast.status_code == full.status_code == 429
    assert fast.json() == full.json()
    assert fast.headers["retry-after"]


@SQLITE
def test_other_requests_reach_the_app_untouched(desk: Desk) -> None:
    lane = ContactFormLane(desk.app)
    client = TestClient(lane)
    page = client.get("/help/contact")
    assert page.status_code == 200
    as_form = client.post("/api/support/public/tickets", content=b"subject=x",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert as_form.status_code == desk.client.post(
        "/api/support/public/tickets", content=b"subject=x",
        headers={"content-type": "application/x-www-form-urlencoded"}).status_code
    assert lane.answered == 0


@SQLITE
def test_serve_puts_the_fast_path_in_front_of_the_operations_app(desk: Desk) -> None:
    from haltguard.app.system import SystemApp

    system = SystemApp(desk.app, None)
    answer = TestClient(system).post("/api/support/public/tickets", json=FORM)
    assert answer.status_code == 201, answer.text
    assert system.operations_front.answered == 1
