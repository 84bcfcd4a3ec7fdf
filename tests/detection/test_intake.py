"""Alert intake: Alertmanager webhooks exactly as Alertmanager sends them, the generic
webhook, deduplication by fingerprint, the label mapping, the intake token, and the round
trip from an Alertmanager payload to an incident opened and resolved."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from detection_support import Protected, protected_venue
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.config import load_config
from haltguard.app.operations import create_app
from haltguard.detection.intake import (
    DEFAULT_MAPPING,
    AlertIntake,
    AlertmanagerPayload,
    IntakeSettings,
    load_mapping,
)
from haltguard.detection.intake_views import IntakeParts
from haltguard.detection.monitors import ConfigError, SignalSink
from haltguard.detection.signals import Signal
from haltguard.web.context import attach, context_of
from haltguard.web.settings import Settings

TOKEN = "intake-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AM = "/api/detection/alerts/alertmanager"
WEBHOOK = "/api/detection/alerts/webhook"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# Written from Alertmanager's webhook_config documentation: a group of two alerts firing,
# as Alertmanager 0.27 posts it (timestamps with nanoseconds and an offset, endsAt zero).
FIRING_GROUP: dict[str, Any] = {
    "receiver": "haltguard",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "VenueDown", "instance": "venue-1:8000", "job": "venue",
                       "severity": "critical", "component": "venue"},
            "annotations": {"summary": "venue-1 is down",
                            "description": "venue-1:8000 has not answered for 1m."},
            "startsAt": "2026-03-02T09:00:05.123456789+09:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22venue%22%7D"
                            "+%3D%3D+0&g0.tab=1",
            "fingerprint": "5a1c7e0d9b2f4a61",
        },
        {
            "status": "firing",
            "labels": {"alertname": "VenueDown", "instance": "venue-2:8000", "job": "venue",
                       "severity": "critical", "component": "venue"},
            "annotations": {"summary": "venue-2 is down",
                            "description": "venue-2:8000 has not answered for 1m."},
            "startsAt": "2026-03-02T09:00:07.5+09:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22venue%22%7D"
                            "+%3D%3D+0&g0.tab=1",
            "fingerprint": "8e0b3f6a21c94d57",
        },
    ],
    "groupLabels": {"alertname": "VenueDown"},
    "commonLabels": {"alertname": "VenueDown", "job": "venue", "severity": "critical",
                     "component": "venue"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "version": "4",
    "groupKey": "{}/{severity=\"critical\"}:{alertname=\"VenueDown\"}",
    "truncatedAlerts": 0,
}


def resolved_group(group: dict[str, Any], *, first_only: bool = False) -> dict[str, Any]:
    """The next notification of the group: one or both alerts resolved, with endsAt set."""
    payload = copy.deepcopy(group)
    for alert in payload["alerts"][:1] if first_only else payload["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2026-03-02T09:04:05.5+09:00"
    if not first_only:
        payload["status"] = "resolved"
    return payload


def repeat(payload: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(payload)


@pytest.fixture
def app(engine: Engine) -> FastAPI:
    return create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                      escalation_interval_s=None, intake_settings=IntakeSettings(tokens=(TOKEN,)))


def rewire(app: FastAPI, *, settings: IntakeSettings | None = None,
           sink: SignalSink | None = None) -> None:
    """Give the app's alert intake other settings or another sink (its parts, replaced)."""
    operations = context_of(app)
    parts = operations.part(IntakeParts)
    attach(app, operations.with_parts([replace(
        parts, settings=settings or parts.settings, sink=sink or parts.sink)]))


@pytest.fixture
def signals(app: FastAPI) -> list[Signal]:
    received: list[Signal] = []
    rewire(app, sink=received.append)
    return received


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


# --- Alertmanager --------------------------------------------------------------------


@SQLITE_ONLY
def test_a_firing_group_becomes_one_signal_per_alert(
    client: TestClient, signals: list[Signal]
) -> None:
    response = client.post(AM, json=FIRING_GROUP, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"received": 2, "signals": 2, "duplicates": 0, "decisions": 0}
    assert [s.name for s in signals] == ["alertmanager.firing"] * 2
    first = signals[0]
    assert not first.resolved and first.source == "alertmanager"
    assert first.labels["fingerprint"] == "5a1c7e0d9b2f4a61"
    assert first.labels["instance"] == "venue-1:8000"
    assert (first.labels["category"], first.labels["severity"]) == ("server_down", "SEV2")
    assert first.labels["component"] == "venue"
    assert first.details["summary"] == "venue-1 is down"
    assert first.details["starts_at"] == "2026-03-02T09:00:05.123456+09:00"
    assert first.details["receiver"] == "haltguard"
    assert first.details["group_key"] == FIRING_GROUP["groupKey"]


@SQLITE_ONLY
def test_repeated_notifications_are_dropped_by_fingerprint(
    client: TestClient, signals: list[Signal]
) -> None:
    client.post(AM, json=FIRING_GROUP, headers=AUTH)
    again = client.post(AM, json=repeat(FIRING_GROUP), headers=AUTH).json()
    assert again == {"received": 2, "signals": 0, "duplicates": 2, "decisions": 0}
    one_resolved = client.post(AM, json=resolved_group(FIRING_GROUP, first_only=True),
                               headers=AUTH).json()
    assert (one_resolved["signals"], one_resolved["duplicates"]) == (1, 1)
    all_resolved = client.post(AM, json=resolved_group(FIRING_GROUP), headers=AUTH).json()
    assert (all_resolved["signals"], all_resolved["duplicates"]) == (1, 1)
    assert [(s.labels["fingerprint"], s.resolved) for s in signals] == [
        ("5a1c7e0d9b2f4a61", False), ("8e0b3f6a21c94d57", False),
        ("5a1c7e0d9b2f4a61", True), ("8e0b3f6a21c94d57", True),
    ]
    metrics = client.get("/metrics").text
    assert 'haltguard_alerts_duplicate_total{source="alertmanager"} 4.0' in metrics
    assert 'haltguard_alerts_received_total{source="alertmanager",status="resolved"} 2.0' in (
        metrics)


@SQLITE_ONLY
def test_the_same_alert_firing_again_after_resolving_is_a_new_signal(
    client: TestClient, signals: list[Signal]
) -> None:
    client.post(AM, json=FIRING_GROUP, headers=AUTH)
    client.post(AM, json=resolved_group(FIRING_GROUP), headers=AUTH)
    again = repeat(FIRING_GROUP)
    again["alerts"][0]["startsAt"] = "2026-03-02T10:00:00Z"
    answer = client.post(AM, json=again, headers=AUTH).json()
    assert (answer["signals"], answer["duplicates"]) == (1, 1)  # the other one is stale
    assert signals[-1].labels["fingerprint"] == "5a1c7e0d9b2f4a61" and not signals[-1].resolved


@SQLITE_ONLY
def test_an_older_alertmanager_without_fingerprints_is_deduplicated_by_labels(
    client: TestClient, signals: list[Signal]
) -> None:
    payload = repeat(FIRING_GROUP)
    del payload["truncatedAlerts"]
    for alert in payload["alerts"]:
        del alert["fingerprint"]
    assert client.post(AM, json=payload, headers=AUTH).json()["signals"] == 2
    assert client.post(AM, json=payload, headers=AUTH).json()["duplicates"] == 2
    assert signals[0].labels["fingerprint"] != signals[1].labels["fingerprint"]


@SQLITE_ONLY
@pytest.mark.parametrize(("change", "field"), [
    ({"version": "3"}, "version"),
    ({"status": "exploded"}, "status"),
    ({"alerts": [{"status": "firing", "labels": {}}]}, "startsAt"),
])
def test_a_malformed_payload_is_refused_naming_the_field(
    client: TestClient, signals: list[Signal], change: dict[str, Any], field: str
) -> None:
    response = client.post(AM, json={**FIRING_GROUP, **change}, headers=AUTH)
    assert response.status_code == 422
    assert field in response.json()["error"]["message"]
    assert signals == []


@SQLITE_ONLY
@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 401, "not_authenticated"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "not_authenticated"),
    ({"Authorization": "Bearer wrong-token-wrong-token"}, 403, "forbidden"),
])
def test_intake_needs_its_bearer_token(
    client: TestClient, signals: list[Signal], headers: dict[str, str], status: int, code: str
) -> None:
    response = client.post(AM, json=FIRING_GROUP, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert signals == []


@SQLITE_ONLY
def test_intake_without_a_configured_token_is_disabled(app: FastAPI, client: TestClient) -> None:
    rewire(app, settings=IntakeSettings(tokens=()))
    response = client.post(AM, json=FIRING_GROUP, headers=AUTH)
    assert response.status_code == 403
    assert "HALTGUARD_INTAKE_TOKENS" in response.json()["error"]["message"]


@SQLITE_ONLY
def test_alerts_the_detection_service_did_not_take_are_accepted_on_retry(
    app: FastAPI, client: TestClient
) -> None:
    delivered: list[Signal] = []

    def flaky(signal: Signal) -> None:
        if len(delivered) == 1 and not getattr(flaky, "failed", False):
            flaky.failed = True  # type: ignore[attr-defined]
            raise RuntimeError("detection queue unavailable")
        delivered.append(signal)

    rewire(app, sink=flaky)
    first = client.post(AM, json=FIRING_GROUP, headers=AUTH)
    assert first.status_code == 503 and first.headers["Retry-After"] == "5"
    retry = client.post(AM, json=repeat(FIRING_GROUP), headers=AUTH).json()
    assert (retry["signals"], retry["duplicates"]) == (1, 1)
    assert [s.labels["fingerprint"] for s in delivered] == ["5a1c7e0d9b2f4a61",
                                                            "8e0b3f6a21c94d57"]


# --- the generic webhook -------------------------------------------------------------


@SQLITE_ONLY
def test_the_generic_webhook_fires_and_resolves_once_each(
    client: TestClient, signals: list[Signal]
) -> None:
    alert = {"name": "DiskFull", "labels": {"component": "database", "severity": "warning"},
             "value": "93.5", "started_at": "2026-03-02T09:00:00Z"}
    body = {"source": "uptime-kuma", "alerts": [alert]}
    assert client.post(WEBHOOK, json=body, headers=AUTH).json()["signals"] == 1
    assert client.post(WEBHOOK, json=body, headers=AUTH).json()["duplicates"] == 1
    resolved = {"source": "uptime-kuma", "alerts": [{**alert, "status": "resolved"}]}
    assert client.post(WEBHOOK, json=resolved, headers=AUTH).json()["signals"] == 1
    fired, ended = signals
    assert fired.name == "webhook.firing" and fired.source == "webhook:uptime-kuma"
    assert str(fired.value) == "93.5"
    assert (fired.labels["category"], fired.labels["severity"]) == ("database", "SEV3")
    assert fired.labels["alertname"] == "DiskFull"
    assert ended.resolved and ended.labels["fingerprint"] == fired.labels["fingerprint"]


@SQLITE_ONLY
@pytest.mark.parametrize(("body", "field"), [
    ({"source": "a b/c", "alerts": [{"name": "x"}]}, "source"),
    ({"source": "kuma", "alerts": [{"name": "x", "value": "NaN"}]}, "value"),
    ({"source": "kuma", "alerts": []}, "alerts"),
])
def test_the_generic_webhook_refuses_bad_input_naming_the_field(
    client: TestClient, signals: list[Signal], body: dict[str, Any], field: str
) -> None:
    response = client.post(WEBHOOK, json=body, headers=AUTH)
    assert response.status_code == 422 and field in response.json()["error"]["message"]
    assert signals == []


# --- the label mapping ---------------------------------------------------------------

MAPPING = """\
defaults: {category: software_bug, severity: SEV4}
severity_label: priority
severities: {p1: SEV1, p2: SEV2}
component_labels: [service]
market_labels: [market]
rules:
  - match: {alertname: PriceFeedStale}
    category: market_volatility
    markets: [BTC-JPY, ETH-JPY]
  - match_re: {alertname: "Hot.*Wallet.*"}
    category: unauthorized_access
    severity: SEV1
    components: [wallet]
"""


def test_labels_map_to_category_severity_components_and_markets_by_config() -> None:
    mapping = load_mapping(MAPPING, "mapping.yaml")
    assert mapping.classify({"alertname": "PriceFeedStale", "priority": "p2",
                             "service": "feeds"}) == {
        "category": "market_volatility", "severity": "SEV2", "component": "feeds",
        "components": "feeds", "markets": "BTC-JPY,ETH-JPY", "mapping_rule_line": "7",
    }
    hot = mapping.classify({"alertname": "HotWalletDrain", "priority": "p2",
                            "market": "BTC-JPY"})
    assert (hot["category"], hot["severity"], hot["components"]) == (
        "unauthorized_access", "SEV1", "wallet")
    assert hot["market"] == "BTC-JPY"
    assert mapping.classify({"alertname": "Other"}) == {"category": "software_bug",
                                                       "severity": "SEV4"}


def test_the_built_in_mapping_classifies_common_alert_names() -> None:
    assert DEFAULT_MAPPING.classify({"alertname": "PostgresReplicationLag"})["category"] == (
        "database")
    assert DEFAULT_MAPPING.classify({"alertname": "InstanceDown"})["category"] == "server_down"


@pytest.mark.parametrize(("text", "message"), [
    ("rules:\n  - match: {alertname: X}\n    category: meteor_strike\n",
     "line 2: category 'meteor_strike' is not one of server_down"),
    ("defaults: {severity: SEV9}\n", "line 1: severity 'SEV9' is not one of SEV1"),
    ("rules:\n  - match_re: {alertname: '('}\n    category: network\n",
     "line 2: match_re alertname: '(' is not a regex"),
    ("rules:\n  - category: network\n", "line 2: a rule needs 'match' or 'match_re'"),
    ("rules:\n  - match: {a: b}\n", "line 2: the rule sets nothing"),
    ("severity_lable: x\n", "unknown key 'severity_lable'"),
    ("rules: [\n  - {match: {a: b}\n", "mapping.yaml, line 2: expected the node content"),
])
def test_a_bad_mapping_is_refused_naming_line_and_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_mapping(text, "mapping.yaml")


def test_intake_settings_read_tokens_and_mapping_file_from_the_environment(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING, encoding="utf-8")
    settings = load_config(None, environ={"HALTGUARD_INTAKE_TOKENS": f"{TOKEN}, {TOKEN}-2",
                                          "HALTGUARD_INTAKE_MAPPING": str(path)}
                           ).intake_settings()
    assert settings.tokens == (TOKEN, f"{TOKEN}-2")
    assert settings.mapping.severity_label == "priority"
    with pytest.raises(ValueError, match="at least 16 characters"):
        load_config(None, environ={"HALTGUARD_INTAKE_TOKENS": "short"})
    with pytest.raises(ValueError, match="at least 16 characters"):
        IntakeSettings(tokens=("short",))


def test_tracked_alerts_stay_bounded_and_forget_resolved_ones_first() -> None:
    intake = AlertIntake(alerts_tracked_max=3)
    payload = AlertmanagerPayload.model_validate(FIRING_GROUP)
    intake.alertmanager(payload)
    intake.alertmanager(AlertmanagerPayload.model_validate(resolved_group(FIRING_GROUP,
                                                                          first_only=True)))
    for n in range(2):
        other = repeat(FIRING_GROUP)
        other["alerts"] = [{**FIRING_GROUP["alerts"][1], "fingerprint": f"f{n}"}]
        intake.alertmanager(AlertmanagerPayload.model_validate(other))
    assert len(intake._seen) == 3
    still_firing = repeat(FIRING_GROUP)
    still_firing["alerts"] = still_firing["alerts"][1:]
    assert intake.alertmanager(AlertmanagerPayload.model_validate(still_firing)).duplicates == 1
    resolved_one = resolved_group(FIRING_GROUP, first_only=True)
    resolved_one["alerts"] = resolved_one["alerts"][:1]
    forgotten = intake.alertmanager(AlertmanagerPayload.model_validate(resolved_one))
    assert len(forgotten.signals) == 1  # its resolution was forgotten first, so it is new


# --- the round trip ------------------------------------------------------------------

ROUND_TRIP_RULES = """
version: 1
rules:
  - id: alerted-component-down
    signal: alertmanager.firing
    match: {category: server_down}
    when: ">= 1"
    clear_after_s: 0
    classification: server_down
    severity: SEV2
    title: "{alertname}: {instance}"
    group_by: [alertname, instance]
    actions:
      - open_or_update_incident
"""


@pytest.fixture
def protected(tmp_path: Path, session_factory: sessionmaker[Session]) -> Iterator[Protected]:
    protected = protected_venue(tmp_path, session_factory, ROUND_TRIP_RULES)
    yield protected
    protected.detection.stop()
    protected.runtime.stop()


@SQLITE_ONLY
def test_an_alertmanager_round_trip_opens_and_resolves_an_incident(
    app: FastAPI, client: TestClient, protected: Protected
) -> None:
    rewire(app, sink=protected.detection.submit)
    payload = repeat(FIRING_GROUP)
    payload["alerts"] = payload["alerts"][:1]
    fired = client.post(AM, json=payload, headers=AUTH).json()
    assert (fired["signals"], fired["decisions"]) == (1, 1)
    assert protected.detection.flush(10)
    [incident] = protected.incidents()
    assert incident.title == "VenueDown: venue-1:8000"
    assert incident.category.value == "server_down"
    resolved = client.post(AM, json=resolved_group(payload), headers=AUTH).json()
    assert (resolved["signals"], resolved["decisions"]) == (1, 1)
    assert protected.detection.flush(10)
    assert [d.kind for d in protected.decisions()] == ["fired", "resolved"]
    timeline = protected.timeline(incident.id)
    assert any("resolved" in entry.message for entry in timeline)
    assert client.post(AM, json=resolved_group(payload), headers=AUTH).json()["duplicates"] == 1
