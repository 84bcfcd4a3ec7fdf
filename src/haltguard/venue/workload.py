"""Seeded synthetic order flow for benchmarks, soak runs and crash tests.

The mix is the one the PyPI package ``matching-engine`` 0.1.1 uses for its figures, so the
two engines can be measured on the same commands: 25% cancels of a random earlier limit
order (by its owner; some have filled, so a share of cancels is rejected), 5% market orders
(IOC), and limit orders priced up to ``depth_ticks`` away from ``mid`` on the passive side
or up to ``cross_ticks`` through it (about one in ten crosses), from ``accounts`` accounts
with 1..100 lots each. The random draws are made in the same order as that package's
generator, so the same seed yields the same orders.

The randomness lives here, never in the engine. :func:`setup_commands` lists the assets,
opens the market and funds every account generously, so a fresh :class:`Venue` can run the
flow with every order accepted on funds.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from haltguard.venue.commands import (
    AddAsset,
    AddMarket,
    CancelOrder,
    Command,
    Deposit,
    PlaceOrder,
)
from haltguard.venue.markets import Asset, BreakerConfig, MarketSpec, make_market
from haltguard.venue.types import MarketState, OrderType, Side, TimeInForce

CANCEL_SHARE = 0.25
MARKET_SHARE = 0.05
ACCOUNTS = 1_000
MID_PRICE = 100_000
WORKLOAD_MARKET = "SIM-JPY"
BASE_ASSET = Asset("SIM", 0)
QUOTE_ASSET = Asset("JPY", 0)
# Enough that no account of a ten-million-command run comes near empty.
FUNDING_QUOTE = 10**15
FUNDING_BASE = 10**10


def workload_market(breaker: BreakerConfig | None = None) -> MarketSpec:
    """A market on a unit grid (1 tick x 1 lot = 1 JPY) with a 10 bps taker fee."""
    return make_market(
        WORKLOAD_MARKET,
        BASE_ASSET,
        QUOTE_ASSET,
        tick_size="1",
        lot_size="1",
        min_qty="1",
        max_qty="1000000",
        maker_fee_bps=0,
        taker_fee_bps=10,
        breaker=breaker,
    )


def setup_commands(
    accounts: int = ACCOUNTS, breaker: BreakerConfig | None = None
) -> list[Command]:
    """List both assets, open the workload market and fund accounts 1..``accounts``."""
    commands: list[Command] = [
        AddAsset(BASE_ASSET),
        AddAsset(QUOTE_ASSET),
        AddMarket(workload_market(breaker), MarketState.OPEN),
    ]
    for account in range(1, accounts + 1):
        commands.append(Deposit(account, QUOTE_ASSET.code, FUNDING_QUOTE, "workload"))
        commands.append(Deposit(account, BASE_ASSET.code, FUNDING_BASE, "workload"))
    return commands


def order_flow(
    seed: int,
    count: int,
    *,
    first_seq: int,
    accounts: int = ACCOUNTS,
    mid: int = MID_PRICE,
    depth_ticks: int = 50,
    cross_ticks: int = 5,
) -> Iterator[Command]:
    """Yield ``count`` order commands; the ``i``-th (0-based) will be applied as
    ``first_seq + i``, which is the order id the venue gives it, so cancels can name it."""
    rng = random.Random(seed)
    limits: list[tuple[int, int]] = []  # (order_id, account) of every limit order so far
    for index in range(count):
        order_id = first_seq + index
        roll = rng.random()
        if roll < CANCEL_SHARE and limits:
            target, owner = limits[rng.randrange(len(limits))]
            yield CancelOrder(WORKLOAD_MARKET, owner, target)
            continue
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        account = rng.randint(1, accounts)
        qty = rng.randint(1, 100)
        if roll < CANCEL_SHARE + MARKET_SHARE:
            yield PlaceOrder(
                WORKLOAD_MARKET, account, side, qty, 0, OrderType.MARKET, TimeInForce.IOC
            )
            continue
        offset = rng.randint(-cross_ticks, depth_ticks)
        price = mid - offset if side is Side.BUY else mid + offset
        limits.append((order_id, account))
        yield PlaceOrder(WORKLOAD_MARKET, account, side, qty, price)


def resting_flow(count: int, *, accounts: int = ACCOUNTS) -> Iterator[Command]:
    """``count`` limit orders that never cross (bids below the mid, asks above), for
    measuring memory with a deep book. Deterministic; no randomness needed."""
    for index in range(count):
        account = index % accounts + 1
        qty = 1 + index % 7
        away = 1 + index % 5_000
        if index % 2:
            yield PlaceOrder(WORKLOAD_MARKET, account, Side.SELL, qty, MID_PRICE + away)
        else:
            yield PlaceOrder(WORKLOAD_MARKET, account, Side.BUY, qty, MID_PRICE - away)
