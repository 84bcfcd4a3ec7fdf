"""The app factory: routers, OpenAPI, one error shape, pagination everywhere, every route
guarded by the permission table (walked completely, every role against every route)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.common.clock import SystemClock
from haltguard.security.permissions import Role
from haltguard.security.testing import (
    fast_test_settings,
    guarded_routes,
    provision_operator,
    public_routes,
    walk_permissions,
)
from haltguard.web.pagination import LIMIT_MAX
from haltguard.web.settings import Settings

NOW = datetime(2025, 1, 6, tzinfo=UTC)
# Path values that name nothing, so the walk changes nothing it relies on (its own tokens).
PLACEHOLDERS = {"username": "nobody-here", "handle": "nobody-here", "name": "nobody-here",
                "token_id": "999999", "incident_id": "999999", "approval_id": "999999",
                "page_id": "999999", "override_id": "999999", "task_ref": "nothing"}

# Routes no operator session guards, each by design: login; one-time links in pages and
# emails (their token is the credential); alert intake (guarded by an intake token, since
# monitors are machines, not operators); public double-opt-in subscriptions (the status page
# and its Statuspage-compatible /api/v2 are mounts, so they never appear as routes here).
INTENTIONALLY_PUBLIC = {
    ("POST", "/api/auth/login"),
    ("GET", "/api/pages/{page_id}/ack"),
    ("POST", "/api/pages/{page_id}/ack-link"),
    ("POST", "/api/detection/alerts/alertmanager"),
    ("POST", "/api/detection/alerts/webhook"),
    ("GET", "/api/notify/confirm"),
    ("POST", "/api/notify/confirm"),
    ("GET", "/api/notify/unsubscribe"),
    ("POST", "/api/notify/unsubscribe"),
    ("POST", "/api/notify/subscriptions/email"),
    ("POST", "/api/notify/subscriptions/webhook"),
    # customers act on their own account with a signed request (their API key is the
    # credential, checked by the customers domain); the security centre is public reading
    ("GET", "/api/customers/me"),
    ("POST", "/api/customers/me/2fa"),
    ("POST", "/api/customers/me/2fa/confirm"),
    ("PUT", "/api/customers/me/phrase"),
    ("GET", "/api/customers/me/keys"),
    ("POST", "/api/customers/me/keys"),
    ("DELETE", "/api/customers/me/keys/{key_id}"),
    ("GET", "/api/customers/me/addresses"),
    ("POST", "/api/customers/me/addresses"),
    ("GET", "/api/customers/me/withdrawals"),
    ("POST", "/api/customers/me/withdrawals"),
    ("POST", "/api/customers/me/lock"),
    ("GET", "/api/customers/me/notices"),
    ("POST", "/api/customers/me/terms"),
    ("GET", "/security"),
    ("GET", "/security/terms"),
    # the support desk's public side: the contact form (per-address limit, honeypot), FAQ
    # search, rating a resolved ticket (with its token) and the help centre's pages
    ("POST", "/api/support/public/tickets"),
    ("GET", "/api/support/public/search"),
    ("POST", "/api/support/public/tickets/{ticket_id}/rating"),
    *((method, f"{root}{page}") for root in ("/help", "/help/en")
      for method, page in (("GET", "/"), ("GET", "/search"), ("GET", "/articles/{slug}"),
                           ("GET", "/contact"), ("POST", "/contact"), ("GET", "/chat"))),
    # the operator console's way in: its login form, the language cookie and its own assets
    ("GET", "/console"),
    ("GET", "/console/"),
    ("GET", "/console/login"),
    ("POST", "/console/login"),
    ("GET", "/console/language/{language}"),
    ("GET", "/console/static/{name}"),
}


class FixedClock:
    def now(self) -> datetime:
        return NOW


@pytest.fixture
def app(engine: Engine) -> FastAPI:
    app = create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                     clock=FixedClock(),
                     security_settings=fast_test_settings())
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client


def test_create_app_migrates_a_new_database_and_serves_openapi(tmp_path: object) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/new.sqlite3"),
                     clock=SystemClock())
    with TestClient(app) as client:
        document = client.get("/openapi.json").json()
    paths = document["paths"]
    assert "/api/incidents" in paths and "/api/incidents/{incident_id}/actions/halt" in paths
    assert "/api/auth/login" in paths  # the security router is included
    assert any(path.startswith("/api/oncall") for path in paths)  # and the responders one
    error_schema = paths["/api/incidents/{incident_id}"]["get"]["responses"]["404"]
    assert error_schema["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_list_endpoint_is_paginated_with_a_maximum(app: FastAPI) -> None:
    document = app.openapi()
    schemas = document["components"]["schemas"]
    lists = []
    for path, methods in document["paths"].items():
        get = methods.get("get")
        if get is None:
            continue
        ok = get["responses"]["200"].get("content", {}).get("application/json", {})
        ref = ok.get("schema", {}).get("$ref", "")
        schema = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else ok.get("schema", {})
        if schema.get("type") == "array" or "items" in schema.get("properties", {}):
            lists.append(path)
            names = {parameter["name"]: parameter for parameter in get.get("parameters", [])}
            assert "limit" in names and "offset" in names, f"{path} is a list without paging"
            maximum = names["limit"]["schema"].get("maximum")
            assert maximum is not None and maximum <= 500, f"{path} has no maximum limit"
    assert "/api/incidents" in lists and "/api/incidents/{incident_id}/timeline" in lists
    assert LIMIT_MAX == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_route_but_the_intentionally_public_ones_is_guarded(app: FastAPI) -> None:
    unguarded = public_routes(app)
    assert unguarded <= INTENTIONALLY_PUBLIC, unguarded - INTENTIONALLY_PUBLIC
    assert len(guarded_routes(app)) > 40


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_permission_table_is_enforced_on_every_route_for_every_role(
    app: FastAPI, client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    headers = {
        role: provision_operator(session_factory, role, now=NOW).headers for role in Role
    }
    calls, mismatches = walk_permissions(client, app, lambda role: headers[role],
                                         path_values=PLACEHOLDERS)
    assert [str(mismatch) for mismatch in mismatches] == []
    assert calls == len([r for r in guarded_routes(app) if r.actions]) * len(Role)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unknown_path_answers_with_the_standard_error(client: TestClient) -> None:
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found"}}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_protective_actions_without_a_venue_say_how_to_connect_one(
    app: FastAPI, client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    operator = provision_operator(session_factory, Role.ADMIN, now=NOW)
    response = client.post("/api/incidents/1/actions/halt", headers=operator.headers,
                           json={"markets": ["BTC-JPY"], "reason": "x"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "venue_not_connected"
