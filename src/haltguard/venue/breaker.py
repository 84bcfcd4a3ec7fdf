"""A market's price-band circuit breaker: reference price, band, limit state and trips.

The engine asks :meth:`BreakerState.allows` before every fill (two integer compares on the
hot path) and tells the breaker about every trade. What is implemented, exactly:

- Reference, ``"rolling"``: the volume-weighted average price of the recent trades, rounded
  half up to a tick. Trades are summed in ``WINDOW_BUCKETS`` time buckets of
  ``window_ns // WINDOW_BUCKETS`` (1 s for a 5-minute window), so memory stays bounded
  however fast the market trades; a bucket leaves the window once its start is ``window_ns``
  before the latest trade, so no trade older than ``window_ns`` counts and the newest
  ``window_ns`` minus one bucket always do. The window is anchored on the latest trade, not
  on the clock: a quiet market keeps its last reference (as LULD does).
- Reference, ``"static"``: the price of the first trade after a reset.
- Resets: daily at ``daily_reset_ns_of_day`` after 00:00 UTC (0 is 09:00 JST, Coincheck's
  reset), which forgets the reference and the trigger count (the day starts at the first
  band again); after each trip, which forgets the reference, so the next trade (normally the
  reopening auction's uncross) sets it; and after any auction uncross
  (:meth:`BreakerState.record_uncross`), whose price is the new reference in both modes.
- Band: ``band_bps`` picked by the trigger count (the last entry repeats), in whole ticks:
  ``low = ref * (10000 - bps) // 10000`` and ``high = ceil(ref * (10000 + bps) / 10000)``.
  No reference, no band: everything is allowed.
- Without a limit state (``limit_state_ns`` = 0) a fill outside the band trips at once: the
  fill does not happen and the market pauses for ``pause_ns``.
- With a limit state (LULD-like): the first fill outside the band is refused and starts the
  limit state; later ones are refused too. A trade strictly inside the band (not at its edge)
  ends the limit state: the market came off the band. If the limit state lasts
  ``limit_state_ns``, the breaker trips (:meth:`BreakerState.expire`, due at
  :meth:`BreakerState.next_deadline_ts`), and so does a refused fill at or after that time.

Time only arrives as ``ts`` arguments and must not go backwards between calls.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum

import msgspec

from haltguard.common.units import NS_PER_DAY
from haltguard.venue.markets import BreakerConfig
from haltguard.venue.types import INT64_MAX

BPS_PER_UNIT = 10_000
BAND_STEPS_MAX = 16
BREAKER_DURATION_NS_MAX = NS_PER_DAY
WINDOW_BUCKETS = 300
_NEVER = INT64_MAX
_NO_LIMIT_STATE = -1


class BreakerConfigError(ValueError):
    """A breaker configuration that cannot work; the message names the field."""


def validate_breaker_config(config: BreakerConfig) -> None:
    """Raise :class:`BreakerConfigError` unless ``config`` is usable (check before applying)."""
    bands = config.band_bps
    if not 1 <= len(bands) <= BAND_STEPS_MAX:
        raise BreakerConfigError(
            f"band_bps needs 1 to {BAND_STEPS_MAX} band widths, got {len(bands)}"
        )
    for bps in bands:
        if not 1 <= bps <= BPS_PER_UNIT:
            raise BreakerConfigError(
                f"band_bps entries are basis points between 1 and {BPS_PER_UNIT}, got {bps}"
            )
    if config.reference not in ("rolling", "static"):
        raise BreakerConfigError(
            f"reference must be 'rolling' or 'static', got {config.reference!r}"
        )
    durations = {
        "pause_ns": (config.pause_ns, 1),
        "window_ns": (config.window_ns, 1),
        "limit_state_ns": (config.limit_state_ns, 0),
    }
    for name, (value, lowest) in durations.items():
        if not lowest <= value <= BREAKER_DURATION_NS_MAX:
            raise BreakerConfigError(
                f"{name} must be between {lowest} and {BREAKER_DURATION_NS_MAX} ns (one day), "
                f"got {value}"
            )
    reset = config.daily_reset_ns_of_day
    if reset != -1 and not 0 <= reset < NS_PER_DAY:
        raise BreakerConfigError(
            f"daily_reset_ns_of_day must be -1 (never) or between 0 and {NS_PER_DAY - 1}, "
            f"got {reset}"
        )


def band_limits(reference: int, bps: int) -> tuple[int, int]:
    """``(low, high)`` ticks for a band of ``bps`` around ``reference``; integers only."""
    low = reference * (BPS_PER_UNIT - bps) // BPS_PER_UNIT
    high = -((-reference * (BPS_PER_UNIT + bps)) // BPS_PER_UNIT)
    return low, high


class Verdict(StrEnum):
    """What to do with a fill :meth:`BreakerState.allows` refused."""

    REFUSE = "refuse"  # limit state: the fill does not happen, the market keeps trading
    TRIP = "trip"  # the fill does not happen and the market pauses: call trip()


class BreakerTrip(msgspec.Struct, frozen=True):
    """Everything a CircuitBreakerTripped event reports, taken at the moment of the trip.

    ``trigger_count`` counts this trip; ``band_bps``/``low``/``high`` are the band that was
    broken; ``attempted_price``/``order_id`` the fill that broke it (for an expired limit
    state, the fill that started the limit state).
    """

    reference_price: int
    band_bps: int
    low: int
    high: int
    attempted_price: int
    order_id: int
    trigger_count: int
    pause_until_ts: int


class BreakerSnapshot(msgspec.Struct, frozen=True):
    """A breaker's whole state, for engine snapshots: equal states give equal snapshots.

    ``window`` is ``(bucket start ts, price, qty)`` for the rolling window, by bucket then
    price, each price's trades in a bucket summed; ``static_reference`` 0 means none;
    ``limit_since_ts`` -1 means not in a limit state.
    """

    config: BreakerConfig
    trigger_count: int
    static_reference: int
    window: list[tuple[int, int, int]]
    next_reset_ts: int
    limit_since_ts: int
    limit_price: int
    limit_order_id: int


class _Bucket:
    """The trades of one time slice of the rolling window, summed by price."""

    __slots__ = ("notional", "qty", "qty_by_price", "start_ts")

    def __init__(self, start_ts: int) -> None:
        self.start_ts = start_ts
        self.notional = 0
        self.qty = 0
        self.qty_by_price: dict[int, int] = {}

    def add(self, price: int, qty: int) -> None:
        self.notional += price * qty
        self.qty += qty
        self.qty_by_price[price] = self.qty_by_price.get(price, 0) + qty


class BreakerState:
    """One market's breaker. Mutable; every method is deterministic in its arguments."""

    __slots__ = (
        "_bps",
        "_bucket_ns",
        "_notional",
        "_qty",
        "_reference",
        "_static",
        "_static_reference",
        "_window",
        "config",
        "high",
        "limit_order_id",
        "limit_price",
        "limit_since_ts",
        "low",
        "next_reset_ts",
        "trigger_count",
    )

    def __init__(self, config: BreakerConfig) -> None:
        """Raises :class:`BreakerConfigError` for an unusable config."""
        validate_breaker_config(config)
        self.config = config
        self._static = config.reference == "static"
        self.trigger_count = 0
        self._static_reference = 0
        self._window: deque[_Bucket] = deque()  # oldest first
        self._bucket_ns = max(1, config.window_ns // WINDOW_BUCKETS)
        self._notional = 0  # sum of price * qty over the window
        self._qty = 0  # sum of qty over the window
        self._bps = config.band_for(0)
        # The first reset instant is at or after ts 0, so the first call re-anchors it.
        self.next_reset_ts = _NEVER if config.daily_reset_ns_of_day < 0 else 0
        self.limit_since_ts = _NO_LIMIT_STATE
        self.limit_price = 0
        self.limit_order_id = 0
        self._reference = 0
        # The band in ticks (see allows): public because Venue._match reads them, with
        # next_reset_ts, once per price level instead of calling allows.
        self.low = 0
        self.high = _NEVER
        self._refresh_band()

    # --- reading -----------------------------------------------------------------------

    def allows(self, price: int, ts: int) -> bool:
        """May a fill happen at ``price`` now? The hot path: no allocation, two compares."""
        return self.low <= price <= self.high or ts >= self.next_reset_ts

    def reference_price(self, ts: int) -> int | None:
        """The reference at ``ts``, or None before the first trade since a reset."""
        if ts >= self.next_reset_ts or self._reference == 0:
            return None
        return self._reference

    def band_bps(self) -> int:
        """The band half-width in force, from the trigger count."""
        return self._bps

    def band(self, ts: int) -> tuple[int, int] | None:
        """``(low, high)`` in ticks at ``ts``, or None while there is no reference."""
        if self.reference_price(ts) is None:
            return None
        return self.low, self.high

    @property
    def in_limit_state(self) -> bool:
        return self.limit_since_ts != _NO_LIMIT_STATE

    def next_deadline_ts(self) -> int | None:
        """When :meth:`expire` has something to do (a limit state running out), else None.

        The pause a trip starts is the engine's auction timer (``pause_until_ts``), and the
        daily reset needs no deadline: it applies on the first call at or after it.
        """
        if not self.in_limit_state:
            return None
        return self.limit_since_ts + self.config.limit_state_ns

    # --- changing ----------------------------------------------------------------------

    def record_trade(self, price: int, qty: int, ts: int) -> None:
        """Account for a trade that happened (continuous matching) at ``price`` x ``qty``."""
        assert price > 0 and qty > 0, "a trade has a positive price and quantity"
        if ts >= self.next_reset_ts:  # (the test is _reset_if_due's own; here it saves a call)
            self._reset_if_due(ts)
        if self.limit_since_ts != _NO_LIMIT_STATE and self.low < price < self.high:
            self._leave_limit_state()
        if self._static:
            if self._static_reference == 0:
                self._static_reference = price
                self._refresh_band()
            return
        self._add_to_window(price, qty, ts)
        self._refresh_band()

    def record_uncross(self, price: int, volume: int, ts: int) -> None:
        """An auction uncrossed at ``price``: that price becomes the reference (both modes)."""
        self._reset_if_due(ts)
        self._forget_reference()
        self._leave_limit_state()
        if volume > 0:
            self.record_trade(price, volume, ts)

    def violation(self, price: int, ts: int, order_id: int = 0) -> Verdict:
        """A fill at ``price`` was refused by :meth:`allows`: refuse it, or trip the breaker.

        Starts the limit state on the first refusal when the config has one.
        """
        assert not self.allows(price, ts), "violation() is for fills allows() refused"
        limit_ns = self.config.limit_state_ns
        if limit_ns == 0:
            return Verdict.TRIP
        if not self.in_limit_state:
            self.limit_since_ts = ts
            self.limit_price = price
            self.limit_order_id = order_id
            return Verdict.REFUSE
        if ts >= self.limit_since_ts + limit_ns:
            return Verdict.TRIP
        return Verdict.REFUSE

    def trip(self, ts: int, attempted_price: int, order_id: int = 0) -> BreakerTrip:
        """Trip now: count it, forget the reference, and return what the event reports.

        The engine then pauses the market (an auction) until ``pause_until_ts``.
        """
        reference = self.reference_price(ts)
        assert reference is not None, "a breaker without a reference cannot trip"
        bps = self._bps
        self.trigger_count += 1
        self._bps = self.config.band_for(self.trigger_count)
        record = BreakerTrip(
            reference_price=reference,
            band_bps=bps,
            low=self.low,
            high=self.high,
            attempted_price=attempted_price,
            order_id=order_id,
            trigger_count=self.trigger_count,
            pause_until_ts=ts + self.config.pause_ns,
        )
        self._forget_reference()
        self._leave_limit_state()
        return record

    def expire(self, ts: int) -> BreakerTrip | None:
        """Trip if a limit state has lasted ``limit_state_ns`` by ``ts``; else nothing."""
        deadline = self.next_deadline_ts()
        if deadline is None or ts < deadline:
            return None
        if deadline >= self.next_reset_ts:
            self._reset_if_due(ts)  # the daily reset came first and ended the limit state
            return None
        return self.trip(ts, self.limit_price, self.limit_order_id)

    # --- snapshots ---------------------------------------------------------------------

    def export(self) -> BreakerSnapshot:
        return BreakerSnapshot(
            config=self.config,
            trigger_count=self.trigger_count,
            static_reference=self._static_reference,
            window=[
                (bucket.start_ts, price, bucket.qty_by_price[price])
                for bucket in self._window
                for price in sorted(bucket.qty_by_price)
            ],
            next_reset_ts=self.next_reset_ts,
            limit_since_ts=self.limit_since_ts,
            limit_price=self.limit_price,
            limit_order_id=self.limit_order_id,
        )

    @classmethod
    def restore(cls, snapshot: BreakerSnapshot) -> BreakerState:
        state = cls(snapshot.config)
        state.trigger_count = snapshot.trigger_count
        state._bps = snapshot.config.band_for(snapshot.trigger_count)
        state._static_reference = snapshot.static_reference
        for start_ts, price, qty in snapshot.window:
            if not state._window or state._window[-1].start_ts != start_ts:
                state._window.append(_Bucket(start_ts))
            state._window[-1].add(price, qty)
            state._notional += price * qty
            state._qty += qty
        state.next_reset_ts = snapshot.next_reset_ts
        state.limit_since_ts = snapshot.limit_since_ts
        state.limit_price = snapshot.limit_price
        state.limit_order_id = snapshot.limit_order_id
        state._refresh_band()
        return state

    # --- internals ---------------------------------------------------------------------

    def _reset_if_due(self, ts: int) -> None:
        if ts < self.next_reset_ts:
            return
        offset = self.config.daily_reset_ns_of_day
        self.next_reset_ts = ((ts - offset) // NS_PER_DAY + 1) * NS_PER_DAY + offset
        self.trigger_count = 0
        self._bps = self.config.band_for(0)
        self._forget_reference()
        self._leave_limit_state()

    def _forget_reference(self) -> None:
        self._static_reference = 0
        self._window.clear()
        self._notional = 0
        self._qty = 0
        self._refresh_band()

    def _leave_limit_state(self) -> None:
        self.limit_since_ts = _NO_LIMIT_STATE
        self.limit_price = 0
        self.limit_order_id = 0

    def _add_to_window(self, price: int, qty: int, ts: int) -> None:
        window = self._window
        start_ts = ts - ts % self._bucket_ns
        if window and window[-1].start_ts == start_ts:
            window[-1].add(price, qty)
        else:
            assert not window or start_ts > window[-1].start_ts, "trades arrive in time order"
            bucket = _Bucket(start_ts)
            bucket.add(price, qty)
            window.append(bucket)
        self._notional += price * qty
        self._qty += qty
        oldest_kept = ts - self.config.window_ns
        while window[0].start_ts <= oldest_kept:
            old = window.popleft()
            self._notional -= old.notional
            self._qty -= old.qty

    def _refresh_band(self) -> None:
        if self.config.reference == "static":
            reference = self._static_reference
        elif self._qty > 0:
            reference = (2 * self._notional + self._qty) // (2 * self._qty)
        else:
            reference = 0
        self._reference = reference
        if reference == 0:
            self.low, self.high = 0, _NEVER
        else:
            self.low, self.high = band_limits(reference, self._bps)
