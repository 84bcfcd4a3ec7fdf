"""The drill's checks on a served demo system: the lost-order check finds an order the
journal does not hold, and the ledger check replays a copy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from haltguard.app.system import System
from haltguard.drill.checks import ledger_check, lost_orders
from haltguard.drill.load import AcknowledgedOrder, OrderLoad, venue_api_url


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, make_drill_system: Any
           ) -> Iterator[System]:
    lines: list[str] = []
    data_dir = tmp_path_factory.mktemp("checks") / "data"
    with make_drill_system(data_dir, lines, venue_process=False) as system:
        yield system


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
