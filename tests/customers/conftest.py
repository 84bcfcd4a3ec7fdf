"""Fixtures for customers' protection: one bench per test module (``customer_support``):
the venue, the operations service on a fresh copy of the migrated SQLite template, the
gateway. Building the service's app and its first request cost about two seconds, so the
tests of a module share one; each test works on accounts of its own
(:meth:`Bench.fresh_account`) and compares counters before and after. Nothing autouse."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from customer_support import HOLD_S, NOW, REVIEW_LIMIT_BTC_MINOR, Bench
from fastapi.testclient import TestClient

from haltguard.app.operations import create_app
from haltguard.app.system import SystemApp
from haltguard.app.venue_app import create_venue_app
from haltguard.common.clock import ManualClock
from haltguard.customers.flows import customer_front
from haltguard.customers.settings import AuthMode, CustomerSettings
from haltguard.db.keys import Keyring, KeySettings
from haltguard.db.session import make_engine, make_session_factory
from haltguard.detection.signals import Signal
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.demo import set_up_demo
from haltguard.gateway.fastlane import with_fast_lane
from haltguard.gateway.runtime import VenueRuntime
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.web.settings import Settings

OPERATORS = {"sam": Role.SUPPORT, "carol": Role.INCIDENT_COMMANDER, "vic": Role.VIEWER}
SETTINGS = CustomerSettings(auth=AuthMode.KEYS, address_hold_s=HOLD_S,
                            withdrawal_review_minor=(("BTC", REVIEW_LIMIT_BTC_MINOR),),
                            signature_failures_max=3, official_domains=("exchange.example",),
                            official_senders=("no-reply@exchange.example",))
MODULE_AUDIT_KEY = bytes.fromhex("c3" * 32)
MODULE_SECRETS_KEY = bytes.fromhex("d4" * 32)


@pytest.fixture(scope="module")
def bench(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    base = tmp_path_factory.mktemp("customers")
    database = base / "haltguard.sqlite3"
    shutil.copyfile(sqlite_template, database)
    engine = make_engine(f"sqlite:///{database}", keyring=Keyring(KeySettings(
        data_dir=base, audit_key=MODULE_AUDIT_KEY, secrets_key=MODULE_SECRETS_KEY,
        anchor_file=base / "audit-anchor.log")))
    runtime = VenueRuntime(base / "venue").start()
    set_up_demo(runtime)
    clock = ManualClock(NOW)
    signals: list[Signal] = []
    session_factory = make_session_factory(engine)
    operations = create_app(
        Settings(database_url=str(engine.url), data_dir=base, migrate_on_start=False),
        venue_control=InProcessVenueControl(runtime), clock=clock, engine=engine,
        security_settings=fast_test_settings(), customer_settings=SETTINGS,
        escalation_interval_s=None, signal_sink=signals.append)
    venue_front = with_fast_lane(create_venue_app(runtime, "admin-token-for-tests"))
    front = customer_front(venue_front, operations, host="0.0.0.0", demo=False,
                           receive_s_max=5.0)
    operators = {name: provision_operator(session_factory, role, username=name,
                                          now=clock.now())
                 for name, role in OPERATORS.items()}
    try:
        with TestClient(SystemApp(operations, front), base_url="https://testserver") as client:
            yield Bench(client, clock, runtime, operators, session_factory, signals,
                        base / "venue")
    finally:
        runtime.stop()
        engine.dispose()
