"""What the console shows of the venue, read through the venue contract only.

:class:`VenueWatch` follows the venue's journal with a
:class:`~haltguard.journal.reader.JournalReader` on a thread of its own (the reader keeps its
own venue, rebuilt from the snapshot and the records; the live venue is never touched) and
keeps one small immutable :class:`VenueSummary`: each market's state, since when and by whom
(from the events that changed it), its resting orders, the kill switch, the assets whose
withdrawals are frozen, the last journal seq and how far behind the journal's last record is.
Readers take the summary as it is; the thread replaces it after every batch it reads.

Where the journal cannot be read (a venue elsewhere, ``venue.url``), the summary falls back
to the market states the control answers (no since, by whom or order counts).

The control round trip (how long ``VenueControl.market_states`` takes) is measured when the
overview is rendered, at most once a second. The queue depth is asked of the venue where the
control says how (the in-process runtime, or the venue's public ``/v1/health``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from haltguard.gateway.control import HttpVenueControl, InProcessVenueControl
from haltguard.journal.reader import JournalReader
from haltguard.journal.segments import list_segments
from haltguard.venue.control import VenueControl, VenueControlError
from haltguard.venue.engine import Venue
from haltguard.venue.events import KillSwitchChanged, MarketStateChanged

POLL_INTERVAL_S = 0.2
RECORDS_PER_READ_MAX = 20_000
DEPTH_LEVELS_COUNTED_MAX = 1_000_000
ROUND_TRIP_EVERY_S = 1.0
STOP_WAIT_S_MAX = 5.0
FIRST_READ_WAIT_S_MAX = 2.0
"""How long the first page waits for the journal's first reading (a large journal replays
longer; the page then says "not read yet" and the live update brings the rest)."""
NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class MarketRow:
    market: str
    state: str
    since_ns: int  # when the venue last changed its state (0: since the start of the journal)
    by: str  # who changed it ("" when nobody has)
    reason: str
    resting_orders: int | None  # None: not known (the journal is not readable here)


@dataclass(frozen=True)
class VenueSummary:
    """The venue as the journal says it is after ``last_seq``."""

    readable: bool
    markets: tuple[MarketRow, ...] = ()
    kill_switch: bool = False
    kill_switch_by: str = ""
    frozen_assets: tuple[str, ...] = ()
    last_seq: int = 0
    last_ts_ns: int = 0
    problem: str = ""

    def market(self, symbol: str) -> MarketRow | None:
        return next((row for row in self.markets if row.market == symbol), None)


@dataclass
class _Changes:
    """Who last changed each thing, from the events read so far."""

    market_since: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    kill_switch_by: str = ""


def _resting_orders(venue: Venue, market: str) -> int:
    depth = venue.depth(market, DEPTH_LEVELS_COUNTED_MAX)
    return sum(level.orders for level in depth.bids) + sum(level.orders for level in depth.asks)


def summarise(venue: Venue, changes: _Changes) -> VenueSummary:
    rows = []
    for market, state in sorted(venue.market_states().items()):
        since_ns, by, reason = changes.market_since.get(market, (0, "", ""))
        rows.append(MarketRow(market, state.value, since_ns, by, reason,
                              _resting_orders(venue, market)))
    return VenueSummary(
        readable=True, markets=tuple(rows), kill_switch=venue.kill_switch_engaged,
        kill_switch_by=changes.kill_switch_by if venue.kill_switch_engaged else "",
        frozen_assets=tuple(sorted(venue.frozen_assets)), last_seq=venue.last_seq,
        last_ts_ns=venue.last_ts,
    )


class VenueWatch:
    """Follows ``data_dir``'s journal on a daemon thread, started on first use."""

    def __init__(self, data_dir: Path, venue_control: VenueControl | None) -> None:
        self.data_dir = data_dir
        self.venue_control = venue_control
        self._summary = VenueSummary(readable=False, problem="not read yet")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._round_trip: tuple[float, float | None] = (0.0, None)
        self._first_read = threading.Event()

    def summary(self) -> VenueSummary:
        """The journal's view of the venue; where the journal cannot be read here (a venue
        elsewhere), the market states the venue control answers, without the rest."""
        self.start()
        self._first_read.wait(FIRST_READ_WAIT_S_MAX)
        with self._lock:
            summary = self._summary
        if summary.readable or self.venue_control is None:
            return summary
        try:
            states = self.venue_control.market_states()
        except VenueControlError:
            return summary
        rows = tuple(MarketRow(market, state.value, 0, "", "", None)
                     for market, state in sorted(states.items()))
        return VenueSummary(readable=False, markets=rows, problem=summary.problem)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="console-venue-watch",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(STOP_WAIT_S_MAX)

    def _publish(self, summary: VenueSummary) -> None:
        with self._lock:
            self._summary = summary
        self._first_read.set()

    def _run(self) -> None:
        while not self._stop.is_set() and not list_segments(self.data_dir):
            self._publish(VenueSummary(readable=False,
                                       problem=f"no journal in {self.data_dir}"))
            self._stop.wait(1.0)
        reader = JournalReader(self.data_dir, poll_interval_s=POLL_INTERVAL_S)
        changes = _Changes()
        try:
            reader.seek(1)
            first = True
            while not self._stop.is_set():
                entries = reader.read_available(RECORDS_PER_READ_MAX)
                for sequenced, events in entries:
                    for event in events:
                        if type(event) is MarketStateChanged:
                            changes.market_since[event.market] = (sequenced.ts, event.actor,
                                                                  event.reason)
                        elif type(event) is KillSwitchChanged:
                            changes.kill_switch_by = event.actor
                if entries or first:
                    self._publish(summarise(reader.venue, changes))
                    first = False
                if len(entries) < RECORDS_PER_READ_MAX:
                    self._stop.wait(POLL_INTERVAL_S)
        except Exception as exc:  # a damaged journal: say so on the page, keep serving
            self._publish(VenueSummary(readable=False, problem=f"{type(exc).__name__}: {exc}"))
        finally:
            reader.close()

    def round_trip_ms(self) -> float | None:
        """How long the venue control took to answer ``market_states`` (measured at most once
        a second); None without a venue or when it did not answer."""
        if self.venue_control is None:
            return None
        measured_at, value = self._round_trip
        if time.monotonic() - measured_at < ROUND_TRIP_EVERY_S:
            return value
        start = time.perf_counter()
        try:
            self.venue_control.market_states()
            value = (time.perf_counter() - start) * 1000
        except VenueControlError:
            value = None
        self._round_trip = (time.monotonic(), value)
        return value

    def queue_depth(self) -> int | None:
        """Commands waiting for the venue thread, where the control can say."""
        control = self.venue_control
        try:
            if isinstance(control, InProcessVenueControl):
                return control.runtime.queue_depth()[0]
            if isinstance(control, HttpVenueControl):
                answer = control.request("GET", "/v1/health")
                depth = answer.get("queue_depth") if isinstance(answer, dict) else None
                return depth if isinstance(depth, int) else None
        except VenueControlError:
            return None
        return None


