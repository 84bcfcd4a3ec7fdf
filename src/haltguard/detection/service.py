"""The detection service: the one door signals come in by, and where decisions go out.

Every signal source (health monitors, alert intake, security and load detectors, the market
detectors watching the venue) calls :func:`submit` or :meth:`DetectionService.submit`. The
service evaluates the rules at once under its lock and returns the decisions; the actions
run on the service's own worker thread, venue brakes first, so a caller (even the venue's
own thread) never waits for a database or a page.

Client actions (``rate_limit_client``, ``block_client``) are enforced by whichever layer
registered an enforcer for them with :meth:`DetectionService.add_enforcer`.

Typical wiring, once per process::

    service = DetectionService(rules=load_rules_file(path), executor=ActionExecutor(...))
    service.start()
    install(service)      # now detection.service.submit(signal) reaches it
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from haltguard.common.errors import ErrorKind, HaltguardError
from haltguard.detection.decisions import (
    CLIENT_ACTIONS,
    VENUE_ACTIONS,
    ActionKind,
    ActionOutcome,
    Decision,
    PlannedAction,
)
from haltguard.detection.policies import EMPTY_RULESET, PolicyEngine, RuleCounters, RuleSet
from haltguard.detection.rulesfile import RuleProblem, RulesError, load_rules_file
from haltguard.detection.signals import Signal

__all__ = [
    "DetectionService",
    "DetectionUnavailableError",
    "Enforcer",
    "RulesError",
    "install",
    "installed",
    "submit",
    "uninstall",
]

log = logging.getLogger(__name__)

QUEUE_DEPTH_MAX = 10_000  # decisions waiting for the worker
RECENT_DECISIONS_MAX = 1_000  # kept in memory for status and tests
TICK_INTERVAL_S = 1.0

Enforcer = Callable[[Decision, PlannedAction], None]
"""Called on the worker thread with each (non-dry-run) client action it registered for."""


class DecisionExecutor(Protocol):
    """What performs decisions; :class:`haltguard.detection.actions.ActionExecutor` is the
    real one. ``execute`` is called on the worker thread, one decision at a time, with what
    the enforcers did about its client actions."""

    def prepare(self, decision: Decision) -> None:
        """Start what must not wait (the venue's brakes) on the submitting thread; must
        return at once."""

    def execute(self, decision: Decision, client_outcomes: list[ActionOutcome]) -> None: ...


class DetectionUnavailableError(HaltguardError, RuntimeError):
    """No detection service is installed in this process, or it has stopped."""

    kind = ErrorKind.UNAVAILABLE
    code = "detection_not_running"


class _Stop:
    pass


_STOP = _Stop()

# The worker's order: decisions that protect (a brake on the venue, a block on a client)
# before the others, as the venue's own brake lane jumps its queue; within each, the order
# they were made in; the stop after everything queued.
_PROTECTIVE, _OTHER, _LAST = 0, 1, 2
_Queued = tuple[int, int, "Decision | _Stop"]


def _priority(decision: Decision) -> int:
    protects = any(action.kind in VENUE_ACTIONS or action.kind in CLIENT_ACTIONS
                   for action in decision.actions)
    return _PROTECTIVE if protects and not decision.dry_run else _OTHER


class DetectionService:
    """Owns the policy engine and the action executor; thread-safe."""

    def __init__(
        self,
        *,
        rules: RuleSet | None = None,
        rules_path: Path | str | None = None,
        executor: DecisionExecutor | None = None,
        dry_run: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
        queue_depth_max: int = QUEUE_DEPTH_MAX,
    ) -> None:
        self.rules_path = Path(rules_path) if rules_path is not None else None
        if rules is None and self.rules_path is not None:
            rules = load_rules_file(self.rules_path)
        self._engine = PolicyEngine(rules or EMPTY_RULESET, dry_run=dry_run)
        self._executor = executor
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._queue: queue.PriorityQueue[_Queued] = queue.PriorityQueue(queue_depth_max)
        self._queued = itertools.count()
        self._enforcers: dict[ActionKind, list[Enforcer]] = {}
        self._listeners: list[Callable[[list[Decision]], None]] = []
        self._rules_listeners: list[Callable[[RuleSet], None]] = []
        self._recent: deque[Decision] = deque(maxlen=RECENT_DECISIONS_MAX)
        self._worker: threading.Thread | None = None
        self._ticker_stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0
        self.signals_seen = 0
        self.decisions_dropped = 0
        self.execution_failures = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, *, tick_interval_s: float = TICK_INTERVAL_S) -> DetectionService:
        """Start the worker (and a ticker that lets ``for_s``/``clear_after_s`` windows pass
        when no signal arrives)."""
        if self._worker is not None:
            raise RuntimeError("the detection service was already started")
        self._worker = threading.Thread(target=self._work, name="detection", daemon=True)
        self._worker.start()
        if tick_interval_s > 0:
            self._ticker = threading.Thread(
                target=self._tick_loop, args=(tick_interval_s,), name="detection-tick",
                daemon=True,
            )
            self._ticker.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the queued decisions, then stop the threads."""
        self._ticker_stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout_s)
        if self._worker is not None and self._worker.is_alive():
            self._queue.put((_LAST, next(self._queued), _STOP))
            self._worker.join(timeout_s)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every decision submitted so far has been executed; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    # -- signals in, decisions out ---------------------------------------------------------

    def submit(self, signal: Signal, *, inline: bool = True) -> list[Decision]:
        """Evaluate ``signal`` now; queue the actions of the decisions it causes.

        Returns the decisions (usually none). Never blocks on I/O while the service runs:
        when the worker's queue is full the decision is logged as dropped and counted, and
        still returned. Before :meth:`start` the actions run on the caller's thread, unless
        ``inline`` is False (a caller that must never wait, like the venue's own thread):
        then they are only logged as not performed.
        """
        with self._lock:
            self.signals_seen += 1
            decisions = self._engine.evaluate(signal)
        if decisions:
            self._dispatch(decisions, inline=inline)
        return decisions

    def tick(self, ts_ns: int | None = None) -> list[Decision]:
        """Let time pass (``ts_ns`` defaults to the service clock)."""
        with self._lock:
            decisions = self._engine.tick(self._clock_ns() if ts_ns is None else ts_ns)
        if decisions:
            self._dispatch(decisions)
        return decisions

    def _dispatch(self, decisions: list[Decision], *, inline: bool = True) -> None:
        for decision in decisions:
            self._recent.append(decision)
            if self._executor is not None and self._worker is not None:
                try:
                    self._executor.prepare(decision)
                except Exception:
                    self.execution_failures += 1
                    log.exception("starting the brakes of rule %s failed; the worker retries "
                                  "them through the venue control", decision.rule_id)
        for listener in list(self._listeners):
            listener(decisions)
        if self._worker is None:
            if not inline and (self._executor is not None or self._enforcers):
                self.decisions_dropped += len(decisions)
                log.critical("the detection service is not started: %d decision(s) not "
                             "executed, first: %s", len(decisions), decisions[0].explanation())
            elif self._executor is not None or self._enforcers:
                for decision in decisions:
                    self._execute(decision)
            return
        for decision in decisions:
            with self._idle:
                self._pending += 1
            try:
                self._queue.put_nowait((_priority(decision), next(self._queued), decision))
            except queue.Full:
                self._done_one()
                self.decisions_dropped += 1
                log.critical("detection queue full: decision %s (%s) not executed",
                             decision.rule_id, decision.explanation())

    # -- extension points ------------------------------------------------------------------

    @property
    def executor(self) -> DecisionExecutor | None:
        return self._executor

    def set_executor(self, executor: DecisionExecutor) -> None:
        """Set who performs decisions (before :meth:`start`): the executor may need the feed,
        and the feed needs the service."""
        if self._worker is not None:
            raise RuntimeError("set the executor before starting the detection service")
        self._executor = executor

    def add_enforcer(self, kind: ActionKind, enforcer: Enforcer) -> None:
        """Register who enforces a client action (``rate_limit_client``, ``block_client``)."""
        if kind not in CLIENT_ACTIONS:
            raise ValueError(
                f"{kind} is performed by the detection service itself; enforcers are for "
                f"{', '.join(sorted(CLIENT_ACTIONS))}"
            )
        self._enforcers.setdefault(kind, []).append(enforcer)

    def add_client_enforcer(self, enforcer: Enforcer) -> None:
        """Register who enforces both client actions (a venue gateway's load guard)."""
        for kind in (ActionKind.BLOCK_CLIENT, ActionKind.RATE_LIMIT_CLIENT):
            self.add_enforcer(kind, enforcer)

    def subscribe(self, listener: Callable[[list[Decision]], None]) -> None:
        """Call ``listener`` with every batch of decisions, on the submitting thread; it
        must be quick and must not submit signals itself."""
        self._listeners.append(listener)

    def on_rules_loaded(self, listener: Callable[[RuleSet], None]) -> None:
        """Call ``listener`` with each rule set that comes into force (and the current one
        now), e.g. so detectors learn the thresholds they report against."""
        self._rules_listeners.append(listener)
        listener(self.rules)

    # -- rules -----------------------------------------------------------------------------

    @property
    def rules(self) -> RuleSet:
        return self._engine.ruleset

    @property
    def engine(self) -> PolicyEngine:
        """The engine itself, for the feed that evaluates in the venue thread. Hold
        :attr:`lock` while calling it."""
        return self._engine

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def load(self, ruleset: RuleSet) -> None:
        """Put an already checked rule set in force."""
        with self._lock:
            self._engine.load(ruleset)
        for listener in list(self._rules_listeners):
            listener(ruleset)

    def reload(self, path: Path | str | None = None) -> RuleSet:
        """Check ``path`` (default: the file the service was started with) whole and put it
        in force; on any problem raise :class:`RulesError` and keep the running rules."""
        chosen = Path(path) if path is not None else self.rules_path
        if chosen is None:
            raise RulesError("<no file>", [RuleProblem(
                "<no file>", 0, "this detection service was started without a rules file; "
                "give the file (or its text) to load")])
        ruleset = load_rules_file(chosen)
        self.load(ruleset)
        self.rules_path = chosen
        return ruleset

    @property
    def dry_run(self) -> bool:
        return self._engine.dry_run

    def set_dry_run(self, enabled: bool) -> None:
        """Global dry-run: decisions are recorded and nothing is done."""
        with self._lock:
            self._engine.dry_run = enabled

    def counters(self) -> dict[str, RuleCounters]:
        with self._lock:
            return {rule_id: RuleCounters(c.fired, c.resolved, c.suppressed)
                    for rule_id, c in self._engine.counters.items()}

    def recent_decisions(self) -> list[Decision]:
        """The last decisions made in this process, oldest first."""
        return list(self._recent)

    # -- the worker ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            _, _, item = self._queue.get()
            if isinstance(item, _Stop):
                return
            try:
                self._execute(item)
            finally:
                self._done_one()

    def _execute(self, decision: Decision) -> None:
        try:
            client_outcomes = [] if decision.dry_run else self._enforce(decision)
            if self._executor is not None:
                self._executor.execute(decision, client_outcomes)
        except Exception:
            self.execution_failures += 1
            log.exception("executing the decision of rule %s failed: %s", decision.rule_id,
                          decision.explanation())

    def _enforce(self, decision: Decision) -> list[ActionOutcome]:
        outcomes = []
        for action in decision.actions:
            if action.kind not in CLIENT_ACTIONS:
                continue
            enforcers = self._enforcers.get(action.kind, [])
            if not enforcers:
                outcomes.append(ActionOutcome(
                    action.kind, action.target, False,
                    "no enforcer is registered for it in this process: nothing enforces it",
                ))
                continue
            try:
                for enforcer in enforcers:
                    enforcer(decision, action)
            except Exception as exc:
                log.exception("enforcing %s on %s failed", action.kind, action.target)
                outcomes.append(ActionOutcome(action.kind, action.target, False,
                                              f"the enforcer failed: {exc}"))
            else:
                outcomes.append(ActionOutcome(
                    action.kind, action.target, True,
                    f"handed to {len(enforcers)} enforcer(s) "
                    + ", ".join(f"{key}={value}" for key, value in sorted(action.params.items())),
                ))
        return outcomes

    def _done_one(self) -> None:
        with self._idle:
            self._pending -= 1
            if not self._pending:
                self._idle.notify_all()

    def _tick_loop(self, interval_s: float) -> None:
        while not self._ticker_stop.wait(interval_s):
            try:
                self.tick()
            except Exception:
                log.exception("detection tick failed")


# -- the process-wide service ----------------------------------------------------------------

_installed: DetectionService | None = None
_installed_lock = threading.Lock()


def install(service: DetectionService) -> None:
    """Make ``service`` the one :func:`submit` reaches in this process."""
    global _installed  # noqa: PLW0603 - the process-wide door, set once at start-up
    with _installed_lock:
        _installed = service


def uninstall() -> None:
    global _installed  # noqa: PLW0603
    with _installed_lock:
        _installed = None


def installed() -> DetectionService:
    service = _installed
    if service is None:
        raise DetectionUnavailableError(
            "no detection service is running in this process; start one with "
            "DetectionService(...).start() and install() it (haltguard serve does this)"
        )
    return service


def submit(signal: Signal) -> list[Decision]:
    """Hand ``signal`` to the installed detection service; returns its decisions.

    Thread-safe, returns without waiting for any action. Raises
    :class:`DetectionUnavailableError` if no service is installed.
    """
    return installed().submit(signal)
