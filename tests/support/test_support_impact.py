"""A ticket with an account shows that customer's own impact, read from the venue's journal:
the order the halt refused and the resting order caught in the halted market."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from support_desk import open_incident

from haltguard.app.operations import create_app
from haltguard.common.clock import ManualClock
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.demo import set_up_demo
from haltguard.gateway.runtime import VenueRuntime
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.types import MarketState, Side
from haltguard.web.settings import Settings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

REFUSED_ACCOUNT = 7
RESTING_ACCOUNT = 8


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[VenueRuntime]:
    venue_runtime = VenueRuntime(tmp_path / "venue").start()
    set_up_demo(venue_runtime)
    yield venue_runtime
    venue_runtime.stop()


def test_a_customers_ticket_shows_their_refused_and_resting_orders(
    tmp_path: Path, engine: Engine, session_factory: sessionmaker[Session],
    runtime: VenueRuntime,
) -> None:
    venue = InProcessVenueControl(runtime)
    clock = ManualClock(datetime.now(UTC) - timedelta(seconds=1))
    security = fast_test_settings()
    app = create_app(Settings(database_url="unused", migrate_on_start=False,
                              data_dir=tmp_path / "venue"), engine=engine, clock=clock,
                     venue_control=venue, security_settings=security,
                     escalation_interval_s=None)
    sam = provision_operator(session_factory, Role.SUPPORT, username="sam", settings=security,
                             now=clock.now())
    runtime.submit(PlaceOrder("BTC-JPY", RESTING_ACCOUNT, Side.BUY, 10, 1_000_000)).result()
    incident_id = open_incident(session_factory, clock)
    venue.set_market_state("BTC-JPY", MarketState.HALTED, actor="operator:alice",
                           reason="engine stalled", incident_id=f"INC-{incident_id}")
    runtime.submit(PlaceOrder("BTC-JPY", REFUSED_ACCOUNT, Side.BUY, 10, 15_000_000)).result()
    clock.advance(timedelta(seconds=2))
    with TestClient(app) as client:
        impacts = {}
        for account in (REFUSED_ACCOUNT, RESTING_ACCOUNT):
            accepted = client.post("/api/support/public/tickets", json={
                "subject": "注文", "body": "BTC-JPY の注文が通りません",
                "customer_email": f"a{account}@example.com", "account": account})
            ticket_id = int(accepted.json()["ref"].removeprefix("SUP-"))
            impacts[account] = client.get(f"/api/support/tickets/{ticket_id}/impact",
                                          headers=sam.headers).json()
    refused = impacts[REFUSED_ACCOUNT]
    assert refused["known"] is True
    assert refused["refused_orders_total"] == 1
    assert refused["refused_orders"][0]["market"] == "BTC-JPY"
    resting = impacts[RESTING_ACCOUNT]
    assert resting["refused_orders_total"] == 0
    assert resting["resting_orders_total"] == 1
    assert resting["resting_orders_in_halted_markets"][0]["market_state"] == "halted"
