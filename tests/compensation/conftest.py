"""Fixtures for the compensation workflow: a real venue on a temporary journal (the demo's
funded accounts), an incident, a local SMTP server, the policy and reference directories,
and the operations app with operators of each role. Nothing here is autouse."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from comp_service_support import (
    REFERENCE_CSV,
    TEST_POLICIES,
    Api,
    Mailbox,
    Setup,
)
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.compensation.settings import CompensationSettings
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.demo import set_up_demo
from haltguard.gateway.runtime import VenueRuntime
from haltguard.notify.settings import NotifySettings
from haltguard.responders.service import ManualClock, SmtpSettings
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.web.settings import Settings

OPERATORS = {
    "alice": Role.RESPONDER,  # proposes
    "carol": Role.INCIDENT_COMMANDER,  # approves, pays
    "dave": Role.INCIDENT_COMMANDER,
    "sam": Role.SUPPORT,  # reads, explains to a customer
    "vic": Role.VIEWER,
}


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[VenueRuntime]:
    """The real venue runtime on a temporary journal, demo accounts 1..50 funded."""
    venue_runtime = VenueRuntime(tmp_path / "venue").start()
    set_up_demo(venue_runtime)
    yield venue_runtime
    venue_runtime.stop()


@pytest.fixture
def venue(runtime: VenueRuntime) -> InProcessVenueControl:
    return InProcessVenueControl(runtime)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    inbox = Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.smtp = SmtpSettings(host="127.0.0.1", port=port)
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def comp_settings(tmp_path: Path) -> CompensationSettings:
    """Policies and a reference CSV written where a run may name them."""
    policies = tmp_path / "policies"
    references = tmp_path / "references"
    policies.mkdir()
    references.mkdir()
    for name, text in TEST_POLICIES.items():
        (policies / name).write_text(text, encoding="utf-8")
    (references / "btc_trades.csv").write_text(REFERENCE_CSV, encoding="utf-8")
    return CompensationSettings(journal_dir=tmp_path / "venue", reference_dir=references,
                                policies_dir=policies, payout_batch_lines_max=7)


@pytest.fixture
def setup(
    session_factory: sessionmaker[Session], runtime: VenueRuntime, venue: InProcessVenueControl,
    comp_settings: CompensationSettings, mailbox: Mailbox,
) -> Setup:
    return Setup.make(session_factory, runtime, venue, comp_settings, mailbox)


@pytest.fixture
def api(
    engine: Engine, session_factory: sessionmaker[Session], venue: InProcessVenueControl, *,
    comp_settings: CompensationSettings, mailbox: Mailbox, setup: Setup,
) -> Iterator[Api]:
    clock = ManualClock(setup.now)
    app = create_app(
        Settings(database_url=str(engine.url), data_dir=comp_settings.journal_dir,
                 migrate_on_start=False), venue_control=venue,
        clock=clock, engine=engine, security_settings=fast_test_settings(),
        notify_settings=NotifySettings(smtp=mailbox.smtp), compensation_settings=comp_settings,
        escalation_interval_s=None,
    )
    operators = {name: provision_operator(session_factory, role, username=name, now=clock.now())
                 for name, role in OPERATORS.items()}
    with TestClient(app, base_url="https://testserver") as client:
        yield Api(client, operators, setup)
