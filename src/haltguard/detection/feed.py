"""Feeding the market detectors from a venue: in process, or by following its journal.

In process (:func:`attach_runtime`) the detectors run on the venue's own thread once per
batch, right after the batch is applied: a crash is seen before the next batch starts,
and a halt it causes enters the runtime's brake lane ahead of every order still queued.
Following the journal (:func:`follow_journal`) gives the same signals from another
process, a poll interval later.

Per command the feed only looks at how many events there are: a command with a single
event (most orders, every cancel) cannot hold a trade, so only the rest are scanned.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import NamedTuple, Protocol

from sqlalchemy.orm import Session, sessionmaker

from haltguard.detection.actions import ActionExecutor
from haltguard.detection.actions import Clock as ExecutorClock
from haltguard.detection.market import DEPTH, SPREAD, Applied, MarketDetectors
from haltguard.detection.policies import RuleSet
from haltguard.detection.service import DetectionService
from haltguard.detection.signals import Signal
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.runtime import (
    CommandRefusedError,
    CommandResult,
    OverloadedError,
    RuntimeLimits,
    VenueRuntime,
    VenueUnavailableError,
    admissible,
)
from haltguard.gateway.sequencer import Clock
from haltguard.journal.reader import JournalReader
from haltguard.responders.service import ResponderSettings
from haltguard.venue.commands import (
    Command,
    FreezeWithdrawals,
    Heartbeat,
    KillSwitch,
    SetMarketState,
)
from haltguard.venue.engine import Venue
from haltguard.venue.events import Event
from haltguard.venue.types import MarketState

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


class ListenableRuntime(Protocol):
    def add_listener(self, listener: BatchListener) -> None: ...


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
            f"{type(runtime).__name__} has no add_listener hook; use "
            "haltguard.detection.feed.GuardedVenueRuntime, or follow_journal() on its data "
            "directory"
        )
    read = getattr(runtime, "read", None)
    if read is not None:
        feed.detectors.market_states.update(read(lambda venue: venue.market_states()))
    add_listener(feed.on_batch)


def protect_in_process(
    runtime: GuardedVenueRuntime, detection: DetectionService, *,
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


BRAKES_QUEUED_MAX = 1_000
_BRAKE_STATES = frozenset({MarketState.HALTED, MarketState.CANCEL_ONLY})
_BRAKE_KINDS = frozenset({SetMarketState, KillSwitch, FreezeWithdrawals})


def is_brake(command: Command) -> bool:
    """Commands that only stop things: a halt, cancel-only, the kill switch engaged,
    withdrawals frozen. Nothing that reopens or loosens is a brake."""
    if isinstance(command, SetMarketState):
        return command.state in _BRAKE_STATES
    if isinstance(command, KillSwitch):
        return command.engaged
    if isinstance(command, FreezeWithdrawals):
        return command.frozen
    return False


class GuardedVenueRuntime(VenueRuntime):
    """A :class:`VenueRuntime` with what automatic protection needs from it:

    - ``add_listener``: listeners are called on the venue thread after each batch is
      applied, with every command's result; one that raises is logged and skipped, since
      detection trouble must never stop the venue;
    - a brake lane: a brake (:func:`is_brake`) submitted by anyone is journaled and applied
      in its own batch before the next batch of the ordinary queue, so a halt waits for the
      batch being applied, not for every order queued ahead of it. It is journaled, synced
      and acknowledged like any command.
    """

    def __init__(
        self, data_dir: Path | str, *, clock: Clock = time.time_ns,
        limits: RuntimeLimits | None = None,
    ) -> None:
        super().__init__(data_dir, clock=clock, limits=limits)
        self._listeners: list[BatchListener] = []
        self._applied: list[CommandResult] = []
        self._brakes: deque[tuple[Command, Future[CommandResult] | None]] = deque()
        self.listener_failures = 0
        self.brakes_submitted = 0

    def add_listener(self, listener: BatchListener) -> None:
        self._listeners.append(listener)

    def submit(self, command: Command) -> Future[CommandResult]:
        if type(command) not in _BRAKE_KINDS or not is_brake(command):
            return super().submit(command)
        future: Future[CommandResult] = Future()
        future.set_running_or_notify_cancel()
        try:
            command = admissible(command)
        except CommandRefusedError as exc:
            future.set_exception(exc)
            return future
        with self._accept_lock:
            if self._refusal:
                raise VenueUnavailableError(self._refusal)
            if len(self._brakes) >= BRAKES_QUEUED_MAX:
                raise OverloadedError(BRAKES_QUEUED_MAX, self.limits.retry_after_s)
            self._brakes.append((command, future))
            self.brakes_submitted += 1
        if self._queue.empty():  # an idle venue thread waits on the queue: wake it
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait((Heartbeat(), None))
        return future

    def _collect(self) -> tuple[list[tuple[Command, Future[CommandResult] | None]], bool]:
        if self._brakes:
            batch = []
            while self._brakes:
                batch.append(self._brakes.popleft())
            return batch, False
        return super()._collect()

    def _record(self, seq: int, ts: int, command: Command, events: list[Event]) -> CommandResult:
        result = super()._record(seq, ts, command, events)
        if self._listeners:
            self._applied.append(result)
        return result

    def _process(self, batch: list[tuple[Command, Future[CommandResult] | None]]) -> None:
        self._applied = []
        super()._process(batch)
        applied, self._applied = self._applied, []
        for listener in self._listeners:
            try:
                listener(self._venue, applied)
            except Exception:
                self.listener_failures += 1
                log.exception("a venue listener failed after seq %d; the venue carries on",
                              applied[-1].seq if applied else 0)

    def _fail_queued(self, error: VenueUnavailableError) -> None:
        super()._fail_queued(error)
        while self._brakes:
            _, future = self._brakes.popleft()
            if future is not None and not future.done():
                future.set_exception(error)
