"""The operator network allow-list, and the audit list/verify endpoints."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from security_helpers import SQLITE_ONLY, ManualNow, build_app, lift_audit_protection
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.network import parse_networks
from haltguard.db.session import session_scope
from haltguard.security import audit
from haltguard.security.config import SecuritySettings
from haltguard.security.permissions import Role
from haltguard.security.testing import ProvisionedOperator, fast_test_settings, provision_operator

pytestmark = SQLITE_ONLY


@pytest.fixture
def fenced_settings() -> SecuritySettings:
    return fast_test_settings(allowed_networks=parse_networks("10.0.0.0/8, 2001:db8::/32"))


@pytest.fixture
def admin(session_factory: sessionmaker[Session], settings: SecuritySettings
          ) -> ProvisionedOperator:
    return provision_operator(session_factory, Role.ADMIN, settings=settings)


def client_from(address: str, factory: sessionmaker[Session], settings: SecuritySettings,
                now: ManualNow) -> TestClient:
    app = build_app(factory, settings, now)
    return TestClient(app, base_url="https://testserver", client=(address, 40000))


@pytest.fixture
def outside(session_factory: sessionmaker[Session], fenced_settings: SecuritySettings,
            now: ManualNow) -> Iterator[TestClient]:
    with client_from("192.168.1.5", session_factory, fenced_settings, now) as client:
        yield client


def test_request_from_outside_the_allowed_networks_is_refused_and_audited(
    outside: TestClient, session_factory: sessionmaker[Session], admin: ProvisionedOperator,
) -> None:
    refused = outside.get("/api/auth/me", headers=admin.headers)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "network_denied"
    assert "192.168.1.5 is outside" in error["message"] and "10.0.0.0/8" in error["message"]
    with session_scope(session_factory) as session:
        newest = audit.list_entries(session, limit=1)[0][0]
        assert newest.action == "security.network_denied"
        assert newest.actor == "network:192.168.1.5"
        assert newest.target == "GET /api/auth/me"


def test_login_from_outside_the_allowed_networks_is_refused(
    outside: TestClient, admin: ProvisionedOperator,
) -> None:
    refused = outside.post(
        "/api/auth/login",
        json={"username": admin.username, "password": admin.password, "totp_code": "000000"},
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "network_denied"


@pytest.mark.parametrize("address", ["10.20.30.40", "2001:db8::7", "::ffff:10.0.0.9"])
def test_request_from_an_allowed_network_passes(
    address: str, session_factory: sessionmaker[Session], fenced_settings: SecuritySettings,
    now: ManualNow, admin: ProvisionedOperator,
) -> None:
    with client_from(address, session_factory, fenced_settings, now) as inside:
        assert inside.get("/api/auth/me", headers=admin.headers).status_code == 200


def test_audit_endpoint_verifies_and_names_a_tampered_entry(
    client: TestClient, session_factory: sessionmaker[Session], admin: ProvisionedOperator,
) -> None:
    intact = client.get("/api/audit/verify", headers=admin.headers).json()
    assert intact["ok"] is True and intact["entries_checked"] >= 2
    with session_scope(session_factory) as session:
        lift_audit_protection(session)
        session.execute(text("UPDATE audit_entries SET target = 'x' WHERE entry_index = 2"))
    broken = client.get("/api/audit/verify", headers=admin.headers).json()
    assert broken["ok"] is False and broken["first_bad_index"] == 2
    assert "edited" in broken["problem"]


def test_audit_list_is_paginated_newest_first_and_filterable(
    client: TestClient, admin: ProvisionedOperator,
) -> None:
    for number in range(3):
        client.post("/api/tokens", json={"name": f"t{number}"}, headers=admin.headers)
    page = client.get("/api/audit", params={"limit": 2}, headers=admin.headers).json()
    indexes = [item["index"] for item in page["items"]]
    assert indexes == sorted(indexes, reverse=True) and len(indexes) == 2
    assert page["total"] >= 5
    created = client.get(
        "/api/audit", params={"action": "token.created", "limit": 50}, headers=admin.headers
    ).json()
    assert created["total"] == 4
    assert all(item["action"] == "token.created" for item in created["items"])


def test_audit_endpoint_reports_the_anchored_entry_as_the_cli_does(
    client: TestClient, session_factory: sessionmaker[Session], admin: ProvisionedOperator,
) -> None:
    client.post("/api/tokens", json={"name": "anchored"}, headers=admin.headers)
    answer = client.get("/api/audit/verify", headers=admin.headers).json()
    with session_scope(session_factory) as session:
        expected = audit.verify(session)
    assert answer["ok"] is True
    assert answer["anchored_index"] == expected.anchored_index >= 2
    assert answer["anchor_file"] == expected.anchor_file != ""
    assert answer["summary"] == expected.summary()
