"""The one place time enters the venue: gap-free sequence numbers and monotonic timestamps.

The engine never reads a clock. Every command gets its ``seq`` and ``ts`` here, on the
venue thread, so a replay of the journal sees exactly the time the live venue saw.
"""

from __future__ import annotations

import time

from haltguard.common.clock import NsClock


class Sequencer:
    """Stamps commands with ``seq`` (last + 1, no gaps) and ``ts`` (never going backwards).

    Wall clocks step backwards (NTP corrections, a VM resumed); the venue's time must not,
    or a timed auction could end before it started. A clock reading below the last stamp is
    clamped to the last stamp. Not thread-safe on purpose: only the venue thread stamps.
    """

    def __init__(self, last_seq: int = 0, last_ts: int = 0, clock: NsClock = time.time_ns) -> None:
        if last_seq < 0 or last_ts < 0:
            raise ValueError(f"last_seq ({last_seq}) and last_ts ({last_ts}) must be >= 0")
        self._last_seq = last_seq
        self._last_ts = last_ts
        self._previous_ts: int | None = None  # the ts before the last stamp, until taken back
        self._clock = clock
        self.clock_steps_back = 0  # how often the clock read below the last stamp (clamped)

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def last_ts(self) -> int:
        return self._last_ts

    def now(self) -> int:
        """The current venue time without consuming a sequence number (clamped like stamps)."""
        return max(self._clock(), self._last_ts)

    def stamp(self) -> tuple[int, int]:
        """The next ``(seq, ts)``: seq is exactly last + 1, ts is at least the last ts."""
        reading = self._clock()
        if reading < self._last_ts:
            self.clock_steps_back += 1
            reading = self._last_ts
        self._previous_ts = self._last_ts
        self._last_seq += 1
        self._last_ts = reading
        return self._last_seq, reading

    def take_back(self) -> None:
        """Undo the most recent stamp, whose command the journal refused before storing
        anything, so the next command reuses that seq and no gap opens."""
        if self._previous_ts is None:
            raise RuntimeError("take_back undoes only the single most recent stamp")
        self._last_seq -= 1
        self._last_ts = self._previous_ts
        self._previous_ts = None
