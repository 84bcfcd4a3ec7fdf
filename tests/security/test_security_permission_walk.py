"""Every route of the security router against every role: allowed, or 403 permission_denied.

Also pins the routes that are public and checks the walk itself notices a guard that lets
the wrong roles through.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from security_helpers import SQLITE_ONLY, ManualNow
from sqlalchemy.orm import Session, sessionmaker

from haltguard.security.config import SecuritySettings
from haltguard.security.dependencies import AuthenticatedOperator, Requirement
from haltguard.security.permissions import Action, Role, is_allowed
from haltguard.security.testing import (
    ProvisionedOperator,
    guarded_routes,
    provision_operator,
    public_routes,
    walk_permissions,
)
from haltguard.security.views import register_error_handlers, router

PLACEHOLDERS = {"username": "nobody-here", "token_id": "999999"}

pytestmark = SQLITE_ONLY


def operators_by_role(
    factory: sessionmaker[Session], settings: SecuritySettings, now: ManualNow
) -> dict[Role, ProvisionedOperator]:
    return {role: provision_operator(factory, role, settings=settings, now=now()) for role in Role}


def test_only_login_is_public(app: FastAPI) -> None:
    security_routes = FastAPI()  # the security router alone: other domains have their own
    security_routes.include_router(router)
    assert public_routes(security_routes) == {("POST", "/api/auth/login")}
    assert ("POST", "/api/auth/login") in public_routes(app)


def test_every_security_route_declares_the_action_it_needs(app: FastAPI) -> None:
    guarded = {(r.method, r.path): r.actions for r in guarded_routes(app) if r.actions}
    assert guarded[("GET", "/api/operators")] == {Action.OPERATOR_READ}
    assert guarded[("POST", "/api/operators")] == {Action.OPERATOR_MANAGE}
    assert guarded[("GET", "/api/audit/verify")] == {Action.AUDIT_VERIFY}
    assert guarded[("DELETE", "/api/tokens/{token_id}")] == {Action.TOKEN_MANAGE_OWN}
    assert guarded[("POST", "/api/auth/logout")] == {Action.SESSION_MANAGE_OWN}


def test_each_role_is_allowed_or_refused_exactly_as_the_table_says(
    app: FastAPI, client: TestClient, session_factory: sessionmaker[Session],
    settings: SecuritySettings, now: ManualNow,
) -> None:
    operators = operators_by_role(session_factory, settings, now)
    calls, mismatches = walk_permissions(
        client, app, lambda role: operators[role].headers, path_values=PLACEHOLDERS
    )
    assert [str(m) for m in mismatches] == []
    guarded = [route for route in guarded_routes(app) if route.actions]
    assert calls == len(guarded) * len(Role)


class LaxRequirement(Requirement):
    """Declares an action but lets every authenticated caller through: a broken guard."""

    def __call__(self, request: Request) -> AuthenticatedOperator:  # type: ignore[override]
        return AuthenticatedOperator(id=0, username="anyone", display_name="", role=Role.ADMIN)


def resume_everything() -> dict[str, bool]:
    return {"resumed": True}


def test_walk_reports_a_guard_that_ignores_the_table(
    session_factory: sessionmaker[Session], settings: SecuritySettings, now: ManualNow,
) -> None:
    lax = FastAPI()
    register_error_handlers(lax)
    lax.add_api_route(
        "/api/danger", resume_everything, methods=["POST"],
        dependencies=[Depends(LaxRequirement(Action.MARKET_RESUME))],
    )
    operators = operators_by_role(session_factory, settings, now)
    with TestClient(lax, base_url="https://testserver") as client:
        calls, mismatches = walk_permissions(client, lax, lambda role: operators[role].headers)
    refused_roles = {role for role in Role if not is_allowed(role, Action.MARKET_RESUME)}
    assert calls == len(Role)
    assert refused_roles and {m.role for m in mismatches} == refused_roles
    assert all(m.expected == "403 permission_denied" for m in mismatches)


def test_permission_refusal_is_audited(
    client: TestClient, session_factory: sessionmaker[Session], settings: SecuritySettings,
) -> None:
    viewer = provision_operator(session_factory, Role.VIEWER, settings=settings)
    admin = provision_operator(session_factory, Role.ADMIN, settings=settings)
    refused = client.get("/api/operators", headers=viewer.headers)
    assert refused.status_code == 403
    assert "viewer does not allow operator.read" in refused.json()["error"]["message"]
    entries = client.get(
        "/api/audit", params={"action": "security.permission_denied"}, headers=admin.headers
    ).json()["items"]
    assert entries[0]["actor"] == f"operator:{viewer.username}"
    assert entries[0]["details"] == {"required_action": "operator.read", "role": "viewer"}
