"""The venue engine, behaviour by behaviour: orders, funds, cancels, states, time, snapshots."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Sequence

import msgspec
import pytest
from venue_support import (
    FUNDS_COIN,
    FUNDS_JPY,
    MARKET,
    SECOND,
    Harness,
    coin_market,
    funded,
)

from haltguard.venue import engine as engine_module
from haltguard.venue.commands import (
    AbortResumePlan,
    AddAsset,
    AddMarket,
    CancelAll,
    ConfigureBreaker,
    Deposit,
    FreezeWithdrawals,
    Heartbeat,
    KillSwitch,
    PlaceOrder,
    ResumePhase,
    SetMarketState,
    StartResumePlan,
    Uncross,
    Withdraw,
)
from haltguard.venue.engine import SequenceError, Venue, VenueState
from haltguard.venue.events import (
    AuctionUncrossed,
    CircuitBreakerTripped,
    CommandRejected,
    IndicativeUncross,
    MarketStateChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderRepeated,
    ResumePlanEnded,
    ResumePlanStarted,
    Trade,
)
from haltguard.venue.ledger import FEE_ACCOUNT
from haltguard.venue.markets import Asset, BreakerConfig, make_market
from haltguard.venue.types import (
    CancelReason,
    MarketState,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

OPS = {"actor": "ops@example.com", "reason": "test"}


def kinds(events: Sequence[object]) -> list[str]:
    return [type(event).__name__ for event in events]


def without_counters(state: VenueState) -> VenueState:
    return msgspec.structs.replace(state, last_seq=0, last_ts=0)


def assert_sound(harness: Harness) -> None:
    assert harness.venue.check_invariants() == []


# --- limit orders and fills ----------------------------------------------------------


def test_limit_buy_rests_and_holds_notional_plus_worst_fee() -> None:
    h = funded()
    events = h.buy(1, 3, 1_000, order_type=OrderType.LIMIT)
    assert kinds(events) == ["OrderAccepted"]
    # 1000 JPY a lot plus 10 bps taker fee rounded up per lot: 1001 a lot.
    assert h.balance(1, "JPY") == (FUNDS_JPY - 3_003, 3_003)
    assert_sound(h)


def test_limit_sell_holds_its_base_quantity() -> None:
    h = funded()
    h.sell(1, 4, 1_000)
    assert h.balance(1, "COIN") == (FUNDS_COIN - 4, 4)


def test_crossing_order_fills_at_the_makers_price_and_pays_fees_to_account_zero() -> None:
    h = funded()
    h.sell(1, 3, 1_000)
    events = h.buy(2, 2, 1_010)
    assert kinds(events) == ["OrderAccepted", "Trade"]
    trade = events[1]
    assert isinstance(trade, Trade)
    assert (trade.price, trade.qty, trade.taker_side) == (1_000, 2, Side.BUY)
    assert (trade.taker_fee, trade.maker_fee) == (2, 1)  # 10 and 5 bps of 2000, floored
    assert h.balance(2, "JPY") == (FUNDS_JPY - 2_002, 0)  # the better price's hold released
    assert h.balance(2, "COIN") == (FUNDS_COIN + 2, 0)
    assert h.balance(1, "JPY") == (FUNDS_JPY + 1_999, 0)
    assert h.balance(1, "COIN") == (FUNDS_COIN - 3, 1)
    assert h.balance(FEE_ACCOUNT, "JPY") == (3, 0)
    assert_sound(h)


def test_fees_round_down_in_the_customers_favour() -> None:
    h = funded()
    h.sell(1, 1, 999)
    events = h.buy(2, 1, 999)
    trade = events[1]
    assert isinstance(trade, Trade)
    assert (trade.taker_fee, trade.maker_fee) == (0, 0)  # 0.999 and 0.4995 JPY round to 0


def test_partly_filled_limit_order_rests_its_remainder() -> None:
    h = funded()
    h.sell(1, 3, 1_000)
    events = h.buy(2, 5, 1_010)
    assert kinds(events) == ["OrderAccepted", "Trade"]
    view = h.venue.order(MARKET, h.seq)
    assert view is not None
    assert (view.qty, view.remaining, view.price) == (5, 2, 1_010)
    assert h.venue.depth(MARKET, 5).bids[0].qty == 2
    assert_sound(h)


def test_price_time_priority_fills_the_oldest_order_at_the_best_price_first() -> None:
    h = funded()
    h.sell(1, 1, 1_001)
    first = h.seq
    h.sell(2, 1, 1_000)
    second = h.seq
    h.sell(3, 1, 1_000)
    third = h.seq
    events = h.buy(4, 3, 1_001)
    makers = [event.maker_order_id for event in events if isinstance(event, Trade)]
    assert makers == [second, third, first]


def test_ioc_limit_cancels_what_does_not_fill() -> None:
    h = funded()
    h.sell(1, 1, 1_000)
    events = h.buy(2, 3, 1_000, tif=TimeInForce.IOC)
    assert kinds(events) == ["OrderAccepted", "Trade", "OrderCancelled"]
    cancelled = events[2]
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.remaining, cancelled.reason) == (2, CancelReason.UNFILLED)
    assert h.balance(2, "JPY") == (FUNDS_JPY - 1_001, 0)


def test_fok_that_cannot_fill_completely_is_rejected_and_changes_nothing() -> None:
    h = funded()
    h.sell(1, 2, 1_000)
    before = without_counters(h.venue.export_state())
    events = h.buy(2, 3, 1_000, tif=TimeInForce.FOK)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.FOK_NOT_FILLABLE
    assert without_counters(h.venue.export_state()) == before


def test_fok_that_can_fill_fills_across_levels() -> None:
    h = funded()
    h.sell(1, 2, 1_000)
    h.sell(2, 2, 1_001)
    events = h.buy(3, 3, 1_001, tif=TimeInForce.FOK)
    assert kinds(events) == ["OrderAccepted", "Trade", "Trade"]


def test_fok_blocked_by_own_order_under_cancel_taker_is_rejected() -> None:
    h = funded()
    h.sell(1, 2, 1_000)
    h.sell(2, 5, 1_001)
    events = h.buy(1, 3, 1_001, tif=TimeInForce.FOK)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.FOK_NOT_FILLABLE


def test_post_only_that_would_cross_is_rejected() -> None:
    h = funded()
    h.sell(1, 1, 1_000)
    events = h.buy(2, 1, 1_000, post_only=True)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.POST_ONLY_WOULD_CROSS


def test_post_only_that_does_not_cross_rests() -> None:
    h = funded()
    h.sell(1, 1, 1_000)
    assert kinds(h.buy(2, 1, 999, post_only=True)) == ["OrderAccepted"]


def test_post_only_must_be_good_till_cancelled() -> None:
    h = funded()
    events = h.buy(2, 1, 999, post_only=True, tif=TimeInForce.IOC)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.INVALID_TIME_IN_FORCE


# --- self-trade prevention -------------------------------------------------------------


def test_self_trade_cancel_taker_keeps_the_resting_order() -> None:
    h = funded()
    h.sell(1, 2, 1_000)
    maker = h.seq
    events = h.buy(1, 1, 1_000, stp=SelfTradePrevention.CANCEL_TAKER)
    assert kinds(events) == ["OrderAccepted", "OrderCancelled"]
    assert isinstance(events[1], OrderCancelled)
    assert events[1].reason is CancelReason.SELF_TRADE
    assert events[1].order_id == h.seq
    assert h.venue.order(MARKET, maker) is not None
    assert_sound(h)


def test_self_trade_cancel_maker_removes_it_and_keeps_matching() -> None:
    h = funded()
    h.sell(1, 2, 1_000)
    maker = h.seq
    h.sell(2, 1, 1_000)
    events = h.buy(1, 1, 1_000, stp=SelfTradePrevention.CANCEL_MAKER)
    assert kinds(events) == ["OrderAccepted", "OrderCancelled", "Trade"]
    assert isinstance(events[1], OrderCancelled)
    assert events[1].order_id == maker
    assert h.venue.order(MARKET, maker) is None
    assert_sound(h)


def test_self_trade_cancel_both_removes_both() -> None:
    h = funded()
    h.sell(1, 2, 1_000)
    maker = h.seq
    events = h.buy(1, 1, 1_000, stp=SelfTradePrevention.CANCEL_BOTH)
    assert kinds(events) == ["OrderAccepted", "OrderCancelled", "OrderCancelled"]
    assert [e.order_id for e in events[1:] if isinstance(e, OrderCancelled)] == [maker, h.seq]
    assert h.venue.depth(MARKET).asks == []
    assert_sound(h)


# --- market orders -------------------------------------------------------------------


def test_market_buy_fills_until_its_funds_run_out() -> None:
    h = funded()
    h(Deposit(5, "JPY", 2_500))
    h.sell(1, 1, 1_000)
    h.sell(1, 5, 1_100)
    events = h.buy(5, 3)
    assert kinds(events) == ["OrderAccepted", "Trade", "Trade", "OrderCancelled"]
    assert [e.qty for e in events if isinstance(e, Trade)] == [1, 1]
    cancelled = events[-1]
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.remaining, cancelled.reason) == (1, CancelReason.INSUFFICIENT_FUNDS)
    assert h.balance(5, "JPY") == (2_500 - 1_001 - 1_101, 0)
    assert h.balance(5, "COIN") == (2, 0)
    assert_sound(h)


def test_market_buy_without_quote_is_rejected() -> None:
    h = funded()
    h(Deposit(9, "COIN", 1))  # known to the venue, but holding no JPY
    h.sell(1, 1, 1_000)
    events = h.buy(9, 1)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.INSUFFICIENT_FUNDS


def test_market_sell_on_an_empty_book_is_cancelled_unfilled() -> None:
    h = funded()
    events = h.sell(1, 2)
    assert kinds(events) == ["OrderAccepted", "OrderCancelled"]
    assert h.balance(1, "COIN") == (FUNDS_COIN, 0)


def test_market_order_must_have_price_zero_and_ioc_or_fok() -> None:
    h = funded()
    priced = h.buy(1, 1, 0, order_type=OrderType.MARKET, tif=TimeInForce.GTC)
    assert isinstance(priced[0], OrderRejected)
    assert priced[0].reason is RejectReason.INVALID_TIME_IN_FORCE
    gtc = h(PlaceOrder(MARKET, 1, Side.BUY, 1, 5, OrderType.MARKET, TimeInForce.IOC))
    assert isinstance(gtc[0], OrderRejected)
    assert gtc[0].reason is RejectReason.INVALID_PRICE


# --- validation and funds ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "reason"),
    [(0, RejectReason.INVALID_QUANTITY), (1_001, RejectReason.ABOVE_MAX_SIZE)],
)
def test_sizes_outside_the_market_limits_are_rejected(qty: int, reason: RejectReason) -> None:
    h = funded()
    events = h.buy(1, qty, 1_000)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is reason


def test_size_below_the_minimum_is_rejected() -> None:
    h = Harness()
    h(AddAsset(Asset("COIN", 0)))
    h(AddAsset(Asset("JPY", 0)))
    spec = make_market(
        MARKET, Asset("COIN", 0), Asset("JPY", 0), tick_size="1", lot_size="1",
        min_qty="5", max_qty="10",
    )
    h(AddMarket(spec, MarketState.OPEN))
    events = h.buy(1, 4, 100)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.BELOW_MIN_SIZE


def test_order_beyond_available_funds_is_rejected_and_nothing_changes() -> None:
    h = funded()
    before = without_counters(h.venue.export_state())
    events = h.buy(1, 1_000, 100_000)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.INSUFFICIENT_FUNDS
    assert "deposit or cancel" in events[0].detail
    assert without_counters(h.venue.export_state()) == before


def test_the_fee_account_cannot_trade() -> None:
    h = funded()
    events = h.buy(FEE_ACCOUNT, 1, 1_000)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.INVALID_ACCOUNT


def test_unknown_market_is_named_in_the_rejection() -> None:
    h = funded()
    events = h(PlaceOrder("NOPE-JPY", 1, Side.BUY, 1, 10))
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.UNKNOWN_MARKET
    assert MARKET in events[0].detail


def test_plain_strings_for_enum_fields_are_understood() -> None:
    h = funded()
    events = h(PlaceOrder(MARKET, 1, "buy", 1, 10, "limit", "gtc"))  # type: ignore[arg-type]
    assert isinstance(events[0], OrderAccepted)
    assert events[0].side is Side.BUY


def test_unreadable_enum_field_is_rejected() -> None:
    h = funded()
    events = h(PlaceOrder(MARKET, 1, "up", 1, 10))  # type: ignore[arg-type]
    assert isinstance(events[0], CommandRejected)
    assert events[0].reason is RejectReason.INVALID_COMMAND
    assert "side" in events[0].detail


# --- client order ids -------------------------------------------------------------------


def test_repeated_client_order_id_places_nothing_new() -> None:
    h = funded()
    h.buy(1, 1, 900, client_order_id="abc")
    first = h.seq
    before = without_counters(h.venue.export_state())
    events = h.buy(1, 1, 900, client_order_id="abc")
    assert events == [OrderRepeated(MARKET, 1, "abc", first)]
    assert without_counters(h.venue.export_state()) == before


def test_same_client_order_id_for_another_account_is_a_new_order() -> None:
    h = funded()
    h.buy(1, 1, 900, client_order_id="abc")
    assert kinds(h.buy(2, 1, 900, client_order_id="abc")) == ["OrderAccepted"]


def test_client_order_id_of_a_filled_order_is_still_remembered() -> None:
    h = funded()
    h.sell(2, 1, 900)
    h.buy(1, 1, 900, client_order_id="abc")
    filled = h.seq
    assert h.buy(1, 1, 900, client_order_id="abc") == [OrderRepeated(MARKET, 1, "abc", filled)]


def test_rejected_order_does_not_use_up_its_client_order_id() -> None:
    h = funded()
    assert isinstance(h.buy(7, 1, 900, client_order_id="x")[0], OrderRejected)
    h(Deposit(7, "JPY", 10_000))
    assert kinds(h.buy(7, 1, 900, client_order_id="x")) == ["OrderAccepted"]


def test_finished_client_order_ids_are_forgotten_beyond_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "CLIENT_ORDER_ID_WINDOW", 2)
    h = funded()
    for name in ("a", "b", "c"):
        h.buy(1, 1, 900, client_order_id=name, tif=TimeInForce.IOC)
    assert kinds(h.buy(1, 1, 900, client_order_id="a", tif=TimeInForce.IOC))[0] == (
        "OrderAccepted"
    )
    assert isinstance(
        h.buy(1, 1, 900, client_order_id="c", tif=TimeInForce.IOC)[0], OrderRepeated
    )


def test_resting_orders_keep_their_client_order_id_whatever_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "CLIENT_ORDER_ID_WINDOW", 1)
    h = funded()
    h.buy(1, 1, 900, client_order_id="keep")
    for name in ("a", "b", "c"):
        h.buy(1, 1, 900, client_order_id=name, tif=TimeInForce.IOC)
    assert isinstance(h.buy(1, 1, 900, client_order_id="keep")[0], OrderRepeated)


def test_overlong_client_order_id_is_rejected() -> None:
    h = funded()
    events = h.buy(1, 1, 900, client_order_id="x" * 65)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.INVALID_COMMAND


# --- cancels -------------------------------------------------------------------------


def test_cancel_releases_the_hold() -> None:
    h = funded()
    h.buy(1, 3, 1_000)
    events = h.cancel(1, h.seq)
    assert kinds(events) == ["OrderCancelled"]
    assert h.balance(1, "JPY") == (FUNDS_JPY, 0)
    assert_sound(h)


def test_cancel_by_client_order_id() -> None:
    h = funded()
    h.sell(1, 3, 1_000, client_order_id="mine")
    events = h.cancel(1, client_order_id="mine")
    assert isinstance(events[0], OrderCancelled)
    assert h.balance(1, "COIN") == (FUNDS_COIN, 0)


def test_cancel_by_someone_else_is_refused() -> None:
    h = funded()
    h.sell(1, 3, 1_000)
    events = h.cancel(2, h.seq)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.NOT_ORDER_OWNER
    assert h.venue.order(MARKET, h.seq - 1) is not None


def test_cancel_of_an_unknown_order_is_refused() -> None:
    h = funded()
    events = h.cancel(1, 12345)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.UNKNOWN_ORDER


def test_cancel_all_by_account_cancels_only_that_accounts_orders() -> None:
    h = funded()
    h.buy(1, 1, 900)
    h.sell(2, 1, 1_100)
    h.sell(1, 1, 1_200)
    events = h(CancelAll(account=1, market=MARKET, **OPS))
    assert [(e.account, e.reason) for e in events if isinstance(e, OrderCancelled)] == [
        (1, CancelReason.MASS_CANCEL),
        (1, CancelReason.MASS_CANCEL),
    ]
    assert [o.account for o in h.venue.open_orders(2)] == [2]
    assert h.venue.open_orders(1) == []
    assert_sound(h)


def test_cancel_all_by_market_cancels_every_account() -> None:
    h = funded()
    h.buy(1, 1, 900)
    h.sell(2, 1, 1_100)
    events = h(CancelAll(market=MARKET, **OPS))
    assert kinds(events) == ["OrderCancelled", "OrderCancelled"]
    assert h.venue.depth(MARKET) == h.venue.depth(MARKET, 0)


# --- deposits and withdrawals ------------------------------------------------------------


def test_withdrawal_of_held_funds_is_refused() -> None:
    h = funded()
    h.sell(1, 1_000, 1_000)
    events = h(Withdraw(1, "COIN", FUNDS_COIN))
    assert isinstance(events[0], CommandRejected)
    assert events[0].reason is RejectReason.INSUFFICIENT_FUNDS


def test_frozen_withdrawals_are_refused_until_unfrozen() -> None:
    h = funded()
    h(FreezeWithdrawals("JPY", True, **OPS))
    events = h(Withdraw(1, "JPY", 10))
    assert isinstance(events[0], CommandRejected)
    assert events[0].reason is RejectReason.WITHDRAWALS_FROZEN
    h(FreezeWithdrawals("JPY", False, **OPS))
    assert kinds(h(Withdraw(1, "JPY", 10))) == ["Withdrawn"]
    assert h.balance(1, "JPY") == (FUNDS_JPY - 10, 0)
    assert_sound(h)


def test_fee_income_can_be_withdrawn_from_account_zero() -> None:
    h = funded()
    h.sell(1, 10, 1_000)
    h.buy(2, 10, 1_000)
    fees = h.balance(FEE_ACCOUNT, "JPY")[0]
    assert fees == 15
    assert kinds(h(Withdraw(FEE_ACCOUNT, "JPY", fees))) == ["Withdrawn"]
    assert_sound(h)


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (Deposit(0, "JPY", 5), RejectReason.INVALID_ACCOUNT),
        (Deposit(1, "DOGE", 5), RejectReason.UNKNOWN_ASSET),
        (Deposit(1, "JPY", 0), RejectReason.INVALID_AMOUNT),
        (Withdraw(1, "JPY", -1), RejectReason.INVALID_AMOUNT),
    ],
)
def test_bad_deposits_and_withdrawals_are_refused(
    command: Deposit | Withdraw, reason: RejectReason
) -> None:
    h = funded()
    events = h(command)
    assert isinstance(events[0], CommandRejected)
    assert events[0].reason is reason


# --- sequencing --------------------------------------------------------------------------


def test_a_gap_in_sequence_numbers_raises_and_changes_nothing() -> None:
    h = funded()
    before = h.venue.state_hash()
    with pytest.raises(SequenceError, match="must be exactly"):
        h.venue.apply(h.seq + 2, h.ts + 1, Heartbeat())
    assert h.venue.state_hash() == before


def test_time_going_backwards_raises() -> None:
    h = funded()
    with pytest.raises(SequenceError):
        h.venue.apply(h.seq + 1, h.ts - 1, Heartbeat())


def test_order_id_is_the_sequence_number() -> None:
    h = funded()
    events = h.buy(1, 1, 900)
    assert isinstance(events[0], OrderAccepted)
    assert events[0].order_id == h.seq


# --- market states -----------------------------------------------------------------------


def state(h: Harness, new: MarketState, **fields: object) -> list[object]:
    return list(h(SetMarketState(MARKET, new, **OPS, **fields)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("market_state", "reason"),
    [
        (MarketState.HALTED, RejectReason.MARKET_HALTED),
        (MarketState.CANCEL_ONLY, RejectReason.MARKET_CANCEL_ONLY),
        (MarketState.CLOSED, RejectReason.MARKET_CLOSED),
    ],
)
def test_braked_markets_refuse_new_orders_but_allow_cancels(
    market_state: MarketState, reason: RejectReason
) -> None:
    h = funded()
    h.buy(1, 1, 900)
    resting = h.seq
    state(h, market_state)
    events = h.buy(1, 1, 900)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is reason
    assert kinds(h.cancel(1, resting)) == ["OrderCancelled"]


def test_halt_that_refuses_cancels_refuses_them() -> None:
    h = funded()
    h.buy(1, 1, 900)
    resting = h.seq
    state(h, MarketState.HALTED, cancels_allowed=False)
    events = h.cancel(1, resting)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.CANCELS_REFUSED


def test_nothing_trades_while_halted() -> None:
    h = funded()
    h.sell(1, 1, 1_000)
    state(h, MarketState.HALTED)
    assert all(not isinstance(e, Trade) for e in h.buy(2, 1, 1_000) + h.buy(2, 1))
    assert h.venue.depth(MARKET).asks[0].qty == 1


def test_post_only_market_accepts_only_post_only_orders() -> None:
    h = funded()
    state(h, MarketState.POST_ONLY)
    events = h.buy(1, 1, 900)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.MARKET_POST_ONLY
    assert kinds(h.buy(1, 1, 900, post_only=True)) == ["OrderAccepted"]


def test_limit_only_market_refuses_market_orders() -> None:
    h = funded()
    state(h, MarketState.LIMIT_ONLY)
    events = h.buy(1, 1)
    assert isinstance(events[0], OrderRejected)
    assert events[0].reason is RejectReason.MARKET_LIMIT_ONLY
    assert kinds(h.buy(1, 1, 900)) == ["OrderAccepted"]


def test_illegal_transition_is_refused_naming_the_allowed_ones() -> None:
    h = funded()
    state(h, MarketState.HALTED)
    events = state(h, MarketState.OPEN)
    assert isinstance(events[0], CommandRejected)
    assert events[0].reason is RejectReason.ILLEGAL_TRANSITION
    assert "auction" in events[0].detail
    assert h.venue.market_state(MARKET).state is MarketState.HALTED


def test_state_change_reports_actor_reason_and_incident() -> None:
    h = funded()
    events = state(h, MarketState.HALTED, incident_id="INC-7", cancels_allowed=False)
    assert events == [
        MarketStateChanged(
            MARKET, MarketState.OPEN, MarketState.HALTED, "ops@example.com", "test", "INC-7",
            False, 0,
        )
    ]


def test_kill_switch_halts_every_market_and_release_reopens_none() -> None:
    h = funded()
    other = make_market(
        "COIN2-JPY", Asset("COIN", 0), Asset("JPY", 0), tick_size="1", lot_size="1",
        min_qty="1", max_qty="10",
    )
    h(AddMarket(msgspec.structs.replace(other), MarketState.OPEN))
    events = h(KillSwitch(True, **OPS))
    assert kinds(events) == ["KillSwitchChanged", "MarketStateChanged", "MarketStateChanged"]
    rejected = h.buy(1, 1, 900)
    assert isinstance(rejected[0], OrderRejected)
    assert rejected[0].reason is RejectReason.KILL_SWITCH_ENGAGED
    refused = state(h, MarketState.AUCTION)
    assert isinstance(refused[0], CommandRejected)
    assert refused[0].reason is RejectReason.KILL_SWITCH_ENGAGED
    assert kinds(h(KillSwitch(False, **OPS))) == ["KillSwitchChanged"]
    assert set(h.venue.market_states().values()) == {MarketState.HALTED}


# --- auctions ----------------------------------------------------------------------------


def test_auction_collects_crossing_orders_and_publishes_the_indicative_uncross() -> None:
    h = funded()
    state(h, MarketState.AUCTION)
    h.buy(1, 5, 1_010)
    events = h.sell(2, 3, 1_000)
    assert kinds(events) == ["OrderAccepted", "IndicativeUncross"]
    indicative = events[1]
    assert isinstance(indicative, IndicativeUncross)
    assert (indicative.volume, indicative.imbalance) == (3, 2)
    assert_sound(h)


def test_uncross_trades_everyone_at_one_price_then_opens() -> None:
    h = funded()
    state(h, MarketState.AUCTION)
    h.buy(1, 5, 1_010)
    h.sell(2, 3, 1_000)
    h.sell(3, 1, 1_005)
    events = h(Uncross(MARKET, **OPS))
    trades = [e for e in events if isinstance(e, Trade)]
    # 4 lots trade at any price 1005..1010 with the same imbalance and no reference price
    # yet, so the auction takes the midpoint of that range, rounded down.
    assert {t.price for t in trades} == {1_007}
    assert sum(t.qty for t in trades) == 4
    assert isinstance(events[-2], AuctionUncrossed)
    assert isinstance(events[-1], MarketStateChanged)
    assert events[-1].new is MarketState.OPEN
    assert h.venue.market_state(MARKET).state is not MarketState.AUCTION
    assert_sound(h)


def test_timed_auction_ends_with_the_first_command_at_its_deadline() -> None:
    h = funded()
    state(h, MarketState.AUCTION, auction_ns=60 * SECOND)
    h.buy(1, 2, 1_000)
    h.sell(2, 2, 1_000)
    deadline = h.venue.next_deadline_ts()
    assert deadline is not None
    assert h(Heartbeat(), after_ns=deadline - h.ts - 1) == []
    events = h(Heartbeat())
    assert kinds(events) == ["Trade", "AuctionUncrossed", "MarketStateChanged"]
    assert h.venue.next_deadline_ts() is None
    assert_sound(h)


def test_uncross_outside_an_auction_is_refused() -> None:
    h = funded()
    events = h(Uncross(MARKET, **OPS))
    assert isinstance(events[0], CommandRejected)
    assert events[0].reason is RejectReason.NO_AUCTION


# --- resume plans ----------------------------------------------------------------------


def test_resume_plan_moves_through_its_phases_by_time() -> None:
    h = funded()
    state(h, MarketState.HALTED)
    phases = [
        ResumePhase(MarketState.CANCEL_ONLY, 10 * SECOND),
        ResumePhase(MarketState.AUCTION, 5 * SECOND),
        ResumePhase(MarketState.OPEN, 0),
    ]
    events = h(StartResumePlan(MARKET, phases, **OPS))
    assert kinds(events) == ["ResumePlanStarted", "MarketStateChanged", "ResumePhaseEntered"]
    assert isinstance(events[0], ResumePlanStarted)
    h(Heartbeat(), after_ns=10 * SECOND)
    assert h.venue.market_state(MARKET).state is MarketState.AUCTION
    h.buy(1, 1, 1_000)
    h.sell(2, 1, 1_000)
    events = h(Heartbeat(), after_ns=5 * SECOND)
    assert kinds(events) == [
        "Trade", "AuctionUncrossed", "MarketStateChanged", "ResumePhaseEntered",
        "ResumePlanEnded",
    ]
    ended = events[-1]
    assert isinstance(ended, ResumePlanEnded)
    assert ended.completed
    assert h.venue.market_state(MARKET).state is MarketState.OPEN


def test_halting_during_a_resume_plan_ends_it_unfinished() -> None:
    h = funded()
    state(h, MarketState.HALTED)
    h(StartResumePlan(MARKET, [ResumePhase(MarketState.AUCTION, SECOND),
                               ResumePhase(MarketState.OPEN, 0)], **OPS))
    events = state(h, MarketState.HALTED)
    assert isinstance(events[0], ResumePlanEnded)
    assert not events[0].completed
    assert h.venue.next_deadline_ts() is None


def test_aborting_a_resume_plan_leaves_the_market_where_it_is() -> None:
    h = funded()
    state(h, MarketState.HALTED)
    h(StartResumePlan(MARKET, [ResumePhase(MarketState.AUCTION, SECOND),
                               ResumePhase(MarketState.OPEN, 0)], **OPS))
    events = h(AbortResumePlan(MARKET, **OPS))
    assert kinds(events) == ["ResumePlanEnded"]
    h(Heartbeat(), after_ns=2 * SECOND)
    assert h.venue.market_state(MARKET).state is MarketState.AUCTION


def test_resume_plan_that_skips_the_auction_after_a_halt_is_refused() -> None:
    h = funded()
    state(h, MarketState.HALTED)
    events = h(StartResumePlan(MARKET, [ResumePhase(MarketState.OPEN, 0)], **OPS))
    assert isinstance(events[0], CommandRejected)
    assert events[0].reason is RejectReason.ILLEGAL_TRANSITION


# --- circuit breaker -------------------------------------------------------------------


def static_breaker(limit_state_ns: int = 0) -> BreakerConfig:
    return BreakerConfig(
        band_bps=[1_000], pause_ns=60 * SECOND, reference="static",
        limit_state_ns=limit_state_ns,
    )


def test_fill_outside_the_band_does_not_happen_and_the_market_pauses() -> None:
    h = funded(breaker=static_breaker())
    h.sell(1, 1, 1_000)
    h.buy(2, 1, 1_000)  # the reference: 1000, band 900..1100
    h.sell(1, 2, 1_150)
    events = h.buy(2, 2, 1_200)
    assert kinds(events) == [
        "OrderAccepted", "CircuitBreakerTripped", "MarketStateChanged", "IndicativeUncross",
    ]
    tripped = events[1]
    assert isinstance(tripped, CircuitBreakerTripped)
    assert (tripped.reference_price, tripped.low, tripped.high) == (1_000, 900, 1_100)
    assert tripped.attempted_price == 1_150
    assert h.venue.market_state(MARKET).state is MarketState.AUCTION
    assert h.venue.next_deadline_ts() == tripped.pause_until_ts
    events = h(Heartbeat(), after_ns=tripped.pause_until_ts - h.ts)
    assert kinds(events) == ["Trade", "AuctionUncrossed", "MarketStateChanged"]
    assert h.venue.market_state(MARKET).state is MarketState.OPEN
    assert_sound(h)


def test_ioc_order_stopped_by_the_band_is_cancelled_with_that_reason() -> None:
    h = funded(breaker=static_breaker())
    h.sell(1, 1, 1_000)
    h.buy(2, 1, 1_000)
    h.sell(1, 2, 1_150)
    events = h.buy(2, 2, 1_200, tif=TimeInForce.IOC)
    cancelled = [e for e in events if isinstance(e, OrderCancelled)]
    assert [c.reason for c in cancelled] == [CancelReason.PRICE_BAND]


def test_the_market_spec_shows_the_breaker_in_force_after_a_change() -> None:
    listed = static_breaker()
    h = funded(breaker=listed)
    wider = msgspec.structs.replace(listed, band_bps=[2_000])

    h(ConfigureBreaker(MARKET, wider, **OPS))
    assert h.venue.markets[MARKET].breaker == wider
    restored = Venue.restore(h.venue.export_state())
    assert restored.markets[MARKET].breaker == wider
    assert restored.state_hash() == h.venue.state_hash()

    h(ConfigureBreaker(MARKET, None, **OPS))
    assert h.venue.markets[MARKET].breaker is None
    assert Venue.restore(h.venue.export_state()).markets[MARKET].breaker is None


def test_breaker_can_be_turned_off() -> None:
    h = funded(breaker=static_breaker())
    events = h(ConfigureBreaker(MARKET, None, **OPS))
    assert kinds(events) == ["BreakerConfigured"]
    h.sell(1, 1, 1_000)
    h.buy(2, 1, 1_000)
    h.sell(1, 1, 5_000)
    assert "Trade" in kinds(h.buy(2, 1, 5_000))


# --- snapshots and reads ---------------------------------------------------------------


def test_restore_of_an_exported_state_has_the_same_hash_and_behaves_the_same() -> None:
    h = funded(breaker=static_breaker())
    h.sell(1, 3, 1_000, client_order_id="s1")
    h.buy(2, 1, 1_000)
    h.buy(3, 2, 990)
    state(h, MarketState.AUCTION, auction_ns=SECOND)
    h.buy(4, 1, 1_005)
    encoded = msgspec.msgpack.encode(h.venue.export_state())
    twin = Harness(Venue.restore(msgspec.msgpack.decode(encoded, type=VenueState)))
    assert twin.venue.state_hash() == h.venue.state_hash()
    script = [
        lambda x: x.sell(2, 1, 995),
        lambda x: x.cancel(1, client_order_id="s1"),
        lambda x: x(Heartbeat(), after_ns=SECOND),
        lambda x: x.buy(4, 3),
    ]
    for step in script:
        assert step(twin) == step(h)
    assert twin.venue.state_hash() == h.venue.state_hash()
    assert_sound(twin)


def test_read_helpers_show_depth_orders_and_balances() -> None:
    h = funded()
    h.buy(1, 2, 990)
    h.buy(2, 3, 990)
    h.sell(1, 1, 1_010)
    depth = h.venue.depth(MARKET, 5)
    assert [(lv.price, lv.qty, lv.orders) for lv in depth.bids] == [(990, 5, 2)]
    assert [(lv.price, lv.qty, lv.orders) for lv in depth.asks] == [(1_010, 1, 1)]
    assert [(o.side, o.price) for o in h.venue.open_orders(1)] == [
        (Side.BUY, 990), (Side.SELL, 1_010),
    ]
    assert h.venue.balances(1)["COIN"] == (FUNDS_COIN - 1, 1)
    assert h.venue.markets[MARKET] == coin_market()
    assert h.venue.indicative_uncross(MARKET).volume == 0
    assert h.venue.market_state(MARKET).state is MarketState.OPEN


def test_adding_a_market_with_unknown_assets_is_refused() -> None:
    h = Harness()
    events = h(AddMarket(coin_market(), MarketState.OPEN))
    assert isinstance(events[0], CommandRejected)
    assert events[0].reason is RejectReason.UNKNOWN_ASSET
    assert h.venue.markets == {}


def test_a_discarded_venue_frees_its_book() -> None:
    def fill_and_drop() -> None:
        h = funded(accounts=2)
        for index in range(3_000):
            h.buy(1 + index % 2, 1, 900 - index % 40)

    fill_and_drop()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(4):
            fill_and_drop()
            gc.collect()
        leaked = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert leaked < 500_000  # 12,000 leaked orders would be well over a megabyte
