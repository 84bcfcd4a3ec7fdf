"""Time as something passed in, so tests control it and the core never reads it.

Two shapes: a :class:`Clock` with ``now()`` returning an aware UTC datetime (the operations
service: incidents, paging, status), and an :data:`NsClock` returning integer nanoseconds
since the epoch (the gateway and the detectors, which count in nanoseconds).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

NsClock = Callable[[], int]
"""Nanoseconds since the epoch; tests pass a controllable one."""

Now = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime; tests pass a controllable one."""


class Clock(Protocol):
    """Anything with ``now()`` returning an aware datetime."""

    def now(self) -> datetime: ...


def utc_now() -> datetime:
    """The real clock, in UTC."""
    return datetime.now(UTC)


class SystemClock:
    """The real clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to; safe to share with other threads."""

    def __init__(self, start: datetime) -> None:
        require_aware(start, "start")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError(f"a clock only moves forward; got {delta}")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> None:
        require_aware(moment, "moment")
        with self._lock:
            if moment < self._now:
                raise ValueError(f"a clock only moves forward; {moment} is before {self._now}")
            self._now = moment


def require_aware(moment: datetime, name: str) -> None:
    """Naive datetimes are ambiguous across time zones; refuse them at every edge."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone (got naive {moment.isoformat()})")
