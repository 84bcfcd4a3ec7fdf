"""Fixtures for incident tests: a controllable clock and a real in-process venue."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from incident_helpers import ONCALL_YAML, START, Api, Mailbox
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.db.session import session_scope
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.demo import set_up_demo
from haltguard.gateway.runtime import VenueRuntime
from haltguard.incidents import paging as incident_paging
from haltguard.responders import service as responders
from haltguard.responders.service import ManualClock, ResponderSettings, SmtpSettings
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.web.settings import Settings


@pytest.fixture(autouse=True)
def pages_in_the_timeline() -> None:
    """Page events land in the incident timeline, as the composition root subscribes them at
    start-up (the service-level tests here run without an app)."""
    incident_paging.subscribe()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[InProcessVenueControl]:
    """The real venue runtime on a temporary journal, with the demo JPY markets open."""
    runtime = VenueRuntime(tmp_path / "venue").start()
    set_up_demo(runtime)
    yield InProcessVenueControl(runtime)
    runtime.stop()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """A local SMTP server the pages are sent to (with the paging settings ``.settings``)."""
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
def oncall(session_factory: sessionmaker[Session], clock: ManualClock, mailbox: Mailbox) -> Mailbox:
    """Two people on call (tanaka, then suzuki after 5 minutes) for every incident."""
    with session_scope(session_factory) as session:
        responders.apply_config(session, responders.parse_config_yaml(ONCALL_YAML),
                                actor="system:test-setup", clock=clock)
    return mailbox


# username -> role: two commanders so four-eyes approvals can be shown.
OPERATORS = {
    "alice": Role.RESPONDER,
    "carol": Role.INCIDENT_COMMANDER,
    "dave": Role.INCIDENT_COMMANDER,
    "sam": Role.SUPPORT,
    "vic": Role.VIEWER,
}


@pytest.fixture
def api(
    engine: Engine, session_factory: sessionmaker[Session], clock: ManualClock,
    venue: InProcessVenueControl,
) -> Iterator[Api]:
    settings = Settings(database_url=str(engine.url), migrate_on_start=False)
    app = create_app(settings, venue_control=venue, clock=clock, engine=engine,
                     security_settings=fast_test_settings())
    operators = {
        name: provision_operator(session_factory, role, username=name, now=clock.now())
        for name, role in OPERATORS.items()
    }
    with TestClient(app, base_url="https://testserver") as client:
        yield Api(client, app, operators)


SERVER_START_S_MAX = 10.0


@pytest.fixture
def server_url(
    engine: Engine, clock: ManualClock, venue: InProcessVenueControl, oncall: Mailbox
) -> Iterator[str]:
    """The operations app served by uvicorn on a free local port, in a thread."""
    app = create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                     venue_control=venue, clock=clock, responder_settings=oncall.settings,
                     security_settings=fast_test_settings())
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S_MAX
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(SERVER_START_S_MAX)
