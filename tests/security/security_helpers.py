"""Shared by the operator-security tests: a controllable clock and the app under test."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.security.config import SecuritySettings
from haltguard.web.settings import Settings

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

    def now(self) -> datetime:
        """The same moment: a ``ManualNow`` is also the app's ``Clock``."""
        return self()

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self.moment += delta


def build_app(
    session_factory: sessionmaker[Session], settings: SecuritySettings, now: ManualNow
) -> FastAPI:
    """The operations app built by the composition root on the database of
    ``session_factory``, its clock ``now``; no escalation loop (these tests page nobody)."""
    engine = session_factory.kw["bind"]
    assert isinstance(engine, Engine)
    return create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                      clock=now, security_settings=settings, escalation_interval_s=None)


def lift_audit_protection(session: Session) -> None:
    """Do what an attacker with write access to the database does first: remove the
    triggers that refuse UPDATE and DELETE on ``audit_entries`` (this transaction only on
    PostgreSQL, for good on SQLite's test copy)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
        return
    for name in ("audit_entries_no_update", "audit_entries_no_delete"):
        session.execute(text(f"DROP TRIGGER IF EXISTS {name}"))


def use_key_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Engines made from now on keep their keys in files beside the database, as a
    deployment without key variables does (the suite otherwise gives them by environment)."""
    monkeypatch.delenv("HALTGUARD_AUDIT_KEY", raising=False)
    monkeypatch.delenv("HALTGUARD_SECRETS_KEY", raising=False)
