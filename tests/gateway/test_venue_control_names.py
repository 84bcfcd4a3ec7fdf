"""A market or asset name reaches the venue only in the venue's own grammar: the HTTP adapter
puts names into admin-API paths, where ``JPY/../BTC``, ``?`` or ``#`` would address another
resource with the admin token. Both adapters refuse such a name before anything is sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gateway_support import LiveServer

from haltguard.gateway.control import HttpVenueControl, InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.venue.control import VenueControl, VenueControlError
from haltguard.venue.types import MarketState

BAD_ASSETS = ["JPY/../BTC", "BTC/withdrawals-frozen#", "BTC?frozen=1", "BTC\n", "btc", "",
              "B" * 17, "BTC%2F"]
BAD_MARKETS = ["ETH-JPY/../../markets/BTC-JPY", "BTC-JPY#", "BTC-JPY?x", "BTC-JPY\r\n",
               "BTCJPY", "btc-jpy", "-", "A-" + "B" * 31]


@pytest.fixture(params=["in_process", "http"])
def control(request: pytest.FixtureRequest, runtime: VenueRuntime) -> Iterator[VenueControl]:
    if request.param == "in_process":
        yield InProcessVenueControl(runtime)
        return
    with LiveServer(runtime) as server, HttpVenueControl(server.url, "test-admin-token") as http:
        yield http


@pytest.mark.parametrize("asset", BAD_ASSETS)
def test_a_withdrawal_freeze_of_a_malformed_asset_is_refused_and_freezes_nothing(
    control: VenueControl, runtime: VenueRuntime, asset: str
) -> None:
    before = runtime.status().last_seq

    with pytest.raises(VenueControlError, match="asset code") as refused:
        control.freeze_withdrawals(asset, True, actor="eve", reason="r")

    assert "nothing was sent to the venue" in str(refused.value)
    assert runtime.read(lambda venue: venue.frozen_assets) == frozenset()
    assert runtime.status().last_seq == before


@pytest.mark.parametrize("market", BAD_MARKETS)
def test_a_state_change_or_resume_plan_for_a_malformed_market_is_refused_before_the_venue(
    control: VenueControl, runtime: VenueRuntime, market: str
) -> None:
    before = runtime.status().last_seq

    with pytest.raises(VenueControlError, match="market symbol"):
        control.set_market_state(market, MarketState.HALTED, actor="eve", reason="r")
    with pytest.raises(VenueControlError, match="market symbol"):
        control.start_resume_plan(market, [], actor="eve", reason="r")
    with pytest.raises(VenueControlError, match="market symbol"):
        control.cancel_all(market=market, actor="eve", reason="r")

    assert set(control.market_states().values()) == {MarketState.OPEN}
    assert runtime.status().last_seq == before


def test_well_formed_names_still_reach_the_venue_over_http(runtime: VenueRuntime) -> None:
    with LiveServer(runtime) as server, HttpVenueControl(server.url, "test-admin-token") as http:
        http.freeze_withdrawals("BTC", True, actor="bob", reason="wallet")
        http.set_market_state("ETH-JPY", MarketState.HALTED, actor="bob", reason="r")

    assert runtime.read(lambda venue: venue.frozen_assets) == frozenset({"BTC"})
    assert runtime.read(lambda venue: venue.market_states())["ETH-JPY"] is MarketState.HALTED
