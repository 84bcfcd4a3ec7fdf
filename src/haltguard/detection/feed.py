"""Feeding the market detectors from a venue: in process, or by following its journal.

In process (:func:`attach_runtime`) the detectors run on the venue's own thread once per
batch, right after the batch is applied: a crash is seen before the next batch starts,
and a halt it causes enters the runtime's brake lane ahead of every order still queued.
The hook and the brake lane are :class:`VenueRuntime`'s own. Following the journal
(:func:`follow_journal`) gives the same signals from another
process, a poll interval later.

Per command the feed only looks at how many events there are: a command with a single
event (most orders, every cancel) cannot hold a trade, so only the rest are scanned.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import Clock as ExecutorClock
from haltguard.detection.actions import ActionExecutor
from haltguard.detection.market import DEPTH, SPREAD, Applied, MarketDetectors
from haltguard.detection.policies import RuleSet
from haltguard.detection.service import DetectionService
from haltguard.detection.signals import Signal
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime, is_brake
from haltguard.journal.reader import JournalReader
from haltguard.responders.service import ResponderSettings
from haltguard.venue.engine import Venue
from haltguard.venue.events import Event
from haltguard.venue.types import MarketState

__all__ = ["GuardedVenueRuntime", "VenueFeed", "attach_runtime", "follow_journal", "is_brake",
           "protect_in_process"]

log = logging.getLogger(__name__)

BOOK_LEVELS_MAX = 200  # levels per side read for a depth sample
_BOOK_SIGNALS = (SPREAD, DEPTH)

BatchListener = Callable[[Venue, Sequence[Applied]], None]
"""Called on the venue's thread after each batch with the venue and what each command did."""


class AppliedCommand(NamedTuple):
    """One command as the journal follower hands it on (the runtime hands its own
    :class:`CommandResult`, which has the same ``seq``, ``ts`` and ``events``)."""

    seq: int
    ts: int
    events: list[Event]


class VenueFeed:
    """Market detectors wired to one venue and one detection service.

    :meth:`on_batch` is the listener: it must be called with the venue as it is right after
    the batch (on the venue's thread, or by a journal follower).
    """

    def __init__(self, service: DetectionService) -> None:
        self.service = service
        self.detectors = MarketDetectors(
            service.rules.detectors, self._submit, levels=service.engine.levels
        )
        self._watch_books = False
        self._new_rules: RuleSet | None = None
        self.commands_seen = 0
        service.on_rules_loaded(self._rules_loaded)
        self._take_new_rules()

    def _rules_loaded(self, ruleset: RuleSet) -> None:
        """Noted here, taken in by :meth:`on_batch` on the feeding thread, so a reload
        never changes the detectors while they run."""
        self._new_rules = ruleset

    def _take_new_rules(self) -> None:
        ruleset, self._new_rules = self._new_rules, None
        if ruleset is None:
            return
        self._watch_books = any(self.service.engine.watches(name) for name in _BOOK_SIGNALS)
        self.detectors.refresh_levels(ruleset.detectors)

    def market_states(self) -> dict[str, MarketState]:
        """Every market's state as of the last batch fed, without asking the venue (whose
        read lock is held while it applies a batch)."""
        return dict(self.detectors.market_states)

    def _submit(self, signal: Signal) -> None:
        self.service.submit(signal, inline=False)  # the venue's thread must never wait

    def on_batch(self, venue: Venue, applied: Sequence[Applied]) -> None:
        if not applied:
            return
        if self._new_rules is not None:
            self._take_new_rules()
        self.commands_seen += len(applied)
        self.detectors.on_batch(applied)
        ts = applied[-1].ts
        if self._watch_books and self.detectors.book_due(ts):
            for market in venue.markets:
                depth = venue.depth(market, BOOK_LEVELS_MAX)
                self.detectors.on_book(
                    ts, market,
                    [(level.price, level.qty) for level in depth.bids],
                    [(level.price, level.qty) for level in depth.asks],
                )

    def on_applied(self, venue: Venue, seq: int, ts: int, events: list[Event]) -> None:
        """One command at a time (tests, replays): a batch of one."""
        self.on_batch(venue, [AppliedCommand(seq, ts, events)])


def attach_runtime(runtime: object, feed: VenueFeed) -> None:
    """Run ``feed`` on ``runtime``'s thread after every batch.

    Uses the runtime's ``add_listener`` hook. The listener must not call ``runtime.read``
    or wait for a command: the venue thread is the one calling it.
    """
    add_listener = getattr(runtime, "add_listener", None)
    if add_listener is None:
        raise TypeError(
            f"{type(runtime).__name__} has no add_listener hook; use a "
            "haltguard.gateway.runtime.VenueRuntime, or follow_journal() on its data directory"
        )
    read = getattr(runtime, "read", None)
    if read is not None:
        feed.detectors.market_states.update(read(lambda venue: venue.market_states()))
    add_listener(feed.on_batch)


def protect_in_process(
    runtime: VenueRuntime, detection: DetectionService, *,
    session_factory: sessionmaker[Session], clock: ExecutorClock,
    responder_settings: ResponderSettings | None = None,
) -> VenueFeed:
    """Wire ``detection`` to a venue running in this process, before ``detection.start()``:
    the market detectors on the venue's thread, and an executor that puts brakes straight
    into the runtime's brake lane and knows the markets' states from the feed."""
    feed = VenueFeed(detection)
    attach_runtime(runtime, feed)
    detection.set_executor(ActionExecutor(
        session_factory=session_factory, venue=InProcessVenueControl(runtime), clock=clock,
        responder_settings=responder_settings, market_states=feed.market_states,
        brake_lane=runtime,
    ))
    return feed


def follow_journal(
    data_dir: Path | str, feed: VenueFeed, *, from_seq: int = 1,
    stop: threading.Event | None = None, poll_interval_s: float = 0.01,
) -> None:
    """Feed every command of ``data_dir``'s journal from ``from_seq`` until ``stop`` is set
    (for a detection process apart from the venue). Blocks; run it on its own thread."""
    reader = JournalReader(data_dir, poll_interval_s=poll_interval_s)
    stop = stop or threading.Event()
    try:
        reader.seek(from_seq)
        while not stop.is_set():
            entries = reader.read_available()
            if entries:
                feed.on_batch(reader.venue, [AppliedCommand(sequenced.seq, sequenced.ts, events)
                                             for sequenced, events in entries])
            else:
                stop.wait(poll_interval_s)
    finally:
        reader.close()


GuardedVenueRuntime = VenueRuntime
"""Deprecated: :class:`VenueRuntime` itself now has ``add_listener`` and the brake lane."""
