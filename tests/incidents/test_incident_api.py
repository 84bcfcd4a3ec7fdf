"""The incident API end to end over HTTP (TestClient), real venue, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from incident_helpers import Api

from haltguard.gateway.control import InProcessVenueControl
from haltguard.responders.service import ManualClock
from haltguard.venue.types import MarketState


def _open(api: Api, severity: str = "SEV2", who: str = "alice") -> dict[str, Any]:
    response = api.client.post("/api/incidents", headers=api.as_(who), json={
        "title": "Matching engine stalls", "category": "software_bug", "severity": severity,
        "affected_markets": ["BTC-JPY"], "estimated_affected_customers": 1200,
    })
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _error(response: Any) -> dict[str, str]:
    error: dict[str, str] = response.json()["error"]
    return error


def test_an_opened_incident_shows_its_runbook_progress_and_tasks(api: Api) -> None:
    incident = _open(api)
    assert incident["ref"] == f"INC-{incident['id']}"
    assert incident["status"] == "detected"
    assert incident["progress"]["done"] == 0 and incident["progress"]["total"] > 10
    tasks = api.client.get(f"/api/incidents/{incident['id']}/tasks?limit=3",
                           headers=api.as_("vic")).json()
    assert [task["step_key"] for task in tasks["items"]] == [
        "assess_situation", "gather_information", "notify_and_form_team",
    ]
    assert (tasks["total"], tasks["next_offset"]) == (incident["progress"]["total"], 3)
    assert tasks["items"][0]["title_ja"].startswith("状況把握")


def test_marking_a_task_done_by_step_key_moves_the_progress(api: Api, clock: ManualClock) -> None:
    incident = _open(api)
    clock.advance(timedelta(minutes=20))
    overdue = api.client.get(f"/api/incidents/{incident['id']}/tasks?overdue_only=true",
                             headers=api.as_("alice")).json()
    assert "assess_situation" in [task["step_key"] for task in overdue["items"]]
    done = api.client.post(f"/api/incidents/{incident['id']}/tasks/assess_situation/done",
                           headers=api.as_("alice"), json={"note": "engine thread deadlocked"})
    assert done.status_code == 200 and done.json()["done_by"] == "alice"
    shown = api.client.get(f"/api/incidents/{incident['id']}", headers=api.as_("vic")).json()
    assert shown["progress"]["done"] == 1


def test_a_viewer_can_read_but_not_halt(api: Api) -> None:
    incident = _open(api)
    response = api.client.post(f"/api/incidents/{incident['id']}/actions/halt",
                               headers=api.as_("vic"),
                               json={"markets": ["BTC-JPY"], "reason": "x"})
    assert response.status_code == 403
    assert _error(response)["code"] == "permission_denied"


def test_errors_have_a_code_and_a_message(api: Api) -> None:
    missing = api.client.get("/api/incidents/999", headers=api.as_("vic"))
    assert missing.status_code == 404
    assert _error(missing) == {"code": "incident_not_found", "message": "no incident 999"}
    anonymous = api.client.get("/api/incidents")
    assert anonymous.status_code == 401 and _error(anonymous)["code"] == "not_authenticated"
    invalid = api.client.post("/api/incidents", headers=api.as_("alice"),
                              json={"title": "x", "category": "alien_invasion", "severity": "SEV1"})
    assert invalid.status_code == 422
    assert _error(invalid)["code"] == "invalid_request"
    assert "category" in _error(invalid)["message"]


def test_lists_are_paginated_with_a_maximum(api: Api) -> None:
    for _ in range(3):
        _open(api, severity="SEV3")
    first = api.client.get("/api/incidents?limit=2", headers=api.as_("vic")).json()
    second = api.client.get("/api/incidents?limit=2&offset=2", headers=api.as_("vic")).json()
    assert (first["total"], len(first["items"]), first["next_offset"]) == (3, 2, 2)
    assert (len(second["items"]), second["next_offset"]) == (1, None)
    too_many = api.client.get("/api/incidents?limit=201", headers=api.as_("vic"))
    assert too_many.status_code == 422 and "limit" in _error(too_many)["message"]


def test_halt_then_four_eyes_resume_then_resolve_over_http(
    api: Api, venue: InProcessVenueControl
) -> None:
    incident = _open(api, severity="SEV1")
    base = f"/api/incidents/{incident['id']}"
    halted = api.client.post(f"{base}/actions/halt", headers=api.as_("alice"),
                             json={"markets": ["BTC-JPY"], "reason": "engine stalled"})
    assert halted.status_code == 200, halted.text
    assert halted.json()["results"] == [
        {"target": "BTC-JPY", "ok": True, "detail": "BTC-JPY open -> halted"}
    ]
    refused = api.client.post(f"{base}/transition", headers=api.as_("alice"),
                              json={"status": "resolved"})
    assert refused.status_code == 409 and _error(refused)["code"] == "holds_outstanding"
    asked = api.client.post(f"{base}/actions/resume", headers=api.as_("carol"),
                            json={"markets": ["BTC-JPY"], "reason": "fix deployed",
                                  "auction_seconds": 0})
    assert asked.status_code == 202, asked.text
    approval_id = asked.json()["approval"]["id"]
    assert venue.market_states()["BTC-JPY"] == MarketState.HALTED
    same = api.client.post(f"/api/approvals/{approval_id}/approve", headers=api.as_("carol"),
                           json={})
    assert same.status_code == 403 and _error(same)["code"] == "second_operator_required"
    by_responder = api.client.post(f"/api/approvals/{approval_id}/approve",
                                   headers=api.as_("alice"), json={})
    assert by_responder.status_code == 403
    approved = api.client.post(f"/api/approvals/{approval_id}/approve", headers=api.as_("dave"),
                               json={"note": "checked the books"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["approval"]["status"] == "executed"
    assert venue.market_states()["BTC-JPY"] == MarketState.OPEN
    resolved = api.client.post(f"{base}/transition", headers=api.as_("alice"),
                               json={"status": "resolved", "note": "all markets open"})
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    kinds = [entry["kind"] for entry in api.client.get(
        f"{base}/timeline?limit=200", headers=api.as_("vic")).json()["items"]]
    for expected in ("opened", "market_action", "approval_requested", "resume",
                     "approval_decided", "status_changed"):
        assert expected in kinds


def test_a_refused_venue_command_answers_409_and_stays_in_the_timeline(api: Api) -> None:
    incident = _open(api)
    base = f"/api/incidents/{incident['id']}"
    response = api.client.post(f"{base}/actions/withdrawals/freeze", headers=api.as_("alice"),
                               json={"asset": "DOGE", "reason": "suspicious"})
    assert response.status_code == 409
    assert _error(response)["code"] == "venue_refused"
    last = api.client.get(f"{base}/timeline?offset=1", headers=api.as_("vic")).json()["items"]
    assert last[-1]["kind"] == "withdrawals" and last[-1]["details"]["ok"] is False


def test_the_kill_switch_release_waits_for_approval(
    api: Api, venue: InProcessVenueControl
) -> None:
    incident = _open(api, severity="SEV3")
    base = f"/api/incidents/{incident['id']}"
    engaged = api.client.post(f"{base}/actions/kill-switch", headers=api.as_("alice"),
                              json={"reason": "intrusion suspected"})
    assert engaged.status_code == 200
    assert set(venue.market_states().values()) == {MarketState.HALTED}
    asked = api.client.post(f"{base}/actions/kill-switch/release", headers=api.as_("carol"),
                            json={"reason": "contained"})
    assert asked.status_code == 202
    pending = api.client.get("/api/approvals?status=pending", headers=api.as_("vic")).json()
    assert [item["action"] for item in pending["items"]] == ["kill_switch_release"]
    approved = api.client.post(f"/api/approvals/{asked.json()['approval']['id']}/approve",
                               headers=api.as_("dave"), json={})
    assert approved.status_code == 200


def test_reports_are_served_as_markdown_and_html(api: Api, clock: ManualClock) -> None:
    incident = _open(api, severity="SEV3")
    base = f"/api/incidents/{incident['id']}"
    markdown = api.client.get(f"{base}/reports/postmortem", headers=api.as_("alice"))
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith(f"# Postmortem {incident['ref']}")
    html = api.client.get(f"{base}/reports/postmortem?format=html", headers=api.as_("alice"))
    assert html.headers["content-type"].startswith("text/html")
    assert "<h2>Impact</h2>" in html.text
    regulatory = api.client.get(f"{base}/reports/regulatory", headers=api.as_("alice"))
    assert "## 1. 発生日時" in regulatory.text
    assert api.client.get(f"{base}/reports/regulatory", headers=api.as_("sam")).status_code == 403


def test_metrics_over_a_period(api: Api, clock: ManualClock) -> None:
    incident = _open(api, severity="SEV3")
    clock.advance(timedelta(minutes=4))
    api.client.post(f"/api/incidents/{incident['id']}/transition", headers=api.as_("alice"),
                    json={"status": "investigating"})
    one = api.client.get(f"/api/incidents/{incident['id']}/metrics", headers=api.as_("vic"))
    assert one.json()["time_to_acknowledge_s"] == 240
    period = api.client.get("/api/metrics/incidents",
                            params={"since": "2025-01-06T00:00:00+09:00",
                                    "until": "2025-01-07T00:00:00+09:00"},
                            headers=api.as_("vic")).json()
    assert period["incidents"] == 1 and period["mean_time_to_acknowledge_s"] == 240
