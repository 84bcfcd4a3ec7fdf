"""A flash crash on a real venue runtime: a steady market, then absurd trades, then normal
trading again; and the policy the tests use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from haltguard.gateway.runtime import VenueRuntime
from haltguard.venue.commands import AddAsset, AddMarket, Deposit, PlaceOrder
from haltguard.venue.events import Trade
from haltguard.venue.markets import Asset, make_market
from haltguard.venue.types import MarketState, OrderType, Side, TimeInForce

BTC = Asset("BTC", 8)
JPY = Asset("JPY", 4)
MARKET = "BTC-JPY"
SPEC = make_market(MARKET, BTC, JPY, tick_size="1", lot_size="0.0001", min_qty="0.0001",
                   max_qty="100", maker_fee_bps=0, taker_fee_bps=10)
NORMAL_PRICE = SPEC.to_ticks("15000000")
LOT = SPEC.to_lots("0.01")
ACCOUNTS = range(1, 7)


@dataclass(frozen=True)
class Story:
    steady_trade_ids: list[int]
    crash_trade_ids: list[int]
    before_crash_seq: int
    crash_from: datetime
    crash_to: datetime


def _at(ts_ns: int) -> datetime:
    """A journal time as a datetime, rounded down to the microsecond."""
    return datetime.fromtimestamp(ts_ns // 1_000 / 1_000_000, UTC)


def _cross(runtime: VenueRuntime, seller: int, buyer: int, price: int, qty: int
           ) -> tuple[list[int], int]:
    runtime.submit_and_wait(PlaceOrder(MARKET, seller, Side.SELL, qty, price))
    result = runtime.submit_and_wait(PlaceOrder(MARKET, buyer, Side.BUY, qty, price,
                                                tif=TimeInForce.IOC))
    return [e.trade_id for e in result.events if isinstance(e, Trade)], result.ts


def set_up(runtime: VenueRuntime) -> None:
    runtime.submit_and_wait(AddAsset(BTC))
    runtime.submit_and_wait(AddAsset(JPY))
    runtime.submit_and_wait(AddMarket(SPEC, MarketState.OPEN))
    for account in ACCOUNTS:
        runtime.submit_and_wait(Deposit(account, "JPY", JPY.to_minor("100000000")))
        runtime.submit_and_wait(Deposit(account, "BTC", BTC.to_minor("10")))


def flash_crash(runtime: VenueRuntime) -> Story:
    """Five steady trades at 15,000,000; two at 90% and 87% below; one steady trade after."""
    set_up(runtime)
    steady: list[int] = []
    for _ in range(5):
        steady += _cross(runtime, 1, 2, NORMAL_PRICE, LOT)[0]
    before_crash_seq = runtime.read(lambda venue: venue.last_seq)
    first = runtime.read(lambda venue: venue.last_ts) + 1
    crash, _ = _cross(runtime, 3, 4, SPEC.to_ticks("1500000"), LOT)
    more, last = _cross(runtime, 5, 4, SPEC.to_ticks("2000000"), 2 * LOT)
    runtime.submit_and_wait(PlaceOrder(MARKET, 6, Side.BUY, LOT, SPEC.to_ticks("14000000")))
    steady += _cross(runtime, 1, 2, NORMAL_PRICE, LOT)[0]
    return Story(steady, crash + more, before_crash_seq, _at(first + 999), _at(last + 1_000))


def market_buy(account: int, qty: int) -> PlaceOrder:
    return PlaceOrder(MARKET, account, Side.BUY, qty, 0, OrderType.MARKET, TimeInForce.IOC)


TEST_POLICY = """\
id: test-erroneous
version: 2
text:
  en: Trades more than 10% from the reference may be busted within an hour.
  ja: 基準価格から10%を超えて乖離した約定は、1時間以内に限り取り消すことがあります。
correct_within_minutes: 60
reference_lookback_minutes: 10
band_bps_default: 1000
markets:
  BTC-JPY:
    band_bps: 1000
may_propose: [incident_commander, admin]
may_approve: [incident_commander, admin]
allow_debit: false
"""
