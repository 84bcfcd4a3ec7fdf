"""The live venue: one thread that sequences, journals, syncs and applies every command.

    callers --submit--> [input queue, queue_depth_max] --> venue thread:
        take what is queued (up to batch_max) -> stamp seq/ts -> append all to the journal
        -> ONE fsync for the batch -> apply each to the venue -> resolve each caller's future

Nothing is acknowledged before it is durable. The batch is whatever queued up while the
previous fsync ran, so it grows with load without a timer (group commit). A batch of
``_OVERLAP_COMMANDS_MIN`` or more is applied on a helper thread (``venue-apply``) while the
venue thread waits for its fsync, which releases the interpreter lock. The venue thread
holds the state lock from before the apply until the fsync returned, so no reader sees a
command before it is durable, and callers are answered only after both, in journal order.
Callers on an event loop queue without waking the venue thread; one callback at the end of
the loop's iteration does, and the venue thread wakes each loop once per batch after its
last answer, so neither thread wakes to wait for the interpreter lock the other still
holds. A full queue refuses at once with :class:`OverloadedError` instead of growing
without bound. If the journal cannot be written the runtime stops for good (fail-stop):
matching on without a journal would acknowledge orders a restart could not recover.

Reads run on the caller's thread under the same lock the venue thread holds while it
applies commands, so a reader never sees half of a command.

Brakes (a halt, cancel-only, the kill switch engaged, withdrawals frozen) have their own
lane: whoever submits one, the next batch the venue thread takes is the brakes alone, ahead
of every order still queued, journaled and synced like any command. Listeners
(:meth:`VenueRuntime.add_listener`) are called on the venue thread after each batch, which is
how the market detectors watch the venue without a copy of it.

A command the engine raises on is a software bug, not a reason to stop the venue: the
command is quarantined (``data_dir/quarantine.json``, skipped by every replay), the venue
is rebuilt from snapshot + journal without it, the rest of the batch is applied, and the
command's market is halted. More than ``quarantines_max`` within ``quarantine_window_s``
stops the venue as a journal failure does: a venue that keeps raising is not safe.

Garbage collection: the venue's state is hundreds of thousands of long-lived objects, and a
full collection scanning them pauses every thread, a halt included. The venue thread calls
``gc.freeze()`` after recovery, after each snapshot and every ``gc_freeze_every`` commands,
at a batch boundary, so collections only scan what is new since.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import queue
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from haltguard.common.clock import NsClock
from haltguard.common.errors import ErrorKind, HaltguardError
from haltguard.common.units import NS_PER_S
from haltguard.gateway.models import Units
from haltguard.gateway.sequencer import Sequencer
from haltguard.journal import (
    Journal,
    JournalError,
    JournalReader,
    UnjournalableCommandError,
    recover,
)
from haltguard.journal.quarantine import (
    ERROR_TEXT_MAX,
    QuarantinedCommand,
    add_to_quarantine,
    load_quarantine,
)
from haltguard.venue.commands import (
    AddAsset,
    AddMarket,
    CancelOrder,
    Command,
    ConfigureBreaker,
    CreditCompensation,
    FreezeWithdrawals,
    Heartbeat,
    KillSwitch,
    MalformedCommandError,
    PlaceOrder,
    SetMarketState,
    validated,
)
from haltguard.venue.engine import Venue
from haltguard.venue.events import CommandRejected, Event, OrderAccepted, OrderRepeated, Trade
from haltguard.venue.types import (
    MarketState,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

ACK_TIMEOUT_S_DEFAULT = 10.0


TRADES_BACKFILL_COMMANDS = 50_000
"""Journal commands read back at start to refill the recent-trades rings."""

@dataclass(frozen=True)
class RuntimeLimits:
    """Every bound the runtime keeps. Defaults suit a single venue process."""

    queue_depth_max: int = 10_000  # commands waiting for the venue thread
    batch_max: int = 1_000  # commands per journal fsync
    checkpoint_every: int = 100_000  # commands between snapshots
    trades_per_market_max: int = 1_000  # recent trades kept for GET .../trades
    order_outcomes_max: int = 100_000  # first results kept for client-order-id retries
    retry_after_s: int = 1  # what an overloaded caller is told to wait
    brakes_queued_max: int = 1_000  # brakes waiting for the venue thread
    gc_freeze_every: int = 5_000  # commands between gc.freeze() calls; 0: leave the GC alone
    quarantines_max: int = 3  # quarantined commands tolerated within the window
    quarantine_window_s: int = 3_600  # ... beyond that the venue fail-stops
    fault_injection: bool = False  # drills may arm faults (POST /v1/admin/faults)

    def __post_init__(self) -> None:
        for name in ("queue_depth_max", "batch_max", "checkpoint_every", "trades_per_market_max",
                     "order_outcomes_max", "retry_after_s", "brakes_queued_max",
                     "quarantine_window_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"RuntimeLimits.{name} must be at least 1")
        for name in ("gc_freeze_every", "quarantines_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"RuntimeLimits.{name} must be 0 or more")


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
    quarantined: list[dict[str, object]] = field(default_factory=list)
    brakes: int = 0  # brakes taken through the brake lane since start
    listener_failures: int = 0
    fault_armed: str = ""  # the armed fault injection, described; "" when none


class VenueUnavailableError(HaltguardError, RuntimeError):
    """The runtime is not taking commands: stopping, stopped, or stopped after a failure."""

    kind = ErrorKind.UNAVAILABLE
    code = "venue_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class CommandRefusedError(HaltguardError, ValueError):
    """A malformed command, or one the journal cannot store (a number beyond 64 bits, text
    that is not valid Unicode); nothing happened and no sequence number was used."""

    kind = ErrorKind.INVALID
    code = "invalid_command"

    def __init__(self, message: str) -> None:
        super().__init__(message, next_step="Fix the request and send it again.")


class OverloadedError(HaltguardError, RuntimeError):
    """The input queue is full. Nothing was queued; retry after ``retry_after_s``."""

    kind = ErrorKind.UNAVAILABLE
    code = "overloaded"

    def __init__(self, queue_depth_max: int, retry_after_s: int) -> None:
        super().__init__(
            f"the venue's input queue is full ({queue_depth_max} commands waiting); nothing was "
            f"queued, retry in {retry_after_s} s (with the same client_order_id for orders)",
            headers={"Retry-After": str(retry_after_s)},
        )
        self.retry_after_s = retry_after_s


class CommandQuarantinedError(HaltguardError, RuntimeError):
    """The engine raised on the command (a software bug). It is journaled but set aside:
    it changed nothing, every replay skips it, and its market is being halted."""

    kind = ErrorKind.INTERNAL
    code = "command_quarantined"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class FaultInjectionNotAllowedError(PermissionError):
    """Faults may be armed only on a venue started with fault injection allowed."""


class InjectedFaultError(RuntimeError):
    """Raised by an armed fault inside the apply of a matching command (drills only)."""


@dataclass(frozen=True)
class Fault:
    """A fault armed for a drill: ``engine_raise`` raises after the engine applied a
    place-order whose client order id starts with ``client_order_id_prefix``, leaving the
    venue changed as a bug midway through a command would."""

    kind: str
    client_order_id_prefix: str

    def describe(self) -> str:
        return f"{self.kind} on orders whose client_order_id starts with " \
            f"{self.client_order_id_prefix!r}"


FAULT_KINDS = frozenset({"engine_raise"})

BatchListener = Callable[[Venue, Sequence[CommandResult]], None]
"""Called on the venue's thread after each batch with the venue and every command's result;
it must not call :meth:`VenueRuntime.read` nor wait for a command."""


class BatchReplicator(Protocol):
    """Where a replicated venue also sends each batch (``haltguard.replication``).

    :meth:`publish` is called on the venue thread once the batch is appended, before its
    fsync, with ``(seq, ts, command, caller)`` of each command; it starts sending and returns
    a ``confirm`` the venue thread calls after the fsync and the apply, still holding the
    state lock. ``confirm`` returns once the copy is acknowledged, or raises: then nobody in
    the batch is acknowledged and the runtime fail-stops (503 to every caller), since the
    replicated journal may not hold what the local one does.
    """

    def publish(self, stamped: Sequence[tuple[int, int, Command, Any]]) -> Callable[[], None]: ...

QUARANTINE_ACTOR = "system:venue"
_BRAKE_STATES = frozenset({MarketState.HALTED, MarketState.CANCEL_ONLY})
_BRAKE_KINDS = frozenset({SetMarketState, KillSwitch, FreezeWithdrawals})


def is_brake(command: Command) -> bool:
    """Commands that only stop things: a halt, cancel-only, the kill switch engaged,
    withdrawals frozen. Nothing that reopens or loosens is a brake."""
    if type(command) is SetMarketState:
        return command.state in _BRAKE_STATES
    if type(command) is KillSwitch:
        return command.engaged
    if type(command) is FreezeWithdrawals:
        return command.frozen
    return False


class _Stop:
    """Queued by :meth:`VenueRuntime.stop` after everything already accepted."""


class _Wake:
    """Queued when a brake arrives while the venue thread waits on an empty queue."""


_STOP = _Stop()
_WAKE = _Wake()


class _Sink(Protocol):
    """Where a command's outcome goes: a :class:`Future`, or a slot resolved on an event
    loop (:class:`_LoopSlot`, :class:`_GroupSlot`)."""

    def set_result(self, result: CommandResult, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...
    def done(self) -> bool: ...


class _LoopRelay:
    """Hands outcomes from the venue thread to one event loop, in bulk.

    The venue thread posts each outcome here; the first post since the loop last drained
    schedules one :meth:`drain` with ``call_soon_threadsafe``, and everything posted until
    that drain runs rides along. A batch of N commands from one loop's callers costs that
    loop one wake-up, not N; the venue thread posts a whole batch quietly and wakes the
    loop after the last (:meth:`post_quietly`, :meth:`wake`), so the loop does not wake to
    wait for the interpreter lock while the venue thread still holds it.

    The other direction too: the loop's callers queue commands without waking the venue
    thread, and one callback at the end of the loop's iteration does (``kick_pending``),
    so the venue thread finds every command of that iteration queued when it wakes.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)
        self._lock = threading.Lock()
        self._posted: list[tuple[asyncio.Future[Any], object, BaseException | None]] = []
        self.kick_pending = False  # a wake-up of the venue thread is scheduled on the loop

    def post(self, target: asyncio.Future[Any], value: object,
             error: BaseException | None) -> None:
        if self.post_quietly(target, value, error):
            self.wake()

    def post_quietly(self, target: asyncio.Future[Any], value: object,
                     error: BaseException | None) -> bool:
        """Add an outcome without waking the loop; True when the caller must :meth:`wake`
        it (nothing was waiting to be drained)."""
        with self._lock:
            first = not self._posted
            self._posted.append((target, value, error))
        return first

    def post_all_quietly(
        self, posts: list[tuple[asyncio.Future[Any], object, BaseException | None]]
    ) -> bool:
        """:meth:`post_quietly` for many outcomes under one lock."""
        with self._lock:
            first = not self._posted
            self._posted += posts
        return first

    def wake(self) -> None:
        loop = self.loop()
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        with self._lock:
            posted, self._posted = self._posted, []
        for target, value, error in posted:
            if target.done():  # cancelled: the caller stopped waiting
                continue
            if error is None:
                target.set_result(value)
            else:
                target.set_exception(error)


class _LoopSlot:
    """One command's outcome, for a caller awaiting it on an event loop."""

    __slots__ = ("relay", "settled", "target")

    def __init__(self, relay: _LoopRelay, target: asyncio.Future[Any]) -> None:
        self.relay = relay
        self.target = target
        self.settled = False

    def set_result(self, result: CommandResult, /) -> None:
        self.settled = True
        self.relay.post(self.target, result, None)

    def set_exception(self, exception: BaseException, /) -> None:
        self.settled = True
        self.relay.post(self.target, None, exception)

    def done(self) -> bool:
        return self.settled


class _Group:
    """N commands submitted together (:meth:`VenueRuntime.submit_many`): one outcome, the
    list of each command's result or exception in submit order, once all N are settled."""

    __slots__ = ("left", "outcomes", "relay", "target")

    def __init__(self, relay: _LoopRelay, target: asyncio.Future[Any], size: int) -> None:
        self.relay = relay
        self.target = target
        self.outcomes: list[CommandResult | BaseException | None] = [None] * size
        self.left = size

    def settle(self, index: int, outcome: CommandResult | BaseException) -> None:
        relay = self.settle_quietly(index, outcome)
        if relay is not None:
            relay.wake()

    def settle_quietly(
        self, index: int, outcome: CommandResult | BaseException
    ) -> _LoopRelay | None:
        self.outcomes[index] = outcome
        self.left -= 1
        if self.left == 0 and self.relay.post_quietly(self.target, self.outcomes, None):
            return self.relay
        return None


class _GroupSlot:
    """One command's place in a :class:`_Group`."""

    __slots__ = ("group", "index", "settled")

    def __init__(self, group: _Group, index: int) -> None:
        self.group = group
        self.index = index
        self.settled = False

    def set_result(self, result: CommandResult, /) -> None:
        self.settled = True
        self.group.settle(self.index, result)

    def set_exception(self, exception: BaseException, /) -> None:
        self.settled = True
        self.group.settle(self.index, exception)

    def settle_quietly(self, result: CommandResult) -> _LoopRelay | None:
        self.settled = True
        return self.group.settle_quietly(self.index, result)

    def done(self) -> bool:
        return self.settled


Outcome = CommandResult | BaseException
"""One command's outcome in :meth:`VenueRuntime.submit_many`'s list: its result, or why it
was refused (:class:`CommandRefusedError`, :class:`CommandQuarantinedError`,
:class:`VenueUnavailableError`)."""
_Item = tuple[Command, "_Sink | None"]
_Stamped = tuple[int, int, Command, "_Sink | None"]  # seq, ts, the command, its caller
_Raised = tuple[int, Exception]  # where in a batch the engine raised, and what
_OVERLAP_COMMANDS_MIN = 24
"""Batches this large are applied on the helper thread during their fsync. Below it the
hand-over between threads costs more than the apply it would hide (measured on a 2-CPU VM:
at 8 commands a batch the helper lost, at about 60 it won)."""
_IDLE_WAIT_S_MAX = 0.1
"""The longest the venue thread waits for work before it looks again: a loop that queued
commands and stopped before its wake-up callback ran cannot leave them waiting for ever."""


class _Worker(Generic[T]):
    """A thread that runs one job at a time for the venue thread: the apply of a large
    batch while the venue thread waits for that batch's fsync.

    The hand-over is two plain locks used as signals (the cheapest wake-up there is);
    :meth:`wait` re-raises on the venue thread whatever the job raised.
    """

    def __init__(self, name: str) -> None:
        self._go = threading.Lock()
        self._go.acquire()
        self._finished = threading.Lock()
        self._finished.acquire()
        self._job: Callable[[], T] | None = None
        self._outcome: T | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def begin(self, job: Callable[[], T]) -> None:
        """Start ``job``; call :meth:`wait` before the next :meth:`begin`. Once closed, the
        job runs on the caller's thread."""
        if self._closed:
            try:
                self._outcome = job()
            except BaseException as exc:
                self._error = exc
            self._finished.release()
            return
        self._job = job
        self._go.release()

    def wait(self) -> T | None:
        """The job's outcome, once it finished."""
        self._finished.acquire()
        outcome, error = self._outcome, self._error
        self._outcome = self._error = None
        if error is not None:
            raise error
        return outcome

    def close(self, timeout_s: float = 5.0) -> None:
        """Let the thread end (after the job it runs, if any) and wait for it."""
        if not self._closed:
            self._closed = True
            self._job = None
            self._go.release()
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            self._go.acquire()
            job, self._job = self._job, None
            if job is None:
                return
            try:
                self._outcome = job()
            except BaseException as exc:  # handed to the venue thread, which fail-stops
                self._error = exc
            self._finished.release()


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
        clock: NsClock = time.time_ns,
        limits: RuntimeLimits | None = None,
        replicator: BatchReplicator | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.limits = limits or RuntimeLimits()
        self._replicator = replicator  # None: the local journal alone (the default)
        self._venue, self.recovery_report = recover(self.data_dir, repair=True)
        self._venue_check_after_recovery()
        self._journal = Journal(self.data_dir)
        self._sequencer = Sequencer(self._venue.last_seq, self._venue.last_ts, clock)
        self._queue: queue.Queue[_Item | _Stop | _Wake] = queue.Queue(
            self.limits.queue_depth_max
        )
        self._brakes: deque[_Item] = deque()
        self._carried: _Item | None = None  # taken from the queue, deferred for brakes
        self._listeners: list[BatchListener] = []
        self._relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopRelay] = (
            weakref.WeakKeyDictionary()
        )
        self._last_relay: _LoopRelay | None = None
        self._fault: Fault | None = None
        self._quarantine = load_quarantine(self.data_dir)
        self._quarantine_views = {entry.seq: _quarantine_view(entry, "")
                                  for entry in self._quarantine}
        self._since_gc_freeze = 0
        self._last_batch_size = 0  # commands in the last batch applied
        self._in_listener_brakes = False  # applying brakes listeners asked for
        self._state_lock = threading.Lock()  # held while applying; readers take it too
        self._accept_lock = threading.Lock()  # orders "accepting?" checks against stop()
        self._refusal = "the venue runtime has not been started"
        self._failure = ""
        self._thread: threading.Thread | None = None
        self._helper: _Worker[_Raised | None] | None = None  # started with the venue thread
        self._units = _units_of(self._venue)
        self._trades: dict[str, deque[TradeRecord]] = {}
        self._outcomes: OrderedDict[tuple[int, str], CommandResult] = OrderedDict()
        self._since_checkpoint = 0
        self._last_heartbeat_deadline: int | None = None
        self._counters = {"commands": 0, "batches": 0, "batch_max_seen": 0, "overloads": 0,
                          "checkpoints": 0, "checkpoint_failures": 0, "brakes": 0,
                          "listener_failures": 0}
        if self.limits.gc_freeze_every:
            _freeze_gc()  # the recovered state lives as long as the process

    def _venue_check_after_recovery(self) -> None:
        report = self.recovery_report
        for damage in report.history_damage:  # the state is intact; the history is not
            log.error("retained journal history damaged: %s; run `haltguard venue verify %s`",
                      damage, self.data_dir)
        for rejected in report.rejected_snapshots:
            log.error("snapshot %s refused at recovery: %s", rejected.file, rejected.reason)
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
        recovered_seq = self._venue.last_seq
        self._helper = _Worker("venue-apply")
        self._thread = threading.Thread(target=self._run, name="venue", daemon=True)
        self._thread.start()
        if recovered_seq:
            threading.Thread(target=self._backfill_trades, args=(recovered_seq,),
                             name="venue-trades", daemon=True).start()
        return self

    def _backfill_trades(self, through_seq: int) -> None:
        """Refill the recent-trades rings from the journal's last commands before this start
        (recovery replays without events), so a restarted venue still shows its last trades.
        Live trades keep arriving meanwhile; the older ones go in front of them."""
        from_seq = max(1, through_seq - TRADES_BACKFILL_COMMANDS + 1)
        found: dict[str, list[TradeRecord]] = {}
        try:
            reader = JournalReader(self.data_dir)
            try:
                reader.seek(from_seq)
                while entries := reader.read_available():
                    for sequenced, events in entries:
                        if sequenced.seq > through_seq:
                            break
                        for event in events:
                            if type(event) is Trade:
                                found.setdefault(event.market, []).append(
                                    TradeRecord(sequenced.seq, sequenced.ts, event))
                    if entries[-1][0].seq >= through_seq:
                        break
            finally:
                reader.close()
        except (JournalError, OSError) as exc:
            log.warning("recent trades were not refilled from the journal: %s", exc)
            return
        keep = self.limits.trades_per_market_max
        with self._state_lock:
            for market, older in found.items():
                live = list(self._trades.get(market, ()))
                self._trades[market] = deque(older[-keep:] + live, maxlen=keep)

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

    def add_listener(self, listener: BatchListener) -> None:
        """Call ``listener`` on the venue thread after each batch is applied, before the
        batch's callers are answered. One that raises is logged and counted, never more:
        a listener's trouble must not stop the venue."""
        self._listeners.append(listener)

    # -- fault injection (drills) -----------------------------------------------------------

    def arm_fault(self, kind: str, client_order_id_prefix: str) -> Fault:
        """Arm a fault for a drill; refused unless ``RuntimeLimits.fault_injection``."""
        if not self.limits.fault_injection:
            raise FaultInjectionNotAllowedError(
                "fault injection is not allowed on this venue; start it with fault injection "
                "allowed (`haltguard venue run --allow-fault-injection`, or drill.enabled in "
                "serve's configuration) to run drills that need it"
            )
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {sorted(FAULT_KINDS)}")
        if not client_order_id_prefix:
            raise ValueError("client_order_id_prefix must not be empty: an empty prefix would "
                             "match every order")
        fault = Fault(kind, client_order_id_prefix)
        self._fault = fault
        log.warning("fault armed for a drill: %s", fault.describe())
        return fault

    def disarm_fault(self) -> Fault | None:
        """Disarm the armed fault; returns it (None when none was armed)."""
        fault, self._fault = self._fault, None
        if fault is not None:
            log.warning("fault disarmed: %s", fault.describe())
        return fault

    def quarantined(self) -> list[dict[str, object]]:
        """Every quarantined command of this data directory, oldest first, with the halt
        the runtime engaged for it (when it happened since this start)."""
        with self._accept_lock:
            return [dict(view) for _, view in sorted(self._quarantine_views.items())]

    # -- commands --------------------------------------------------------------------------

    def submit(self, command: Command) -> Future[CommandResult]:
        """Queue ``command``; the future resolves once it is durable and applied.

        Raises :class:`OverloadedError` if the queue is full and
        :class:`VenueUnavailableError` if the runtime is not running. A malformed command is
        refused here, on the caller's thread, and nothing is queued; one the journal could
        not store is refused by the venue thread's append, which keeps nothing of it. Either
        way it gets no sequence number and its future raises :class:`CommandRefusedError`.
        The future cannot be cancelled: once queued, a command is journaled whether or not
        anyone still waits.
        """
        future: Future[CommandResult] = Future()
        future.set_running_or_notify_cancel()
        try:
            command = well_typed(command)
        except CommandRefusedError as exc:
            future.set_exception(exc)
            return future
        if type(command) in _BRAKE_KINDS and is_brake(command):
            self._submit_brake(command, future)
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

    def submit_async(self, command: Command) -> asyncio.Future[CommandResult]:
        """:meth:`submit` for a caller on an event loop (call it on the loop's thread).

        The same checks, refusals and lanes; the outcome is resolved on the loop together
        with every other outcome of the same batch for that loop (one wake-up per batch).
        """
        loop = asyncio.get_running_loop()
        target: asyncio.Future[Any] = loop.create_future()
        relay = self._relay(loop)
        slot = _LoopSlot(relay, target)
        try:
            command = well_typed(command)
        except CommandRefusedError as exc:
            target.set_exception(exc)
            return target
        if type(command) in _BRAKE_KINDS and is_brake(command):
            self._submit_brake(command, slot)
        else:
            self._enqueue_one((command, slot), loop, relay)
        return target

    def submit_many(self, commands: Sequence[Command]) -> asyncio.Future[list[Outcome]]:
        """Queue ``commands`` at once (call it on an event loop's thread); one outcome for all.

        The returned future resolves, once every command is durable and applied or refused,
        to each command's :data:`Outcome` in the order given. All or nothing at the queue:
        :class:`OverloadedError` when they do not all fit (nothing was queued),
        :class:`VenueUnavailableError` when the runtime is not running. A malformed command,
        or one the journal cannot store, takes no sequence number; its outcome is the
        :class:`CommandRefusedError`. Brakes are
        refused with ``ValueError``: they have their own lane (:meth:`submit`).
        """
        if len(commands) > self.limits.queue_depth_max:
            raise ValueError(f"submit_many takes at most queue_depth_max "
                             f"({self.limits.queue_depth_max}) commands, not {len(commands)}")
        loop = asyncio.get_running_loop()
        target: asyncio.Future[Any] = loop.create_future()
        if not commands:
            target.set_result([])
            return target
        relay = self._relay(loop)
        group = _Group(relay, target, len(commands))
        items: list[_Item] = []
        refused: list[tuple[int, CommandRefusedError]] = []
        for index, command in enumerate(commands):
            try:
                checked = well_typed(command)
            except CommandRefusedError as exc:
                refused.append((index, exc))
                continue
            if type(checked) in _BRAKE_KINDS and is_brake(checked):
                raise ValueError("submit_many does not take brakes; submit them alone")
            items.append((checked, _GroupSlot(group, index)))
        # Settled here, before the rest is queued: after that only the venue thread settles
        # this group, so its count is never changed from two threads at once.
        for index, refusal in refused:
            group.settle(index, refusal)
        if items:
            self._enqueue(items, loop, relay)
        return target

    def _relay(self, loop: asyncio.AbstractEventLoop) -> _LoopRelay:
        last = self._last_relay  # most calls come from the loop that called last
        if last is not None and last.loop() is loop:
            return last
        relay = self._relays.get(loop)
        if relay is None:
            relay = self._relays[loop] = _LoopRelay(loop)
        self._last_relay = relay
        return relay

    def _enqueue(self, items: list[_Item], loop: asyncio.AbstractEventLoop,
                 relay: _LoopRelay) -> None:
        """Put ``items`` on the input queue under one lock, all or none; the venue thread is
        woken once at the end of the loop's iteration (:meth:`_kick`), not per caller."""
        work = self._queue
        with self._accept_lock:
            if self._refusal:
                raise VenueUnavailableError(self._refusal)
            with work.mutex:
                if len(work.queue) + len(items) > work.maxsize:
                    self._counters["overloads"] += 1
                    limits = self.limits
                    raise OverloadedError(limits.queue_depth_max, limits.retry_after_s)
                work.queue.extend(items)
                work.unfinished_tasks += len(items)
        if not relay.kick_pending:
            relay.kick_pending = True
            loop.call_soon(self._kick, relay)

    def _enqueue_one(self, item: _Item, loop: asyncio.AbstractEventLoop,
                     relay: _LoopRelay) -> None:
        """:meth:`_enqueue` for one command (the path every HTTP order takes)."""
        work = self._queue
        with self._accept_lock:
            if self._refusal:
                raise VenueUnavailableError(self._refusal)
            with work.mutex:
                if len(work.queue) >= work.maxsize:
                    self._counters["overloads"] += 1
                    limits = self.limits
                    raise OverloadedError(limits.queue_depth_max, limits.retry_after_s)
                work.queue.append(item)
                work.unfinished_tasks += 1
        if not relay.kick_pending:
            relay.kick_pending = True
            loop.call_soon(self._kick, relay)

    def _kick(self, relay: _LoopRelay) -> None:
        """Wake the venue thread for what this loop queued since the last kick."""
        relay.kick_pending = False
        work = self._queue
        with work.mutex:
            work.not_empty.notify()

    def _submit_brake(self, command: Command, future: _Sink) -> None:
        """The brake lane: the venue thread takes queued brakes before its next batch."""
        with self._accept_lock:
            if self._refusal:
                raise VenueUnavailableError(self._refusal)
            if len(self._brakes) >= self.limits.brakes_queued_max:
                raise OverloadedError(self.limits.brakes_queued_max, self.limits.retry_after_s)
            self._brakes.append((command, future))
            self._counters["brakes"] += 1
        work = self._queue
        if work.empty():  # an idle venue thread waits on the queue: wake it
            with contextlib.suppress(queue.Full):
                work.put_nowait(_WAKE)
        else:  # commands a loop queued may not have woken it yet
            with work.mutex:
                work.not_empty.notify()

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

    def queue_depth(self) -> tuple[int, int]:
        """Commands waiting and the most allowed: what the load shedder reads per order,
        without building the whole :meth:`status`."""
        return self._queue.qsize(), self.limits.queue_depth_max

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
            quarantined=self.quarantined(),
            brakes=self._counters["brakes"],
            listener_failures=self._counters["listener_failures"],
            fault_armed=self._fault.describe() if self._fault is not None else "",
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
        finally:
            if self._helper is not None:
                self._helper.close()

    def _collect(self) -> tuple[list[_Item], bool]:
        """Queued brakes alone if any; otherwise wait for work (or the next deadline), then
        take up to ``batch_max`` commands."""
        if self._brakes:
            return self._take_brakes(), False
        batch: list[_Item] = []
        deadline = self._due_deadline()
        first: _Item | _Stop | _Wake | None = self._carried
        self._carried = None
        if first is None:
            timeout_s = _IDLE_WAIT_S_MAX
            if deadline is not None:
                timeout_s = min(timeout_s, max(0.0, (deadline - self._sequencer.now()) / 1e9))
            try:
                first = self._queue.get(timeout=timeout_s)
            except queue.Empty:
                first = None
        if deadline is not None and self._sequencer.now() >= deadline:
            self._last_heartbeat_deadline = deadline
            batch.append((Heartbeat(), None))
        if isinstance(first, _Stop):
            return self._take_brakes() + batch, True
        if isinstance(first, _Wake):
            first = None
        if first is not None:
            if self._brakes and not batch:  # a brake came in while waiting: it goes first
                self._carried = first
                return self._take_brakes(), False
            batch.append(first)
            if self._last_batch_size > 1 and not isinstance(first[1], (_LoopSlot, _GroupSlot)):
                # Let submitter threads woken by the last batch's acknowledgements queue their
                # next command before this batch is closed: a yield of the GIL, not a timer.
                # A lone submitter has nobody to wait for, and the yield would cost it; an
                # event loop's callers were all queued before its kick woke this thread.
                time.sleep(0)
        for item in self._take_queued(self.limits.batch_max - len(batch)):
            if isinstance(item, _Stop):
                return self._take_brakes() + batch, True
            if not isinstance(item, _Wake):
                batch.append(item)
        return batch, False

    def _take_queued(self, count_max: int) -> list[_Item | _Stop | _Wake]:
        """Up to ``count_max`` queued items at once, under one lock, without waiting."""
        work = self._queue
        taken: list[_Item | _Stop | _Wake] = []
        if count_max <= 0:
            return taken
        with work.mutex:
            pending = work.queue
            count = min(count_max, len(pending))
            popleft = pending.popleft
            taken = [popleft() for _ in range(count)]
            if count:
                work.not_full.notify(count)
        return taken

    def _take_brakes(self) -> list[_Item]:
        brakes: list[_Item] = []
        while self._brakes:
            brakes.append(self._brakes.popleft())
        return brakes

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
        confirm = self._replicator.publish(stamped) if self._replicator is not None else None
        results: list[tuple[_Sink | None, CommandResult]] = []
        pending: list[_Sink | None] = []
        with self._state_lock:  # held until the batch is durable: readers never see less
            quarantined_before = len(self._quarantine)
            raised = self._sync_and_apply(stamped, results)
            while raised is not None:
                index, exc = raised
                seq, ts, command, future = stamped[index]
                if not self._quarantine_command(seq, ts, command, future, exc, results):
                    pending = [f for *_, f in stamped[index:]]
                    break
                raised = self._apply_run(stamped, index + 1, results)  # on the rebuilt venue
            if confirm is not None:
                self._confirm_replicated(confirm, stamped)
            if len(self._quarantine) > quarantined_before or any(
                type(item[2]) in _LISTING_COMMANDS for item in stamped
            ):
                self._units = _units_of(self._venue)
        try:
            if self._listeners:
                self._notify([result for _, result in results])
                if self._brakes and not self._in_listener_brakes:
                    # A brake a listener just asked for (detection's halt) is journaled and
                    # applied before this batch's callers are answered: waking them first
                    # would only make the halt wait for the threads they run on.
                    self._in_listener_brakes = True
                    try:
                        self._process(self._take_brakes())
                    finally:
                        self._in_listener_brakes = False
        finally:
            _answer(results)
        if pending:
            self._fail_stop(self._failure, pending)
            raise _FailStopError
        self._count_batch(len(stamped))

    def _sync_and_apply(
        self, stamped: list[_Stamped], results: list[tuple[_Sink | None, CommandResult]]
    ) -> _Raised | None:
        """Make the appended batch durable and apply it; the first command the engine
        raised on, if any (the rest of the batch is then not applied yet).

        A batch of ``_OVERLAP_COMMANDS_MIN`` or more is applied on the helper thread while
        this thread waits for the fsync, which releases the interpreter lock: the engine's
        work fits inside the disk's. The caller holds the state lock throughout, so nobody
        reads a command before it is durable, and nobody is answered before the sync
        returned. A smaller batch is applied here after the sync: handing it over would
        cost more than its apply.
        """
        helper = self._helper if len(stamped) >= _OVERLAP_COMMANDS_MIN else None
        if helper is None:
            self._sync_batch(stamped)
            return self._apply_run(stamped, 0, results)
        helper.begin(lambda: self._apply_run(stamped, 0, results))
        try:
            self._journal.sync()
        except Exception as exc:
            helper.wait()  # nothing may change the venue while it fail-stops
            self._fail_stop_on_journal(exc, [future for *_, future in stamped])
            raise _FailStopError from exc
        return helper.wait()

    def _apply_run(
        self, stamped: list[_Stamped], start: int,
        results: list[tuple[_Sink | None, CommandResult]],
    ) -> _Raised | None:
        """Apply ``stamped[start:]`` in order, adding each result to ``results``; stop at
        the first command the engine raises on and return it with its index."""
        fault = self._fault
        apply = self._venue.apply
        record = self._record
        add = results.append
        for index in range(start, len(stamped)):
            seq, ts, command, future = stamped[index]
            try:
                if fault is None:
                    events = apply(seq, ts, command)
                else:
                    events = self._apply_with_fault(fault, seq, ts, command)
            except Exception as exc:
                return index, exc
            add((future, record(seq, ts, command, events)))
        return None

    def _notify(self, applied: list[CommandResult]) -> None:
        venue = self._venue
        for listener in self._listeners:
            try:
                listener(venue, applied)
            except Exception:
                self._counters["listener_failures"] += 1
                log.exception("a venue listener failed after seq %d; the venue carries on",
                              applied[-1].seq if applied else 0)

    def _apply_with_fault(self, fault: Fault, seq: int, ts: int, command: Command) -> list[Event]:
        """Apply, then raise when the armed fault matches: the venue is left changed, as
        by a bug half-way through a command, so the quarantine must rebuild it."""
        events = self._venue.apply(seq, ts, command)
        if (
            fault.kind == "engine_raise"
            and type(command) is PlaceOrder
            and command.client_order_id.startswith(fault.client_order_id_prefix)
        ):
            raise InjectedFaultError(
                f"injected fault (drill): engine_raise on client_order_id "
                f"{command.client_order_id!r}"
            )
        return events

    # -- quarantine ------------------------------------------------------------------------

    def _quarantine_command(  # noqa: PLR0917 - internal, called from one place
        self, seq: int, ts: int, command: Command, future: _Sink | None,
        exc: Exception, results: list[tuple[_Sink | None, CommandResult]],
    ) -> bool:
        """Set ``command`` aside and rebuild the venue without it; False (with
        ``_failure`` set) when the venue must fail-stop instead."""
        error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_MAX]
        log.error("the engine raised on seq %d (%s); quarantining it", seq,
                  type(command).__name__, exc_info=exc)
        market = _market_of(command)
        entry = QuarantinedCommand(
            seq, ts, type(command).__name__, market, error,
            command.client_order_id if type(command) is PlaceOrder else "",
        )
        window_ns = self.limits.quarantine_window_s * NS_PER_S
        recent = sum(1 for earlier in self._quarantine if earlier.ts >= ts - window_ns) + 1
        try:
            add_to_quarantine(self.data_dir, entry)
        except Exception as write_exc:
            self._failure = (
                f"the engine raised on seq {seq} ({error}) and the quarantine list could not "
                f"be written ({write_exc}); the venue stopped. Fix the disk and restart it"
            )
            return False
        self._quarantine.append(entry)
        if recent > self.limits.quarantines_max:
            self._quarantine_views[seq] = _quarantine_view(entry, "none: the venue stopped")
            self._failure = (
                f"the engine raised on {recent} commands within "
                f"{self.limits.quarantine_window_s} s (the latest seq {seq}: {error}); each "
                "was quarantined, but a venue that keeps raising is not safe, so it stopped. "
                "Investigate the quarantined commands (GET /v1/admin/quarantine, "
                "quarantine.json) before restarting it"
            )
            return False
        try:
            self._venue, report = recover(self.data_dir, repair=False, through_seq=seq - 1)
            events = self._venue.apply(seq, ts, _HEARTBEAT)
        except Exception as rebuild_exc:
            self._failure = (
                f"the engine raised on seq {seq} ({error}) and the venue could not be rebuilt "
                f"without it ({rebuild_exc!r}); the venue stopped. Restart it: recovery skips "
                "the quarantined command"
            )
            return False
        log.warning("venue rebuilt without seq %d in %.0f ms", seq, report.elapsed_ms)
        results.append((None, self._record(seq, ts, _HEARTBEAT, events)))
        if future is not None:
            future.set_exception(CommandQuarantinedError(
                f"the venue could not process this command (seq {seq}): {error}. It changed "
                "nothing and was quarantined; "
                + (f"market {market} is being halted. " if market else "")
                + "Operators see it at GET /v1/admin/quarantine; do not send it again"
            ))
        self._halt_for(entry)
        return True

    def _halt_for(self, entry: QuarantinedCommand) -> None:
        """Queue a halt of the quarantined command's market in the brake lane; the
        quarantine list says what came of it."""
        view = self._quarantine_views[entry.seq] = _quarantine_view(entry, "")
        if not entry.market:
            view["halt"] = "none: the command names no market"
            log.error("quarantined seq %d names no market: nothing was halted", entry.seq)
            return
        halt = SetMarketState(
            entry.market, MarketState.HALTED, actor=QUARANTINE_ACTOR,
            reason=f"software bug: the engine raised on seq {entry.seq} "
            f"({entry.command}): {entry.error}"[:500],
        )
        future: Future[CommandResult] = Future()
        future.set_running_or_notify_cancel()
        view["halt"] = "queued"

        def settled(done: Future[CommandResult]) -> None:
            try:
                result = done.result()
            except Exception as exc:
                outcome = f"not engaged: {exc}"
            else:
                refused = [e for e in result.events if isinstance(e, CommandRejected)]
                outcome = (f"refused by the venue at seq {result.seq}: {refused[0].detail}"
                           if refused else f"halted at seq {result.seq}")
            with self._accept_lock:
                view["halt"] = outcome

        future.add_done_callback(settled)
        with self._accept_lock:
            self._brakes.append((halt, future))
            self._counters["brakes"] += 1

    def _journal_batch(self, batch: list[_Item]) -> list[_Stamped]:
        """Stamp and append each command; :meth:`_sync_and_apply` makes them durable with
        one sync.

        A command the journal cannot store is refused alone (its seq is reused); any other
        journal failure stops the venue, since nothing may be acknowledged unless durable.
        """
        stamped: list[_Stamped] = []
        stamp = self._sequencer.stamp
        append = self._journal.append
        try:
            for command, future in batch:
                seq, ts = stamp()
                try:
                    append(seq, ts, command)
                except UnjournalableCommandError as exc:
                    self._sequencer.take_back()
                    if future is not None:
                        future.set_exception(CommandRefusedError(f"{exc}; nothing was done"))
                    continue
                stamped.append((seq, ts, command, future))
        except Exception as exc:
            self._fail_stop_on_journal(exc, [future for _, future in batch])
            raise _FailStopError from exc
        return stamped

    def _sync_batch(self, stamped: list[_Stamped]) -> None:
        """One write and one fsync for the appended batch, or fail-stop."""
        try:
            self._journal.sync()
        except Exception as exc:
            self._fail_stop_on_journal(exc, [future for *_, future in stamped])
            raise _FailStopError from exc

    def _confirm_replicated(self, confirm: Callable[[], None], stamped: list[_Stamped]) -> None:
        """Wait for the replicated journal's acknowledgement of the batch, or fail-stop
        with nobody in it acknowledged (a fenced or unreachable stream)."""
        try:
            confirm()
        except Exception as exc:
            self._fail_stop(
                f"the replicated journal did not take the batch after seq "
                f"{stamped[0][0] - 1}: {exc}. Nothing in it was acknowledged; this venue "
                "stopped taking commands (another venue serves, or will once the lease ends)",
                [future for *_, future in stamped],
            )
            raise _FailStopError from exc

    def _fail_stop_on_journal(self, exc: Exception, futures: list[_Sink | None]) -> None:
        self._fail_stop(
            f"the journal could not be written after seq {self._venue.last_seq}: {exc}. "
            "The venue stopped so nothing is matched without being durable; fix the disk "
            "and restart it: recovery replays every acknowledged command",
            futures,
        )

    def _record(self, seq: int, ts: int, command: Command, events: list[Event]) -> CommandResult:
        """Keep recent trades and first order outcomes; build the caller's result."""
        original = None
        accepted = False
        for event in events:
            if type(event) is OrderAccepted:
                accepted = True
            elif type(event) is Trade:
                ring = self._trades.get(event.market)
                if ring is None:
                    ring = self._trades[event.market] = deque(
                        maxlen=self.limits.trades_per_market_max
                    )
                ring.append(TradeRecord(seq, ts, event))
            elif type(event) is OrderRepeated:
                original = self._outcomes.get((event.account, event.client_order_id))
        result = CommandResult(seq, ts, command, events, original)
        # Only an order the venue accepted is an outcome to repeat: a refused one (a reused
        # id with other terms, say) must not replace the original's.
        if (
            accepted
            and type(command) is PlaceOrder
            and command.client_order_id
            and original is None
        ):
            key = (command.account, command.client_order_id)
            self._outcomes[key] = result
            if len(self._outcomes) > self.limits.order_outcomes_max:
                self._outcomes.popitem(last=False)
        elif type(command) is CreditCompensation:
            # Its lines add ledger rows by the thousand, long-lived objects full collections
            # would rescan (a million-line payout: seconds of CPU and pauses of a second):
            # they count toward the next gc.freeze as commands do.
            self._since_gc_freeze += len(command.lines)
        return result

    def _count_batch(self, size: int) -> None:
        self._last_batch_size = size
        counters = self._counters
        counters["commands"] += size
        counters["batches"] += 1
        counters["batch_max_seen"] = max(counters["batch_max_seen"], size)
        self._since_checkpoint += size
        if self._since_checkpoint >= self.limits.checkpoint_every:
            self._checkpoint()
        freeze_every = self.limits.gc_freeze_every
        if freeze_every:
            self._since_gc_freeze += size
            if self._since_gc_freeze >= freeze_every:
                _freeze_gc()
                self._since_gc_freeze = 0

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
        if self.limits.gc_freeze_every:
            _freeze_gc()
            self._since_gc_freeze = 0

    def _fail_stop(self, message: str, futures: list[_Sink | None]) -> None:
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
        with self._accept_lock:
            left = self._take_brakes()
        if self._carried is not None:
            left.append(self._carried)
            self._carried = None
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, (_Stop, _Wake)):
                left.append(item)
        for _, future in left:
            if future is not None and not future.done():
                future.set_exception(error)


def _answer(results: list[tuple[_Sink | None, CommandResult]]) -> None:
    """Resolve each caller's outcome; each event loop gets its answers under one lock and
    is woken once, after the last."""
    wake: list[_LoopRelay] = []
    posts: dict[_LoopRelay, list[tuple[asyncio.Future[Any], object, BaseException | None]]] = {}
    for future, result in results:
        if future is None:
            continue
        if isinstance(future, _LoopSlot):
            future.settled = True
            held = posts.get(future.relay)
            if held is None:
                held = posts[future.relay] = []
            held.append((future.target, result, None))
        elif isinstance(future, _GroupSlot):
            relay = future.settle_quietly(result)
            if relay is not None:
                wake.append(relay)
        else:
            future.set_result(result)
    for relay, held in posts.items():
        if relay.post_all_quietly(held):
            wake.append(relay)
    for relay in wake:
        relay.wake()


# Commands after which the grids (``units()``, specs with their breakers) are read again.
_LISTING_COMMANDS = (AddAsset, AddMarket, ConfigureBreaker)


def well_typed(command: object) -> Command:
    """``command`` with every field of its declared type (enum values given as strings
    converted), or :class:`CommandRefusedError`. What the journal cannot store (a number
    beyond 64 bits, text that is not valid Unicode) is refused by the venue thread's append,
    which raises before keeping anything, so the submit paths do not encode each command
    twice."""
    if type(command) is PlaceOrder and _exactly_typed(command):
        return command  # what validated() would return, for a fraction of its cost
    if type(command) is CancelOrder and _exactly_typed_cancel(command):
        return command  # likewise: a quarter of a busy flow is cancels
    try:
        return validated(command)
    except MalformedCommandError as exc:
        raise CommandRefusedError(f"{exc}; nothing was done") from None


def _exactly_typed(order: PlaceOrder) -> bool:
    """Every field of ``order`` is exactly its declared type (no subclass, no enum given as
    text): the order a decoder that checked its input builds (the streaming order entry's,
    the REST route's), which :func:`validated` would only copy."""
    return (
        type(order.market) is str and type(order.account) is int and type(order.side) is Side
        and type(order.qty) is int and type(order.price) is int
        and type(order.order_type) is OrderType and type(order.tif) is TimeInForce
        and type(order.post_only) is bool and type(order.stp) is SelfTradePrevention
        and type(order.client_order_id) is str
    )


def _exactly_typed_cancel(cancel: CancelOrder) -> bool:
    """:func:`_exactly_typed` for a cancel."""
    return (
        type(cancel.market) is str and type(cancel.account) is int
        and type(cancel.order_id) is int and type(cancel.client_order_id) is str
    )


assert CancelOrder.__struct_fields__ == ("market", "account", "order_id", "client_order_id"), (
    "CancelOrder's fields changed: update _exactly_typed_cancel"
)


# _exactly_typed names every field: a field added to PlaceOrder must be added there too.
assert PlaceOrder.__struct_fields__ == (
    "market", "account", "side", "qty", "price", "order_type", "tif", "post_only", "stp",
    "client_order_id",
), "PlaceOrder's fields changed: update _exactly_typed"


def _market_of(command: Command) -> str:
    market = getattr(command, "market", "")
    if isinstance(market, str) and market:
        return market
    spec = getattr(command, "spec", None)
    symbol = getattr(spec, "symbol", "")
    return symbol if isinstance(symbol, str) else ""


def _quarantine_view(entry: QuarantinedCommand, halt: str) -> dict[str, object]:
    return {"seq": entry.seq, "ts": entry.ts, "command": entry.command, "market": entry.market,
            "client_order_id": entry.client_order_id, "error": entry.error, "halt": halt}


def _freeze_gc() -> None:
    """Move every object alive now out of the collector's reach (``gc.freeze``): the venue
    state is long-lived, and full collections then scan only what is newer. The young
    generations are collected first (cheap) so little garbage is frozen; reference counting
    still frees frozen objects, only cycles among them wait for the process end."""
    gc.collect(1)
    gc.freeze()


_HEARTBEAT = Heartbeat()


def _units_of(venue: Venue) -> Units:
    return Units(venue.markets, {code: asset.decimals for code, asset in venue.assets.items()})


class _FailStopError(Exception):
    """Unwinds the venue thread after :meth:`VenueRuntime._fail_stop` did its work."""
