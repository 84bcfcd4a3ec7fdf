"""A plain crossing limit order, matched on ``Venue._order``'s short path, ends exactly as the
same order does on the general path (``_place_limit_fully``) every other limit order takes.

The short path settles the taker and rests its remainder itself, so this pins it to the
general one: the same flows are run twice, once as they are and once with a client order id
on every limit order (which sends each through the general path), and every command's
events (client ids aside), every balance and the book must come out the same. The flows
sweep several levels with few accounts (self-trades, accounts running short) and a tight
breaker (band refusals and trips); two scenarios sweep a limit order into the band itself.
"""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_replay_workloads import ACCOUNTS, MS, tight_breaker
from venue_support import MARKET, SECOND, Harness, funded

from haltguard.venue.commands import Command, PlaceOrder
from haltguard.venue.engine import Venue
from haltguard.venue.events import Event, OrderAccepted, OrderCancelled, OrderRejected
from haltguard.venue.markets import BreakerConfig
from haltguard.venue.types import CancelReason, OrderType
from haltguard.venue.workload import (
    BASE_ASSET,
    QUOTE_ASSET,
    STRESS_PROFILES,
    WORKLOAD_MARKET,
    setup_commands,
    stress_flow,
)


def _with_client_id(command: Command, seq: int) -> Command:
    if type(command) is PlaceOrder and command.order_type is OrderType.LIMIT:
        return msgspec.structs.replace(command, client_order_id=f"c{seq}")
    return command


def _without_client_id(event: Event) -> Event:
    if isinstance(event, (OrderAccepted, OrderRejected)):
        return msgspec.structs.replace(event, client_order_id="")
    return event


def _run_both(profile: str, seed: int, count: int) -> tuple[Venue, Venue, set[str]]:
    setup = setup_commands(ACCOUNTS, breaker=tight_breaker())
    flow = list(stress_flow(seed, count, STRESS_PROFILES[profile], first_seq=len(setup) + 1,
                            accounts=ACCOUNTS))
    short, general = Venue(), Venue()
    kinds: set[str] = set()
    for seq, command in enumerate([*setup, *flow], 1):
        ts = seq * MS
        short_events = short.apply(seq, ts, command)
        general_events = general.apply(seq, ts, _with_client_id(command, seq))
        assert [_without_client_id(e) for e in general_events] == short_events, seq
        kinds.update(type(event).__name__ for event in short_events)
        kinds.update(f"cancelled: {e.reason}" for e in short_events if type(e) is OrderCancelled)
    return short, general, kinds


def _assert_same_money_and_book(short: Venue, general: Venue) -> None:
    for account in range(ACCOUNTS + 1):
        assert short.balances(account) == general.balances(account), account
    assert short.depth(WORKLOAD_MARKET, 1 << 20) == general.depth(WORKLOAD_MARKET, 1 << 20)
    for account in range(1, ACCOUNTS + 1):
        assert short.open_orders(account) == [
            msgspec.structs.replace(view, client_order_id="")
            for view in general.open_orders(account)
        ]
    assert short.check_invariants() == general.check_invariants() == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    profile=st.sampled_from(sorted(STRESS_PROFILES)),
    seed=st.integers(0, 10_000),
    count=st.integers(50, 1_200),
)
def test_a_plain_crossing_limit_order_ends_as_it_does_on_the_general_path(
    profile: str, seed: int, count: int
) -> None:
    short, general, _ = _run_both(profile, seed, count)
    _assert_same_money_and_book(short, general)


def test_the_compared_flows_reach_self_trades_band_refusals_and_trips() -> None:
    """The property above is only worth something if its flows reach the early stops."""
    short, general, kinds = _run_both("mixed", 7, 4_000)
    _assert_same_money_and_book(short, general)
    assert {"Trade", "CircuitBreakerTripped", "IndicativeUncross"} <= kinds
    early_stops = {CancelReason.SELF_TRADE, CancelReason.PRICE_BAND}
    assert {f"cancelled: {reason}" for reason in early_stops} <= kinds
    fee_income = short.balances(0)
    assert fee_income.get(QUOTE_ASSET.code, (0, 0))[0] > 0
    assert BASE_ASSET.code not in fee_income


def _sweep_into_the_band(
    breaker: BreakerConfig, client_order_id: str
) -> tuple[list[Event], Harness]:
    """Asks at 1001..1003 inside a 10% band around 1000, and one at 1200 outside it; a buy
    for 10 lots at 1300 takes the six inside and then meets the band."""
    harness = funded(accounts=3, breaker=breaker)
    harness.sell(1, 1, 1000)
    harness.buy(2, 1, 1000)  # the first trade: the static reference is 1000
    for price in (1001, 1002, 1003, 1200):
        harness.sell(1, 2, price)
    return harness.buy(3, 10, 1300, client_order_id=client_order_id), harness


def _same_on_both_paths(breaker: BreakerConfig) -> tuple[list[Event], Harness]:
    short_events, short = _sweep_into_the_band(breaker, "")
    general_events, general = _sweep_into_the_band(breaker, "sweep-1")
    assert [_without_client_id(e) for e in general_events] == short_events
    for account in range(4):
        assert short.venue.balances(account) == general.venue.balances(account)
    assert short.venue.depth(MARKET) == general.venue.depth(MARKET)
    return short_events, short


def test_a_sweep_that_trips_the_breaker_rests_its_remainder_in_the_auction() -> None:
    breaker = BreakerConfig(band_bps=[1_000], pause_ns=60 * SECOND, reference="static")
    events, harness = _same_on_both_paths(breaker)
    assert [type(e).__name__ for e in events] == [
        "OrderAccepted", "Trade", "Trade", "Trade",
        "CircuitBreakerTripped", "MarketStateChanged", "IndicativeUncross",
    ]
    [resting] = harness.venue.open_orders(3)
    assert (resting.price, resting.remaining) == (1300, 4)


def test_a_sweep_refused_by_the_band_in_a_limit_state_cancels_its_remainder() -> None:
    breaker = BreakerConfig(
        band_bps=[1_000], pause_ns=60 * SECOND, reference="static", limit_state_ns=SECOND
    )
    events, harness = _same_on_both_paths(breaker)
    assert [type(e).__name__ for e in events] == [
        "OrderAccepted", "Trade", "Trade", "Trade", "OrderCancelled",
    ]
    cancelled = events[-1]
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.remaining, cancelled.reason) == (4, CancelReason.PRICE_BAND)
    assert harness.venue.open_orders(3) == []
