"""Fixtures for status page tests: a controllable clock, a real in-process venue with the
demo JPY markets, and the operations app with operators of each role that matters."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from status_support import ONCALL_YAML, START, Mailbox, StatusApi

from haltguard.app.operations import create_app
from haltguard.db.session import session_scope
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.demo import set_up_demo
from haltguard.gateway.runtime import VenueRuntime
from haltguard.responders import service as responders
from haltguard.responders.service import ManualClock, ResponderSettings, SmtpSettings
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.status.settings import StatusSettings
from haltguard.web.settings import Settings

OPERATORS = {
    "vic": Role.VIEWER,
    "sam": Role.SUPPORT,
    "alice": Role.RESPONDER,
    "carol": Role.INCIDENT_COMMANDER,
}
PAGE_URL = "https://status.example.test/"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[InProcessVenueControl]:
    """The real venue runtime on a temporary journal, with BTC/ETH/XRP-JPY open."""
    runtime = VenueRuntime(tmp_path / "venue").start()
    set_up_demo(runtime)
    yield InProcessVenueControl(runtime)
    runtime.stop()


@pytest.fixture
def status_settings() -> StatusSettings:
    return StatusSettings(url=PAGE_URL)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """A local SMTP server pages are sent to (with the paging settings ``.settings``)."""
    inbox = Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.settings = ResponderSettings(
        smtp=SmtpSettings(host="127.0.0.1", port=port),
        ack_secret=b"a-test-secret-that-is-long-enough-for-links",
    )
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def oncall(session_factory: sessionmaker[Session], clock: ManualClock) -> None:
    with session_scope(session_factory) as session:
        responders.apply_config(session, responders.parse_config_yaml(ONCALL_YAML),
                                actor="system:test-setup", clock=clock)


@pytest.fixture
def api(
    engine: Engine, session_factory: sessionmaker[Session], clock: ManualClock,
    venue: InProcessVenueControl, status_settings: StatusSettings, *,
    request: pytest.FixtureRequest,
) -> Iterator[StatusApi]:
    """The app; with the test's ``mailbox``, its pages go to that server."""
    paging = request.getfixturevalue("mailbox").settings \
        if "mailbox" in request.fixturenames else ResponderSettings()
    app = create_app(Settings(database_url=str(engine.url), migrate_on_start=False),
                     venue_control=venue, clock=clock, engine=engine,
                     security_settings=fast_test_settings(), responder_settings=paging,
                     status_settings=status_settings, escalation_interval_s=None)
    operators = {name: provision_operator(session_factory, role, username=name, now=clock.now())
                 for name, role in OPERATORS.items()}
    with TestClient(app, base_url="https://testserver") as client:
        yield StatusApi(client, app, operators, clock, paging)
