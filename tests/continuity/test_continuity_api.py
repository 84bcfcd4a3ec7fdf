"""The continuity routes through the real operations app (permission table, error handler,
database): the insurance an incident may claim on, the heat map, the plan's check, findings
imported over the API; readers cannot change records and viewers see nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from continuity_support import (
    PIP_AUDIT,
    PLAN_TEXT,
    REGISTER_TEXT,
    add_person,
    drill_record,
    fill_contact_tree,
    policy,
    write,
)
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.common.clock import ManualClock, utc_now
from haltguard.common.taxonomy import Category, Severity
from haltguard.continuity.settings import ContinuitySettings
from haltguard.db.session import session_scope
from haltguard.incidents import flows as incident_flows
from haltguard.incidents.models import IncidentCreate
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.web.settings import Settings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    settings = ContinuitySettings(
        plan_file=write(tmp_path / "bcp.yaml", PLAN_TEXT),
        register_file=write(tmp_path / "risks.yaml", REGISTER_TEXT),
        drill_report_dirs=(tmp_path / "drills",), report_dir=tmp_path / "report")
    app = create_app(Settings(database_url="", data_dir=tmp_path, migrate_on_start=False),
                     engine=engine, escalation_interval_s=None,
                     security_settings=fast_test_settings(), continuity_settings=settings)
    with TestClient(app, base_url="https://testserver") as http:
        yield http


def headers(factory: sessionmaker[Session], role: Role) -> dict[str, str]:
    return provision_operator(factory, role, settings=fast_test_settings()).headers


def test_the_incident_page_gets_the_policy_and_its_claim_contacts(
        client: TestClient, session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        add_person(session, "alice")
        incident = incident_flows.open_incident(session, IncidentCreate(
            title="Unauthorized withdrawals", category=Category.UNAUTHORIZED_ACCESS,
            severity=Severity.SEV1), actor="alice", clock=ManualClock(utc_now()))
        incident_id = incident.id
    commander = headers(session_factory, Role.INCIDENT_COMMANDER)
    today = utc_now().date()
    body = policy(starts_on=today - timedelta(days=10),
                  expires_on=today + timedelta(days=300)).model_dump(mode="json")
    created = client.post("/api/continuity/insurance", json=body, headers=commander)
    assert created.status_code == 201, created.text
    responder = headers(session_factory, Role.RESPONDER)
    linked = client.get(f"/api/incidents/{incident_id}/insurance", headers=responder)
    assert linked.status_code == 200
    assert linked.json()["category"] == "unauthorized_access"
    assert [p["policy_number"] for p in linked.json()["policies"]] == ["CY-001"]
    assert linked.json()["policies"][0]["contacts"][0]["phone"] == "+81-3-0000-0000"
    refused = client.post("/api/continuity/insurance", json=body, headers=responder)
    assert refused.status_code == 403
    viewer = headers(session_factory, Role.VIEWER)
    assert client.get(f"/api/incidents/{incident_id}/insurance",
                      headers=viewer).status_code == 403


def test_an_insurance_policy_with_an_unknown_field_is_refused_naming_it(
        client: TestClient, session_factory: sessionmaker[Session]) -> None:
    body = policy().model_dump(mode="json") | {"deductible": 5}
    answer = client.post("/api/continuity/insurance", json=body,
                         headers=headers(session_factory, Role.INCIDENT_COMMANDER))
    assert answer.status_code == 422
    assert "deductible" in answer.text
    assert client.get("/api/continuity/insurance", headers=headers(
        session_factory, Role.RESPONDER)).json()["total"] == 0


def test_the_heat_map_and_the_risks_are_served_from_the_register(
        client: TestClient, session_factory: sessionmaker[Session]) -> None:
    responder = headers(session_factory, Role.RESPONDER)
    svg = client.get("/api/continuity/risks/heatmap.svg", params={"rating": "residual"},
                     headers=responder)
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert 'data-likelihood="2" data-impact="3" data-risks="R-01"' in svg.text
    risks = {risk["id"]: risk for risk in client.get("/api/continuity/risks",
                                                      headers=responder).json()["items"]}
    assert risks["R-01"]["score"] == 15 and risks["R-01"]["review_overdue"] is (
        utc_now().date() > datetime(2026, 11, 30, tzinfo=UTC).date())


def test_the_check_over_the_api_names_what_is_missing(
        client: TestClient, session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    with session_scope(session_factory) as session:
        add_person(session, "alice")
        add_person(session, "bob")
        fill_contact_tree(session, "alice", "bob")
    drill_record(tmp_path / "drills", "server-down", utc_now() - timedelta(hours=1))
    responder = headers(session_factory, Role.RESPONDER)
    answer = client.get("/api/continuity/check", headers=responder).json()
    assert answer["passed"] is False
    verdicts = {service["id"]: service["passed"] for service in answer["services"]}
    assert verdicts == {"trading": True, "ledger": False}  # no backup, no verified restore
    ledger = next(s for s in answer["services"] if s["id"] == "ledger")
    assert [e["passed"] for e in ledger["evidence"]] == [True, False, False]
    html = client.get("/api/continuity/check.html", headers=responder)
    assert html.status_code == 200 and "<svg " in html.text


def test_a_scan_imported_over_the_api_is_listed_with_its_deadline(
        client: TestClient, session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        add_person(session, "carol")
    commander = headers(session_factory, Role.INCIDENT_COMMANDER)
    imported = client.post("/api/continuity/findings/import",
                           params={"format": "pip-audit", "owner": "carol"},
                           json=PIP_AUDIT, headers=commander)
    assert imported.status_code == 201, imported.text
    assert imported.json()["new"] == 3
    listed = client.get("/api/continuity/findings", params={"status": "open"},
                        headers=commander).json()
    assert listed["total"] == 3
    assert {item["severity"] for item in listed["items"]} == {"high"}
    wrong = client.post("/api/continuity/findings/import",
                        params={"format": "sarif", "owner": "carol"}, json=PIP_AUDIT,
                        headers=commander)
    assert wrong.status_code == 422 and "not SARIF 2.1.0" in wrong.text
