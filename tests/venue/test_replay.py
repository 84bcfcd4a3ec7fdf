"""Replay without events reaches exactly the state that applying with events reaches.

Recovery replays the journal through :meth:`Venue.replay`, :meth:`Venue.replay_order` and
:meth:`Venue.replay_cancel`, which run the same code as :meth:`Venue.apply` with event
building switched off. These tests play the same flows (orders of every kind, cancels,
auctions, halts, the kill switch, resume plans, breaker trips and time passing) into one
venue through ``apply`` and into others through the replay entry points, and compare
state hashes after every command.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_properties import ACCOUNTS, BREAKER, OPS, random_flow, resolve, step
from venue_support import MARKET, SECOND, funded, order

from haltguard.venue.commands import (
    CancelOrder,
    Command,
    ConfigureBreaker,
    Deposit,
    Heartbeat,
    KillSwitch,
    PlaceOrder,
    ResumePhase,
    SetMarketState,
    StartResumePlan,
)
from haltguard.venue.engine import (
    GTC_LIMIT_BUY,
    GTC_LIMIT_SELL,
    ReplayRecord,
    SequenceError,
    Venue,
)
from haltguard.venue.types import MarketState, OrderType, SelfTradePrevention, Side, TimeInForce

RESUME = StartResumePlan(
    MARKET,
    [ResumePhase(MarketState.CANCEL_ONLY, SECOND), ResumePhase(MarketState.AUCTION, SECOND),
     ResumePhase(MarketState.OPEN, 0)],
    **OPS,
)
# Commands the shared flows do not draw: the kill switch, resume plans, breaker changes.
brakes = st.sampled_from([
    KillSwitch(True, **OPS),
    KillSwitch(False, **OPS),
    SetMarketState(MARKET, MarketState.HALTED, **OPS),
    RESUME,
    ConfigureBreaker(MARKET, BREAKER, **OPS),
    ConfigureBreaker(MARKET, None, **OPS),
])
client_orders = st.builds(
    lambda account, side, qty, price, n: order(
        account, side, qty, price, client_order_id=f"c{n}"
    ),
    st.integers(1, ACCOUNTS),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 30),
    st.integers(985, 1_015),
    st.integers(0, 20),
)
# Mostly the shared steps; now and then a brake or an order with a client order id.
rich_step = st.tuples(st.integers(0, 9), step, brakes, client_orders).map(
    lambda drawn: drawn[1] if drawn[0] < 8 else drawn[2] if drawn[0] < 9 else drawn[3]
)
rich_steps = st.lists(rich_step, min_size=5, max_size=80)


def replay_as_the_journal_does(venue: Venue, seq: int, ts: int, command: Command) -> None:
    """Plain orders and cancels by their fields (as the decoder hands them over), the
    rest as commands."""
    if (
        type(command) is PlaceOrder
        and not command.client_order_id
        and command.stp is SelfTradePrevention.CANCEL_TAKER
        and not command.post_only
    ):
        venue.replay_order(
            seq, ts, command.market, command.account, command.side, command.qty,
            command.price, command.order_type, command.tif,
        )
    elif type(command) is CancelOrder and not command.client_order_id:
        venue.replay_cancel(seq, ts, command.market, command.account, command.order_id)
    else:
        venue.replay(seq, ts, command)


# The decoder hands GTC limit orders over with the venue's own option tuples.
SHARED_OPTIONS = {options: options for options in (GTC_LIMIT_BUY, GTC_LIMIT_SELL)}


class BatchReplayer:
    """Replays as recovery does: runs of plain orders and cancels through
    ``Venue.replay_batch`` (as the decoder collects them), anything else as a command once
    the run before it was handed over."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.batch: list[ReplayRecord] = []

    def __call__(self, seq: int, ts: int, command: Command) -> None:
        if (
            type(command) is PlaceOrder
            and not command.client_order_id
            and command.stp is SelfTradePrevention.CANCEL_TAKER
            and not command.post_only
        ):
            options = (command.side, command.order_type, command.tif)
            self.batch.append((
                seq, ts, command.market, command.account, command.qty, command.price,
                SHARED_OPTIONS.get(options, options),
            ))
        elif type(command) is CancelOrder and not command.client_order_id:
            self.batch.append(
                (seq, ts, command.market, command.account, command.order_id, 0, None)
            )
        else:
            self.flush()
            self.venue.replay(seq, ts, command)

    def flush(self) -> None:
        if self.batch:
            self.venue.replay_batch(self.batch)
            self.batch = []


def play_three_ways(flow: list[object], with_breaker: bool, compare_every: int = 1) -> set[str]:
    """Apply ``flow`` with events, replay it by command, by fields and in batches; assert
    equal hashes along the way (a batch runs until the next comparison).

    Returns the kinds of events the applied flow produced, so callers can check it
    exercised what it should.
    """
    applied = funded(ACCOUNTS, breaker=BREAKER if with_breaker else None)
    by_command = Venue.restore(applied.venue.export_state())
    by_fields = Venue.restore(applied.venue.export_state())
    in_batches = BatchReplayer(Venue.restore(applied.venue.export_state()))
    kinds: set[str] = set()
    for index, drawn in enumerate(flow, 1):
        command, after_ns = resolve(drawn, applied)
        kinds.update(type(event).__name__ for event in applied(command, after_ns=after_ns))
        by_command.replay(applied.seq, applied.ts, command)
        replay_as_the_journal_does(by_fields, applied.seq, applied.ts, command)
        in_batches(applied.seq, applied.ts, command)
        if index % compare_every == 0 or index == len(flow):
            in_batches.flush()
            expected = applied.venue.state_hash()
            assert by_command.state_hash() == expected, (index, command)
            assert by_fields.state_hash() == expected, (index, command)
            assert in_batches.venue.state_hash() == expected, (index, command)
    assert by_fields.check_invariants() == []
    assert in_batches.venue.check_invariants() == []
    return kinds


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=rich_steps, with_breaker=st.booleans())
def test_replay_reaches_the_state_hash_apply_reaches(
    flow: list[object], with_breaker: bool
) -> None:
    play_three_ways(flow, with_breaker)


def rich_flow(rng: random.Random, length: int) -> list[object]:
    """The long seeded flow of the property tests, with brakes and client ids mixed in."""
    flow = random_flow(rng, length)
    episodes: list[list[object]] = [
        [KillSwitch(True, **OPS), ("wait", 1), KillSwitch(False, **OPS)],
        [SetMarketState(MARKET, MarketState.HALTED, **OPS), RESUME, ("wait", 1), ("wait", 2)],
        [ConfigureBreaker(MARKET, BREAKER, **OPS)],
        [ConfigureBreaker(MARKET, None, **OPS)],
        [Heartbeat()],
    ]
    for index in range(length - 40, 0, -40):
        account, side = rng.randint(1, ACCOUNTS), rng.choice([Side.BUY, Side.SELL])
        client_id = f"c{rng.randint(0, 30)}"
        flow[index:index] = [
            *episodes[index // 40 % len(episodes)],
            order(account, side, rng.randint(1, 20), rng.randint(990, 1_010),
                  client_order_id=client_id),
            CancelOrder(MARKET, account, client_order_id=client_id),
        ]
    return flow


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_long_seeded_flows_replay_to_the_same_state_hash(seed: int) -> None:
    rng = random.Random(seed)
    kinds = play_three_ways(rich_flow(rng, 2_000), with_breaker=seed % 2 == 1,
                            compare_every=100)
    expected = {
        "Trade", "AuctionUncrossed", "OrderCancelled", "MarketStateChanged", "OrderRejected",
        "KillSwitchChanged", "ResumePlanStarted",
    }
    if seed % 2:
        expected.add("CircuitBreakerTripped")
    assert expected <= kinds, f"the flow did not exercise {expected - kinds}"


@pytest.mark.parametrize("compare_every", [1, 1_000])  # a batch per command; one batch
def test_orders_that_run_out_of_funds_or_meet_their_own_replay_in_batches_as_applied(
    compare_every: int,
) -> None:
    flow: list[object] = [
        Deposit(5, "JPY", 5_007),  # the second level costs 3,006 for all 3 lots
        Deposit(6, "COIN", 3),
        order(1, Side.SELL, 2, 1_000),
        order(2, Side.SELL, 3, 1_001),
        order(1, Side.SELL, 5, 1_003),
        order(5, Side.BUY, 10),  # market buy: cut to what it affords, then out of funds
        order(5, Side.BUY, 1),  # what is left affords nothing
        order(7, Side.BUY, 1),  # no quote at all: refused
        order(6, Side.SELL, 5),  # more coin than it has: refused
        order(6, Side.SELL, 3),  # no bids: nothing trades
        order(3, Side.BUY, 4, 998),
        order(6, Side.SELL, 3),  # fills against the bid
        order(1, Side.BUY, 30, 1_003),  # crosses, then meets its own ask: stops there
        order(2, Side.BUY, 2, 1_005),  # crosses and fills completely
        order(4, Side.BUY, 900, 1_010),  # crosses, fills what there is, rests the rest
        order(4, Side.SELL, 1),  # meets its own bid first: nothing trades
    ]
    kinds = play_three_ways(flow, with_breaker=False, compare_every=compare_every)
    assert {"Trade", "OrderCancelled", "OrderRejected"} <= kinds


def test_replay_refuses_a_command_out_of_sequence_and_changes_nothing() -> None:
    harness = funded(ACCOUNTS)
    before = harness.venue.state_hash()
    with pytest.raises(SequenceError):
        harness.venue.replay_order(
            harness.seq + 2, harness.ts, MARKET, 1, Side.BUY, 1, 1_000, OrderType.LIMIT,
            TimeInForce.GTC,
        )
    with pytest.raises(SequenceError):
        harness.venue.replay_cancel(harness.seq + 1, harness.ts - 1, MARKET, 1, 5)
    assert harness.venue.state_hash() == before
