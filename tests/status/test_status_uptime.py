"""Uptime bars from recorded status history: one bar per JST day, worst status of the day,
major outage counted in full and partial outage at 30 %."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from haltguard.status.rules import ComponentStatus
from haltguard.status.uptime import StatusSpan, uptime_bars

S = ComponentStatus
# 2025-01-10 12:00 JST
NOW = datetime(2025, 1, 10, 3, 0, tzinfo=UTC)


def test_a_day_shows_its_worst_status_even_for_a_short_outage() -> None:
    created = datetime(2025, 1, 8, 0, 0, tzinfo=UTC)  # 09:00 JST on the 8th
    halt = datetime(2025, 1, 9, 1, 0, tzinfo=UTC)
    spans = [StatusSpan(S.OPERATIONAL, created, halt),
             StatusSpan(S.MAJOR_OUTAGE, halt, halt + timedelta(minutes=10)),
             StatusSpan(S.OPERATIONAL, halt + timedelta(minutes=10), None)]
    bars = uptime_bars(spans, now=NOW, days=5)
    assert [bar.day for bar in bars.days] == [date(2025, 1, d) for d in range(6, 11)]
    assert [bar.status for bar in bars.days] == [None, None, S.OPERATIONAL, S.MAJOR_OUTAGE,
                                                 S.OPERATIONAL]
    assert bars.days[3].major_s == 600


def test_uptime_counts_partial_outage_at_thirty_percent_and_ignores_days_without_data() -> None:
    start = datetime(2025, 1, 9, 3, 0, tzinfo=UTC)  # exactly one day before NOW
    spans = [StatusSpan(S.OPERATIONAL, start, start + timedelta(hours=12)),
             StatusSpan(S.PARTIAL_OUTAGE, start + timedelta(hours=12), None)]
    bars = uptime_bars(spans, now=NOW, days=90)
    # 12 h up, 12 h partial: down 0.3 x 12 h out of 24 h observed.
    assert bars.uptime_percent is not None
    assert abs(bars.uptime_percent - 85.0) < 1e-9
    assert sum(1 for bar in bars.days if bar.status is None) == 88


def test_days_follow_japan_time_not_utc() -> None:
    # 23:30 UTC on the 9th is 08:30 JST on the 10th: the outage belongs to the 10th.
    late = datetime(2025, 1, 9, 23, 30, tzinfo=UTC)
    spans = [StatusSpan(S.OPERATIONAL, datetime(2025, 1, 1, tzinfo=UTC), late),
             StatusSpan(S.DEGRADED_PERFORMANCE, late, late + timedelta(minutes=5)),
             StatusSpan(S.OPERATIONAL, late + timedelta(minutes=5), None)]
    bars = uptime_bars(spans, now=NOW, days=2)
    assert [bar.status for bar in bars.days] == [S.OPERATIONAL, S.DEGRADED_PERFORMANCE]


def test_a_status_that_just_started_colours_today() -> None:
    spans = [StatusSpan(S.OPERATIONAL, datetime(2025, 1, 1, tzinfo=UTC), NOW),
             StatusSpan(S.MAJOR_OUTAGE, NOW, None)]
    assert uptime_bars(spans, now=NOW, days=1).days[-1].status == S.MAJOR_OUTAGE


def test_no_history_means_no_data_rather_than_perfect_uptime() -> None:
    bars = uptime_bars([], now=NOW, days=90)
    assert bars.uptime_percent is None
    assert all(bar.status is None for bar in bars.days)
