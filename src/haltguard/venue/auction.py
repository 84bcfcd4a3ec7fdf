"""The call auction: one uncross price for a crossed book, and who trades how much at it.

During an auction orders collect and nothing matches. Leaving it, everything that crosses
trades at a single price, chosen by these rules in order (docs/adr/0003 repeats them):

1. the price that maximises the executable volume, min(demand at or above, supply at or
   below);
2. among those, the smallest absolute imbalance (buy volume minus sell volume at the price);
3. among those, the price closest to the ``reference`` (the last trade or pre-halt price),
   when one is given: the reference itself if it is tied, else the nearest tied price;
4. with no reference, the midpoint of the tied prices, rounded down.

The tied prices always form one contiguous range of ticks (volume rises then falls with the
price, and the imbalance only falls), so rules 3 and 4 each pick exactly one price. Prices
between two limit prices count: when every price from 95 to 105 executes the same volume
with no imbalance, a reference of 101 uncrosses at 101.

Allocation is price-time priority on each side: best price first, oldest first within a
price, the last order reached filled partially. Each fill pairs one buy order and one sell
order; the later order (larger order id) is reported as taker, as if it had crossed the
earlier one on arrival.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

import msgspec

from haltguard.venue.types import Side


class UncrossResult(msgspec.Struct, frozen=True):
    """Where the book uncrosses: ``price`` 0 and ``volume`` 0 when nothing crosses.

    ``imbalance`` is buy volume minus sell volume at ``price`` (what stays unfilled).
    """

    price: int
    volume: int
    imbalance: int


NO_CROSS = UncrossResult(price=0, volume=0, imbalance=0)


class AuctionError(ValueError):
    """Input the auction cannot use (unsorted levels, non-positive sizes, short sides)."""


class _Levels:
    """Aggregated levels of one side inside the crossing range, best first."""

    __slots__ = ("prices", "qtys")

    def __init__(self) -> None:
        self.prices: list[int] = []
        self.qtys: list[int] = []


def _collect(
    entries: Iterator[tuple[int, int]], first: tuple[int, int], crosses: int, is_buy: bool
) -> _Levels:
    """Merge equal prices and stop at the first entry that cannot cross ``crosses``."""
    levels = _Levels()
    for price, qty in itertools.chain((first,), entries):
        if qty <= 0 or price <= 0:
            raise AuctionError(f"auction level ({price}, {qty}): price and qty must be positive")
        if (price < crosses) if is_buy else (price > crosses):
            break
        if levels.prices:
            last = levels.prices[-1]
            if price == last:
                levels.qtys[-1] += qty
                continue
            if (price > last) if is_buy else (price < last):
                side = "bids" if is_buy else "asks"
                raise AuctionError(f"{side} must be given best price first: {price} after {last}")
        levels.prices.append(price)
        levels.qtys.append(qty)
    return levels


def uncross(
    bids: Iterable[tuple[int, int]],
    asks: Iterable[tuple[int, int]],
    reference: int | None = None,
) -> UncrossResult:
    """The single uncross price and its volume, by the rules in the module docstring.

    ``bids`` and ``asks`` are ``(price, qty)`` entries best first (bids highest first, asks
    lowest first); one entry per level or per order, equal prices are summed. Reading stops
    at the first entry that cannot cross, so the cost is O(crossing entries) and the rest of
    a deep book is never touched.
    """
    bid_iter, ask_iter = iter(bids), iter(asks)
    first_bid, first_ask = next(bid_iter, None), next(ask_iter, None)
    if first_bid is None or first_ask is None or first_bid[0] < first_ask[0]:
        return NO_CROSS
    best_bid, best_ask = first_bid[0], first_ask[0]
    bid_levels = _collect(bid_iter, first_bid, best_ask, is_buy=True)
    ask_levels = _collect(ask_iter, first_ask, best_bid, is_buy=False)
    return _choose(bid_levels, ask_levels, reference)


def _ascending(bid_levels: _Levels, ask_levels: _Levels) -> list[tuple[int, int, int]]:
    """``(price, bid qty, ask qty)`` for every listed price, lowest first: a linear merge."""
    merged: list[tuple[int, int, int]] = []
    bid_prices, bid_qtys = bid_levels.prices[::-1], bid_levels.qtys[::-1]
    ask_prices, ask_qtys = ask_levels.prices, ask_levels.qtys
    bi = ai = 0
    while bi < len(bid_prices) or ai < len(ask_prices):
        bid_price = bid_prices[bi] if bi < len(bid_prices) else None
        ask_price = ask_prices[ai] if ai < len(ask_prices) else None
        if ask_price is None or (bid_price is not None and bid_price < ask_price):
            assert bid_price is not None
            merged.append((bid_price, bid_qtys[bi], 0))
            bi += 1
        elif bid_price is None or ask_price < bid_price:
            merged.append((ask_price, 0, ask_qtys[ai]))
            ai += 1
        else:
            merged.append((ask_price, bid_qtys[bi], ask_qtys[ai]))
            bi += 1
            ai += 1
    return merged


def _choose(bid_levels: _Levels, ask_levels: _Levels, reference: int | None) -> UncrossResult:
    # Walk the listed prices upwards: demand(p) = bids priced >= p, supply(p) = asks <= p.
    levels = _ascending(bid_levels, ask_levels)
    demand = sum(bid_levels.qtys)
    supply = 0
    best_volume, best_abs = -1, 0
    tied: list[tuple[int, int, int]] = []  # (low, high, imbalance) price ranges, ascending

    def consider(low: int, high: int, volume: int, imbalance: int) -> None:
        nonlocal best_volume, best_abs
        key_abs = abs(imbalance)
        if volume > best_volume or (volume == best_volume and key_abs < best_abs):
            best_volume, best_abs = volume, key_abs
            tied.clear()
            tied.append((low, high, imbalance))
        elif volume == best_volume and key_abs == best_abs:
            assert tied[-1][1] + 1 == low, "tied uncross prices must be contiguous"
            tied.append((low, high, imbalance))

    for index, (price, bid_qty, ask_qty) in enumerate(levels):
        supply += ask_qty
        consider(price, price, min(demand, supply), demand - supply)
        demand -= bid_qty
        if index + 1 < len(levels) and levels[index + 1][0] - price >= 2:
            # Strictly between two listed prices: demand excludes this level, supply does not.
            consider(price + 1, levels[index + 1][0] - 1, min(demand, supply), demand - supply)
    assert demand == 0, "every bid level was passed"
    assert best_volume > 0, "a crossed book executes something"

    low, high = tied[0][0], tied[-1][1]
    if reference is not None and reference > 0:
        price = min(max(reference, low), high)
    else:
        price = (low + high) // 2
    imbalance = next(imb for lo, hi, imb in tied if lo <= price <= hi)
    return UncrossResult(price=price, volume=best_volume, imbalance=imbalance)


def indicative(
    bids: Iterable[tuple[int, int]],
    asks: Iterable[tuple[int, int]],
    reference: int | None = None,
) -> UncrossResult:
    """Where the auction would uncross if it ended now, for the IndicativeUncross event.

    The same rules as :func:`uncross` (one source of truth): what is published is what the
    uncross would do with the book as it stands.
    """
    return uncross(bids, asks, reference)


class AuctionOrderLike(Protocol):
    """What allocation needs of a resting order (the book's ``RestingOrder`` fits)."""

    @property
    def order_id(self) -> int: ...

    @property
    def account(self) -> int: ...

    @property
    def price(self) -> int: ...

    @property
    def remaining(self) -> int: ...


class AuctionOrder(NamedTuple):
    """A plain order for allocation when there is no book object at hand."""

    order_id: int
    account: int
    price: int
    remaining: int


class AuctionFill(msgspec.Struct, frozen=True):
    """``qty`` lots traded at ``price`` between one buy and one sell order.

    ``taker_side`` is the side of the later order (larger order id). The engine turns each
    fill into a Trade event and settles it; it decides what to do when both accounts match.
    """

    price: int
    qty: int
    buy_order_id: int
    buy_account: int
    sell_order_id: int
    sell_account: int
    taker_side: Side


def allocate(
    bids: Iterable[AuctionOrderLike],
    asks: Iterable[AuctionOrderLike],
    result: UncrossResult,
) -> list[AuctionFill]:
    """The fills that execute ``result`` in price-time priority.

    ``bids`` and ``asks`` are orders in priority order (best price first, oldest first within
    a price), as the book iterates them. Exactly ``result.volume`` lots trade on each side.
    Raises :class:`AuctionError` if the orders cannot supply that volume at that price (they
    are not the book the result was computed from). Orders are only read, never changed.
    """
    if result.volume == 0:
        return []
    price, volume = result.price, result.volume
    buys = _eligible(bids, price, volume, is_buy=True)
    sells = _eligible(asks, price, volume, is_buy=False)
    fills: list[AuctionFill] = []
    buy_index = sell_index = 0
    buy_left, sell_left = buys[0][1], sells[0][1]
    left = volume
    while left > 0:
        buy, sell = buys[buy_index][0], sells[sell_index][0]
        qty = min(buy_left, sell_left)
        fills.append(
            AuctionFill(
                price=price,
                qty=qty,
                buy_order_id=buy.order_id,
                buy_account=buy.account,
                sell_order_id=sell.order_id,
                sell_account=sell.account,
                taker_side=Side.BUY if buy.order_id > sell.order_id else Side.SELL,
            )
        )
        left -= qty
        buy_left -= qty
        sell_left -= qty
        if left == 0:
            break
        if buy_left == 0:
            buy_index += 1
            buy_left = buys[buy_index][1]
        if sell_left == 0:
            sell_index += 1
            sell_left = sells[sell_index][1]
    return fills


def _eligible(
    orders: Iterable[AuctionOrderLike], price: int, volume: int, *, is_buy: bool
) -> list[tuple[AuctionOrderLike, int]]:
    """The first orders in priority that supply ``volume`` at ``price``, with their share."""
    chosen: list[tuple[AuctionOrderLike, int]] = []
    need = volume
    last_price: int | None = None
    for order in orders:
        if order.remaining <= 0:
            raise AuctionError(f"order {order.order_id} has no remaining quantity")
        if last_price is not None and (
            order.price > last_price if is_buy else order.price < last_price
        ):
            raise AuctionError(
                f"orders must be in priority order: order {order.order_id} at {order.price} "
                f"after {last_price}"
            )
        last_price = order.price
        if (order.price < price) if is_buy else (order.price > price):
            break
        share = min(order.remaining, need)
        chosen.append((order, share))
        need -= share
        if need == 0:
            return chosen
    side = "buy" if is_buy else "sell"
    raise AuctionError(
        f"the {side} orders supply {volume - need} of the {volume} lots the uncross at {price} "
        "needs; allocate from the same book the uncross was computed on"
    )


def run_auction(
    bids: Iterable[AuctionOrderLike],
    asks: Iterable[AuctionOrderLike],
    reference: int | None = None,
) -> tuple[UncrossResult, list[AuctionFill]]:
    """Uncross and allocate in one call, for orders given in priority order."""
    bid_orders, ask_orders = list(bids), list(asks)
    result = uncross(
        ((order.price, order.remaining) for order in bid_orders),
        ((order.price, order.remaining) for order in ask_orders),
        reference,
    )
    return result, allocate(bid_orders, ask_orders, result)
