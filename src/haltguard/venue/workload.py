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

:func:`stress_flow` makes harder flows than the peer's mix, each a :class:`FlowProfile`:
most limit orders sweeping several levels (``sweep``), a trending mid (``drift``), a third
of the commands cancels (``cancel_heavy``), and all three at once (``mixed``).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator

import msgspec

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


class FlowProfile(msgspec.Struct, frozen=True):
    """The shape of a :func:`stress_flow`: how much of it cancels, crosses and drifts.

    Shares are per mille (integers, so a profile is exact and prints as it is meant).
    A crossing limit order is priced ``1..sweep_ticks`` through the current mid, so it
    takes every level on its way there; a passive one ``1..depth_ticks`` on its own side.
    With ``drift_every`` > 0 the mid moves one tick every that many commands, keeping its
    direction for a while (``turn_per_mille`` is the chance it turns at each move), so the
    book is left behind on one side. Cancels pick one of the last ``cancel_window`` limit
    orders, so most of them still find their order resting.
    """

    name: str
    cancel_per_mille: int
    market_per_mille: int
    cross_per_mille: int
    sweep_ticks: int
    depth_ticks: int
    qty_max: int
    cross_qty_max: int
    drift_every: int
    turn_per_mille: int
    cancel_window: int


SWEEP = FlowProfile("sweep", 100, 20, 650, 8, 8, 40, 60, 0, 0, 2_000)
"""About two thirds of limit orders are priced up to 8 ticks through the mid, up to
three resting orders' size: half of all limit orders trade, each with two makers on average."""
DRIFT = FlowProfile("drift", 250, 50, 150, 4, 30, 100, 100, 4, 20, 2_000)
"""The mid trends one tick every four commands, turning now and then."""
CANCEL_HEAVY = FlowProfile("cancel_heavy", 333, 20, 100, 5, 50, 100, 100, 0, 0, 500)
"""A third of all commands are cancels of recent orders."""
MIXED = FlowProfile("mixed", 333, 20, 600, 8, 8, 40, 60, 4, 20, 1_000)
"""All three at once: a third cancels, most limit orders sweeping, the mid drifting."""
STRESS_PROFILES: dict[str, FlowProfile] = {p.name: p for p in (SWEEP, DRIFT, CANCEL_HEAVY, MIXED)}
MID_LOW, MID_HIGH = MID_PRICE // 2, MID_PRICE * 3 // 2  # where a drifting mid turns back


def stress_flow(
    seed: int,
    count: int,
    profile: FlowProfile,
    *,
    first_seq: int,
    accounts: int = ACCOUNTS,
) -> Iterator[Command]:
    """Yield ``count`` plain orders and cancels shaped by ``profile``; as in
    :func:`order_flow`, the ``i``-th will be applied as ``first_seq + i`` (its order id)."""
    rng = random.Random(seed)
    recent: deque[tuple[int, int]] = deque(maxlen=profile.cancel_window)
    mid, step = MID_PRICE, 1
    for index in range(count):
        order_id = first_seq + index
        if profile.drift_every and index % profile.drift_every == 0:
            if rng.randrange(1_000) < profile.turn_per_mille or not MID_LOW < mid < MID_HIGH:
                step = -step if MID_LOW < mid < MID_HIGH else (1 if mid <= MID_LOW else -1)
            mid += step
        roll = rng.randrange(1_000)
        if roll < profile.cancel_per_mille and recent:
            target, owner = recent[rng.randrange(len(recent))]
            yield CancelOrder(WORKLOAD_MARKET, owner, target)
            continue
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        account = rng.randint(1, accounts)
        if roll < profile.cancel_per_mille + profile.market_per_mille:
            qty = rng.randint(1, profile.qty_max)
            yield PlaceOrder(
                WORKLOAD_MARKET, account, side, qty, 0, OrderType.MARKET, TimeInForce.IOC
            )
            continue
        if rng.randrange(1_000) < profile.cross_per_mille:
            offset = -rng.randint(1, profile.sweep_ticks)
            qty = rng.randint(1, profile.cross_qty_max)
        else:
            offset = rng.randint(1, profile.depth_ticks)
            qty = rng.randint(1, profile.qty_max)
        price = mid - offset if side is Side.BUY else mid + offset
        recent.append((order_id, account))
        yield PlaceOrder(WORKLOAD_MARKET, account, side, qty, price)
