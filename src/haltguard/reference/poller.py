"""Polling reference markets on a thread, each on its own schedule with backoff.

Every ``interval_s`` the poller reads each market's last trade and hands its price to
``on_quote``; a market that fails is retried after a doubling delay (at most
``backoff_s_max``) while the others carry on, and ``on_problem`` hears of each failure once
per outage. CCXT's own rate limit still applies inside each read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from haltguard.reference.markets import CcxtReference, ReferenceUnavailableError
from haltguard.reference.models import Quote

log = logging.getLogger(__name__)

INTERVAL_S_MIN: Final = 0.01
BACKOFF_S_MAX_DEFAULT: Final = 60.0


@dataclass
class _Schedule:
    source: CcxtReference
    next_at: float = 0.0
    failures: int = 0
    problem: str = ""


@dataclass
class ReferencePoller:
    """Reads each market's quote every ``interval_s`` seconds (see the module docstring)."""

    sources: Sequence[CcxtReference]
    on_quote: Callable[[Quote], None]
    interval_s: float = 1.0
    backoff_s_max: float = BACKOFF_S_MAX_DEFAULT
    on_problem: Callable[[str, str], None] | None = None  # (market name, why)
    clock: Callable[[], float] = time.monotonic
    _schedules: list[_Schedule] = field(default_factory=list, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.interval_s < INTERVAL_S_MIN:
            raise ValueError(f"interval_s must be at least {INTERVAL_S_MIN} s")
        self._schedules = [_Schedule(source) for source in self.sources]

    def poll_due(self) -> int:
        """Read every market that is due now; how many quotes were delivered."""
        now = self.clock()
        delivered = 0
        for schedule in self._schedules:
            if schedule.next_at > now:
                continue
            try:
                quote = schedule.source.last_trade()
            except ReferenceUnavailableError as exc:
                schedule.failures += 1
                delay = min(self.interval_s * 2 ** schedule.failures, self.backoff_s_max)
                schedule.next_at = now + delay
                if not schedule.problem and self.on_problem is not None:
                    self.on_problem(schedule.source.market.name, str(exc))
                schedule.problem = str(exc)
                log.warning("reference market %s: %s (next try in %.1f s)",
                            schedule.source.market.name, exc, delay)
                continue
            schedule.failures, schedule.problem = 0, ""
            schedule.next_at = now + self.interval_s
            self.on_quote(quote)
            delivered += 1
        return delivered

    def failing(self) -> dict[str, str]:
        """The markets failing now, with why."""
        return {s.source.market.name: s.problem for s in self._schedules if s.problem}

    def start(self) -> ReferencePoller:
        self._thread = threading.Thread(target=self._run, name="reference-markets", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_due()
            self._stop.wait(self.interval_s / 4)
