"""Fixtures of the console tests: the operations app over a real in-process venue whose
journal the console follows, and operators of every role with real passwords and TOTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_support import START
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.console.views import stop as stop_console
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.demo import set_up_demo
from haltguard.gateway.runtime import VenueRuntime
from haltguard.responders.service import ManualClock
from haltguard.security.permissions import Role
from haltguard.security.testing import (
    ProvisionedOperator,
    fast_test_settings,
    provision_operator,
)
from haltguard.web.settings import Settings

OPERATORS = {
    "carol": Role.INCIDENT_COMMANDER,
    "dave": Role.INCIDENT_COMMANDER,
    "sam": Role.SUPPORT,
    "vic": Role.VIEWER,
    "ada": Role.ADMIN,
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def venue_dir(tmp_path: Path) -> Path:
    return tmp_path / "venue"


@pytest.fixture
def venue(venue_dir: Path) -> Iterator[InProcessVenueControl]:
    """The real venue runtime on a temporary journal, with the demo JPY markets open."""
    runtime = VenueRuntime(venue_dir).start()
    set_up_demo(runtime)
    yield InProcessVenueControl(runtime)
    runtime.stop()


@pytest.fixture
def app(engine: Engine, clock: ManualClock, venue: InProcessVenueControl,
        venue_dir: Path) -> Iterator[FastAPI]:
    settings = Settings(database_url=str(engine.url), migrate_on_start=False,
                        data_dir=venue_dir)
    built = create_app(settings, venue_control=venue, clock=clock, engine=engine,
                       security_settings=fast_test_settings(), escalation_interval_s=None)
    yield built
    stop_console(built)


@pytest.fixture
def operators(session_factory: sessionmaker[Session],
              clock: ManualClock) -> dict[str, ProvisionedOperator]:
    return {name: provision_operator(session_factory, role, username=name, now=clock.now())
            for name, role in OPERATORS.items()}
