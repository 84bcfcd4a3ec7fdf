"""What the console shows of the venue: read from the journal, or, where it cannot be read,
from the venue control."""

from __future__ import annotations

import time
from pathlib import Path

from console_support import rest_orders

from haltguard.console.venue_watch import VenueWatch
from haltguard.gateway.control import InProcessVenueControl
from haltguard.venue.types import MarketState


def test_the_journal_gives_each_markets_state_who_changed_it_and_its_resting_orders(
    venue_dir: Path, venue: InProcessVenueControl,
) -> None:
    rest_orders(venue, "ETH-JPY", 7)
    venue.set_market_state("ETH-JPY", MarketState.HALTED, actor="operator:carol",
                           reason="test", incident_id="INC-9")
    watch = VenueWatch(venue_dir, venue)
    try:
        row = None
        for _ in range(100):
            row = watch.summary().market("ETH-JPY")
            if row is not None and row.state == "halted":
                break
            time.sleep(0.05)
    finally:
        watch.stop()
    assert row is not None and row.state == "halted"
    assert row.by == "operator:carol" and row.since_ns > 0 and row.resting_orders == 7


def test_without_a_readable_journal_the_overview_still_shows_the_venues_market_states(
    tmp_path: Path, venue: InProcessVenueControl,
) -> None:
    watch = VenueWatch(tmp_path / "elsewhere", venue)
    try:
        summary = watch.summary()
    finally:
        watch.stop()
    assert not summary.readable and "no journal" in summary.problem
    assert {row.market: row.state for row in summary.markets}["BTC-JPY"] == "open"
    assert all(row.resting_orders is None for row in summary.markets)
