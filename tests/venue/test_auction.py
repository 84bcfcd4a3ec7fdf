"""The call auction: uncross price rules, allocation in price-time priority."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haltguard.venue.auction import (
    NO_CROSS,
    AuctionError,
    AuctionFill,
    AuctionOrder,
    UncrossResult,
    allocate,
    indicative,
    run_auction,
    uncross,
)
from haltguard.venue.types import Side


def test_book_that_does_not_cross_has_no_uncross() -> None:
    assert uncross([(99, 5)], [(100, 5)]) == NO_CROSS
    assert uncross([], [(100, 5)]) == NO_CROSS
    assert uncross([(100, 5)], []) == NO_CROSS


def test_uncross_picks_the_price_with_most_volume() -> None:
    bids = [(105, 3), (103, 4), (100, 5)]
    asks = [(99, 2), (101, 4), (104, 10)]
    # At 101: demand 3+4=7, supply 2+4=6 -> 6. At 103: demand 7, supply 6 -> 6. At 100:
    # demand 12, supply 2 -> 2. At 104: demand 3, supply 16 -> 3.
    result = uncross(bids, asks)
    assert result.volume == 6
    assert result.imbalance == 1
    assert 101 <= result.price <= 103


def test_uncross_prefers_smaller_imbalance_among_equal_volumes() -> None:
    # Volume 5 at both 100 and 101; imbalance at 100 is 8-5=3, at 101 it is 5-5=0.
    bids = [(101, 5), (100, 3)]
    asks = [(99, 5)]
    assert uncross(bids, asks) == UncrossResult(price=101, volume=5, imbalance=0)


def test_uncross_uses_reference_inside_the_tied_range() -> None:
    bids, asks = [(105, 10)], [(95, 10)]
    assert uncross(bids, asks, reference=101) == UncrossResult(101, 10, 0)


def test_uncross_clamps_reference_outside_the_tied_range() -> None:
    bids, asks = [(105, 10)], [(95, 10)]
    assert uncross(bids, asks, reference=200).price == 105
    assert uncross(bids, asks, reference=3).price == 95


def test_uncross_without_reference_takes_the_midpoint_rounded_down() -> None:
    assert uncross([(105, 10)], [(95, 10)]).price == 100
    assert uncross([(106, 10)], [(95, 10)]).price == 100  # midpoint 100.5


def test_per_order_entries_give_the_same_uncross_as_levels() -> None:
    per_order_bids = [(105, 1), (105, 2), (103, 4), (100, 2), (100, 3)]
    per_order_asks = [(99, 2), (101, 1), (101, 3), (104, 10)]
    levels_bids = [(105, 3), (103, 4), (100, 5)]
    levels_asks = [(99, 2), (101, 4), (104, 10)]
    assert uncross(per_order_bids, per_order_asks, 102) == uncross(levels_bids, levels_asks, 102)


def test_indicative_reports_what_the_uncross_would_do() -> None:
    bids, asks = [(105, 3), (103, 4)], [(99, 2), (101, 4)]
    assert indicative(bids, asks, 102) == uncross(bids, asks, 102)


def test_uncross_reads_only_the_crossing_part_of_the_book() -> None:
    def bids() -> Iterator[tuple[int, int]]:
        yield (101, 5)
        yield (100, 5)
        yield (90, 5)  # below the best ask: reading stops here
        raise AssertionError("read past the crossing entries")

    def asks() -> Iterator[tuple[int, int]]:
        yield (100, 4)
        yield (102, 1)  # above the best bid: reading stops here
        raise AssertionError("read past the crossing entries")

    assert uncross(bids(), asks()).volume == 4


def test_unsorted_levels_are_refused() -> None:
    with pytest.raises(AuctionError, match="bids must be given best price first"):
        uncross([(100, 1), (101, 1)], [(99, 1)])
    with pytest.raises(AuctionError, match="asks must be given best price first"):
        uncross([(110, 1)], [(100, 1), (99, 1)])


def test_non_positive_sizes_are_refused() -> None:
    with pytest.raises(AuctionError, match="must be positive"):
        uncross([(100, 0)], [(99, 1)])


def test_allocation_follows_price_then_time_priority() -> None:
    bids = [
        AuctionOrder(order_id=7, account=1, price=105, remaining=2),
        AuctionOrder(order_id=2, account=2, price=103, remaining=3),  # older, same price
        AuctionOrder(order_id=5, account=3, price=103, remaining=3),
        AuctionOrder(order_id=1, account=4, price=100, remaining=9),  # does not cross 103
    ]
    asks = [
        AuctionOrder(order_id=3, account=5, price=99, remaining=6),
        AuctionOrder(order_id=9, account=6, price=103, remaining=10),
    ]
    result, fills = run_auction(bids, asks)
    assert result == UncrossResult(price=103, volume=8, imbalance=-8)
    assert fills == [
        AuctionFill(103, 2, 7, 1, 3, 5, Side.BUY),
        AuctionFill(103, 3, 2, 2, 3, 5, Side.SELL),
        AuctionFill(103, 1, 5, 3, 3, 5, Side.BUY),
        AuctionFill(103, 2, 5, 3, 9, 6, Side.SELL),
    ]


def test_allocation_refuses_orders_that_cannot_supply_the_volume() -> None:
    bids = [AuctionOrder(1, 1, 105, 2), AuctionOrder(3, 1, 101, 9)]  # 101 cannot buy at 102
    asks = [AuctionOrder(2, 2, 100, 9)]
    with pytest.raises(AuctionError, match="the buy orders supply 2 of the 5 lots"):
        allocate(bids, asks, UncrossResult(price=102, volume=5, imbalance=0))


def test_allocation_of_no_volume_is_empty() -> None:
    assert allocate([], [], NO_CROSS) == []


# --- properties against a brute-force oracle -----------------------------------------------

PRICE_MIN, PRICE_MAX = 1, 40


def _volume_and_imbalance(
    bids: list[AuctionOrder], asks: list[AuctionOrder], price: int
) -> tuple[int, int]:
    demand = sum(order.remaining for order in bids if order.price >= price)
    supply = sum(order.remaining for order in asks if order.price <= price)
    return min(demand, supply), demand - supply


def _oracle(
    bids: list[AuctionOrder], asks: list[AuctionOrder], reference: int | None
) -> UncrossResult:
    """Every price tried, the rules applied literally: the slow, obvious version."""
    table = {
        price: _volume_and_imbalance(bids, asks, price) for price in range(PRICE_MIN, PRICE_MAX + 1)
    }
    best_volume = max(volume for volume, _ in table.values())
    if best_volume == 0:
        return NO_CROSS
    by_volume = [p for p, (v, _) in table.items() if v == best_volume]
    best_abs = min(abs(table[p][1]) for p in by_volume)
    tied = [p for p in by_volume if abs(table[p][1]) == best_abs]
    if reference is not None:
        distance = min(abs(p - reference) for p in tied)
        price = min(p for p in tied if abs(p - reference) == distance)
    else:
        price = (min(tied) + max(tied)) // 2
    return UncrossResult(price=price, volume=best_volume, imbalance=table[price][1])


def _orders(first_id: int, is_buy: bool) -> st.SearchStrategy[list[AuctionOrder]]:
    entry = st.tuples(st.integers(PRICE_MIN, PRICE_MAX), st.integers(1, 20))

    def build(entries: list[tuple[int, int]]) -> list[AuctionOrder]:
        # Arrival order is the list order; priority sorts by price, then arrival.
        orders = [
            AuctionOrder(first_id + index * 2, index % 3, price, qty)
            for index, (price, qty) in enumerate(entries)
        ]
        return sorted(orders, key=lambda o: (-o.price if is_buy else o.price, o.order_id))

    return st.lists(entry, max_size=15).map(build)


@settings(max_examples=300, deadline=None)
@given(
    bids=_orders(first_id=1, is_buy=True),
    asks=_orders(first_id=2, is_buy=False),
    reference=st.none() | st.integers(PRICE_MIN, PRICE_MAX),
)
def test_uncross_matches_brute_force_over_every_price(
    bids: list[AuctionOrder], asks: list[AuctionOrder], reference: int | None
) -> None:
    result, fills = run_auction(bids, asks, reference)
    assert result == _oracle(bids, asks, reference)

    bought = {o.order_id: 0 for o in bids}
    sold = {o.order_id: 0 for o in asks}
    for fill in fills:
        assert fill.price == result.price and fill.qty > 0
        bought[fill.buy_order_id] += fill.qty
        sold[fill.sell_order_id] += fill.qty
        later = max(fill.buy_order_id, fill.sell_order_id)
        assert (fill.buy_order_id if fill.taker_side is Side.BUY else fill.sell_order_id) == later
    assert sum(bought.values()) == sum(sold.values()) == result.volume
    for side, filled in ((bids, bought), (asks, sold)):
        # Priority: filled orders are a prefix of the priority order, all but the last whole.
        shares = [filled[o.order_id] for o in side]
        touched = [share for share in shares if share > 0]
        assert shares[: len(touched)] == touched
        for order, share in zip(side, touched[:-1], strict=False):
            assert share == order.remaining
        for order, share in zip(side, shares, strict=True):
            assert share <= order.remaining
            if share:
                assert (
                    (order.price >= result.price) if side is bids else (order.price <= result.price)
                )
