"""Busting, re-pricing and rolling back trades in the pure venue.

Each correction is a journaled command: it changes balances exactly as its rules say (both
sides and the fee account), refuses bad input with one event and no change, keeps the
ledger's conservation, and replays (apply and restore) to the same state hash.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from venue_support import MARKET, Harness, funded, order

from haltguard.venue.commands import (
    AdjustTrade,
    BalanceChange,
    BustTrade,
    CancelAll,
    Deposit,
    RollbackTo,
    TradeFacts,
    Withdraw,
)
from haltguard.venue.corrections import rollback_command, trade_facts
from haltguard.venue.engine import Venue, VenueState
from haltguard.venue.events import (
    CommandRejected,
    Deposited,
    Event,
    OrderCancelled,
    Trade,
    TradeAdjusted,
    TradeBusted,
    VenueRolledBack,
    Withdrawn,
)
from haltguard.venue.types import CancelReason, RejectReason, Side, TimeInForce

OPS: dict[str, Any] = {"actor": "alice", "reason": "clean up after the test"}
FOUR_EYES: dict[str, Any] = {
    "actor": "alice", "approver": "bob", "reason": "flash crash", "rule": "band-10pct",
}


def trades_of(events: list[Event]) -> list[TradeFacts]:
    return [trade_facts(e) for e in events if isinstance(e, Trade)]


def one_trade(harness: Harness, price: int = 100, qty: int = 3) -> TradeFacts:
    """Account 1 rests a sell, account 2 buys it with an IOC limit: one trade."""
    harness.sell(1, qty, price)
    (trade,) = trades_of(harness.buy(2, qty, price, tif="ioc"))
    return trade


def totals(venue: Venue, accounts: range) -> dict[tuple[int, str], int]:
    """available + held minus owed, per account and asset."""
    result: dict[tuple[int, str], int] = {}
    for account in accounts:
        owed = venue.owed(account)
        for asset in ("COIN", "JPY"):
            available, held = venue.balances(account).get(asset, (0, 0))
            result[account, asset] = available + held - owed.get(asset, 0)
    return result


def rejected(events: list[Event]) -> CommandRejected:
    (event,) = events
    assert isinstance(event, CommandRejected), events
    return event


def test_a_bust_reverses_both_sides_and_the_fees() -> None:
    harness = funded()
    venue = harness.venue
    before = {a: venue.balances(a) for a in (0, 1, 2)}
    trade = one_trade(harness)  # 300 JPY notional, taker fee 0 (10 bps rounds down), maker 0
    assert venue.balances(2)["COIN"][0] == before[2]["COIN"][0] + 3

    (busted,) = harness(BustTrade([trade], **FOUR_EYES))

    assert isinstance(busted, TradeBusted)
    assert (busted.trade_id, busted.actor, busted.approver, busted.rule) == (
        trade.trade_id, "alice", "bob", "band-10pct",
    )
    # The maker's sell was filled and is gone, so its hold is available again: every
    # account's total is where it was before the trade.
    for account in (0, 1, 2):
        after = venue.balances(account)
        for asset in ("COIN", "JPY"):
            assert sum(after.get(asset, (0, 0))) == sum(before[account].get(asset, (0, 0)))
    assert venue.check_invariants() == []


def test_a_bust_returns_the_fee_account_its_fees() -> None:
    harness = funded(maker_fee_bps=20, taker_fee_bps=50)
    trade = one_trade(harness, price=10_000, qty=2)  # notional 20,000: taker 100, maker 40
    assert (trade.taker_fee, trade.maker_fee) == (100, 40)
    assert harness.venue.balances(0)["JPY"] == (140, 0)

    harness(BustTrade([trade], **FOUR_EYES))

    assert harness.venue.balances(0).get("JPY", (0, 0)) == (0, 0)
    assert harness.venue.check_invariants() == []


def test_busting_a_trade_twice_is_refused_and_changes_nothing() -> None:
    harness = funded()
    trade = one_trade(harness)
    harness(BustTrade([trade], **FOUR_EYES))
    state_bytes = msgspec.msgpack.encode(harness.venue.export_state())

    event = rejected(harness(BustTrade([trade], **FOUR_EYES)))

    assert event.reason is RejectReason.ALREADY_BUSTED
    assert harness.venue.export_state().balances == Venue.restore(
        msgspec.msgpack.decode(state_bytes, type=VenueState)
    ).export_state().balances


def test_a_bust_of_several_trades_is_refused_whole_when_one_of_them_is_busted() -> None:
    harness = funded()
    first = one_trade(harness)
    second = one_trade(harness)
    harness(BustTrade([second], **FOUR_EYES))
    before = harness.venue.balances(2)

    event = rejected(harness(BustTrade([first, second], **FOUR_EYES)))

    assert event.reason is RejectReason.ALREADY_BUSTED
    assert not harness.venue.corrections.is_busted(first.trade_id)
    assert harness.venue.balances(2) == before
    assert rejected(harness(BustTrade([first, first], **FOUR_EYES))).reason is (
        RejectReason.INVALID_COMMAND
    )


def test_busting_an_unknown_trade_is_refused_naming_the_issued_range() -> None:
    harness = funded()
    trade = one_trade(harness)
    ghost = TradeFacts(MARKET, 99, trade.price, trade.qty, trade.taker_side,
                       trade.taker_account, trade.maker_account, 0, 0)
    before = harness.venue.balances(2)

    event = rejected(harness(BustTrade([ghost], **FOUR_EYES)))

    assert event.reason is RejectReason.UNKNOWN_TRADE
    assert "1 to 1" in event.detail
    assert harness.venue.balances(2) == before


def test_the_proposer_cannot_approve_their_own_correction() -> None:
    harness = funded()
    trade = one_trade(harness)

    event = rejected(harness(BustTrade([trade], **{**FOUR_EYES, "approver": "alice"})))

    assert event.reason is RejectReason.FOUR_EYES_REQUIRED
    assert not harness.venue.corrections.is_busted(trade.trade_id)


def test_facts_that_do_not_fit_the_market_are_refused() -> None:
    harness = funded(maker_fee_bps=20, taker_fee_bps=50)
    trade = one_trade(harness, price=10_000, qty=2)
    forged = TradeFacts(MARKET, trade.trade_id, trade.price, trade.qty, trade.taker_side,
                        trade.taker_account, trade.maker_account, 0, 0)

    event = rejected(harness(BustTrade([forged], **FOUR_EYES)))

    assert event.reason is RejectReason.INVALID_COMMAND
    assert "read them from the journal" in event.detail


def test_a_bust_that_would_overdraw_is_refused_unless_the_policy_allows_a_debit() -> None:
    harness = funded()
    trade = one_trade(harness)
    coins = harness.venue.balances(2)["COIN"][0]
    harness(Withdraw(2, "COIN", coins))  # the buyer took its coins out
    before = harness.venue.balances(2)

    event = rejected(harness(BustTrade([trade], **FOUR_EYES)))
    assert event.reason is RejectReason.INSUFFICIENT_FUNDS
    assert "3 COIN" in event.detail and "account 2" in event.detail
    assert harness.venue.balances(2) == before

    (busted,) = harness(BustTrade([trade], **FOUR_EYES, allow_debit=True))
    assert isinstance(busted, TradeBusted)
    assert busted.owed == [BalanceChange("COIN", 2, 3)]
    assert harness.venue.owed(2) == {"COIN": 3}
    assert harness.venue.check_invariants() == []


def test_an_adjustment_settles_at_the_new_price_with_fees_recomputed() -> None:
    harness = funded(maker_fee_bps=20, taker_fee_bps=50)
    venue = harness.venue
    trade = one_trade(harness, price=10_000, qty=2)
    buyer_jpy, seller_jpy = sum(venue.balances(2)["JPY"]), sum(venue.balances(1)["JPY"])

    (adjusted,) = harness(AdjustTrade(trade, 12_000, **FOUR_EYES))

    assert isinstance(adjusted, TradeAdjusted)
    assert (adjusted.old_price, adjusted.new_price) == (10_000, 12_000)
    assert (adjusted.taker_fee, adjusted.maker_fee) == (120, 48)
    # The buyer (taker) pays 4,000 more notional and 20 more fee; the seller (maker)
    # receives 4,000 more less 8 more fee; the fee account gets the 28.
    assert sum(venue.balances(2)["JPY"]) == buyer_jpy - 4_020
    assert sum(venue.balances(1)["JPY"]) == seller_jpy + 3_992
    assert venue.balances(0)["JPY"] == (168, 0)
    assert venue.check_invariants() == []


def test_busting_an_adjusted_trade_reverses_its_adjusted_terms() -> None:
    harness = funded(maker_fee_bps=20, taker_fee_bps=50)
    before = {a: harness.venue.balances(a) for a in (0, 1, 2)}
    trade = one_trade(harness, price=10_000, qty=2)
    harness(AdjustTrade(trade, 9_000, **FOUR_EYES))

    (busted,) = harness(BustTrade([trade], **FOUR_EYES))

    assert isinstance(busted, TradeBusted) and busted.price == 9_000
    for account in (0, 1, 2):
        for asset in ("COIN", "JPY"):
            assert sum(harness.venue.balances(account).get(asset, (0, 0))) == sum(
                before[account].get(asset, (0, 0))
            )


def test_an_adjustment_to_the_same_price_or_of_a_busted_trade_is_refused() -> None:
    harness = funded()
    trade = one_trade(harness)
    assert rejected(harness(AdjustTrade(trade, trade.price, **FOUR_EYES))).reason is (
        RejectReason.INVALID_PRICE
    )
    assert rejected(harness(AdjustTrade(trade, 0, **FOUR_EYES))).reason is (
        RejectReason.INVALID_PRICE
    )
    harness(BustTrade([trade], **FOUR_EYES))
    assert rejected(harness(AdjustTrade(trade, 150, **FOUR_EYES))).reason is (
        RejectReason.ALREADY_BUSTED
    )


def _trading_after_a_point(
    harness: Harness, *, stop_at_target: bool = False
) -> tuple[int, list[TradeFacts]]:
    """Some activity, the point N, then more trades, resting orders and money movements."""
    harness.sell(1, 5, 100)
    harness.buy(2, 2, 100, tif="ioc")
    harness.buy(3, 4, 90)  # rests across N
    target = harness.seq
    if stop_at_target:
        return target, []
    trades: list[TradeFacts] = []
    trades += trades_of(harness.buy(4, 3, 100, tif="ioc"))  # fills the rest of 1's sell
    trades += trades_of(harness.sell(1, 2, 90, tif="ioc"))  # partly fills 3's buy
    harness.sell(4, 6, 120)  # rests, placed after N
    harness(Deposit(2, "JPY", 5_000))
    harness(Withdraw(3, "COIN", 1))
    return target, trades


def test_a_rollback_restores_balances_to_the_point_plus_money_moved_since() -> None:
    harness = funded()
    target, trades = _trading_after_a_point(harness)
    at_point = funded()  # the same history, stopped at the target
    _trading_after_a_point(at_point, stop_at_target=True)
    assert at_point.seq == target
    at_target = totals(at_point.venue, range(0, 5))
    venue = harness.venue
    command = rollback_command(
        {MARKET: venue.markets[MARKET]}, trades, venue.corrections,
        target_seq=target, first_trade_id=trades[0].trade_id,
        last_trade_id=trades[-1].trade_id, **FOUR_EYES,
    )

    events = harness(command)

    summary = events[-1]
    assert isinstance(summary, VenueRolledBack)
    assert (summary.orders_cancelled, summary.trades_busted) == (1, len(trades))
    cancelled = [e for e in events if isinstance(e, OrderCancelled)]
    assert [(c.account, c.reason) for c in cancelled] == [(4, CancelReason.ROLLBACK)]
    expected = dict(at_target)
    expected[2, "JPY"] += 5_000
    expected[3, "COIN"] -= 1
    assert totals(venue, range(0, 5)) == expected
    assert venue.check_invariants() == []
    assert all(venue.corrections.is_busted(t.trade_id) for t in trades)


def test_a_rollback_planned_before_later_trades_is_refused_as_stale() -> None:
    harness = funded()
    target, trades = _trading_after_a_point(harness)
    venue = harness.venue
    command = rollback_command(
        {MARKET: venue.markets[MARKET]}, trades, venue.corrections, target_seq=target,
        first_trade_id=trades[0].trade_id, last_trade_id=trades[-1].trade_id, **FOUR_EYES,
    )
    harness.buy(2, 1, 120, tif="ioc")  # one more trade after the plan
    before = venue.balances(2)

    event = rejected(harness(command))

    assert event.reason is RejectReason.STALE_PLAN
    assert "plan again" in event.detail
    assert venue.balances(2) == before


def test_a_rollback_target_after_the_last_seq_is_refused() -> None:
    harness = funded()
    trade = one_trade(harness)
    command = RollbackTo(harness.seq + 5, trade.trade_id, trade.trade_id, 0, [], **FOUR_EYES)

    event = rejected(harness(command))

    assert event.reason is RejectReason.INVALID_COMMAND
    assert "rollback target" in event.detail


def test_a_rollback_whose_changes_create_money_is_refused() -> None:
    harness = funded()
    trade = one_trade(harness)
    command = RollbackTo(3, trade.trade_id, trade.trade_id, 0,
                         [BalanceChange("JPY", 2, 1_000)], **FOUR_EYES)

    event = rejected(harness(command))

    assert event.reason is RejectReason.INVALID_COMMAND
    assert "sum to zero" in event.detail


def test_corrections_survive_export_and_restore_with_the_same_hash() -> None:
    harness = funded(maker_fee_bps=20, taker_fee_bps=50)
    first = one_trade(harness, price=10_000, qty=2)
    second = one_trade(harness, price=11_000, qty=1)
    harness(BustTrade([first], **FOUR_EYES))
    harness(AdjustTrade(second, 10_500, **FOUR_EYES))
    harness(Withdraw(2, "COIN", harness.venue.balances(2)["COIN"][0]))
    third = one_trade(harness, price=10_000, qty=1)
    harness(Withdraw(2, "COIN", harness.venue.balances(2)["COIN"][0]))
    harness(BustTrade([third], **FOUR_EYES, allow_debit=True))

    restored = Venue.restore(harness.venue.export_state())

    assert restored.state_hash() == harness.venue.state_hash()
    assert restored.owed(2) == {"COIN": 1}
    assert restored.corrections.is_busted(first.trade_id)
    assert restored.corrections.terms(second).price == 10_500
    assert restored.check_invariants() == []


def test_a_state_without_corrections_hashes_as_before() -> None:
    """The corrections field is left out while empty and the state keeps a small map
    header, so snapshots written before corrections existed keep their bytes and hash."""
    harness = funded()
    one_trade(harness)

    encoded = msgspec.msgpack.encode(harness.venue.export_state())

    assert "corrections" not in msgspec.msgpack.decode(encoded)
    assert encoded[0] < 0x90, "a fixmap header, as states written before corrections had"


# --- properties ----------------------------------------------------------------------

ACCOUNTS = range(1, 5)
resting_orders = st.lists(
    st.tuples(st.sampled_from(list(ACCOUNTS)), st.sampled_from([Side.BUY, Side.SELL]),
              st.integers(1, 20), st.integers(90, 110)),
    max_size=12,
)


def _rest_all(harness: Harness, orders: list[tuple[int, Side, int, int]]) -> None:
    for account, side, qty, price in orders:
        harness(order(account, side, qty, price))


def _available(venue: Venue) -> dict[tuple[int, str], tuple[int, int]]:
    return {(a, asset): venue.balances(a).get(asset, (0, 0))
            for a in range(0, 6) for asset in ("COIN", "JPY")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    resting=resting_orders,
    taker=st.tuples(st.just(5), st.sampled_from([Side.BUY, Side.SELL]),
                    st.integers(1, 60), st.sampled_from([0, 95, 100, 105])),
    fees=st.tuples(st.integers(0, 30), st.integers(0, 60)),
)
def test_busting_a_takers_trades_equals_a_venue_that_never_matched_them(
    resting: list[tuple[int, Side, int, int]],
    taker: tuple[int, Side, int, int],
    fees: tuple[int, int],
) -> None:
    corrected, never = funded(5, maker_fee_bps=fees[0], taker_fee_bps=fees[1]), funded(
        5, maker_fee_bps=fees[0], taker_fee_bps=fees[1]
    )
    _rest_all(corrected, resting)
    _rest_all(never, resting)
    account, side, qty, price = taker
    trades = trades_of(corrected(order(account, side, qty, price, tif=TimeInForce.IOC)))
    if trades:
        events = corrected(BustTrade(trades, **FOUR_EYES))
        assert [e.trade_id for e in events if isinstance(e, TradeBusted)] == [
            t.trade_id for t in trades
        ]
    # The makers' orders are not put back: with every order cancelled, both venues hold
    # exactly the same balances, the fee account's included.
    corrected(CancelAll(market=MARKET, **OPS))
    never(CancelAll(market=MARKET, **OPS))
    assert _available(corrected.venue) == _available(never.venue)
    assert corrected.venue.check_invariants() == []


flow_steps = st.lists(
    st.one_of(
        st.tuples(st.just("order"), st.sampled_from(list(ACCOUNTS)),
                  st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 20),
                  st.integers(90, 110), st.booleans()),
        st.tuples(st.just("deposit"), st.sampled_from(list(ACCOUNTS)),
                  st.sampled_from(["COIN", "JPY"]), st.integers(1, 5_000)),
        st.tuples(st.just("withdraw"), st.sampled_from(list(ACCOUNTS)),
                  st.sampled_from(["COIN", "JPY"]), st.integers(1, 20_000_000)),
    ),
    max_size=25,
)


def _play(harness: Harness, steps: list[tuple[Any, ...]]) -> list[Event]:
    events: list[Event] = []
    for step in steps:
        if step[0] == "order":
            _, account, side, qty, price, ioc = step
            tif = TimeInForce.IOC if ioc else TimeInForce.GTC
            events += harness(order(account, side, qty, price, tif=tif))
        elif step[0] == "deposit":
            events += harness(Deposit(step[1], step[2], step[3]))
        else:
            events += harness(Withdraw(step[1], step[2], min(step[3], max(
                1, harness.venue.balances(step[1]).get(step[2], (0, 0))[0]))))
    return events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=flow_steps, after=flow_steps)
def test_a_rollback_leaves_the_balances_of_the_point_plus_money_moved_since(
    before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]
) -> None:
    harness = funded()
    _play(harness, before)
    harness(Deposit(1, "JPY", 1))  # the point is always a command after the set-up
    target = harness.seq
    at_target = totals(harness.venue, range(0, 5))
    first_trade_id = harness.venue.next_trade_id
    later = _play(harness, after)
    venue = harness.venue
    trades = trades_of(later)
    command = rollback_command(
        {MARKET: venue.markets[MARKET]}, trades, venue.corrections, target_seq=target,
        first_trade_id=first_trade_id, last_trade_id=venue.next_trade_id - 1,
        allow_debit=True, **FOUR_EYES,
    )

    events = harness(command)

    assert isinstance(events[-1], VenueRolledBack), events[-1]
    expected = dict(at_target)
    for event in later:
        if isinstance(event, Deposited):
            expected[event.account, event.asset] += event.amount
        elif isinstance(event, Withdrawn):
            expected[event.account, event.asset] -= event.amount
    assert totals(venue, range(0, 5)) == expected
    assert not [o for o in venue.resting_orders(MARKET) if o.order_id > target]
    assert venue.check_invariants() == []
    assert Venue.restore(venue.export_state()).state_hash() == venue.state_hash()
