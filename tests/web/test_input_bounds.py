"""Every value the operations API reads from a request is bounded before it reaches the
database: integers within 64 bits (SQLite and PostgreSQL refuse more, as a 500), strings,
lists and maps with a maximum length. Proved on the OpenAPI document (every route, every
parameter and body field, nested ones too) and by sending the values that used to fail."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.drill import service as drills
from haltguard.drill.surface import DrillSurface
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.web.bounds import INT64_MAX
from haltguard.web.settings import Settings

NOW = datetime(2025, 1, 6, tzinfo=UTC)
TOO_BIG = 2**63
# Strings the parser itself bounds (a date or time has a fixed grammar).
BOUNDED_FORMATS = {"date-time", "date", "time"}


class FixedClock:
    def now(self) -> datetime:
        return NOW


@pytest.fixture
def app(engine: Engine) -> FastAPI:
    app = create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                     clock=FixedClock(), escalation_interval_s=None,
                     security_settings=fast_test_settings())
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as test:
        yield test


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = components[ref.rsplit("/", 1)[-1]]
    return resolved


def _unbounded(schema: dict[str, Any], where: str, components: dict[str, Any],
               seen: frozenset[str] = frozenset()) -> Iterator[str]:
    """Every place under ``schema`` a client could send an unbounded value, named."""
    ref = schema.get("$ref")
    if ref is not None:
        if ref in seen:
            return
        seen = seen | {ref}
    schema = _resolve(schema, components)
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        yield from _unbounded(branch, where, components, seen)
    kind = schema.get("type")
    if "enum" in schema or "const" in schema:
        return
    if kind == "integer":
        # FastAPI writes a body field's bounds as floats: 2**63 - 1 shows as 2.0**63.
        if float(schema.get("maximum", math.inf)) > float(INT64_MAX):
            yield f"{where}: integer without a 64-bit maximum"
        if float(schema.get("minimum", -math.inf)) < -float(INT64_MAX):
            yield f"{where}: integer without a 64-bit minimum"
    elif kind == "string":
        if "maxLength" not in schema and schema.get("format") not in BOUNDED_FORMATS:
            yield f"{where}: string without maxLength"
    elif kind == "array":
        if "maxItems" not in schema:
            yield f"{where}: list without maxItems"
        yield from _unbounded(schema.get("items", {}), f"{where}[]", components, seen)
    elif kind == "object":
        for name, field in schema.get("properties", {}).items():
            yield from _unbounded(field, f"{where}.{name}", components, seen)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            if "maxProperties" not in schema:
                yield f"{where}: map without maxProperties"
            yield from _unbounded(extra, f"{where}{{}}", components, seen)
            yield from _unbounded(schema.get("propertyNames", {"type": "string"}),
                                  f"{where}{{key}}", components, seen)


def _every_unbounded_input(app: FastAPI) -> list[str]:
    document = app.openapi()
    components = document.get("components", {}).get("schemas", {})
    found = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                if parameter["in"] in {"path", "query"}:
                    found += _unbounded(parameter["schema"], f"{where} {parameter['name']}",
                                        components)
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                found += _unbounded(media["schema"], f"{where} body", components)
    return found


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_integer_string_list_and_map_the_operations_api_reads_is_bounded(
    app: FastAPI,
) -> None:
    # mounted by `serve` when drills are allowed; only its OpenAPI document is read here
    drills.install(app, cast(DrillSurface, object()))
    assert _every_unbounded_input(app) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", f"/api/incidents/{TOO_BIG}", None),
    ("GET", f"/api/approvals/{TOO_BIG}", None),
    ("GET", f"/api/approvals?incident_id={TOO_BIG}", None),
    ("GET", f"/api/pages/{TOO_BIG}", None),
    ("GET", f"/api/notify/subscribers/{TOO_BIG}", None),
    ("GET", f"/api/status/updates/{TOO_BIG}", None),
    ("POST", f"/api/status/maintenances/{TOO_BIG}/drafts", {}),
    ("POST", "/api/incidents", {"title": "x", "category": "server_down",
                                "severity": "SEV3", "estimated_affected_customers": TOO_BIG}),
    ("PATCH", "/api/incidents/1", {"orders_rejected": TOO_BIG}),
    ("POST", "/api/incidents/1/venue-events",
     {"seq": TOO_BIG, "event_type": "halt", "summary": "x"}),
])
def test_an_integer_of_2_to_the_63_is_refused_with_422_not_a_500(
    client: TestClient, session_factory: sessionmaker[Session], method: str, path: str,
    body: dict[str, Any] | None,
) -> None:
    admin = provision_operator(session_factory, Role.ADMIN, now=NOW)
    if method != "GET":
        opened = client.post("/api/incidents", headers=admin.headers, json={
            "title": "t", "category": "server_down", "severity": "SEV3"})
        assert opened.status_code == 201, opened.text
    response = client.request(method, path, headers=admin.headers, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert str(INT64_MAX) in error["message"]
