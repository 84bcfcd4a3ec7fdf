"""Uptime bars, pure: turn a component's recorded status history into one bar per day.

Days are calendar days in Japan time (JST, UTC+9), the exchange's day. A day's colour is the
worst status the component had that day; its downtime counts major outage in full and
partial outage at 30 % (part of the service still worked). Degraded performance and
maintenance count as up. Days before the component existed have no data and do not count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from haltguard.status.rules import ComponentStatus, worst

JST = timezone(timedelta(hours=9), "JST")
UPTIME_DAYS = 90
PARTIAL_OUTAGE_WEIGHT = 0.3


@dataclass(frozen=True)
class StatusSpan:
    """The component had ``status`` from ``start`` until ``end`` (or the present)."""

    status: ComponentStatus
    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class DayBar:
    day: date
    status: ComponentStatus | None  # None: no data (the component did not exist yet)
    major_s: int
    partial_s: int
    observed_s: int

    @property
    def downtime_s(self) -> float:
        return self.major_s + PARTIAL_OUTAGE_WEIGHT * self.partial_s


@dataclass(frozen=True)
class UptimeBars:
    days: tuple[DayBar, ...]

    @property
    def uptime_percent(self) -> float | None:
        """Over the days with data; ``None`` when there are none."""
        observed = sum(day.observed_s for day in self.days)
        if observed == 0:
            return None
        down = sum(day.downtime_s for day in self.days)
        return max(0.0, 100.0 * (1 - down / observed))


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=JST)


def _overlap_s(start: datetime, end: datetime, low: datetime, high: datetime) -> int:
    return max(0, int((min(end, high) - max(start, low)).total_seconds()))


def uptime_bars(
    spans: Sequence[StatusSpan], *, now: datetime, days: int = UPTIME_DAYS
) -> UptimeBars:
    """One bar per JST day for the ``days`` days ending today (today is the last bar,
    counted up to ``now``). ``spans`` are in time order and do not overlap."""
    assert days > 0, "at least one day"
    today = now.astimezone(JST).date()
    bars = []
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        low = _day_start(day)
        high = min(_day_start(day + timedelta(days=1)), now)
        seen: list[ComponentStatus] = []
        major_s = partial_s = observed_s = 0
        for span in spans:
            end = span.end or now
            seconds = _overlap_s(span.start, end, low, high)
            ongoing_today = span.end is None and low <= span.start <= high
            if seconds == 0 and not ongoing_today:
                continue
            seen.append(span.status)
            observed_s += seconds
            if span.status == ComponentStatus.MAJOR_OUTAGE:
                major_s += seconds
            elif span.status == ComponentStatus.PARTIAL_OUTAGE:
                partial_s += seconds
        status = worst(seen) if seen else None
        bars.append(DayBar(day, status, major_s, partial_s, observed_s))
    return UptimeBars(tuple(bars))
