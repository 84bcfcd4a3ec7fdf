"""Shared by the operator-security tests: a controllable clock and the app under test."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from haltguard.security.config import SecuritySettings
from haltguard.security.views import register_error_handlers, router

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""For modules about HTTP and policy rather than storage: the shared ``database_url``
fixture runs every test on SQLite and PostgreSQL; these keep to SQLite to stay fast, while
the audit chain, login and CLI tests run on both."""

START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


class ManualNow:
    """A ``now`` callable that moves only when a test says so."""

    def __init__(self, start: datetime = START) -> None:
        self.moment = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.moment

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self.moment += delta


def build_app(
    session_factory: sessionmaker[Session], settings: SecuritySettings, now: ManualNow
) -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    register_error_handlers(app)
    app.state.session_factory = session_factory
    app.state.security_settings = settings
    app.state.now = now
    return app
