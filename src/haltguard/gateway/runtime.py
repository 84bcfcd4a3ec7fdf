"""The live venue: one thread that sequences, journals, syncs and applies every command.

    callers --submit--> [input queue, queue_depth_max] --> venue thread:
        take what is queued (up to batch_max) -> stamp seq/ts -> append all to the journal
        -> ONE fsync for the batch -> apply each to the venue -> resolve each caller's future

Nothing is acknowledged before it is durable. The batch is whatever queued up while the
previous fsync ran, so it grows with load without a timer (group commit). A full queue
refuses at once with :class:`OverloadedError` instead of growing without bound. If the journal
cannot be written the runtime stops for good (fail-stop): matching on without a journal
would acknowledge orders a restart could not recover.

Reads run on the caller's thread under the same lock the venue thread holds while it
applies commands, so a reader never sees half of a command.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from haltguard.gateway.models import Units
from haltguard.gateway.sequencer import Clock, Sequencer
from haltguard.journal import Journal, UnjournalableCommandError, check_journalable, recover
from haltguard.venue.commands import (
    AddAsset,
    AddMarket,
    Command,
    ConfigureBreaker,
    Heartbeat,
    MalformedCommandError,
    PlaceOrder,
    validated,
)
from haltguard.venue.engine import Venue
from haltguard.venue.events import Event, OrderRepeated, Trade

log = logging.getLogger(__name__)

T = TypeVar("T")

ACK_TIMEOUT_S_DEFAULT = 10.0


@dataclass(frozen=True)
class RuntimeLimits:
    """Every bound the runtime keeps. Defaults suit a single venue process."""

    queue_depth_max: int = 10_000  # commands waiting for the venue thread
    batch_max: int = 1_000  # commands per journal fsync
    checkpoint_every: int = 100_000  # commands between snapshots
    trades_per_market_max: int = 1_000  # recent trades kept for GET .../trades
    order_outcomes_max: int = 100_000  # first results kept for client-order-id retries
    retry_after_s: int = 1  # what an overloaded caller is told to wait

    def __post_init__(self) -> None:
        for name in ("queue_depth_max", "batch_max", "checkpoint_every", "trades_per_market_max",
                     "order_outcomes_max", "retry_after_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"RuntimeLimits.{name} must be at least 1")


@dataclass(frozen=True)
class CommandResult:
    """A command's acknowledgement: it is durable at ``seq`` and caused ``events``.

    ``original`` is set when a place-order repeated a client order id the venue had already
    seen: it is the first submit's result (when still remembered), so a retry learns what
    actually happened to its order.
    """

    seq: int
    ts: int
    command: Command
    events: list[Event]
    original: CommandResult | None = None


@dataclass(frozen=True)
class TradeRecord:
    seq: int
    ts: int
    trade: Trade


@dataclass
class RuntimeStatus:
    running: bool
    failure: str
    last_seq: int
    last_ts: int
    queue_depth: int
    queue_depth_max: int
    commands: int
    batches: int
    batch_size_max_seen: int
    overloads: int
    checkpoints: int
    checkpoint_failures: int
    clock_steps_back: int
    recovery: dict[str, object] = field(default_factory=dict)


class VenueUnavailableError(RuntimeError):
    """The runtime is not taking commands: stopping, stopped, or stopped after a failure."""


class CommandRefusedError(ValueError):
    """A malformed command, or one the journal cannot store (a number beyond 64 bits, text
    that is not valid Unicode); nothing happened and no sequence number was used."""


class OverloadedError(RuntimeError):
    """The input queue is full. Nothing was queued; retry after ``retry_after_s``."""

    def __init__(self, queue_depth_max: int, retry_after_s: int) -> None:
        super().__init__(
            f"the venue's input queue is full ({queue_depth_max} commands waiting); nothing was "
            f"queued, retry in {retry_after_s} s (with the same client_order_id for orders)"
        )
        self.retry_after_s = retry_after_s


class _Stop:
    """Queued by :meth:`VenueRuntime.stop` after everything already accepted."""


_STOP = _Stop()
_Item = tuple[Command, "Future[CommandResult] | None"]


class VenueRuntime:
    """The venue, its journal and the thread that owns both.

    The constructor recovers from ``data_dir`` (newest snapshot + journal tail, a torn tail
    cut off and reported); :meth:`start` starts the venue thread; :meth:`stop` finishes what
    is queued, writes a snapshot and closes the journal.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        clock: Clock = time.time_ns,
        limits: RuntimeLimits | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.limits = limits or RuntimeLimits()
        self._venue, self.recovery_report = recover(self.data_dir, repair=True)
        self._venue_check_after_recovery()
        self._journal = Journal(self.data_dir)
        self._sequencer = Sequencer(self._venue.last_seq, self._venue.last_ts, clock)
        self._queue: queue.Queue[_Item | _Stop] = queue.Queue(self.limits.queue_depth_max)
        self._state_lock = threading.Lock()  # held while applying; readers take it too
        self._accept_lock = threading.Lock()  # orders "accepting?" checks against stop()
        self._refusal = "the venue runtime has not been started"
        self._failure = ""
        self._thread: threading.Thread | None = None
        self._units = _units_of(self._venue)
        self._trades: dict[str, deque[TradeRecord]] = {}
        self._outcomes: OrderedDict[tuple[int, str], CommandResult] = OrderedDict()
        self._since_checkpoint = 0
        self._last_heartbeat_deadline: int | None = None
        self._counters = {"commands": 0, "batches": 0, "batch_max_seen": 0, "overloads": 0,
                          "checkpoints": 0, "checkpoint_failures": 0}

    def _venue_check_after_recovery(self) -> None:
        problems = self._venue.check_invariants()
        if problems:
            raise RuntimeError(
                f"the recovered venue in {self.data_dir} breaks its invariants: {problems}; "
                "run `haltguard venue verify` on it and keep the directory for investigation"
            )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> VenueRuntime:
        if self._thread is not None:
            raise RuntimeError("the venue runtime was already started")
        self._refusal = ""
        self._thread = threading.Thread(target=self._run, name="venue", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Refuse new commands, finish the queued ones, snapshot, close the journal."""
        with self._accept_lock:
            already = bool(self._refusal)
            if not already:
                self._refusal = "the venue is shutting down; retry against the restarted venue"
        thread = self._thread
        if thread is None:
            self._journal.close()
            return
        if not already and thread.is_alive():
            self._queue.put(_STOP)
        thread.join(timeout_s)
        if thread.is_alive():
            raise RuntimeError(f"the venue thread did not stop within {timeout_s} s")
        self._fail_queued(VenueUnavailableError(self._refusal or "the venue stopped"))

    def __enter__(self) -> VenueRuntime:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def failure(self) -> str:
        """Why the runtime fail-stopped, or "" while healthy."""
        return self._failure

    # -- commands --------------------------------------------------------------------------

    def submit(self, command: Command) -> Future[CommandResult]:
        """Queue ``command``; the future resolves once it is durable and applied.

        Raises :class:`OverloadedError` if the queue is full and
        :class:`VenueUnavailableError` if the runtime is not running. A command that is
        malformed or that the journal could not store is refused here, on the caller's
        thread, before it gets a sequence number: its future raises
        :class:`CommandRefusedError` and nothing is queued. The future cannot be cancelled:
        once queued, a command is journaled whether or not anyone still waits.
        """
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
            try:
                self._queue.put_nowait((command, future))
            except queue.Full:
                self._counters["overloads"] += 1
                limits = self.limits
                raise OverloadedError(limits.queue_depth_max, limits.retry_after_s) from None
        return future

    def submit_and_wait(
        self, command: Command, timeout_s: float = ACK_TIMEOUT_S_DEFAULT
    ) -> CommandResult:
        return self.submit(command).result(timeout_s)

    # -- reads -----------------------------------------------------------------------------

    def read(self, reader: Callable[[Venue], T]) -> T:
        """Run ``reader`` against the venue between two commands, never in the middle of one."""
        with self._state_lock:
            if self._failure:
                raise VenueUnavailableError(self._failure)
            return reader(self._venue)

    def units(self) -> Units:
        """The current grids (markets and assets) for decimal conversion at the edge.

        An immutable copy the venue thread replaces when a market or asset is listed, so
        the hot path converts decimals without waiting for the venue.
        """
        return self._units

    def recent_trades(self, market: str, limit: int) -> list[TradeRecord]:
        """Up to ``limit`` of the market's latest trades since start, newest first."""
        with self._state_lock:
            ring = self._trades.get(market)
            return [] if ring is None else list(reversed(ring))[:limit]

    def status(self) -> RuntimeStatus:
        report = self.recovery_report
        return RuntimeStatus(
            running=self._thread is not None and self._thread.is_alive() and not self._refusal,
            failure=self._failure,
            last_seq=self._sequencer.last_seq,
            last_ts=self._sequencer.last_ts,
            queue_depth=self._queue.qsize(),
            queue_depth_max=self.limits.queue_depth_max,
            commands=self._counters["commands"],
            batches=self._counters["batches"],
            batch_size_max_seen=self._counters["batch_max_seen"],
            overloads=self._counters["overloads"],
            checkpoints=self._counters["checkpoints"],
            checkpoint_failures=self._counters["checkpoint_failures"],
            clock_steps_back=self._sequencer.clock_steps_back,
            recovery=report.summary() if hasattr(report, "summary") else {},
        )

    # -- the venue thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch, stopping = self._collect()
                if batch:
                    self._process(batch)
                if stopping:
                    break
            self._checkpoint()
            self._journal.close()
        except _FailStopError:
            return
        except BaseException as exc:  # a bug: stop rather than match on in an unknown state
            self._fail_stop(f"the venue thread crashed: {exc!r}", [])
            raise

    def _collect(self) -> tuple[list[_Item], bool]:
        """Wait for work (or the next deadline), then take up to ``batch_max`` commands."""
        batch: list[_Item] = []
        deadline = self._due_deadline()
        timeout_s = None
        if deadline is not None:
            timeout_s = max(0.0, (deadline - self._sequencer.now()) / 1e9)
        try:
            first = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            first = None
        if deadline is not None and self._sequencer.now() >= deadline:
            self._last_heartbeat_deadline = deadline
            batch.append((Heartbeat(), None))
        if isinstance(first, _Stop):
            return batch, True
        if first is not None:
            batch.append(first)
            # Let submitters woken by the last batch's acknowledgements queue their next
            # command before this batch is closed: a yield of the GIL, not a timer.
            time.sleep(0)
        while len(batch) < self.limits.batch_max:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Stop):
                return batch, True
            batch.append(item)
        return batch, False

    def _due_deadline(self) -> int | None:
        """The venue's next timed transition, unless a heartbeat was already sent for it.

        A deadline the engine still reports after a heartbeat at or past it would make the
        thread spin; it is logged once and ignored until the engine reports a new one.
        """
        deadline = self._venue.next_deadline_ts()
        if (
            deadline is not None
            and deadline == self._last_heartbeat_deadline
            and deadline <= self._sequencer.last_ts
        ):
            return None
        return deadline

    def _process(self, batch: list[_Item]) -> None:
        stamped = self._journal_batch(batch)
        if not stamped:
            return
        results: list[tuple[Future[CommandResult] | None, CommandResult]] = []
        with self._state_lock:
            for index, (seq, ts, command, future) in enumerate(stamped):
                try:
                    events = self._venue.apply(seq, ts, command)
                except Exception as exc:
                    self._failure = f"the engine failed applying seq {seq}: {exc!r}"
                    pending = [f for *_, f in stamped[index:]]
                    break
                results.append((future, self._record(seq, ts, command, events)))
            else:
                pending = []
            if any(type(item[2]) in _LISTING_COMMANDS for item in stamped):
                self._units = _units_of(self._venue)
        for future, result in results:
            if future is not None:
                future.set_result(result)
        if pending:
            self._fail_stop(self._failure, pending)
            raise _FailStopError
        self._count_batch(len(stamped))

    def _journal_batch(
        self, batch: list[_Item]
    ) -> list[tuple[int, int, Command, Future[CommandResult] | None]]:
        """Stamp and append each command, then make the batch durable with one sync.

        A command the journal cannot store is refused alone (its seq is reused); any other
        journal failure stops the venue, since nothing may be acknowledged unless durable.
        """
        stamped: list[tuple[int, int, Command, Future[CommandResult] | None]] = []
        try:
            for command, future in batch:
                seq, ts = self._sequencer.stamp()
                try:
                    self._journal.append(seq, ts, command)
                except UnjournalableCommandError as exc:
                    self._sequencer.take_back()
                    if future is not None:
                        future.set_exception(CommandRefusedError(str(exc)))
                    continue
                stamped.append((seq, ts, command, future))
            if stamped:
                self._journal.sync()
        except Exception as exc:
            self._fail_stop(
                f"the journal could not be written after seq {self._venue.last_seq}: {exc}. "
                "The venue stopped so nothing is matched without being durable; fix the disk "
                "and restart it: recovery replays every acknowledged command",
                [future for _, future in batch],
            )
            raise _FailStopError from exc
        return stamped

    def _record(self, seq: int, ts: int, command: Command, events: list[Event]) -> CommandResult:
        """Keep recent trades and first order outcomes; build the caller's result."""
        original = None
        for event in events:
            if type(event) is Trade:
                ring = self._trades.get(event.market)
                if ring is None:
                    ring = self._trades[event.market] = deque(
                        maxlen=self.limits.trades_per_market_max
                    )
                ring.append(TradeRecord(seq, ts, event))
            elif type(event) is OrderRepeated:
                original = self._outcomes.get((event.account, event.client_order_id))
        result = CommandResult(seq, ts, command, events, original)
        if type(command) is PlaceOrder and command.client_order_id and original is None:
            key = (command.account, command.client_order_id)
            self._outcomes[key] = result
            if len(self._outcomes) > self.limits.order_outcomes_max:
                self._outcomes.popitem(last=False)
        return result

    def _count_batch(self, size: int) -> None:
        counters = self._counters
        counters["commands"] += size
        counters["batches"] += 1
        counters["batch_max_seen"] = max(counters["batch_max_seen"], size)
        self._since_checkpoint += size
        if self._since_checkpoint >= self.limits.checkpoint_every:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Write a snapshot. A failed snapshot costs only recovery time, never data."""
        if self._since_checkpoint == 0:
            return
        try:
            self._journal.checkpoint(self._venue, self._sequencer.last_ts)
        except Exception:
            self._counters["checkpoint_failures"] += 1
            log.exception("snapshot failed at seq %d; the journal still holds every command",
                          self._sequencer.last_seq)
            return
        self._counters["checkpoints"] += 1
        self._since_checkpoint = 0

    def _fail_stop(self, message: str, futures: list[Future[CommandResult] | None]) -> None:
        log.critical("venue fail-stop: %s", message)
        with self._accept_lock:
            self._failure = message
            self._refusal = message
        error = VenueUnavailableError(message)
        for future in futures:
            if future is not None and not future.done():
                future.set_exception(error)
        self._fail_queued(error)
        try:
            self._journal.close()
        except Exception:
            log.exception("closing the journal after a failure also failed")

    def _fail_queued(self, error: VenueUnavailableError) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if not isinstance(item, _Stop) and item[1] is not None:
                item[1].set_exception(error)


# Commands after which the grids (``units()``, specs with their breakers) are read again.
_LISTING_COMMANDS = (AddAsset, AddMarket, ConfigureBreaker)


def admissible(command: object) -> Command:
    """``command`` as the venue will apply it (every field of its declared type, enum
    values given as strings converted), provided the journal can store it; otherwise
    :class:`CommandRefusedError` saying what is wrong."""
    try:
        checked = validated(command)
        check_journalable(checked)
    except (MalformedCommandError, UnjournalableCommandError) as exc:
        raise CommandRefusedError(f"{exc}; nothing was done") from None
    return checked


def _units_of(venue: Venue) -> Units:
    return Units(venue.markets, {code: asset.decimals for code, asset in venue.assets.items()})


class _FailStopError(Exception):
    """Unwinds the venue thread after :meth:`VenueRuntime._fail_stop` did its work."""
