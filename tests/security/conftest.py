"""Fixtures for operator-security tests: a manual clock, cheap password hashing, the router.

``database_url`` and ``session_factory`` come from ``tests/conftest.py``: every test that
touches the database runs on a freshly migrated SQLite file and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from security_helpers import ManualNow, build_app
from sqlalchemy.orm import Session, sessionmaker

from haltguard.security import models  # noqa: F401  (registers the tables on Base)
from haltguard.security.config import SecuritySettings
from haltguard.security.testing import fast_test_settings


@pytest.fixture
def now() -> ManualNow:
    return ManualNow()


@pytest.fixture
def settings() -> SecuritySettings:
    return fast_test_settings()


@pytest.fixture
def app(
    session_factory: sessionmaker[Session], settings: SecuritySettings, now: ManualNow
) -> FastAPI:
    return build_app(session_factory, settings, now)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client
