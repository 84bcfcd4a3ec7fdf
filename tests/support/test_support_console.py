"""The desk's screen in the operator console: an agent logs in (password and TOTP), sees the
incident's questions and the staffing panel, and answers them all in bulk with a button,
once per public update; a viewer does not get the screen."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient
from support_desk import Desk, post_update

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _console(desk: Desk, username: str) -> TestClient:
    client = TestClient(desk.app, base_url="https://testserver")
    operator = desk.operators[username]
    desk.clock.advance(timedelta(seconds=31))
    page = client.get("/console/login")
    found = CSRF.search(page.text)
    assert found is not None
    response = client.post("/console/login", data={
        "csrf_token": found.group(1), "username": username, "password": operator.password,
        "totp_code": pyotp.TOTP(operator.totp_secret).at(desk.clock.now())},
        follow_redirects=False)
    assert response.status_code == 303, response.text
    return client


def test_an_agent_answers_the_incidents_questions_in_bulk_from_the_console(desk: Desk) -> None:
    for n in range(3):
        desk.form(body=f"BTC-JPY が止まっています {n}", customer_email=f"c{n}@example.com")
    post_update(desk.factory, desk.clock, desk.incident_id, "原因を特定しました", "Identified")
    agent = _console(desk, "sam")
    page = agent.get("/console/support")
    assert page.status_code == 200, page.text
    assert 'data-support-tickets="3"' in page.text
    assert "原因を特定しました" in page.text
    assert re.search(r'data-support-agents="\d+"', page.text)
    token = CSRF.search(page.text)
    assert token is not None
    answered = agent.post(f"/console/support/incidents/{desk.incident_id}/bulk-reply",
                          data={"csrf_token": token.group(1)}, follow_redirects=False)
    assert answered.status_code == 303, answered.text
    page = agent.get("/console/support")
    assert 'data-support-answered="1"' in page.text
    tickets = desk.client.get("/api/support/tickets", headers=desk.as_("sam")).json()
    assert {t["sla"]["first_response"] for t in tickets["items"]} == {"met"}
    forged = agent.post(f"/console/support/incidents/{desk.incident_id}/bulk-reply",
                        data={"csrf_token": "forged"}, follow_redirects=False)
    assert forged.status_code == 403


def test_a_viewer_has_no_support_screen(desk: Desk) -> None:
    viewer = _console(desk, "vic")
    assert "/console/support" not in viewer.get("/console/overview").text
    assert viewer.get("/console/support").status_code == 403
