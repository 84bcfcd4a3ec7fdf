"""Compensation at the console, end to end on a real venue: one operator proposes a run, a
second approves exactly the digest shown (the proposer may not), and the payout credits the
affected account in the venue's ledger."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from console_support import SQLITE_ONLY, desk
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.compensation import service as compensation
from haltguard.compensation.models import RunState
from haltguard.compensation.settings import CompensationSettings
from haltguard.console.views import stop as stop_console
from haltguard.db.session import session_scope
from haltguard.gateway.control import InProcessVenueControl
from haltguard.incidents import flows as incident_flows
from haltguard.incidents.models import IncidentCreate
from haltguard.incidents.rules import Category, Severity
from haltguard.responders.service import ManualClock
from haltguard.security.testing import ProvisionedOperator, fast_test_settings
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.types import MarketState, Side
from haltguard.web.settings import Settings

pytestmark = SQLITE_ONLY

GOODWILL_YAML = """\
id: goodwill-jpy
version: 1
kind: fixed_amount
description:
  ja: 障害の影響を受けたお客様に一律 1,000 円をお支払いします。
  en: Every affected customer receives 1,000 yen.
currency: JPY
amount_minor: 10000000
"""
REFUSED_ACCOUNT = 3
GOODWILL_MINOR = 10_000_000
PAYOUT_WAIT_S_MAX = 20.0


@pytest.fixture
def comp_app(engine: Engine, clock: ManualClock, venue: InProcessVenueControl,
             venue_dir: Path, tmp_path: Path) -> Iterator[FastAPI]:
    """The console's app with a policy directory holding the goodwill policy."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "goodwill.yaml").write_text(GOODWILL_YAML, encoding="utf-8")
    chosen = CompensationSettings(journal_dir=venue_dir, reference_dir=tmp_path / "references",
                                  policies_dir=policies)
    built = create_app(Settings(database_url=str(engine.url), migrate_on_start=False,
                                data_dir=venue_dir),
                       venue_control=venue, clock=clock, engine=engine,
                       security_settings=fast_test_settings(), escalation_interval_s=None,
                       compensation_settings=chosen)
    yield built
    stop_console(built)


def _halt_refuses_an_order(session_factory: sessionmaker[Session],
                           venue: InProcessVenueControl, clock: ManualClock) -> tuple[int, int]:
    """An incident that halted BTC-JPY and an order the halt refused; (incident, cut-off)."""
    with session_scope(session_factory) as session:
        incident = incident_flows.open_incident(
            session, IncidentCreate(title="Matching engine stalled",
                                    category=Category.SOFTWARE_BUG, severity=Severity.SEV2,
                                    affected_markets=["BTC-JPY"]), actor="carol", clock=clock)
        incident_id, ref = incident.id, incident.ref
    venue.set_market_state("BTC-JPY", MarketState.HALTED, actor="operator:carol",
                           reason="engine stalled", incident_id=ref)
    venue.runtime.submit(PlaceOrder("BTC-JPY", REFUSED_ACCOUNT, Side.BUY, 10,
                                    15_000_000)).result()
    cutoff_seq = venue.runtime.read(lambda state: state.last_seq)
    return incident_id, cutoff_seq


def _jpy(venue: InProcessVenueControl, account: int) -> int:
    balances = venue.runtime.read(lambda state: state.balances(account))
    available, locked = balances.get("JPY", (0, 0))
    return int(available + locked)


def test_one_operator_proposes_a_second_approves_the_exact_digest_and_the_payout_credits(
    comp_app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    session_factory: sessionmaker[Session], venue: InProcessVenueControl,
) -> None:
    incident_id, cutoff_seq = _halt_refuses_an_order(session_factory, venue, clock)
    before = _jpy(venue, REFUSED_ACCOUNT)
    now = datetime.now(UTC).replace(microsecond=0)
    carol = desk(comp_app, operators["carol"], clock)
    assert carol.login().status_code == 303
    listing = carol.get("/console/compensation").text
    assert 'value="goodwill.yaml"' in listing
    missing_cutoff = carol.post("/console/compensation", {
        "incident_id": str(incident_id), "policies": "goodwill.yaml", "cutoff": ""},
        token_from="/console/compensation")
    assert missing_cutoff.status_code == 422
    proposed = carol.post("/console/compensation", {
        "incident_id": str(incident_id), "policies": "goodwill.yaml",
        "cutoff": str(cutoff_seq), "from_time": (now - timedelta(hours=1)).isoformat(),
        "to_time": (now + timedelta(hours=1)).isoformat(), "note": "goodwill for the halt"},
        token_from="/console/compensation")
    assert proposed.status_code == 303, proposed.text
    run_path = proposed.headers["location"].split("?")[0]
    run_page = carol.get(run_path)
    assert run_page.status_code == 200, run_page.text
    digest_found = re.search(r'name="digest" value="([0-9a-f]+)"', run_page.text)
    assert digest_found is not None
    digest = digest_found.group(1)
    run_id = int(run_path.rsplit("/", 1)[1])
    own = carol.post(f"{run_path}/approve", {"digest": digest}, token_from=run_path)
    assert own.status_code == 403  # never the proposer
    dave = desk(comp_app, operators["dave"], clock)
    assert dave.login().status_code == 303
    other = dave.post(f"{run_path}/approve", {"digest": "0" * len(digest)}, token_from=run_path)
    assert other.status_code in (409, 422), other.text  # not the digest reviewed
    with session_factory() as session:
        run = compensation.run_read(session, compensation.get_run(session, run_id))
        assert run.state == RunState.COMPUTED
    approved = dave.post(f"{run_path}/approve", {"digest": digest}, token_from=run_path)
    assert approved.status_code == 303, approved.text
    paid = dave.post(f"{run_path}/pay", {}, token_from=run_path)
    assert paid.status_code == 303, paid.text
    deadline = time.monotonic() + PAYOUT_WAIT_S_MAX
    while True:
        with session_factory() as session:
            payout = compensation.payout_read(session, run_id)
        if payout.finished_at or payout.last_error:
            break
        assert time.monotonic() < deadline, "the payout did not finish"
        time.sleep(0.05)
    assert payout.last_error == "" and payout.lines_paid == payout.lines_total == 1
    assert _jpy(venue, REFUSED_ACCOUNT) == before + GOODWILL_MINOR
    assert 'data-run-state="paid"' in dave.get(run_path).text
