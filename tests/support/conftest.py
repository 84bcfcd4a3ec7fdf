"""Fixtures of the support desk tests: the operations app (``desk``) on a test database with
a manual clock, operators of each role and an open incident. Nothing here is autouse."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from support_desk import START, Desk, open_incident

from haltguard.app.operations import create_app
from haltguard.common.clock import ManualClock
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.support.settings import SupportSettings
from haltguard.web.settings import Settings

OPERATORS = {"sam": Role.SUPPORT, "sue": Role.SUPPORT, "vic": Role.VIEWER,
             "carol": Role.INCIDENT_COMMANDER}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def support_settings() -> SupportSettings:
    return SupportSettings(form_per_minute=5)


@pytest.fixture
def desk(engine: Engine, session_factory: sessionmaker[Session], clock: ManualClock,
         support_settings: SupportSettings) -> Iterator[Desk]:
    security = fast_test_settings()
    app = create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                     clock=clock, security_settings=security, escalation_interval_s=None,
                     support_settings=support_settings)
    operators = {name: provision_operator(session_factory, role, username=name,
                                          settings=security, now=clock.now())
                 for name, role in OPERATORS.items()}
    incident_id = open_incident(session_factory, clock)
    with TestClient(app) as client:
        yield Desk(app, client, session_factory, clock, operators, incident_id)
