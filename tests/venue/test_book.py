"""The order book: price-time priority, O(1) removal, the lazy heap, and its self-check."""

from __future__ import annotations

import gc
import tracemalloc

from haltguard.venue.book import OrderBook, RestingOrder


def resting(order_id: int, is_buy: bool, price: int, qty: int, account: int = 1) -> RestingOrder:
    return RestingOrder(order_id, account, is_buy, price, qty, qty, "", 1, [0, 0])


def test_best_levels_are_highest_bid_and_lowest_ask() -> None:
    book = OrderBook()
    for order_id, (is_buy, price) in enumerate(
        [(True, 99), (True, 101), (True, 100), (False, 105), (False, 103), (False, 104)], 1
    ):
        book.add(resting(order_id, is_buy, price, 1))
    assert book.best_bid() == 101
    assert book.best_ask() == 103
    assert [level.price for level in book.bids.sorted_levels()] == [101, 100, 99]
    assert [level.price for level in book.asks.sorted_levels()] == [103, 104, 105]


def test_orders_at_one_price_queue_oldest_first() -> None:
    book = OrderBook()
    for order_id in (7, 3, 9):
        book.add(resting(order_id, False, 100, order_id))
    level = book.asks.best()
    assert level is not None
    assert [order.order_id for order in level] == [7, 3, 9]
    assert (level.qty, level.count) == (19, 3)


def test_removing_from_the_middle_keeps_the_queue_linked() -> None:
    book = OrderBook()
    orders = [resting(order_id, True, 100, 2) for order_id in (1, 2, 3)]
    for order in orders:
        book.add(order)
    book.remove(orders[1])
    level = book.bids.best()
    assert level is not None
    assert [order.order_id for order in level] == [1, 3]
    assert level.qty == 4
    assert 2 not in book.orders
    assert book.check() == []


def test_removing_the_last_order_drops_its_level() -> None:
    book = OrderBook()
    order = resting(1, False, 100, 1)
    book.add(order)
    book.remove(order)
    assert book.best_ask() is None
    assert book.asks.levels == {}
    assert len(book) == 0


def test_stale_heap_keys_are_skipped_when_they_surface() -> None:
    book = OrderBook()
    deep = resting(1, False, 110, 1)
    top = resting(2, False, 100, 1)
    book.add(deep)
    book.add(top)
    book.remove(deep)  # not on top: its key stays in the heap for now
    assert 110 in book.asks.heap
    book.remove(top)
    assert book.best_ask() is None
    assert book.asks.heap == []


def test_heap_is_rebuilt_before_stale_keys_pile_up() -> None:
    book = OrderBook()
    keeper = resting(1, True, 1, 1)
    book.add(keeper)
    for order_id in range(2, 2_000):
        order = resting(order_id, True, 1_000 - order_id % 500, 1)
        book.add(order)
        book.remove(order)
    assert len(book.bids.heap) <= 2 * len(book.bids.levels) + 64 + 1
    assert book.best_bid() == 1


def test_top_levels_returns_the_best_few_in_order() -> None:
    book = OrderBook()
    for order_id, price in enumerate([5, 9, 1, 7, 3], 1):
        book.add(resting(order_id, True, price, 1))
    assert [level.price for level in book.bids.top_levels(3)] == [9, 7, 5]


def test_crossed_book_is_reported() -> None:
    book = OrderBook()
    book.add(resting(1, True, 101, 1))
    assert not book.is_crossed()
    book.add(resting(2, False, 100, 1))
    assert book.is_crossed()


def test_check_finds_a_level_total_that_disagrees() -> None:
    book = OrderBook()
    book.add(resting(1, True, 100, 5))
    level = book.bids.best()
    assert level is not None
    level.qty += 1
    assert any("totals disagree" in problem for problem in book.check())


def test_check_finds_an_order_missing_from_the_index() -> None:
    book = OrderBook()
    book.add(resting(1, True, 100, 5))
    del book.orders[1]
    problems = book.check()
    assert any("not in the index" in problem for problem in problems)


def test_priority_order_lists_bids_then_asks_best_first() -> None:
    book = OrderBook()
    for order_id, (is_buy, price) in enumerate(
        [(False, 12), (True, 9), (False, 11), (True, 10), (True, 10)], 1
    ):
        book.add(resting(order_id, is_buy, price, 1))
    assert [o.order_id for o in book.in_priority_order()] == [4, 5, 2, 3, 1]


def test_a_discarded_book_frees_its_orders_though_the_collector_cannot_see_them() -> None:
    def fill_and_drop() -> None:
        book = OrderBook()
        for order_id in range(20_000):
            book.add(resting(order_id, order_id % 2 == 0, 100 + order_id % 50, 1))

    gc.collect()
    fill_and_drop()  # warm up allocator pools
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            fill_and_drop()
            gc.collect()
        leaked = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 100,000 leaked orders would be over 10 MB.
    assert leaked < 1_000_000
