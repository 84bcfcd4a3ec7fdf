"""The price-band circuit breaker: references, bands, widening, limit state, snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haltguard.venue.breaker import (
    WINDOW_BUCKETS,
    BreakerConfigError,
    BreakerSnapshot,
    BreakerState,
    Verdict,
    band_limits,
)
from haltguard.venue.markets import BreakerConfig, coincheck_breaker, luld_breaker

SECOND = 1_000_000_000
JST = timezone(timedelta(hours=9))


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * SECOND


def rolling(window_s: int = 300, limit_state_s: int = 0) -> BreakerState:
    return BreakerState(
        BreakerConfig(
            band_bps=[1_000],
            pause_ns=60 * SECOND,
            reference="rolling",
            window_ns=window_s * SECOND,
            limit_state_ns=limit_state_s * SECOND,
        )
    )


# --- band arithmetic -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "bps", "low", "high"),
    [
        (100, 5_000, 50, 150),
        (101, 5_000, 50, 152),  # 50.5 rounds down, 151.5 rounds up: the band never shrinks
        (1, 3_000, 0, 2),
        (7, 1, 6, 8),
        (10_000, 1, 9_999, 10_001),
        (3, 10_000, 0, 6),
        (9_223_372_036_854_775, 5_000, 4_611_686_018_427_387, 13_835_058_055_282_163),
    ],
)
def test_band_limits_round_outwards_in_whole_ticks(
    reference: int, bps: int, low: int, high: int
) -> None:
    assert band_limits(reference, bps) == (low, high)


def test_band_edges_are_inside_and_one_tick_beyond_is_outside() -> None:
    breaker = BreakerState(coincheck_breaker())
    breaker.record_trade(1_000, 1, ts=10)
    assert breaker.band(10) == (500, 1_500)
    assert breaker.allows(500, 10) and breaker.allows(1_500, 10)
    assert not breaker.allows(499, 10)
    assert not breaker.allows(1_501, 10)


def test_breaker_without_reference_allows_any_price() -> None:
    breaker = BreakerState(coincheck_breaker())
    assert breaker.band(0) is None
    assert breaker.reference_price(0) is None
    assert breaker.allows(1, 0) and breaker.allows(10**15, 0)


# --- static reference (Coincheck) ------------------------------------------------------------


def test_static_reference_is_the_first_trade_after_a_reset() -> None:
    breaker = BreakerState(coincheck_breaker())
    ts = ns(datetime(2024, 3, 1, 10, 0, tzinfo=JST))
    breaker.record_trade(1_000, 1, ts)
    breaker.record_trade(1_400, 5, ts + SECOND)
    assert breaker.reference_price(ts + SECOND) == 1_000


def test_static_reference_resets_daily_at_nine_jst() -> None:
    breaker = BreakerState(coincheck_breaker())
    evening = ns(datetime(2024, 3, 1, 20, 0, tzinfo=JST))
    before_nine = ns(datetime(2024, 3, 2, 8, 59, 59, tzinfo=JST))
    nine = ns(datetime(2024, 3, 2, 9, 0, tzinfo=JST))
    breaker.record_trade(1_000, 1, evening)
    assert breaker.reference_price(before_nine) == 1_000
    assert not breaker.allows(2_000, before_nine)
    assert breaker.reference_price(nine) is None
    assert breaker.allows(2_000, nine)
    breaker.record_trade(2_000, 1, nine + SECOND)
    assert breaker.reference_price(nine + SECOND) == 2_000
    assert breaker.band(nine + SECOND) == (1_000, 3_000)


def test_coincheck_band_narrows_fifty_forty_thirty_thirty_with_each_trigger() -> None:
    breaker = BreakerState(coincheck_breaker())
    ts = ns(datetime(2024, 3, 1, 10, 0, tzinfo=JST))
    seen = []
    for step in range(4):
        now = ts + step * 600 * SECOND
        breaker.record_trade(10_000, 1, now)
        seen.append(breaker.band(now))
        assert not breaker.allows(20_000, now)
        assert breaker.violation(20_000, now, order_id=step) is Verdict.TRIP
        trip = breaker.trip(now, 20_000, order_id=step)
        assert trip.trigger_count == step + 1
        assert trip.pause_until_ts == now + 300 * SECOND
        assert trip.reference_price == 10_000
        assert breaker.reference_price(now) is None  # reset after each trigger
    assert seen == [(5_000, 15_000), (6_000, 14_000), (7_000, 13_000), (7_000, 13_000)]


def test_trip_reports_the_band_that_was_broken() -> None:
    breaker = BreakerState(coincheck_breaker())
    breaker.record_trade(10_000, 1, ts=5)
    trip = breaker.trip(6, attempted_price=16_000, order_id=42)
    assert (trip.band_bps, trip.low, trip.high) == (5_000, 5_000, 15_000)
    assert (trip.attempted_price, trip.order_id) == (16_000, 42)


def test_daily_reset_starts_the_day_at_the_first_band_again() -> None:
    breaker = BreakerState(coincheck_breaker())
    morning = ns(datetime(2024, 3, 1, 10, 0, tzinfo=JST))
    breaker.record_trade(10_000, 1, morning)
    breaker.trip(morning, 20_000)
    assert breaker.band_bps() == 4_000
    next_day = ns(datetime(2024, 3, 2, 9, 30, tzinfo=JST))
    breaker.record_trade(10_000, 1, next_day)
    assert breaker.trigger_count == 0
    assert breaker.band(next_day) == (5_000, 15_000)


def test_uncross_price_becomes_the_new_reference() -> None:
    breaker = BreakerState(coincheck_breaker())
    breaker.record_trade(10_000, 1, ts=1)
    breaker.record_uncross(14_000, 30, ts=2)
    assert breaker.reference_price(2) == 14_000
    empty = BreakerState(luld_breaker())
    empty.record_trade(10_000, 1, ts=1)
    empty.record_uncross(0, 0, ts=2)
    assert empty.band(2) is None


# --- rolling reference (LULD-like) -----------------------------------------------------------


def test_rolling_reference_is_the_volume_weighted_price_of_the_window() -> None:
    breaker = rolling(window_s=300)
    breaker.record_trade(100, 1, 0)
    breaker.record_trade(200, 3, 10 * SECOND)
    assert breaker.reference_price(10 * SECOND) == 175  # (100 + 600) / 4


def test_rolling_reference_drops_trades_older_than_the_window() -> None:
    breaker = rolling(window_s=300)
    breaker.record_trade(100, 1, 0)
    breaker.record_trade(200, 3, 10 * SECOND)
    breaker.record_trade(200, 1, 300 * SECOND - 1)
    assert breaker.reference_price(300 * SECOND - 1) == 180  # (100 + 800) / 5
    breaker.record_trade(200, 1, 300 * SECOND)  # the trade at 0 is now 300 s old: out
    assert breaker.reference_price(300 * SECOND) == 200


def test_rolling_reference_rounds_half_up() -> None:
    breaker = rolling()
    breaker.record_trade(100, 1, 0)
    breaker.record_trade(101, 1, 0)
    assert breaker.reference_price(0) == 101  # 100.5
    breaker.record_trade(100, 1, 1)
    assert breaker.reference_price(1) == 100  # 100.33


def test_quiet_market_keeps_its_rolling_reference() -> None:
    breaker = rolling(window_s=300)
    breaker.record_trade(100, 1, 0)
    assert breaker.reference_price(3_600 * SECOND) == 100
    assert not breaker.allows(200, 3_600 * SECOND)


def test_rolling_window_memory_is_bounded_however_fast_trades_come() -> None:
    breaker = rolling(window_s=300)
    for index in range(100_000):
        breaker.record_trade(100 + index % 2, 1, index * 10_000_000)  # 100 trades a second
    window = breaker.export().window
    assert len(window) == 2 * 300  # one bucket a second, two prices in each
    assert sum(qty for _, _, qty in window) == 30_000  # 300 s of trades at 100 a second
    # The last trade is at 999.99 s: the oldest bucket kept is the first starting after 699.99 s.
    assert window[0][0] == 700 * SECOND


# --- limit state -------------------------------------------------------------------------


def test_breaker_without_limit_state_trips_on_the_first_violation() -> None:
    breaker = rolling(limit_state_s=0)
    breaker.record_trade(100, 1, 0)
    assert breaker.violation(200, 1) is Verdict.TRIP


def test_limit_state_refuses_without_pausing_then_pauses_when_it_lasts() -> None:
    breaker = BreakerState(luld_breaker(band_bps=500))
    breaker.record_trade(1_000, 1, 0)
    assert breaker.violation(1_100, 1 * SECOND, order_id=9) is Verdict.REFUSE
    assert breaker.in_limit_state
    assert breaker.next_deadline_ts() == 16 * SECOND
    assert breaker.violation(1_100, 10 * SECOND, order_id=10) is Verdict.REFUSE
    assert breaker.expire(16 * SECOND - 1) is None
    trip = breaker.expire(16 * SECOND)
    assert trip is not None
    assert (trip.attempted_price, trip.order_id) == (1_100, 9)
    assert trip.pause_until_ts == 16 * SECOND + 300 * SECOND
    assert not breaker.in_limit_state
    assert breaker.next_deadline_ts() is None


def test_violation_after_limit_state_time_trips() -> None:
    breaker = BreakerState(luld_breaker(band_bps=500))
    breaker.record_trade(1_000, 1, 0)
    breaker.violation(1_100, 0)
    assert breaker.violation(1_100, 15 * SECOND) is Verdict.TRIP


def test_trade_inside_the_band_ends_the_limit_state() -> None:
    breaker = BreakerState(luld_breaker(band_bps=500))
    breaker.record_trade(1_000, 1, 0)
    breaker.violation(1_100, SECOND)
    breaker.record_trade(1_050, 1, 2 * SECOND)  # pinned at the upper edge: still limited
    assert breaker.in_limit_state
    breaker.record_trade(1_000, 1, 3 * SECOND)
    assert not breaker.in_limit_state
    assert breaker.expire(60 * SECOND) is None


def test_daily_reset_before_the_deadline_ends_the_limit_state() -> None:
    config = BreakerConfig(
        band_bps=[500],
        pause_ns=300 * SECOND,
        reference="static",
        limit_state_ns=15 * SECOND,
        daily_reset_ns_of_day=0,
    )
    breaker = BreakerState(config)
    almost_nine = ns(datetime(2024, 3, 2, 8, 59, 55, tzinfo=JST))
    breaker.record_trade(1_000, 1, almost_nine - SECOND)
    assert breaker.violation(1_100, almost_nine) is Verdict.REFUSE
    assert breaker.expire(almost_nine + 15 * SECOND) is None
    assert not breaker.in_limit_state


# --- snapshots and configuration ---------------------------------------------------------


def test_export_restore_round_trip_preserves_behaviour() -> None:
    breaker = BreakerState(luld_breaker(band_bps=500))
    breaker.record_trade(1_000, 2, 0)
    breaker.record_trade(1_020, 1, SECOND)
    breaker.violation(1_200, 2 * SECOND, order_id=3)
    encoded = msgspec.msgpack.encode(breaker.export())
    restored = BreakerState.restore(msgspec.msgpack.decode(encoded, type=BreakerSnapshot))
    assert restored.export() == breaker.export()
    assert msgspec.msgpack.encode(restored.export()) == encoded
    assert restored.band(3 * SECOND) == breaker.band(3 * SECOND)
    for state in (breaker, restored):
        state.record_trade(1_010, 4, 400 * SECOND)
    assert restored.export() == breaker.export()
    assert restored.reference_price(400 * SECOND) == 1_010


def test_export_of_equal_histories_is_equal() -> None:
    first, second = BreakerState(coincheck_breaker()), BreakerState(coincheck_breaker())
    for state in (first, second):
        state.record_trade(500, 1, ns(datetime(2024, 3, 1, tzinfo=UTC)))
    assert msgspec.json.encode(first.export()) == msgspec.json.encode(second.export())


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"band_bps": []}, "band_bps needs 1"),
        ({"band_bps": [0]}, "between 1 and 10000"),
        ({"band_bps": [10_001]}, "between 1 and 10000"),
        ({"reference": "vwap"}, "reference must be 'rolling' or 'static'"),
        ({"pause_ns": 0}, "pause_ns must be between 1"),
        ({"window_ns": 0}, "window_ns must be between 1"),
        ({"limit_state_ns": -1}, "limit_state_ns must be between 0"),
        ({"daily_reset_ns_of_day": 86_400 * SECOND}, "daily_reset_ns_of_day must be -1"),
    ],
)
def test_unusable_breaker_config_is_refused(changes: dict[str, object], complaint: str) -> None:
    fields = msgspec.structs.asdict(coincheck_breaker()) | changes
    with pytest.raises(BreakerConfigError, match=complaint):
        BreakerState(BreakerConfig(**fields))


@settings(max_examples=200, deadline=None)
@given(
    trades=st.lists(
        st.tuples(st.integers(1, 1_000), st.integers(1, 50), st.integers(0, 40 * SECOND)),
        min_size=1,
        max_size=60,
    ),
    cut=st.integers(0, 60),
)
def test_rolling_reference_matches_a_recomputation_from_all_trades(
    trades: list[tuple[int, int, int]], cut: int
) -> None:
    """Against the obvious version: sum every trade whose bucket is still in the window."""
    window_ns = 30 * SECOND
    bucket_ns = window_ns // WINDOW_BUCKETS
    breaker = rolling(window_s=30)
    history: list[tuple[int, int, int]] = []
    ts = 0
    for index, (price, qty, gap) in enumerate(trades):
        if index == cut:  # a snapshot taken mid-stream changes nothing
            breaker = BreakerState.restore(breaker.export())
        ts += gap
        breaker.record_trade(price, qty, ts)
        history.append((price, qty, ts))
        kept = [(p, q) for p, q, t in history if t - t % bucket_ns > ts - window_ns]
        notional, volume = sum(p * q for p, q in kept), sum(q for _, q in kept)
        assert breaker.reference_price(ts) == (2 * notional + volume) // (2 * volume)
