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

from haltguard.common.units import BPS, NS_PER_S
from haltguard.detection.policies import DetectorSettings
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
NO_SPREAD_BPS = BPS  # one side of the book is empty

PRICE_MOVE = "market.price_move_bps"
TRADE_RATE = "market.trade_rate_ratio"
SPREAD = "market.spread_bps"
DEPTH = "market.depth_lots"
BREAKER_TRIPPED = "venue.circuit_breaker_tripped"
COMMAND_QUARANTINED = "venue.command_quarantined"
VENUE_SELF_ACTOR = "system:venue"
"""The actor of a halt the venue runtime engages by itself: after the engine raised on a
command, which it quarantined (``haltguard.gateway.runtime``)."""
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
    COMMAND_QUARANTINED: "The venue halted a market by itself (actor `system:venue`) because "
    "the engine raised on a command, which it quarantined: a software bug. Value 1; details "
    "`reason` (the seq and the error). Labels `market`, `base`, `quote`.",
}
"""Every signal the market detectors emit; the rules reference lists them from here."""

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

    def quiet_below(self) -> int:
        """The lowest level, when the last value was below every level and that level is a
        positive whole number (so a caller may skip values that stay below it); else 0."""
        if self._position != (0, 0) or not self._levels:
            return 0
        lowest = self._levels[0]
        return lowest if isinstance(lowest, int) and lowest > 0 else 0

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
    """The largest move within a window: down from the window's highest trade, or up from
    its lowest.

    Prices are kept as the low and high of each second of venue time (so the window is
    ``window_ns`` to within a second and memory is bounded however fast the market
    trades). While the move is below every level, a trade inside the *quiet band* (the
    prices that keep it there, from the window's extremes) costs two comparisons; any
    other trade is measured exactly.
    """

    __slots__ = ("_band_high", "_band_low", "_bucket_end", "_buckets", "_crossing",
                 "_current", "_high", "_labels", "_low", "window_ns")

    def __init__(self, market: str, window_ns: int, levels: Sequence[Decimal] = ()) -> None:
        assert window_ns > 0, "the price window must be positive"
        self.window_ns = window_ns
        self._labels = market_labels(market)
        self._buckets: deque[list[int]] = deque()  # closed seconds: [start_ts, low, high]
        self._current = [0, 0, 0]  # the second being filled: [start_ts, low, high]
        self._bucket_end = -1  # when the current second ends (-1: no trade yet)
        self._high = 0  # the window's extremes, the current second included
        self._low = 0
        self._band_low, self._band_high = 1, 0  # empty: measure every trade
        self._crossing = LevelCrossing(levels)

    def set_levels(self, levels: Sequence[Decimal]) -> None:
        self._crossing.set_levels(levels)
        self._band_low, self._band_high = 1, 0

    def on_trade(self, ts: int, price: int) -> Signal | None:
        if ts >= self._bucket_end:
            self._roll(ts, price)
        current = self._current
        if price > current[2]:
            current[2] = price
            if price > self._high:  # a new extreme moves the band: measure from it
                self._high, self._band_high = price, 0
        elif price < current[1]:
            current[1] = price
            if price < self._low:
                self._low, self._band_high = price, 0
        if self._band_low <= price <= self._band_high:
            return None
        return self._measure(ts, price)

    def _roll(self, ts: int, price: int) -> None:
        """Close the current second, start the one holding ``ts``, forget what left the
        window, and recompute the extremes."""
        buckets = self._buckets
        if self._bucket_end >= 0:
            buckets.append(self._current)
        start = ts - ts % NS_PER_S
        self._current = [start, price, price]
        self._bucket_end = start + NS_PER_S
        oldest = start - self.window_ns
        while buckets and buckets[0][0] <= oldest:
            buckets.popleft()
        self._low = min([price, *(bucket[1] for bucket in buckets)])
        self._high = max([price, *(bucket[2] for bucket in buckets)])
        self._band_low, self._band_high = 1, 0

    def _measure(self, ts: int, price: int) -> Signal | None:
        high, low = self._high, self._low
        down = (high - price) * BPS // high
        up = (price - low) * BPS // low
        move, direction = (down, "down") if down >= up else (up, "up")
        crossed = self._crossing.crossed(move)
        quiet_below = self._crossing.quiet_below()
        if quiet_below:  # p >= band_low keeps down < level, p <= band_high keeps up < level
            self._band_low = high - (quiet_below * high) // BPS + 1
            self._band_high = low + (quiet_below * low) // BPS - 1
        else:  # above a level: every trade is measured, so the way back is seen
            self._band_low, self._band_high = 1, 0
        if not crossed:
            return None
        reference = high if direction == "down" else low
        return Signal(
            source=SOURCE, name=PRICE_MOVE, value=Decimal(move), ts_ns=ts,
            labels={**self._labels, "direction": direction},
            details={"price": str(price), "reference_price": str(reference),
                     "window_s": str(self.window_ns // NS_PER_S)},
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
        return self.on_trades(ts, 1)

    def on_trades(self, ts: int, count: int) -> Signal | None:
        """``count`` trades up to ``ts`` (a batch's trades are counted at its last ts)."""
        signal = None
        if self._bucket_start < 0:
            self._bucket_start, self._first_ts = ts, ts
        elif ts - self._bucket_start >= NS_PER_S:
            signal = self._close_buckets(ts)
        self._bucket_count += count
        return signal

    def _close_buckets(self, ts: int) -> Signal | None:
        elapsed = (ts - self._bucket_start) // NS_PER_S
        self._buckets.append(self._bucket_count)
        for _ in range(min(elapsed - 1, self.baseline_buckets)):
            self._buckets.append(0)  # seconds without a trade
        self._bucket_start += elapsed * NS_PER_S
        self._bucket_count = 0
        if ts - self._first_ts < self.baseline_buckets * NS_PER_S:
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


def quarantine_signal(ts: int, event: MarketStateChanged) -> Signal:
    """The venue halted a market itself because the engine raised on a command (a software
    bug): always reported, so an incident opens even though no rule asked for the halt."""
    return Signal(
        source="venue", name=COMMAND_QUARANTINED, value=Decimal(1), ts_ns=ts,
        labels=market_labels(event.market),
        details={"reason": event.reason, "old_state": str(event.old)},
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
        self._watches: dict[str, tuple[PriceMoveDetector, TradeRateDetector]] = {}
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
            self._watches.clear()
            self._books.clear()
        for price, rate in self._watches.values():
            price.set_levels(self._levels(PRICE_MOVE))
            rate.set_levels(self._levels(TRADE_RATE))
        for book in self._books.values():
            book.set_levels(self._levels(SPREAD), self._levels(DEPTH))

    def on_batch(self, applied: Sequence[Applied]) -> None:
        """The hot path: a batch of commands, each with its ``ts`` and events.

        A command with one event cannot hold a trade or a breaker trip (those come with the
        order that caused them), so only its kind is checked, for state changes. Each trade
        goes to its market's price detector; the trade-rate detectors get each market's
        count once per batch.
        """
        watches = self._watches
        counts: dict[str, int] = {}
        last_ts = 0
        for item in applied:
            events = item.events
            if len(events) == 1:
                kind = type(events[0])
                if kind is MarketStateChanged or kind is MarketAdded:
                    self._note_state(item.ts, events[0])
                continue
            ts = last_ts = item.ts
            for event in events:
                kind = type(event)
                if kind is Trade:
                    market = event.market  # type: ignore[union-attr]
                    watch = watches.get(market) or self._watch(market)
                    signal = watch[0].on_trade(ts, event.price)  # type: ignore[union-attr]
                    if signal is not None:
                        self._send(signal)
                    counts[market] = counts.get(market, 0) + 1
                elif kind in _RARE_EVENTS:
                    if kind is CircuitBreakerTripped:
                        self._send(breaker_signal(ts, event))  # type: ignore[arg-type]
                    else:
                        self._note_state(ts, event)
        for market, count in counts.items():
            signal = watches[market][1].on_trades(last_ts, count)
            if signal is not None:
                self._send(signal)

    def _note_state(self, ts: int, event: Event) -> None:
        if isinstance(event, MarketStateChanged):
            self.market_states[event.market] = event.new
            if event.actor == VENUE_SELF_ACTOR and event.new == MarketState.HALTED:
                self._send(quarantine_signal(ts, event))
        elif isinstance(event, MarketAdded):
            self.market_states[event.market] = event.state

    def _watch(self, market: str) -> tuple[PriceMoveDetector, TradeRateDetector]:
        settings = self.settings
        watch = self._watches[market] = (
            PriceMoveDetector(market, settings.price_window_s * NS_PER_S,
                              self._levels(PRICE_MOVE)),
            TradeRateDetector(market, settings.trade_rate_window_s,
                              settings.trade_rate_baseline_s, self._levels(TRADE_RATE),
                              settings.trade_rate_min_trades),
        )
        return watch

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
