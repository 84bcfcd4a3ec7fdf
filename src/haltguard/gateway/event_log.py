"""The venue's event feed: every event the venue caused, by command seq, readable from any
cursor (``GET /v1/admin/events?after_seq=N``).

A runtime listener keeps the newest events in memory (at most ``EVENTS_KEPT_MAX``); a
cursor older than what memory holds is answered from the journal with a
:class:`~haltguard.journal.reader.JournalReader`, which regenerates exactly the events the
venue produced. Either way a page ends on a command boundary, so reading again from its
cursor after a disconnect gives neither a gap nor a duplicate.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Sequence
from typing import Final

from haltguard.gateway.runtime import CommandResult, VenueRuntime
from haltguard.journal.reader import JournalReader
from haltguard.venue.engine import Venue
from haltguard.venue.events import (
    Event,
    KillSwitchChanged,
    MarketStateChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    Trade,
    WithdrawalsFrozen,
)

EVENTS_KEPT_MAX: Final = 100_000
PAGE_EVENTS_MAX: Final = 5_000

_KINDS: Final[dict[type[Event], str]] = {
    OrderAccepted: "order_accepted", OrderRejected: "order_refused",
    OrderCancelled: "order_cancelled", Trade: "trade", MarketStateChanged: "state_changed",
    KillSwitchChanged: "kill_switch", WithdrawalsFrozen: "withdrawals",
}


def feed_kind(event: Event) -> str:
    """The contract's name for what ``event`` is about (``haltguard.venue.control.FEED_KINDS``)."""
    return _KINDS.get(type(event), "other")


class EventLog:
    """The newest events of a runtime by seq, with the journal behind them."""

    def __init__(self, runtime: VenueRuntime, *, events_kept_max: int = EVENTS_KEPT_MAX) -> None:
        assert events_kept_max > 0
        self.runtime = runtime
        self.events_kept_max = events_kept_max
        self._lock = threading.Lock()
        self._seqs: list[int] = []  # commands with events, from self._head on
        self._events: list[list[Event]] = []
        self._head = 0
        self._events_kept = 0
        self._covered_from_seq = runtime.status().last_seq + 1  # memory has every seq from here
        self._last_seq = self._covered_from_seq - 1
        runtime.add_listener(self._on_batch)

    def _on_batch(self, _venue: Venue, results: Sequence[CommandResult]) -> None:
        with self._lock:
            for result in results:
                self._last_seq = max(self._last_seq, result.seq)
                if result.events:
                    self._seqs.append(result.seq)
                    self._events.append(list(result.events))
                    self._events_kept += len(result.events)
            while self._events_kept > self.events_kept_max and self._head < len(self._seqs):
                self._events_kept -= len(self._events[self._head])
                self._covered_from_seq = self._seqs[self._head] + 1
                self._head += 1
            if self._head > len(self._seqs) // 2 and self._head > 1024:
                del self._seqs[:self._head], self._events[:self._head]
                self._head = 0

    def read(self, after_seq: int, events_max: int) -> tuple[list[tuple[int, list[Event]]], int]:
        """Commands after ``after_seq`` with their events (at least one whole command when
        there is one, then whole commands while under ``events_max``) and the cursor to
        resume from."""
        assert events_max > 0
        with self._lock:
            if after_seq + 1 >= self._covered_from_seq:
                return self._read_memory(after_seq, events_max)
        return self._read_journal(after_seq, events_max)

    def _read_memory(
        self, after_seq: int, events_max: int
    ) -> tuple[list[tuple[int, list[Event]]], int]:
        page: list[tuple[int, list[Event]]] = []
        count = 0
        start = bisect_right(self._seqs, after_seq, lo=self._head)
        for index in range(start, len(self._seqs)):
            seq, events = self._seqs[index], self._events[index]
            if page and count + len(events) > events_max:
                return page, page[-1][0]
            page.append((seq, events))
            count += len(events)
        return page, max(after_seq, self._last_seq)

    def _read_journal(
        self, after_seq: int, events_max: int
    ) -> tuple[list[tuple[int, list[Event]]], int]:
        reader = JournalReader(self.runtime.data_dir)
        try:
            reader.seek(after_seq + 1)
            page: list[tuple[int, list[Event]]] = []
            count, cursor = 0, after_seq
            for sequenced, events in reader.read_available(events_max):
                if events and page and count + len(events) > events_max:
                    break
                cursor = sequenced.seq
                if events:
                    page.append((sequenced.seq, list(events)))
                    count += len(events)
            return page, cursor
        finally:
            reader.close()
