"""The Statuspage v2 documents and the feeds, field for field, against golden files.

One scenario at fixed times: a halted market with two published updates, a resolved
incident, a maintenance announced for tomorrow and one in progress. ``HALTGUARD_UPDATE_GOLDEN=1``
rewrites the golden files after a deliberate change.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from status_support import SQLITE_ONLY, START, StatusApi, check_golden

from haltguard.status.statuspage import DOCUMENTS

pytestmark = SQLITE_ONLY

PAGE_FIELDS = ["id", "name", "url", "time_zone", "updated_at"]
COMPONENT_FIELDS = ["id", "name", "status", "created_at", "updated_at", "position",
                    "description", "showcase", "start_date", "group_id", "page_id", "group",
                    "only_show_if_degraded"]
INCIDENT_FIELDS = ["id", "name", "status", "created_at", "updated_at", "monitoring_at",
                   "resolved_at", "impact", "shortlink", "started_at", "page_id",
                   "incident_updates", "components"]
UPDATE_FIELDS = ["id", "status", "body", "incident_id", "created_at", "updated_at",
                 "display_at", "affected_components", "deliver_notifications", "custom_tweet",
                 "tweet_id"]
AFFECTED_FIELDS = ["code", "name", "old_status", "new_status"]
# Statuspage's own wording of the overall status, as its public readers expect it.
STATUSPAGE_DESCRIPTIONS = {"none": "All Systems Operational", "minor": "Minor Service Outage",
                           "major": "Partial System Outage", "critical": "Major System Outage",
                           "maintenance": "Service Under Maintenance"}


@pytest.fixture
def scenario(api: StatusApi) -> StatusApi:
    api.page("/status/")
    halted = api.open_incident(affected_markets=["BTC-JPY"])
    api.halt(halted["id"], "BTC-JPY")
    api.clock.advance(timedelta(minutes=5))
    api.publish(halted["id"], "investigating")
    network = api.open_incident(title="CDN errors", category="network", severity="SEV3",
                                affected_components=["website"])
    api.clock.advance(timedelta(minutes=1))
    api.publish(network["id"], "investigating")
    tomorrow = START + timedelta(days=1)
    announce = api.call("POST", "/api/status/maintenances", expect=201, body={
        "scheduled_for": tomorrow.isoformat(),
        "scheduled_until": (tomorrow + timedelta(hours=2)).isoformat(),
        "components": ["withdrawals:BTC", "deposits:BTC"],
        "details_ja": "ウォレットの更新", "details_en": "a wallet upgrade"})
    api.call("POST", f"/api/status/updates/{announce['id']}/publish")
    soon = api.call("POST", "/api/status/maintenances", expect=201, body={
        "scheduled_for": (START + timedelta(minutes=40)).isoformat(),
        "scheduled_until": (START + timedelta(hours=3)).isoformat(),
        "components": ["mobile-app"]})
    api.call("POST", f"/api/status/updates/{soon['id']}/publish")
    api.clock.advance(timedelta(minutes=14))
    api.publish(halted["id"], "identified", cause_ja="注文データベースの障害",
                cause_en="a failure of the order database",
                expected_recovery_at=(START + timedelta(hours=2)).isoformat())
    api.clock.advance(timedelta(minutes=10))
    api.publish(network["id"], "resolved")
    api.clock.advance(timedelta(minutes=15))  # 10:15 JST: the second maintenance is on
    api.page("/status/")
    return api


def _pretty(document: Any) -> bytes:
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode()


def test_each_api_document_matches_its_golden_file_with_statuspages_fields_in_order(
    scenario: StatusApi,
) -> None:
    differing = []
    for name in DOCUMENTS:
        response = scenario.client.get(f"/status/en/api/v2/{name}")
        assert response.headers["content-type"] == "application/json"
        try:
            check_golden(f"api_v2_en/{name.replace('/', '__')}", _pretty(response.json()))
        except AssertionError:
            differing.append(name)
    assert differing == [], f"differ from their golden files: {differing}"
    check_golden("api_v2_ja/summary.json", _pretty(scenario.client.get(
        "/api/v2/summary.json").json()))
    summary = scenario.client.get("/api/v2/summary.json").json()
    assert list(summary) == ["page", "components", "incidents", "scheduled_maintenances",
                             "status"]
    assert list(summary["page"]) == PAGE_FIELDS
    for component in summary["components"]:
        expected = COMPONENT_FIELDS + (["components"] if component["group"] else [])
        assert list(component) == expected
    events = summary["incidents"] + summary["scheduled_maintenances"]
    assert events, "the scenario has unresolved incidents and maintenances"
    for event in events:
        extra = ["scheduled_for", "scheduled_until"] if event["impact"] == "maintenance" else []
        assert list(event) == INCIDENT_FIELDS + extra
        for update in event["incident_updates"]:
            assert list(update) == UPDATE_FIELDS
            for affected in update["affected_components"]:
                assert list(affected) == AFFECTED_FIELDS
    assert list(summary["status"]) == ["indicator", "description"]
    raw = scenario.client.get("/api/v2/status.json").content
    assert raw == json.dumps(json.loads(raw), ensure_ascii=False,
                             separators=(",", ":")).encode()  # compact UTF-8, as served


def test_the_feeds_match_their_golden_files(scenario: StatusApi) -> None:
    atom = scenario.client.get("/status/en/history.atom")
    assert atom.headers["content-type"] == "application/atom+xml; charset=utf-8"
    check_golden("history.en.atom", atom.content)
    check_golden("history.ja.rss", scenario.client.get("/status/history.rss").content)


def _time(stamp: str) -> datetime:
    """Parsed the strict way Statuspage readers do: milliseconds and a numeric offset."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z")


def test_a_statuspage_reader_finds_groups_latest_updates_and_times_where_it_looks(
    scenario: StatusApi,
) -> None:
    summary = scenario.client.get("/status/en/api/v2/summary.json").json()
    assert summary["status"]["description"] == STATUSPAGE_DESCRIPTIONS[
        summary["status"]["indicator"]]
    groups = {c["id"]: c for c in summary["components"] if c["group"]}
    members = [c for c in summary["components"] if not c["group"]]
    assert groups and members
    for component in members:
        assert component["group_id"] in groups
        assert component["id"] in groups[component["group_id"]]["components"]
        assert _time(component["created_at"]) <= _time(component["updated_at"])
    for event in summary["incidents"] + summary["scheduled_maintenances"]:
        latest = event["incident_updates"][0]  # readers take the first as the latest
        assert latest["status"] == event["status"]
        assert _time(latest["created_at"]) == max(
            _time(update["created_at"]) for update in event["incident_updates"])
        if event["impact"] == "maintenance":
            assert _time(event["scheduled_for"]) < _time(event["scheduled_until"])
