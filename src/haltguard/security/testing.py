"""Helpers for tests of any haltguard app: walk every route against the permission table, and
provision operators with API tokens per role.

The walk finds each route's guard through the ``Requirement`` objects ``require`` puts in
its dependency tree, then calls the route as every role: a role the table refuses must get
403 ``permission_denied``; a role it allows must get past the guard (any answer but 401 or
that 403; usually 404 or 422 since the walk sends placeholder input).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import utc_now
from haltguard.db.session import session_scope
from haltguard.security import service
from haltguard.security.config import SecuritySettings
from haltguard.security.dependencies import Requirement
from haltguard.security.permissions import Action, Role, is_allowed

_PATH_PARAMETER = re.compile(r"{([^}:]+)(?::[^}]*)?}")
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def fast_test_settings(**overrides: object) -> SecuritySettings:
    """Settings with cheap argon2id costs, so tests that log in many times stay fast."""
    values: dict[str, object] = {
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 1024,
        "password_hash_parallelism": 1,
    }
    values.update(overrides)
    return SecuritySettings(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class GuardedRoute:
    """One method of one route and the actions guarding it (empty: public)."""

    method: str
    path: str
    actions: frozenset[Action]


def _requirements(dependant: Dependant) -> Iterator[Requirement]:
    if isinstance(dependant.call, Requirement):
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _requirements(sub)


def _api_routes(app: FastAPI) -> Iterator[tuple[str, set[str], Dependant]]:
    """``(path, methods, dependant)`` of every API route, routers included.

    Newer FastAPI includes routers lazily and offers ``iter_route_contexts`` to see their
    routes with prefixes and router-level dependencies applied; older versions copy them
    into ``app.routes`` directly.
    """
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    candidates: Iterable[Any] = iterate(app.routes) if iterate is not None else app.routes
    for candidate in candidates:
        original = getattr(candidate, "original_route", candidate)
        if isinstance(original, APIRoute):
            yield str(candidate.path), set(candidate.methods or ()), candidate.dependant


def guarded_routes(app: FastAPI) -> list[GuardedRoute]:
    """Every API route of ``app`` with the actions its ``require`` dependencies demand."""
    found: list[GuardedRoute] = []
    for path, methods, dependant in _api_routes(app):
        actions = frozenset(requirement.action for requirement in _requirements(dependant))
        for method in sorted(methods):
            found.append(GuardedRoute(method=method, path=path, actions=actions))
    return found


def public_routes(app: FastAPI) -> set[tuple[str, str]]:
    """``(method, path)`` of the API routes no permission guards; tests pin this set."""
    return {(route.method, route.path) for route in guarded_routes(app) if not route.actions}


@dataclass(frozen=True)
class PermissionMismatch:
    """A role the table and the endpoint disagree on."""

    method: str
    path: str
    role: Role
    expected: str
    status_code: int
    body: str

    def __str__(self) -> str:
        return (
            f"{self.method} {self.path} as {self.role.value}: expected {self.expected}, got "
            f"{self.status_code} {self.body[:200]}"
        )


def _fill_path(path: str, values: Mapping[str, str]) -> str:
    return _PATH_PARAMETER.sub(lambda match: values.get(match.group(1), "1"), path)


def _refused_by_permission(status_code: int, body: object) -> bool:
    if status_code != 403 or not isinstance(body, dict):
        return False
    error = body.get("error")
    return isinstance(error, dict) and error.get("code") == "permission_denied"


def walk_permissions(
    client: TestClient,
    app: FastAPI,
    credentials: Callable[[Role], Mapping[str, str]],
    *,
    path_values: Mapping[str, str] | None = None,
    body_for: Callable[[GuardedRoute], object] | None = None,
) -> tuple[int, list[PermissionMismatch]]:
    """Call every guarded route as every role; return the number of calls and mismatches.

    ``credentials(role)`` returns request headers authenticating an operator of that role
    (called once per request, so it may mint a fresh token each time); ``path_values``
    fills path parameters (default ``"1"``); ``body_for`` gives the JSON body of POST, PUT
    and PATCH calls (default ``{}``).
    """
    values = path_values or {}
    calls = 0
    mismatches: list[PermissionMismatch] = []
    for route in guarded_routes(app):
        if not route.actions:
            continue
        url = _fill_path(route.path, values)
        for role in Role:
            allowed = all(is_allowed(role, action) for action in route.actions)
            body: object = None
            if route.method in _METHODS_WITH_BODY:
                body = body_for(route) if body_for else {}
            headers = dict(credentials(role))
            response = client.request(route.method, url, headers=headers, json=body)
            calls += 1
            try:
                payload: object = response.json()
            except ValueError:
                payload = None
            refused = _refused_by_permission(response.status_code, payload)
            if allowed and (refused or response.status_code == 401):
                expected = "allowed"
            elif not allowed and not refused:
                expected = "403 permission_denied"
            else:
                continue
            mismatches.append(
                PermissionMismatch(
                    route.method, route.path, role, expected, response.status_code, response.text
                )
            )
    return calls, mismatches


@dataclass(frozen=True)
class ProvisionedOperator:
    """A test operator: its credentials in clear and an API token for requests."""

    username: str
    password: str
    totp_secret: str
    api_token: str
    role: Role

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}


def provision_operator(
    session_factory: sessionmaker[Session],
    role: Role,
    *,
    username: str | None = None,
    password: str = "correct horse battery staple",
    settings: SecuritySettings | None = None,
    now: datetime | None = None,
) -> ProvisionedOperator:
    """Create an operator of ``role`` with an API token, straight in the database."""
    settings = settings or fast_test_settings()
    moment = now or utc_now()
    name = username or f"test-{role.value.replace('_', '-')}"
    with session_scope(session_factory) as session:
        operator, enrolment = service.create_operator(
            session,
            username=name,
            display_name=f"Test {role.value}",
            email=f"{name}@example.com",
            phone="",
            role=role,
            password=password,
            actor="system:test-setup",
            settings=settings,
            now=moment,
        )
        token = service.create_api_token(
            session,
            operator,
            name="tests",
            expires_in_days=None,
            actor="system:test-setup",
            now=moment,
        )
    return ProvisionedOperator(
        username=name,
        password=password,
        totp_secret=enrolment.secret,
        api_token=token.secret,
        role=role,
    )
