"""Market detectors: sharp moves, thin books, trade bursts and the venue's own breaker.

Pure classes driven by the venue's events and their ``ts``; no clock, no I/O. They run on
the venue's thread (fed after each command), so each costs a few integer operations per
trade. A detector does not decide anything: it measures and emits a :class:`Signal` when
its measurement crosses one of the thresholds the rules compare it against (its *levels*,
from :meth:`haltguard.detection.policies.PolicyEngine.levels`), so an unwatched or calm
market emits nothing.

The signals are listed, with their labels, in :data:`SIGNAL_DOCS`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Protocol

from haltguard.detection.policies import NS_PER_SECOND, DetectorSettings
from haltguard.detection.signals import Signal
from haltguard.venue.events import (
    CircuitBreakerTripped,
    Event,
    MarketAdded,
    MarketStateChanged,
    Trade,
)
from haltguard.venue.types import MarketState

SOURCE = "market"
BPS = 10_000
NO_SPREAD_BPS = BPS  # one side of the book is empty
TRADES_KEPT_MAX = 1_000_000  # per market, in the price window (bounded by the window anyway)

PRICE_MOVE = "market.price_move_bps"
TRADE_RATE = "market.trade_rate_ratio"
SPREAD = "market.spread_bps"
DEPTH = "market.depth_lots"
BREAKER_TRIPPED = "venue.circuit_breaker_tripped"
SIGNAL_DOCS: dict[str, str] = {
    PRICE_MOVE: "The largest move within `price_window_s`: down from the window's highest "
    "trade or up from its lowest, in basis points (integer). Labels `market`, `base`, "
    "`quote`, `direction` (`down`/`up`).",
    TRADE_RATE: "Trades per second over `trade_rate_window_s` as a percentage of the rate "
    "over `trade_rate_baseline_s` (100 = usual); quiet until a whole baseline was seen, and "
    "at most 100 while the window holds fewer than `trade_rate_min_trades` trades. "
    "Labels `market`, `base`, `quote`.",
    SPREAD: "Best ask minus best bid over the mid, in basis points, sampled every "
    "`book_sample_ms` of venue time; 10000 when a side of the book is empty. Labels "
    "`market`, `base`, `quote`.",
    DEPTH: "Lots within `book_depth_bps` of the mid on the thinner side of the book, "
    "sampled like the spread. Labels `market`, `base`, `quote`.",
    BREAKER_TRIPPED: "The venue's own price-band circuit breaker tripped (one signal per "
    "trip); the value is its trigger count of the day. Labels `market`, `base`, `quote`.",
}
"""Every signal the market detectors emit; the rules reference lists them from here."""
SIGNAL_NAMES = tuple(SIGNAL_DOCS)

Emit = Callable[[Signal], None]
_RARE_EVENTS = frozenset({CircuitBreakerTripped, MarketStateChanged, MarketAdded})


class Applied(Protocol):
    """One applied command as the detectors need it (the runtime's ``CommandResult``)."""

    @property
    def seq(self) -> int: ...

    @property
    def ts(self) -> int: ...

    @property
    def events(self) -> list[Event]: ...


def market_labels(market: str) -> dict[str, str]:
    """``market`` plus ``base`` and ``quote`` when the symbol reads ``BASE-QUOTE``, so a rule
    can freeze withdrawals of ``{base}``."""
    base, dash, quote = market.partition("-")
    if dash and base and quote:
        return {"market": market, "base": base, "quote": quote}
    return {"market": market}


class LevelCrossing:
    """Remembers which side of each level a measurement is on; says when that changes.

    ``(bisect_left, bisect_right)`` tells ``value < level``, ``== level`` and ``> level``
    apart for every level at once, so ``>`` and ``>=`` rules both see their edge. The first
    measurement (and the first after new levels) is always reported: a ``<`` rule must hear
    about a market that starts below its threshold.
    """

    __slots__ = ("_levels", "_position")

    _UNKNOWN = (-1, -1)

    def __init__(self, levels: Sequence[Decimal] = ()) -> None:
        self._levels: list[int | Decimal] = []
        self._position = self._UNKNOWN
        self.set_levels(levels)

    def set_levels(self, levels: Sequence[Decimal]) -> None:
        self._levels = [int(level) if level == int(level) else level for level in levels]
        self._position = self._UNKNOWN

    def crossed(self, value: int) -> bool:
        levels = self._levels
        if not levels:
            return False
        position = (bisect_left(levels, value), bisect_right(levels, value))
        if position == self._position:
            return False
        self._position = position
        return True


class PriceMoveDetector:
    """The largest move within a window, from monotonic queues of the window's highs and
    lows (each trade enters and leaves each queue once)."""

    __slots__ = ("_crossing", "_highs", "_labels", "_lows", "window_ns")

    def __init__(self, market: str, window_ns: int, levels: Sequence[Decimal] = ()) -> None:
        assert window_ns > 0, "the price window must be positive"
        self.window_ns = window_ns
        self._labels = market_labels(market)
        self._highs: deque[tuple[int, int]] = deque()  # (ts, price), prices decreasing
        self._lows: deque[tuple[int, int]] = deque()  # (ts, price), prices increasing
        self._crossing = LevelCrossing(levels)

    def set_levels(self, levels: Sequence[Decimal]) -> None:
        self._crossing.set_levels(levels)

    def on_trade(self, ts: int, price: int) -> Signal | None:
        highs, lows = self._highs, self._lows
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((ts, price))
        while lows and lows[-1][1] >= price:
            lows.pop()
        lows.append((ts, price))
        oldest = ts - self.window_ns
        while highs[0][0] < oldest:
            highs.popleft()
        while lows[0][0] < oldest:
            lows.popleft()
        high, low = highs[0][1], lows[0][1]
        down = (high - price) * BPS // high
        up = (price - low) * BPS // low
        move, direction = (down, "down") if down >= up else (up, "up")
        if not self._crossing.crossed(move):
            return None
        reference = high if direction == "down" else low
        return Signal(
            source=SOURCE, name=PRICE_MOVE, value=Decimal(move), ts_ns=ts,
            labels={**self._labels, "direction": direction},
            details={"price": str(price), "reference_price": str(reference),
                     "window_s": str(self.window_ns // NS_PER_SECOND)},
        )


class TradeRateDetector:
    """Trades per second now against the usual rate, in one-second buckets of venue time.

    Quiet until a whole baseline has been seen, so a freshly opened market does not look
    like a burst; evaluated once per bucket, not per trade.
    """

    __slots__ = ("_bucket_count", "_bucket_start", "_buckets", "_crossing", "_first_ts",
                 "_labels", "baseline_buckets", "min_trades", "window_buckets")

    def __init__(
        self, market: str, window_s: int, baseline_s: int, levels: Sequence[Decimal] = (),
        min_trades: int = 1,
    ) -> None:
        assert 0 < window_s < baseline_s, "the burst window must be shorter than the baseline"
        self.min_trades = min_trades
        self.window_buckets = window_s
        self.baseline_buckets = baseline_s
        self._labels = market_labels(market)
        self._buckets: deque[int] = deque(maxlen=baseline_s)  # trades per past second
        self._bucket_start = -1
        self._bucket_count = 0
        self._first_ts = -1
        self._crossing = LevelCrossing(levels)

    def set_levels(self, levels: Sequence[Decimal]) -> None:
        self._crossing.set_levels(levels)

    def on_trade(self, ts: int) -> Signal | None:
        signal = None
        if self._bucket_start < 0:
            self._bucket_start, self._first_ts = ts, ts
        elif ts - self._bucket_start >= NS_PER_SECOND:
            signal = self._close_buckets(ts)
        self._bucket_count += 1
        return signal

    def _close_buckets(self, ts: int) -> Signal | None:
        elapsed = (ts - self._bucket_start) // NS_PER_SECOND
        self._buckets.append(self._bucket_count)
        for _ in range(min(elapsed - 1, self.baseline_buckets)):
            self._buckets.append(0)  # seconds without a trade
        self._bucket_start += elapsed * NS_PER_SECOND
        self._bucket_count = 0
        if ts - self._first_ts < self.baseline_buckets * NS_PER_SECOND:
            return None
        buckets = self._buckets
        baseline_total = sum(buckets)
        if baseline_total == 0:
            return None
        recent = list(buckets)[-self.window_buckets:]
        ratio_pct = (sum(recent) * len(buckets) * 100) // (baseline_total * len(recent))
        if sum(recent) < self.min_trades:
            ratio_pct = min(ratio_pct, 100)  # a handful of trades is chance, not a burst
        if not self._crossing.crossed(ratio_pct):
            return None
        return Signal(
            source=SOURCE, name=TRADE_RATE, value=Decimal(ratio_pct), ts_ns=ts,
            labels=dict(self._labels),
            details={"recent_trades": str(sum(recent)), "window_s": str(len(recent)),
                     "baseline_trades": str(baseline_total), "baseline_s": str(len(buckets))},
        )


class BookDetector:
    """Spread and near-mid depth of one market, from periodic samples of its best levels."""

    __slots__ = ("_depth", "_labels", "_spread", "depth_bps")

    def __init__(
        self, market: str, depth_bps: int, spread_levels: Sequence[Decimal] = (),
        depth_levels: Sequence[Decimal] = (),
    ) -> None:
        self.depth_bps = depth_bps
        self._labels = market_labels(market)
        self._spread = LevelCrossing(spread_levels)
        self._depth = LevelCrossing(depth_levels)

    def set_levels(self, spread: Sequence[Decimal], depth: Sequence[Decimal]) -> None:
        self._spread.set_levels(spread)
        self._depth.set_levels(depth)

    def on_sample(
        self, ts: int, bids: Sequence[tuple[int, int]], asks: Sequence[tuple[int, int]]
    ) -> list[Signal]:
        """``bids``/``asks``: ``(price, lots)`` best first, deep enough to pass
        ``depth_bps`` from the mid (fewer when the book is thinner)."""
        signals: list[Signal] = []
        if not bids or not asks:
            spread, depth = NO_SPREAD_BPS, 0
            mid = bids[0][0] if bids else (asks[0][0] if asks else 0)
        else:
            best_bid, best_ask = bids[0][0], asks[0][0]
            mid = (best_bid + best_ask) // 2
            spread = (best_ask - best_bid) * BPS // mid if mid > 0 else NO_SPREAD_BPS
            reach = mid * self.depth_bps // BPS
            bid_lots = sum(lots for price, lots in bids if price >= mid - reach)
            ask_lots = sum(lots for price, lots in asks if price <= mid + reach)
            depth = min(bid_lots, ask_lots)
        details = {"mid": str(mid), "depth_bps": str(self.depth_bps)}
        if self._spread.crossed(spread):
            signals.append(Signal(source=SOURCE, name=SPREAD, value=Decimal(spread), ts_ns=ts,
                                  labels=dict(self._labels), details=details))
        if self._depth.crossed(depth):
            signals.append(Signal(source=SOURCE, name=DEPTH, value=Decimal(depth), ts_ns=ts,
                                  labels=dict(self._labels), details=details))
        return signals


def breaker_signal(ts: int, event: CircuitBreakerTripped) -> Signal:
    """The venue's own breaker tripped: always reported, it is rare and always meaningful."""
    return Signal(
        source="venue", name=BREAKER_TRIPPED, value=Decimal(event.trigger_count), ts_ns=ts,
        labels=market_labels(event.market),
        details={"reference_price": str(event.reference_price), "band_bps": str(event.band_bps),
                 "low": str(event.low), "high": str(event.high),
                 "attempted_price": str(event.attempted_price),
                 "pause_until_ts": str(event.pause_until_ts)},
    )


class MarketDetectors:
    """Every market detector for every market, fed each command's events.

    ``emit`` receives each signal; ``levels`` gives the thresholds for a signal name (the
    policy engine's); :meth:`refresh_levels` re-reads them after a rules reload.
    """

    def __init__(
        self, settings: DetectorSettings, emit: Emit,
        levels: Callable[[str], list[Decimal]] = lambda _name: [],
    ) -> None:
        self.settings = settings
        self._emit = emit
        self._levels = levels
        self._price: dict[str, PriceMoveDetector] = {}
        self._rate: dict[str, TradeRateDetector] = {}
        self._books: dict[str, BookDetector] = {}
        self._book_sample_ns = settings.book_sample_ms * 1_000_000
        self._next_book_ts = -1
        self.signals_emitted = 0
        self.market_states: dict[str, MarketState] = {}
        """Each market's state as of the last command seen (kept from the events)."""

    def refresh_levels(self, settings: DetectorSettings | None = None) -> None:
        """Re-read the thresholds (and, if given, new windows: those restart the windows)."""
        if settings is not None and settings != self.settings:
            self.settings = settings
            self._book_sample_ns = settings.book_sample_ms * 1_000_000
            self._price.clear()
            self._rate.clear()
            self._books.clear()
        for price in self._price.values():
            price.set_levels(self._levels(PRICE_MOVE))
        for rate in self._rate.values():
            rate.set_levels(self._levels(TRADE_RATE))
        for book in self._books.values():
            book.set_levels(self._levels(SPREAD), self._levels(DEPTH))

    def on_batch(self, applied: Sequence[Applied]) -> None:
        """The hot path: a batch of commands, each with its ``ts`` and events.

        A command with one event cannot hold a trade or a breaker trip (those come with the
        order that caused them), so only its kind is checked, for state changes.
        """
        for item in applied:
            events = item.events
            if len(events) == 1:
                kind = type(events[0])
                if kind is MarketStateChanged or kind is MarketAdded:
                    self._note_state(events[0])
                continue
            ts = item.ts
            for event in events:
                kind = type(event)
                if kind is Trade:
                    self._on_trade(ts, event)  # type: ignore[arg-type]
                elif kind in _RARE_EVENTS:
                    if kind is CircuitBreakerTripped:
                        self._send(breaker_signal(ts, event))  # type: ignore[arg-type]
                    else:
                        self._note_state(event)

    def _note_state(self, event: Event) -> None:
        if isinstance(event, MarketStateChanged):
            self.market_states[event.market] = event.new
        elif isinstance(event, MarketAdded):
            self.market_states[event.market] = event.state

    def _on_trade(self, ts: int, trade: Trade) -> None:
        market = trade.market
        price = self._price.get(market)
        if price is None:
            price = self._price[market] = PriceMoveDetector(
                market, self.settings.price_window_s * NS_PER_SECOND, self._levels(PRICE_MOVE)
            )
            self._rate[market] = TradeRateDetector(
                market, self.settings.trade_rate_window_s, self.settings.trade_rate_baseline_s,
                self._levels(TRADE_RATE), self.settings.trade_rate_min_trades,
            )
        signal = price.on_trade(ts, trade.price)
        if signal is not None:
            self._send(signal)
        signal = self._rate[market].on_trade(ts)
        if signal is not None:
            self._send(signal)

    def book_due(self, ts: int) -> bool:
        """True when the books should be sampled at ``ts`` (the caller reads the venue)."""
        if ts < self._next_book_ts:
            return False
        self._next_book_ts = ts + self._book_sample_ns
        return True

    def on_book(
        self, ts: int, market: str, bids: Sequence[tuple[int, int]],
        asks: Sequence[tuple[int, int]],
    ) -> None:
        book = self._books.get(market)
        if book is None:
            book = self._books[market] = BookDetector(
                market, self.settings.book_depth_bps, self._levels(SPREAD), self._levels(DEPTH)
            )
        for signal in book.on_sample(ts, bids, asks):
            self._send(signal)

    def _send(self, signal: Signal) -> None:
        self.signals_emitted += 1
        self._emit(signal)
