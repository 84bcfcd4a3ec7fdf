"""One market's order book: price levels per side, a FIFO queue per level, an order-id index.

Layout
------
Each side keeps ``levels: dict[key, PriceLevel]`` and ``heap``, a binary min-heap of the
same keys. The key is the price for asks and the negated price for bids, so on both sides
the smallest key is the best level and "does this level cross a limit" is one comparison
``key <= limit_key``. The heap is lazy: a level emptied away from the top leaves its key
behind until it surfaces, and :meth:`BookSide.best` drops such stale keys. The heap is
rebuilt when stale keys outnumber live ones, so it never grows past about twice the live
levels (see ``_HEAP_SLACK``). ``heapq`` runs in C, which keeps the hot path short; sorted
walks (depth, export, fill-or-kill checks) sort the live keys on demand.

A level is an intrusive doubly linked list of :class:`RestingOrder` nodes and every order
points at its level, so cancel is O(1): find the node by id, unlink it, no scan.

Each order also carries a reference to the ledger row its hold sits in (``hold_row``), so
releasing it on a fill or cancel needs no dictionary lookup. The book itself never changes
balances.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import msgspec

from haltguard.venue.types import Side

# Rebuild a side's heap once it holds this many more keys than twice its live levels.
_HEAP_SLACK = 64

# A market order crosses every level: its limit key compares as +infinity.
NO_LIMIT_KEY = 1 << 64


class RestingOrder(msgspec.Struct, gc=False):
    """A live order on the book. Fills decrement ``remaining`` in place.

    ``hold_per_lot`` is what one remaining lot keeps held in ``hold_row`` (quote for a buy,
    base for a sell), so the order's whole hold is always ``remaining * hold_per_lot``.
    ``prev``, ``next`` and ``level`` are set when the order is queued.

    Not tracked by the garbage collector (``gc=False``): a deep book is hundreds of thousands
    of these, and scanning them on every collection would cost more than the matching. The
    links between resting orders form cycles, so :class:`OrderBook` unlinks every order
    when it is discarded (see :meth:`OrderBook.__del__`); removed orders are unlinked by
    :meth:`PriceLevel.unlink` or by the matcher.
    """

    order_id: int
    account: int
    is_buy: bool
    price: int
    qty: int  # as placed
    remaining: int
    client_order_id: str
    hold_per_lot: int
    hold_row: list[int]
    prev: RestingOrder | None = None
    next: RestingOrder | None = None
    level: PriceLevel | None = None

    @property
    def side(self) -> Side:
        return Side.BUY if self.is_buy else Side.SELL


class PriceLevel:
    """All resting orders at one price, oldest first, with their total for L2 depth."""

    __slots__ = ("count", "head", "key", "price", "qty", "tail")

    def __init__(self, price: int, key: int) -> None:
        self.price = price
        self.key = key
        self.qty = 0
        self.count = 0
        self.head: RestingOrder | None = None
        self.tail: RestingOrder | None = None

    def append(self, order: RestingOrder) -> None:
        tail = self.tail
        order.prev = tail
        order.next = None
        order.level = self
        if tail is None:
            self.head = order
        else:
            tail.next = order
        self.tail = order
        self.qty += order.remaining
        self.count += 1

    def unlink(self, order: RestingOrder) -> None:
        prev, nxt = order.prev, order.next
        if prev is None:
            self.head = nxt
        else:
            prev.next = nxt
        if nxt is None:
            self.tail = prev
        else:
            nxt.prev = prev
        order.prev = order.next = None
        order.level = None
        self.qty -= order.remaining
        self.count -= 1

    def __iter__(self) -> Iterator[RestingOrder]:
        node = self.head
        while node is not None:
            yield node
            node = node.next


class BookSide:
    """One side of the book. See the module docstring for the key convention."""

    __slots__ = ("heap", "is_buy", "levels", "sign")

    def __init__(self, is_buy: bool) -> None:
        self.is_buy = is_buy
        self.sign = -1 if is_buy else 1
        self.levels: dict[int, PriceLevel] = {}
        self.heap: list[int] = []

    def key(self, price: int) -> int:
        return price * self.sign

    def best(self) -> PriceLevel | None:
        """The best level, dropping stale heap keys on the way."""
        heap, levels = self.heap, self.levels
        while heap:
            level = levels.get(heap[0])
            if level is not None:
                return level
            heapq.heappop(heap)
        return None

    def level_for(self, price: int) -> PriceLevel:
        """The level at ``price``, created (and its key pushed) if it does not exist."""
        key = price * self.sign
        level = self.levels.get(key)
        if level is None:
            level = self.levels[key] = PriceLevel(price, key)
            heap = self.heap
            if len(heap) > 2 * len(self.levels) + _HEAP_SLACK:
                self.heap = heap = list(self.levels)
                heapq.heapify(heap)
            else:
                heapq.heappush(heap, key)
        return level

    def drop_level(self, level: PriceLevel) -> None:
        """Forget an emptied level; its heap key goes now if on top, else lazily."""
        key = level.key
        del self.levels[key]
        heap = self.heap
        if heap and heap[0] == key:
            heapq.heappop(heap)

    def sorted_levels(self) -> list[PriceLevel]:
        """Every level, best first."""
        levels = self.levels
        return [levels[key] for key in sorted(levels)]

    def top_levels(self, count: int) -> list[PriceLevel]:
        """The ``count`` best levels, best first, without sorting the whole side."""
        levels = self.levels
        return [levels[key] for key in heapq.nsmallest(count, levels)]

    def __iter__(self) -> Iterator[PriceLevel]:
        return iter(self.sorted_levels())


class OrderBook:
    """Both sides plus the order-id index. Knows nothing about matching rules or money."""

    __slots__ = ("asks", "bids", "orders")

    def __init__(self) -> None:
        self.bids = BookSide(is_buy=True)
        self.asks = BookSide(is_buy=False)
        self.orders: dict[int, RestingOrder] = {}

    def __del__(self) -> None:
        # Resting orders are invisible to the garbage collector; break their links so
        # reference counting frees them with the book.
        for order in self.orders.values():
            order.prev = order.next = None
            order.level = None

    def add(self, order: RestingOrder) -> None:
        """Queue ``order`` last at its price (time priority)."""
        self.orders[order.order_id] = order
        side = self.bids if order.is_buy else self.asks
        side.level_for(order.price).append(order)

    def remove(self, order: RestingOrder) -> None:
        """Take ``order`` off the book in O(1) (O(log L) when it empties the top level)."""
        del self.orders[order.order_id]
        level = order.level
        assert level is not None, "order is not on the book"
        level.unlink(order)
        if level.head is None:
            (self.bids if order.is_buy else self.asks).drop_level(level)

    def best_bid(self) -> int | None:
        level = self.bids.best()
        return None if level is None else level.price

    def best_ask(self) -> int | None:
        level = self.asks.best()
        return None if level is None else level.price

    def is_crossed(self) -> bool:
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid >= ask

    def in_priority_order(self) -> Iterator[RestingOrder]:
        """Every resting order: bids best first, then asks best first, oldest first in a level."""
        for side in (self.bids, self.asks):
            for level in side.sorted_levels():
                yield from level

    def __len__(self) -> int:
        return len(self.orders)

    def check(self) -> list[str]:
        """Structural problems: index and levels disagree, bad totals, wrong links."""
        problems: list[str] = []
        seen = 0
        for side in (self.bids, self.asks):
            heap_keys = set(side.heap)
            for key, level in side.levels.items():
                if key not in heap_keys:
                    problems.append(f"level {level.price} missing from the heap")
                if level.key != key or level.price * side.sign != key:
                    problems.append(f"level {level.price} filed under key {key}")
                qty = count = 0
                prev = None
                for order in level:
                    seen += 1
                    qty += order.remaining
                    count += 1
                    if order.prev is not prev or order.level is not level:
                        problems.append(f"order {order.order_id} has broken links")
                    if order.is_buy is not side.is_buy or order.price != level.price:
                        problems.append(f"order {order.order_id} is on the wrong level")
                    if order.remaining <= 0:
                        problems.append(f"order {order.order_id} rests with nothing left")
                    if self.orders.get(order.order_id) is not order:
                        problems.append(f"order {order.order_id} is not in the index")
                    prev = order
                if level.tail is not prev:
                    problems.append(f"level {level.price} has a wrong tail")
                if count == 0:
                    problems.append(f"level {level.price} is empty but kept")
                if qty != level.qty or count != level.count:
                    problems.append(f"level {level.price} totals disagree with its orders")
        if seen != len(self.orders):
            problems.append(f"index holds {len(self.orders)} orders, levels hold {seen}")
        return problems
