"""Operator management over HTTP (admin): create with TOTP enrolment, roles, TOTP reset."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from security_helpers import SQLITE_ONLY, ManualNow
from sqlalchemy.orm import Session, sessionmaker

from haltguard.security import totp
from haltguard.security.config import SecuritySettings
from haltguard.security.permissions import Role
from haltguard.security.testing import ProvisionedOperator, provision_operator

NEW_OPERATOR = {
    "username": "Kenji.Tanaka",
    "display_name": "田中 健二",
    "email": "kenji@example.com",
    "phone": "+81 3-1234-5678",
    "role": "responder",
    "password": "a long enough passphrase",
}

pytestmark = SQLITE_ONLY


def admin(factory: sessionmaker[Session], settings: SecuritySettings) -> ProvisionedOperator:
    return provision_operator(factory, Role.ADMIN, username="root-admin", settings=settings)


def login_status(client: TestClient, username: str, password: str, secret: str,
                 now: ManualNow) -> int:
    response = client.post(
        "/api/auth/login",
        json={"username": username, "password": password,
              "totp_code": totp.code_at(secret, now())},
    )
    return response.status_code


def test_created_operator_gets_a_totp_enrolment_and_can_log_in_with_it(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    boss = admin(session_factory, settings)
    created = client.post("/api/operators", json=NEW_OPERATOR, headers=boss.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["operator"]["username"] == "kenji.tanaka"
    assert body["totp"]["otpauth_uri"].startswith("otpauth://totp/")
    secret = body["totp"]["secret"]
    assert login_status(client, "kenji.tanaka", NEW_OPERATOR["password"], secret, now) == 200


def test_short_password_is_refused_with_the_minimum_and_nothing_is_created(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
) -> None:
    boss = admin(session_factory, settings)
    refused = client.post(
        "/api/operators", json={**NEW_OPERATOR, "password": "short"}, headers=boss.headers
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_input"
    assert "at least 12" in refused.json()["error"]["message"]
    assert client.get("/api/operators/kenji.tanaka", headers=boss.headers).status_code == 404


def test_duplicate_username_is_a_conflict(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
) -> None:
    boss = admin(session_factory, settings)
    assert client.post("/api/operators", json=NEW_OPERATOR, headers=boss.headers).is_success
    again = client.post("/api/operators", json=NEW_OPERATOR, headers=boss.headers)
    assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]


def test_bad_username_and_email_are_explained(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
) -> None:
    boss = admin(session_factory, settings)
    bad_name = client.post(
        "/api/operators", json={**NEW_OPERATOR, "username": "a b"}, headers=boss.headers
    )
    assert bad_name.status_code == 422 and "lower-case letters" in bad_name.text
    bad_mail = client.post(
        "/api/operators", json={**NEW_OPERATOR, "email": "kenji"}, headers=boss.headers
    )
    assert bad_mail.status_code == 422 and "name@example.com" in bad_mail.text


def test_role_change_takes_effect_on_the_next_request_and_is_audited(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
) -> None:
    boss = admin(session_factory, settings)
    who = provision_operator(session_factory, Role.VIEWER, settings=settings)
    assert client.get("/api/audit", headers=who.headers).status_code == 403
    changed = client.put(
        f"/api/operators/{who.username}/role", json={"role": "incident_commander"},
        headers=boss.headers,
    )
    assert changed.status_code == 200 and changed.json()["role"] == "incident_commander"
    entries = client.get("/api/audit", headers=who.headers)
    assert entries.status_code == 200
    newest = entries.json()["items"][0]
    assert newest["action"] == "operator.role_changed"
    assert newest["details"] == {"from": "viewer", "to": "incident_commander"}
    assert newest["actor"] == "operator:root-admin"


def test_last_enabled_admin_cannot_be_demoted_or_disabled(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
) -> None:
    boss = admin(session_factory, settings)
    demote = client.put(
        f"/api/operators/{boss.username}/role", json={"role": "viewer"}, headers=boss.headers
    )
    assert demote.status_code == 409 and "last enabled admin" in demote.json()["error"]["message"]
    disable = client.post(f"/api/operators/{boss.username}/disable", headers=boss.headers)
    assert disable.status_code == 409


def test_totp_reset_replaces_the_secret_and_ends_sessions(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    boss = admin(session_factory, settings)
    who = provision_operator(session_factory, Role.RESPONDER, settings=settings)
    assert login_status(client, who.username, who.password, who.totp_secret, now) == 200
    reset = client.post(f"/api/operators/{who.username}/totp-reset", headers=boss.headers)
    assert reset.status_code == 200
    new_secret = reset.json()["secret"]
    assert new_secret != who.totp_secret
    assert client.get("/api/auth/me").status_code == 401, "the old session ended"
    now.advance(timedelta(seconds=30))
    assert login_status(client, who.username, who.password, who.totp_secret, now) == 401
    assert login_status(client, who.username, who.password, new_secret, now) == 200


def test_operator_list_is_paginated(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
) -> None:
    boss = admin(session_factory, settings)
    for number in range(4):
        provision_operator(session_factory, Role.SUPPORT, username=f"support-{number}",
                           settings=settings)
    page = client.get("/api/operators", params={"limit": 2, "offset": 1}, headers=boss.headers)
    assert page.status_code == 200
    body = page.json()
    assert body["total"] == 5 and body["limit"] == 2 and body["offset"] == 1
    assert body["next_offset"] == 3
    assert [item["username"] for item in body["items"]] == ["support-0", "support-1"]
    too_many = client.get("/api/operators", params={"limit": 501}, headers=boss.headers)
    assert too_many.status_code == 422
