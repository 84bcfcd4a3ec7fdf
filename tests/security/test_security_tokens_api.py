"""API tokens: create (shown once, stored hashed), authenticate, list own, revoke, expire."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from security_helpers import SQLITE_ONLY, ManualNow
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.db.session import session_scope
from haltguard.security.config import SecuritySettings
from haltguard.security.models import ApiToken
from haltguard.security.permissions import Role
from haltguard.security.testing import provision_operator
from haltguard.security.tokens import secret_hash

pytestmark = SQLITE_ONLY


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_created_token_authenticates_and_is_stored_only_as_hash_and_prefix(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    owner = provision_operator(session_factory, Role.VIEWER, settings=settings, now=now())
    created = client.post("/api/tokens", json={"name": "exporter"}, headers=owner.headers)
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("hgt_")
    assert created.json()["api_token"]["prefix"] == token[:12]
    me = client.get("/api/auth/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["username"] == owner.username
    with session_scope(session_factory) as session:
        stored = session.execute(select(ApiToken).where(ApiToken.name == "exporter")).scalar_one()
        assert stored.secret_hash == secret_hash(token)
        assert token not in (stored.prefix, stored.secret_hash)


def test_listing_shows_only_my_own_tokens_without_secrets(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    mine = provision_operator(session_factory, Role.SUPPORT, username="mine", settings=settings)
    provision_operator(session_factory, Role.SUPPORT, username="theirs", settings=settings)
    listed = client.get("/api/tokens", headers=mine.headers)
    assert listed.status_code == 200
    page = listed.json()
    assert page["total"] == 1 and len(page["items"]) == 1
    assert "token" not in page["items"][0] and "secret_hash" not in page["items"][0]


def test_revoked_token_no_longer_authenticates(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    owner = provision_operator(session_factory, Role.RESPONDER, settings=settings, now=now())
    created = client.post("/api/tokens", json={"name": "script"}, headers=owner.headers).json()
    token_id = created["api_token"]["id"]
    revoked = client.delete(f"/api/tokens/{token_id}", headers=owner.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    refused = client.get("/api/auth/me", headers=bearer(created["token"]))
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]["message"]


def test_cannot_revoke_another_operators_token(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
) -> None:
    alice = provision_operator(session_factory, Role.ADMIN, username="alice", settings=settings)
    bob = provision_operator(session_factory, Role.VIEWER, username="bob", settings=settings)
    bobs = client.post("/api/tokens", json={"name": "bob's"}, headers=bob.headers).json()
    attempt = client.delete(f"/api/tokens/{bobs['api_token']['id']}", headers=alice.headers)
    assert attempt.status_code == 404
    assert client.get("/api/auth/me", headers=bearer(bobs["token"])).status_code == 200


def test_token_with_expiry_stops_working_when_it_expires(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
    now: ManualNow,
) -> None:
    owner = provision_operator(session_factory, Role.VIEWER, settings=settings, now=now())
    token = client.post(
        "/api/tokens", json={"name": "short", "expires_in_days": 2}, headers=owner.headers
    ).json()["token"]
    now.advance(timedelta(days=2) - timedelta(seconds=1))
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 200
    now.advance(timedelta(seconds=1))
    expired = client.get("/api/auth/me", headers=bearer(token))
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


def test_token_expiry_out_of_bounds_is_refused_with_the_bounds(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
) -> None:
    owner = provision_operator(session_factory, Role.VIEWER, settings=settings)
    refused = client.post(
        "/api/tokens", json={"name": "forever", "expires_in_days": 5000}, headers=owner.headers
    )
    assert refused.status_code == 422
    assert "1..366" in refused.json()["error"]["message"]


def test_disabling_an_operator_revokes_their_tokens(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
) -> None:
    admin = provision_operator(session_factory, Role.ADMIN, settings=settings)
    who = provision_operator(session_factory, Role.RESPONDER, settings=settings)
    assert client.post(f"/api/operators/{who.username}/disable", headers=admin.headers).is_success
    assert client.post(f"/api/operators/{who.username}/enable", headers=admin.headers).is_success
    refused = client.get("/api/auth/me", headers=who.headers)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]


def test_request_without_credentials_is_told_how_to_authenticate(client: TestClient) -> None:
    response = client.get("/api/auth/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "not_authenticated"
    assert "POST /api/auth/login" in response.json()["error"]["message"]


def test_bearer_that_is_not_an_api_token_is_refused(client: TestClient) -> None:
    response = client.get("/api/auth/me", headers=bearer("not-a-token"))
    assert response.status_code == 401 and "hgt_" in response.json()["error"]["message"]
