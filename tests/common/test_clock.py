"""The shared clocks: a manual one only moves forward and refuses naive times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from haltguard.common.clock import ManualClock, SystemClock, utc_now

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_a_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(START)
    assert clock.advance(timedelta(seconds=5)) == START + timedelta(seconds=5)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="only moves forward"):
        clock.set(START)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="must carry a time zone"):
        ManualClock(datetime(2026, 1, 5, 9, 0))


def test_the_real_clocks_answer_in_utc() -> None:
    assert utc_now().tzinfo is UTC and SystemClock().now().tzinfo is UTC
