"""`serve` with `reference.markets` set: other exchanges' prices (read through CCXT from a
local server in bitFlyer's format) against the demo venue's own trades, into detection; a
market far from the rest of the world is halted by the shipped rule, through the venue
contract, with an incident."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

from exchange_replay import ExchangeReplay, Print

from haltguard.app.config import load_config
from haltguard.app.drill_system import own_system
from haltguard.drill.surface import database
from haltguard.incidents import service as incidents
from haltguard.venue.types import MarketState

NS = 1_000_000_000
FAR_FUTURE_NS = 4_000_000_000 * NS


def _prints(price: str) -> list[Print]:
    now = time.time_ns()
    return [Print(n, now - (10 - n) * NS, Decimal(price), Decimal("0.01"), "buy")
            for n in range(1, 10)]


def test_a_market_far_from_the_reference_markets_is_halted_with_an_incident(
    tmp_path: Path,
) -> None:
    # the demo's BTC-JPY trades around 15,000,000 JPY; the rest of the world says 7,500,000
    with ExchangeReplay({"bitflyer": _prints("7500000")}) as first, \
            ExchangeReplay({"bitflyer": _prints("7510000")}) as second:
        first.now_ns = second.now_ns = FAR_FUTURE_NS
        config = load_config(None, environ={}, overrides={
            "data_dir": str(tmp_path / "data"), "venue.process": False,
            "venue.admin_token": "reference-watch-token-0123456789",
            "reference.markets": [f"bitflyer:BTC/JPY=BTC-JPY@{first.url}",
                                  f"bitflyer:BTC/JPY=BTC-JPY@{second.url}"],
            "reference.poll_interval_s": 0.2, "reference.hold_s": 1.0,
            "reference.stale_s": 10.0})
        with own_system(config, lambda _line: None) as system:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if system.venue_control.market_states()["BTC-JPY"] is MarketState.HALTED:
                    break
                time.sleep(0.1)
            states = system.venue_control.market_states()
            assert system.detection is not None and system.detection.flush(10)
            with database(system) as session:
                titles = [i.title for i in session.scalars(incidents.list_query())]
    assert states["BTC-JPY"] is MarketState.HALTED
    assert states["ETH-JPY"] is MarketState.OPEN, "only the diverging market is halted"
    assert any("BTC-JPY is" in title and "reference markets" in title for title in titles)
