"""The detection API: rules listed, checked and reloaded whole or not at all, the decisions
log paged, dry-run switched by a commander only, every route guarded by the table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from detection_support import START, detection_app, detection_routes, rules, signal
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from haltguard.detection import flows, records
from haltguard.detection.actions import ActionExecutor
from haltguard.detection.service import DetectionService
from haltguard.responders.service import ManualClock
from haltguard.security import audit
from haltguard.security.permissions import Role
from haltguard.security.testing import provision_operator, walk_permissions

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

RULES = """\
version: 1
rules:
  - id: crash
    signal: market.price_move_bps
    when: ">= 1000"
    group_by: [market]
    classification: market_volatility
    severity: SEV2
    actions: [open_or_update_incident]
"""


@dataclass
class Client:
    http: TestClient
    detection: DetectionService
    headers: dict[Role, dict[str, str]]
    session_factory: sessionmaker[Session]

    def as_(self, role: Role) -> dict[str, str]:
        return self.headers[role]


@pytest.fixture
def client(session_factory: sessionmaker[Session]) -> Iterator[Client]:
    clock = ManualClock(START)
    detection = DetectionService(
        rules=rules(RULES, "rules.yaml"),
        executor=ActionExecutor(session_factory=session_factory, venue=None, clock=clock),
    )
    app = detection_app(session_factory, detection, clock)
    headers = {role: provision_operator(session_factory, role, now=clock.now()).headers
               for role in Role}
    with TestClient(app, base_url="https://testserver") as http:
        yield Client(http, detection, headers, session_factory)


def _audit_actions(
    client: Client, prefix: str = "detection."
) -> list[tuple[str, dict[str, object]]]:
    with client.session_factory() as session:
        entries, _ = audit.list_entries(session, limit=200, newest_first=False)
        return [(e.action, json.loads(e.details_json)) for e in entries
                if e.action.startswith(prefix)]


@SQLITE_ONLY
def test_every_detection_route_is_guarded_by_the_permission_table(client: Client) -> None:
    calls, mismatches = walk_permissions(
        client.http, detection_routes(), client.as_,
        body_for=lambda route: {"enabled": False, "reason": "walk"}
        if route.path.endswith("dry-run") else {"text": RULES},
    )
    assert calls >= 6 * len(Role)
    assert mismatches == []


@SQLITE_ONLY
def test_bad_rules_are_refused_with_lines_and_the_running_rules_stay(client: Client) -> None:
    commander = client.as_(Role.INCIDENT_COMMANDER)
    before = client.http.get("/api/detection/rules", headers=commander).json()
    bad = RULES.replace("SEV2", "SEV9").replace("open_or_update_incident", "resume_market")
    checked = client.http.post("/api/detection/rules/check", headers=client.as_(Role.RESPONDER),
                               json={"text": bad, "source": "new.yaml"}).json()
    assert not checked["ok"]
    assert [(p["line"], p["message"][:38]) for p in checked["problems"]] == [
        (8, "rule 'crash': severity 'SEV9' is not o"),
        (9, "rule 'crash': action 'resume_market' w")]
    refused = client.http.post("/api/detection/rules/reload", headers=commander,
                               json={"text": bad, "source": "new.yaml"})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "rules_refused"
    assert "new.yaml:9" in refused.json()["error"]["message"]
    assert client.http.get("/api/detection/rules", headers=commander).json() == before
    assert client.detection.submit(signal("market.price_move_bps", 1200, 0, market="A-B"))
    assert [action for action, _ in _audit_actions(client, "detection.rules")] == [
        "detection.rules_refused"]

    good = RULES.replace(">= 1000", ">= 700")
    loaded = client.http.post("/api/detection/rules/reload", headers=commander,
                              json={"text": good, "source": "new.yaml"}).json()
    assert loaded["rules"][0]["condition"] == ">= 700"
    assert client.detection.rules.source == "new.yaml"
    actions = [action for action, _ in _audit_actions(client, "detection.rules")]
    assert actions == ["detection.rules_refused", "detection.rules_reload"]


@SQLITE_ONLY
def test_dry_run_is_switched_by_a_commander_with_a_reason_and_audited(client: Client) -> None:
    refused = client.http.put("/api/detection/dry-run", headers=client.as_(Role.RESPONDER),
                              json={"enabled": True, "reason": "tuning"})
    assert refused.status_code == 403
    answer = client.http.put("/api/detection/dry-run",
                             headers=client.as_(Role.INCIDENT_COMMANDER),
                             json={"enabled": True, "reason": "tuning thresholds"})
    assert answer.json() == {"enabled": True}
    assert client.detection.dry_run
    [(action, details)] = _audit_actions(client)
    assert (action, details["reason"], details["enabled"]) == (
        "detection.dry_run", "tuning thresholds", True)


@SQLITE_ONLY
def test_decisions_log_is_paged_newest_first_and_filters_dry_run(client: Client) -> None:
    client.detection.start(tick_interval_s=0)
    try:
        for index, market in enumerate(("A-B", "C-D", "E-F")):
            client.detection.set_dry_run(index == 2)
            client.detection.submit(signal("market.price_move_bps", 1500, index,
                                           market=market))
            assert client.detection.flush(10)
    finally:
        client.detection.stop()
    reader = client.as_(Role.RESPONDER)
    page = client.http.get("/api/detection/decisions", params={"limit": 2},
                           headers=reader).json()
    assert page["total"] == 3 and page["next_offset"] == 2
    assert [item["labels"]["market"] for item in page["items"]] == ["E-F", "C-D"]
    dry = client.http.get("/api/detection/decisions", params={"dry_run": "true"},
                          headers=reader).json()
    assert [item["labels"]["market"] for item in dry["items"]] == ["E-F"]
    assert dry["items"][0]["explanation"].startswith("rule crash fired")


@SQLITE_ONLY
def test_rules_in_force_at_start_are_kept_in_the_history_once(
    session_factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    detection = DetectionService(rules_path=path)
    with session_factory() as session, session.begin():
        assert flows.record_rules_in_force(session, detection, actor="system:serve",
                                           now=START)
        assert not flows.record_rules_in_force(session, detection, actor="system:serve",
                                               now=START)
    with session_factory() as session:
        [kept] = records.rule_sets(session)
        assert (kept.version, kept.text, kept.rule_count) == (detection.rules.version, RULES, 1)
