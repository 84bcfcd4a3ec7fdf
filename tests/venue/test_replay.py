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
    Heartbeat,
    KillSwitch,
    PlaceOrder,
    ResumePhase,
    SetMarketState,
    StartResumePlan,
)
from haltguard.venue.engine import SequenceError, Venue
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


def play_three_ways(flow: list[object], with_breaker: bool, compare_every: int = 1) -> set[str]:
    """Apply ``flow`` with events, replay it both ways; assert equal hashes along the way.

    Returns the kinds of events the applied flow produced, so callers can check it
    exercised what it should.
    """
    applied = funded(ACCOUNTS, breaker=BREAKER if with_breaker else None)
    by_command = Venue.restore(applied.venue.export_state())
    by_fields = Venue.restore(applied.venue.export_state())
    kinds: set[str] = set()
    for index, drawn in enumerate(flow, 1):
        command, after_ns = resolve(drawn, applied)
        kinds.update(type(event).__name__ for event in applied(command, after_ns=after_ns))
        by_command.replay(applied.seq, applied.ts, command)
        replay_as_the_journal_does(by_fields, applied.seq, applied.ts, command)
        if index % compare_every == 0 or index == len(flow):
            expected = applied.venue.state_hash()
            assert by_command.state_hash() == expected, (index, command)
            assert by_fields.state_hash() == expected, (index, command)
    assert by_fields.check_invariants() == []
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
