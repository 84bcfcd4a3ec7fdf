"""Shared set-up for the engine tests: a small venue and a stamping harness."""

from __future__ import annotations

from haltguard.venue.commands import (
    AddAsset,
    AddMarket,
    CancelOrder,
    Command,
    Deposit,
    PlaceOrder,
)
from haltguard.venue.engine import Venue
from haltguard.venue.events import Event
from haltguard.venue.markets import Asset, BreakerConfig, MarketSpec, make_market
from haltguard.venue.types import (
    MarketState,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

MARKET = "COIN-JPY"
COIN = Asset("COIN", 0)
JPY = Asset("JPY", 0)
SECOND = 1_000_000_000
START_TS = 1_700_000_000 * SECOND  # an ordinary afternoon in 2023, UTC
FUNDS_JPY = 10_000_000
FUNDS_COIN = 10_000


def coin_market(
    breaker: BreakerConfig | None = None,
    maker_fee_bps: int = 5,
    taker_fee_bps: int = 10,
) -> MarketSpec:
    """1 tick = 1 JPY, 1 lot = 1 COIN, sizes 1..1000 lots."""
    return make_market(
        MARKET,
        COIN,
        JPY,
        tick_size="1",
        lot_size="1",
        min_qty="1",
        max_qty="1000",
        maker_fee_bps=maker_fee_bps,
        taker_fee_bps=taker_fee_bps,
        breaker=breaker,
    )


class Harness:
    """A venue with a sequencer's job done by hand: each call gets seq + 1 and a ts."""

    def __init__(self, venue: Venue | None = None) -> None:
        self.venue = venue or Venue()
        self.seq = self.venue.last_seq
        self.ts = self.venue.last_ts or START_TS

    def __call__(self, command: Command, *, after_ns: int = 1) -> list[Event]:
        self.seq += 1
        self.ts += after_ns
        return self.venue.apply(self.seq, self.ts, command)

    def buy(self, account: int, qty: int, price: int = 0, **fields: object) -> list[Event]:
        return self(order(account, Side.BUY, qty, price, **fields))

    def sell(self, account: int, qty: int, price: int = 0, **fields: object) -> list[Event]:
        return self(order(account, Side.SELL, qty, price, **fields))

    def cancel(self, account: int, order_id: int = 0, client_order_id: str = "") -> list[Event]:
        return self(CancelOrder(MARKET, account, order_id, client_order_id))

    def balance(self, account: int, asset: str) -> tuple[int, int]:
        return self.venue.balances(account).get(asset, (0, 0))


def order(account: int, side: Side, qty: int, price: int = 0, **fields: object) -> PlaceOrder:
    """A limit order at ``price``, or a market IOC order when ``price`` is 0."""
    defaults: dict[str, object] = {}
    if price == 0:
        defaults = {"order_type": OrderType.MARKET, "tif": TimeInForce.IOC}
    defaults.update(fields)
    return PlaceOrder(MARKET, account, side, qty, price, **defaults)  # type: ignore[arg-type]


def funded(
    accounts: int = 4,
    state: MarketState = MarketState.OPEN,
    breaker: BreakerConfig | None = None,
    maker_fee_bps: int = 5,
    taker_fee_bps: int = 10,
) -> Harness:
    """A venue listing COIN-JPY in ``state`` with accounts 1..``accounts`` funded."""
    harness = Harness()
    harness(AddAsset(COIN))
    harness(AddAsset(JPY))
    harness(AddMarket(coin_market(breaker, maker_fee_bps, taker_fee_bps), state))
    for account in range(1, accounts + 1):
        harness(Deposit(account, "JPY", FUNDS_JPY))
        harness(Deposit(account, "COIN", FUNDS_COIN))
    return harness


__all__ = [
    "COIN",
    "FUNDS_COIN",
    "FUNDS_JPY",
    "JPY",
    "MARKET",
    "SECOND",
    "START_TS",
    "Harness",
    "SelfTradePrevention",
    "coin_market",
    "funded",
    "order",
]
