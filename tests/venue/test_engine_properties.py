"""Properties that hold after any flow of commands (Hypothesis draws the flows).

- the venue's own invariant check passes after every command: conservation of every asset
  (fees included), no negative balance, holds equal to what resting orders need, the book
  never crossed outside an auction, index and levels in agreement;
- every accepted lot ends filled, cancelled or resting;
- nothing trades while the market is halted, cancel-only or closed;
- exporting and restoring mid-flow changes nothing: same hash, same future events.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from venue_support import MARKET, SECOND, Harness, funded, order

from haltguard.venue.commands import (
    CancelAll,
    CancelOrder,
    Command,
    Deposit,
    Heartbeat,
    SetMarketState,
    Uncross,
    Withdraw,
)
from haltguard.venue.engine import Venue, VenueState
from haltguard.venue.events import Event, OrderAccepted, OrderCancelled, Trade
from haltguard.venue.markets import BreakerConfig
from haltguard.venue.types import MarketState, SelfTradePrevention, Side, TimeInForce

OPS: dict[str, Any] = {"actor": "prop", "reason": "property test"}
ACCOUNTS = 4
NO_TRADING = {MarketState.HALTED, MarketState.CANCEL_ONLY, MarketState.CLOSED}

orders = st.builds(
    lambda account, side, qty, price, tif, post_only, stp: order(
        account, side, qty, price,
        **({"tif": tif, "post_only": post_only and tif is TimeInForce.GTC, "stp": stp}
           if price else {"tif": TimeInForce.FOK if tif is TimeInForce.FOK else TimeInForce.IOC,
                          "stp": stp}),
    ),
    st.integers(1, ACCOUNTS),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 30),
    st.one_of(st.just(0), st.integers(985, 1_015)),
    st.sampled_from(list(TimeInForce)),
    st.booleans(),
    st.sampled_from(list(SelfTradePrevention)),
)
# Cancels name an earlier command by how far back it was; resolved when applied.
cancels = st.tuples(st.just("cancel"), st.integers(1, ACCOUNTS), st.integers(1, 40))
states = st.builds(
    lambda new, timed: SetMarketState(
        MARKET, new, auction_ns=timed * SECOND if new is MarketState.AUCTION else 0, **OPS
    ),
    st.sampled_from([*MarketState, MarketState.OPEN, MarketState.AUCTION, MarketState.OPEN]),
    st.integers(0, 3),
)
admin = st.one_of(
    states,
    st.just(Uncross(MARKET, **OPS)),
    st.builds(lambda a: CancelAll(account=a, market=MARKET, **OPS), st.integers(0, ACCOUNTS)),
    st.builds(lambda a, n: Deposit(a, "JPY", n), st.integers(1, ACCOUNTS), st.integers(1, 10**5)),
    st.builds(lambda a, n: Withdraw(a, "COIN", n), st.integers(0, ACCOUNTS), st.integers(1, 50)),
    st.builds(lambda s: ("wait", s), st.integers(1, 4)),
)
# Six orders, two cancels and one operator action in nine steps, roughly.
step = st.tuples(st.integers(0, 8), orders, cancels, admin).map(
    lambda drawn: drawn[1] if drawn[0] < 6 else drawn[2] if drawn[0] < 8 else drawn[3]
)
steps = st.lists(step, min_size=5, max_size=80)
BREAKER = BreakerConfig(band_bps=[100], pause_ns=2 * SECOND, reference="static")


def resolve(step: object, harness: Harness) -> tuple[Command, int]:
    if isinstance(step, tuple) and step[0] == "cancel":
        _, account, back = step
        return CancelOrder(MARKET, account, max(1, harness.seq + 1 - back)), 1
    if isinstance(step, tuple) and step[0] == "wait":
        return Heartbeat(), step[1] * SECOND
    assert not isinstance(step, tuple)
    return step, 1  # type: ignore[return-value]


class LotBook:
    """What each accepted order did with its lots, from the events alone."""

    def __init__(self) -> None:
        self.accepted: dict[int, int] = {}
        self.done: dict[int, int] = {}

    def record(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, OrderAccepted):
                self.accepted[event.order_id] = event.qty
            elif isinstance(event, Trade):
                for order_id in (event.taker_order_id, event.maker_order_id):
                    self.done[order_id] = self.done.get(order_id, 0) + event.qty
            elif isinstance(event, OrderCancelled):
                self.done[event.order_id] = self.done.get(event.order_id, 0) + event.remaining

    def check(self, venue: Venue) -> None:
        for order_id, qty in self.accepted.items():
            view = venue.order(MARKET, order_id)
            resting = 0 if view is None else view.remaining
            assert self.done.get(order_id, 0) + resting == qty, f"order {order_id} lost lots"


def play(harness: Harness, flow: list[object], lots: LotBook | None = None) -> list[list[Event]]:
    results = []
    for step in flow:
        command, after_ns = resolve(step, harness)
        before = harness.venue.market_state(MARKET).state
        events = harness(command, after_ns=after_ns)
        problems = harness.venue.check_invariants()
        assert problems == [], (command, problems)
        if before in NO_TRADING and isinstance(command, CancelOrder | CancelAll):
            assert not any(isinstance(e, Trade) for e in events)
        if before in NO_TRADING and type(command).__name__ == "PlaceOrder":
            assert not any(isinstance(e, Trade | OrderAccepted) for e in events)
        if lots is not None:
            lots.record(events)
        results.append(events)
    return results


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=steps, with_breaker=st.booleans())
def test_invariants_hold_and_every_lot_is_accounted_for(
    flow: list[object], with_breaker: bool
) -> None:
    harness = funded(ACCOUNTS, breaker=BREAKER if with_breaker else None)
    lots = LotBook()
    play(harness, flow, lots)
    lots.check(harness.venue)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=steps, more=steps, with_breaker=st.booleans())
def test_restore_mid_flow_changes_nothing(
    flow: list[object], more: list[object], with_breaker: bool
) -> None:
    harness = funded(ACCOUNTS, breaker=BREAKER if with_breaker else None)
    play(harness, flow)
    state = msgspec.msgpack.decode(
        msgspec.msgpack.encode(harness.venue.export_state()), type=VenueState
    )
    twin = Harness(Venue.restore(state))
    twin.ts = harness.ts
    assert twin.venue.state_hash() == harness.venue.state_hash()
    assert play(twin, more) == play(harness, more)
    assert twin.venue.state_hash() == harness.venue.state_hash()


def random_flow(rng: random.Random, length: int) -> list[object]:
    """A long seeded flow with the same mix, for deep books the drawn examples rarely reach."""
    flow: list[object] = []
    for _ in range(length):
        roll = rng.random()
        if roll < 0.7:
            price = 0 if rng.random() < 0.1 else rng.randint(985, 1_015)
            extra: dict[str, object] = {"stp": rng.choice(list(SelfTradePrevention))}
            if price:
                tifs = [TimeInForce.GTC] * 6 + [TimeInForce.IOC, TimeInForce.FOK]
                extra["tif"] = rng.choice(tifs)
                extra["post_only"] = extra["tif"] is TimeInForce.GTC and rng.random() < 0.1
            side = rng.choice([Side.BUY, Side.SELL])
            flow.append(order(rng.randint(1, ACCOUNTS), side, rng.randint(1, 30), price, **extra))
        elif roll < 0.92:
            flow.append(("cancel", rng.randint(1, ACCOUNTS), rng.randint(1, 60)))
        elif roll < 0.95:
            new = rng.choice([MarketState.AUCTION, MarketState.OPEN, MarketState.HALTED,
                              MarketState.LIMIT_ONLY, MarketState.POST_ONLY])
            timed = rng.randint(0, 3) * SECOND if new is MarketState.AUCTION else 0
            flow.append(SetMarketState(MARKET, new, auction_ns=timed, **OPS))
        elif roll < 0.97:
            flow.append(Uncross(MARKET, **OPS))
        else:
            flow.append(("wait", rng.randint(1, 4)))
    return flow


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_long_seeded_flows_keep_every_property(seed: int) -> None:
    rng = random.Random(seed)
    harness = funded(ACCOUNTS, breaker=BREAKER if seed % 2 else None)
    lots = LotBook()
    first, second = random_flow(rng, 1_500), random_flow(rng, 500)
    played = play(harness, first, lots)
    kinds = {type(event).__name__ for events in played for event in events}
    assert {"Trade", "AuctionUncrossed", "OrderCancelled"} <= kinds, "the flow exercised little"
    twin = Harness(Venue.restore(harness.venue.export_state()))
    twin.ts = harness.ts
    assert play(twin, second) == play(harness, second, lots)
    assert twin.venue.state_hash() == harness.venue.state_hash()
    lots.check(harness.venue)
