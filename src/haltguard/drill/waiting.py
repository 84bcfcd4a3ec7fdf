"""Waiting in a drill: for a condition to hold, with what was last seen if it never does.

A drill watches a system it has just disturbed, so anything it reads may fail for a while on
purpose (a killed venue, an unreachable database). :func:`wait_for` treats such a failure as
"not yet", and when time runs out raises :class:`DrillError` naming what was awaited and what
was last seen: the reason the drill then fails with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.05
PROGRESS_EVERY_S = 5.0  # how often a long wait says what it still waits for

class DrillError(RuntimeError):
    """A drill step that could not be done; the message says what was awaited or tried and
    what was seen instead."""


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def wait_for(
    predicate: Callable[[], T | None],
    timeout_s: float,
    what: str,
    *,
    seen: Callable[[], str] | None = None,
    interval_s: float = POLL_INTERVAL_S,
    progress: Callable[[str], None] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that.

    An exception from the predicate counts as "not yet" (the thing watched may be down on
    purpose) and is what the error reports as last seen. With ``progress``, a line says
    every few seconds what is still awaited (a long step shows it moves). On timeout raises
    :class:`DrillError` naming ``what`` and the last thing seen.
    """
    deadline = time.monotonic() + timeout_s
    next_report = time.monotonic() + PROGRESS_EVERY_S
    last = "nothing yet"
    while True:
        try:
            value = predicate()
        except Exception as exc:  # the watched part may be down on purpose
            value = None
            last = f"{type(exc).__name__}: {exc}"
        else:
            if value:
                return value
            if seen is not None:
                try:
                    last = seen()
                except Exception as exc:
                    last = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now >= deadline:
            raise DrillError(f"waited {timeout_s:g} s for {what}; last seen: {last}")
        if progress is not None and now >= next_report:
            progress(f"still waiting for {what}: {last}")
            next_report = now + PROGRESS_EVERY_S
        time.sleep(interval_s)
