"""The drill's toolkit on a served demo system: the lost-order check finds an order the
journal does not hold, the ledger check replays a copy, and a SEV1 resume is played by two
different operators."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from haltguard.app.system import System
from haltguard.drill.scenario import DRILL_ACTOR
from haltguard.drill.toolkit import (
    DRILL_SECOND_ACTOR,
    AcknowledgedOrder,
    DrillError,
    OrderLoad,
    database,
    ledger_check,
    lost_orders,
    play_resume,
    venue_api_url,
    wait_for,
    wait_trading,
)
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import HaltRequest, IncidentCreate, TimelineKind
from haltguard.incidents.rules import Category, Severity


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, make_drill_system: Any
           ) -> Iterator[System]:
    lines: list[str] = []
    data_dir = tmp_path_factory.mktemp("toolkit") / "data"
    with make_drill_system(data_dir, lines, venue_process=False) as system:
        yield system


def test_wait_for_says_what_it_awaited_and_what_it_last_saw() -> None:
    with pytest.raises(DrillError) as raised:
        wait_for(lambda: None, 0.1, "the venue to come back", seen=lambda: "still down")
    assert str(raised.value) == ("waited 0.1 s for the venue to come back; last seen: "
                                 "still down")


def test_lost_orders_finds_an_acknowledged_order_the_journal_does_not_hold(
    served: System,
) -> None:
    load = OrderLoad(venue_api_url(served), orders=20, prefix="drill-test").start()
    try:
        load.wait_done(15)
    finally:
        load.stop()
    acknowledged = load.acknowledged
    forged = AcknowledgedOrder(seq=acknowledged[0].seq, order_id=1,
                               client_order_id="never-sent", market=acknowledged[0].market,
                               account=acknowledged[0].account)
    checked = lost_orders(served, [*acknowledged, forged])
    assert checked.checked == 21
    assert checked.lost == [forged]
    assert checked.venue_last_seq >= max(order.seq for order in acknowledged)


def test_ledger_check_replays_a_copy_of_the_journal(served: System) -> None:
    check = ledger_check(served)
    assert check.ok, check.detail
    assert check.last_seq > 0 and check.state_hash


def test_sev1_resume_is_played_by_two_different_operators(served: System) -> None:
    with database(served) as session:
        incident = incident_flows.open_incident(
            session, IncidentCreate(title="drill toolkit test", category=Category.SOFTWARE_BUG,
                                    severity=Severity.SEV1, affected_markets=["ETH-JPY"]),
            actor=DRILL_ACTOR, clock=served.operations.state.clock)
        incident_flows.halt_markets(session, served.venue_control, incident,
                                    HaltRequest(markets=["ETH-JPY"], reason="test"),
                                    actor=DRILL_ACTOR, now=served.operations.state.clock.now())
        incident_id = incident.id
    outcome = play_resume(served, incident_id, ["ETH-JPY"], reason="test resume")
    assert outcome.approvals == 1
    wait_trading(served, ["ETH-JPY"], 15)
    with database(served) as session:
        entries = incidents.timeline(session, incident_id)
    requested = [e for e in entries if e.kind == TimelineKind.APPROVAL_REQUESTED]
    decided = [e for e in entries if e.kind == TimelineKind.APPROVAL_DECIDED]
    assert [e.actor for e in requested] == [DRILL_ACTOR]
    assert [e.actor for e in decided] == [DRILL_SECOND_ACTOR]
    assert any(e.kind == TimelineKind.RESUME and e.details.get("ok") for e in entries)
