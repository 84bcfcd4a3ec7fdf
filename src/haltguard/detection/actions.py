"""The action executor: performs a decision's actions and writes down why.

Order matters. The venue's brakes go first, straight through :class:`VenueControl`, so a
halt never waits for a database or a page; then, in one transaction, the incident is
opened (or the episode's open incident is found), every action lands in its timeline and
in the audit chain with the rule, the observed value, the condition and the signal's
labels, the on-call is paged, and the decision is logged. If the database is down the
brake has still been applied, and the record waits in a bounded queue (in order) that is
retried with backoff until the database answers again: nothing the executor accepted is
lost to an outage.

Only tighter: a market is moved only to a state that admits less than the one it is in
(a halted market is never "paused" into an auction that would reopen it), and nothing here
can resume, unfreeze or unblock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import Clock
from haltguard.common.units import NS_PER_S
from haltguard.detection import records
from haltguard.detection.decisions import (
    VENUE_ACTIONS,
    ActionKind,
    ActionOutcome,
    Decision,
    DecisionKind,
    PlannedAction,
)
from haltguard.gateway.runtime import CommandResult
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import (
    HoldKind,
    Incident,
    IncidentCreate,
    IncidentUpdate,
    TimelineKind,
    VenueEventLink,
)
from haltguard.incidents.rules import OPEN_STATUSES
from haltguard.responders.service import ResponderSettings
from haltguard.security import audit
from haltguard.venue.commands import (
    Command,
    FreezeAccountWithdrawals,
    FreezeWithdrawals,
    SetMarketState,
)
from haltguard.venue.control import VenueControl, VenueControlError
from haltguard.venue.events import CommandRejected, Event, MarketStateChanged
from haltguard.venue.types import MarketState

log = logging.getLogger(__name__)

ACTOR = "system:detection"
INCIDENT_CACHE_MAX = 10_000
STARTED_MAX = 10_000  # decisions whose brakes are in flight
VENUE_TIMEOUT_S = 10.0
RECORDS_PENDING_MAX = 10_000  # records waiting for the database to come back
RETRY_DELAY_S_MIN = 0.05
RETRY_DELAY_S_MAX = 5.0
BRAKE_ACTIONS = frozenset({ActionKind.HALT_MARKET, ActionKind.CANCEL_ONLY,
                           ActionKind.FREEZE_WITHDRAWALS})

# How much each state admits, least restrictive first; an action only ever moves up.
RESTRICTION: dict[MarketState, int] = {
    MarketState.OPEN: 0,
    MarketState.LIMIT_ONLY: 1,
    MarketState.POST_ONLY: 2,
    MarketState.AUCTION: 3,
    MarketState.CANCEL_ONLY: 4,
    MarketState.HALTED: 5,
    MarketState.CLOSED: 5,
}
_TARGET_STATE = {
    ActionKind.HALT_MARKET: MarketState.HALTED,
    ActionKind.CANCEL_ONLY: MarketState.CANCEL_ONLY,
    ActionKind.PAUSE_MARKET: MarketState.AUCTION,
}


class BrakeLane(Protocol):
    """Where brakes can be submitted without waiting (a venue runtime in this process)."""

    def submit(self, command: Command) -> Future[CommandResult]: ...


_Started = dict[int, "Future[CommandResult] | ActionOutcome"]
"""A decision's brakes already submitted (or settled), by the action's index."""
_Done = list[tuple[PlannedAction, ActionOutcome, list[Event]]]


def _answer(future: Future[CommandResult], timeout_s: float) -> list[Event]:
    """The events of a brake submitted earlier, or the venue's refusal as an error."""
    try:
        return future.result(timeout_s).events
    except TimeoutError as exc:
        raise VenueControlError(
            f"the venue did not acknowledge the brake within {timeout_s:g} s; it may still be "
            "applied, check the market states") from exc
    except Exception as exc:
        raise VenueControlError(str(exc)) from exc


def database_unreachable(exc: BaseException) -> bool:
    """True for errors that retrying later can cure: no connection, a dropped one, a
    locked or unavailable database. Anything else is a bug and is not retried."""
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class RecordQueue:
    """Writes to the operations database in the order given; while the database cannot be
    reached, keeps the writes (at most ``capacity``) and retries them with backoff from a
    thread of its own until they all went through.

    Each write is one transaction, run whole or not at all, so a retry never duplicates
    half of one. A write that fails for another reason (a bug) is logged and counted, and
    the ones behind it go on.
    """

    def __init__(
        self, session_factory: sessionmaker[Session], *, capacity: int = RECORDS_PENDING_MAX,
        delay_s_min: float = RETRY_DELAY_S_MIN, delay_s_max: float = RETRY_DELAY_S_MAX,
    ) -> None:
        if capacity < 1 or not 0 < delay_s_min <= delay_s_max:
            raise ValueError("RecordQueue needs capacity >= 1 and 0 < delay_s_min <= delay_s_max")
        self.session_factory = session_factory
        self.capacity = capacity
        self.delay_s_min, self.delay_s_max = delay_s_min, delay_s_max
        self._pending: deque[tuple[str, Callable[[Session], None]]] = deque()
        self._lock = threading.Condition()
        self._retrying = False
        self.queued_total = 0  # writes that had to wait for the database
        self.dropped = 0  # refused because the queue was full
        self.failed = 0  # failed for another reason than an outage

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def write(self, what: str, write: Callable[[Session], None]) -> None:
        """Run ``write`` in a transaction now, or queue it behind the writes still waiting."""
        with self._lock:
            waiting = bool(self._pending)
        if not waiting:
            try:
                self._run(write)
                return
            except Exception as exc:
                if not database_unreachable(exc):
                    self.failed += 1
                    log.exception("writing %s failed; it is not retried", what)
                    return
                log.error("the operations database is unreachable (%s); %s waits and is "
                          "retried until it returns", type(exc).__name__, what)
        self._enqueue(what, write)

    def wait_empty(self, timeout_s: float) -> bool:
        """Wait until every queued write went through; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def _enqueue(self, what: str, write: Callable[[Session], None]) -> None:
        with self._lock:
            if len(self._pending) >= self.capacity:
                self.dropped += 1
                log.critical("the database outage queue is full (%d writes): %s is lost; the "
                             "venue's own journal still holds every brake", self.capacity, what)
                return
            self._pending.append((what, write))
            self.queued_total += 1
            if self._retrying:
                return
            self._retrying = True
        threading.Thread(target=self._retry, name="detection-records", daemon=True).start()

    def _run(self, write: Callable[[Session], None]) -> None:
        with self.session_factory() as session, session.begin():
            write(session)

    def _retry(self) -> None:
        delay_s = self.delay_s_min
        while True:
            with self._lock:
                if not self._pending:
                    self._retrying = False
                    self._lock.notify_all()
                    return
                what, write = self._pending[0]
            try:
                self._run(write)
            except Exception as exc:
                if database_unreachable(exc):
                    time.sleep(delay_s)
                    delay_s = min(delay_s * 2, self.delay_s_max)
                    continue
                self.failed += 1
                log.exception("writing %s failed after the outage; it is not retried", what)
            else:
                log.info("%s written after the database came back", what)
            delay_s = self.delay_s_min
            with self._lock:
                self._pending.popleft()
                self._lock.notify_all()


class ActionExecutor:
    """Performs decisions on one venue and one operations database.

    ``venue`` None: venue actions are recorded as not performed (no venue configured).
    ``market_states`` may supply the venue's current states faster than asking the venue
    (e.g. from the detection feed); it defaults to ``venue.market_states``.
    """

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        venue: VenueControl | None,
        clock: Clock,
        responder_settings: ResponderSettings | None = None,
        market_states: Callable[[], dict[str, MarketState]] | None = None,
        brake_lane: BrakeLane | None = None,
        timeout_s: float = VENUE_TIMEOUT_S,
    ) -> None:
        self.session_factory = session_factory
        self.venue = venue
        self.clock = clock
        self.responder_settings = responder_settings
        self._market_states = market_states
        self.brake_lane = brake_lane
        self.timeout_s = timeout_s
        self._started: dict[int, tuple[Decision, _Started]] = {}
        self._incident_refs: dict[str, str] = {}  # episode key -> incident ref, for the venue
        self._lock = threading.Lock()
        self.records = RecordQueue(session_factory)

    def prepare(self, decision: Decision) -> None:
        """Put the decision's brakes into the venue's brake lane now, without waiting.

        Called on the thread that submitted the signal (the venue's own, for market
        signals) before the decision is queued for :meth:`execute`, which then waits for
        the venue's answer and writes the record. Without a brake lane, does nothing.
        """
        if self.brake_lane is None or decision.dry_run or decision.kind is not \
                DecisionKind.FIRED:
            return
        started: _Started = {}
        states: dict[str, MarketState] | None = None
        for index, action in enumerate(decision.actions):
            if action.kind not in BRAKE_ACTIONS:
                continue
            if states is None:
                states = self._states()
            command = self._venue_command(action, decision, states)
            if isinstance(command, str):
                started[index] = ActionOutcome(action.kind, action.target, True, command)
                continue
            try:
                started[index] = self.brake_lane.submit(command)
            except Exception as exc:
                started[index] = ActionOutcome(action.kind, action.target, False,
                                               f"refused by the venue: {exc}")
                continue
            if type(command) is SetMarketState:
                states[action.target] = command.state
        with self._lock:
            if len(self._started) >= STARTED_MAX:
                self._started.pop(next(iter(self._started)))
            self._started[id(decision)] = (decision, started)

    def execute(self, decision: Decision, client_outcomes: list[ActionOutcome]) -> None:
        if decision.dry_run:
            self._record_dry_run(decision)
            return
        if decision.kind is DecisionKind.RESOLVED:
            self._record_resolved(decision)
            return
        venue_outcomes = self._brakes(decision)
        self._record_fired(decision, venue_outcomes, client_outcomes)

    # -- the venue ---------------------------------------------------------------------------

    def _brakes(self, decision: Decision) -> _Done:
        planned = [(index, action) for index, action in enumerate(decision.actions)
                   if action.kind in VENUE_ACTIONS]
        if not planned:
            return []
        with self._lock:
            entry = self._started.pop(id(decision), None)
        started = entry[1] if entry is not None and entry[0] is decision else {}
        if self.venue is None and not started:
            return [(action, ActionOutcome(action.kind, action.target, False,
                                           "no venue is configured for the detection service"),
                     []) for _, action in planned]
        states: dict[str, MarketState] | None = None
        done: _Done = []
        for index, action in planned:
            early = started.get(index)
            if isinstance(early, ActionOutcome):
                done.append((action, early, []))
                continue
            if early is not None:
                done.append(self._call(action, partial(_answer, early, self.timeout_s)))
                continue
            if states is None:
                states = self._states()
            command = self._venue_command(action, decision, states)
            if isinstance(command, str):
                done.append((action, ActionOutcome(action.kind, action.target, True, command),
                             []))
                continue
            done.append(self._call(action, partial(self._through_control, command)))
            if type(command) is SetMarketState and done[-1][1].ok:
                states[action.target] = command.state
        return done

    def _venue_command(
        self, action: PlannedAction, decision: Decision, states: dict[str, MarketState]
    ) -> Command | str:
        """The venue command for ``action``, or why it is left undone (not tighter)."""
        reason = _venue_reason(decision)
        incident_ref = self._incident_refs.get(decision.key, "")
        if action.kind is ActionKind.FREEZE_WITHDRAWALS:
            return FreezeWithdrawals(asset=action.target, frozen=True, actor=ACTOR,
                                     reason=reason, incident_id=incident_ref)
        if action.kind is ActionKind.FREEZE_ACCOUNT_WITHDRAWALS:
            if not action.target.isdigit():
                return f"{action.target!r} is not an account number: nothing frozen"
            return FreezeAccountWithdrawals(account=int(action.target), frozen=True,
                                            actor=ACTOR, reason=reason,
                                            incident_id=incident_ref)
        skip = _tighter_problem(action, states.get(action.target))
        if skip is not None:
            return skip
        return SetMarketState(
            market=action.target, state=_TARGET_STATE[action.kind], actor=ACTOR, reason=reason,
            incident_id=incident_ref,
            cancels_allowed=action.params.get("cancels_allowed", "true") == "true",
            auction_ns=int(action.params.get("auction_s", "0")) * NS_PER_S,
        )

    def _through_control(self, command: Command) -> list[Event]:
        venue = self._venue()
        if type(command) is FreezeWithdrawals:
            return venue.freeze_withdrawals(command.asset, command.frozen, actor=command.actor,
                                            reason=command.reason,
                                            incident_id=command.incident_id)
        if type(command) is FreezeAccountWithdrawals:
            return venue.freeze_account_withdrawals(
                command.account, command.frozen, actor=command.actor, reason=command.reason,
                incident_id=command.incident_id)
        assert type(command) is SetMarketState
        return venue.set_market_state(
            command.market, command.state, actor=command.actor, reason=command.reason,
            incident_id=command.incident_id, cancels_allowed=command.cancels_allowed,
            auction_ns=command.auction_ns)

    def _venue(self) -> VenueControl:
        if self.venue is None:
            raise VenueControlError("no venue is configured for the detection service")
        return self.venue

    def _states(self) -> dict[str, MarketState]:
        """The markets' states now; empty when unknown (the venue then judges each move)."""
        try:
            if self._market_states is not None:
                return self._market_states()
            return self._venue().market_states()
        except VenueControlError as exc:
            log.error("cannot read the venue's market states: %s", exc)
            return {}

    @staticmethod
    def _call(
        action: PlannedAction, call: Callable[[], list[Event]]
    ) -> tuple[PlannedAction, ActionOutcome, list[Event]]:
        try:
            events = call()
        except VenueControlError as exc:
            return action, ActionOutcome(action.kind, action.target, False,
                                         f"refused by the venue: {exc}"), []
        except Exception as exc:
            log.exception("venue action %s on %s failed", action.kind, action.target)
            return action, ActionOutcome(action.kind, action.target, False,
                                         f"failed: {exc!r}"), []
        rejected = [event for event in events if isinstance(event, CommandRejected)]
        if rejected:
            detail = "; ".join(f"{event.reason}: {event.detail}" for event in rejected)
            return action, ActionOutcome(action.kind, action.target, False,
                                         f"refused by the venue: {detail}"), events
        summary = "; ".join(incident_flows.describe_event(event) for event in events)
        return action, ActionOutcome(action.kind, action.target, True,
                                     summary or "no change"), events

    # -- the record --------------------------------------------------------------------------

    def _record_fired(
        self, decision: Decision,
        venue_done: list[tuple[PlannedAction, ActionOutcome, list[Event]]],
        client_outcomes: list[ActionOutcome],
    ) -> None:
        now = self.clock.now()
        why = _why(decision)

        def write(session: Session) -> None:
            self._write_fired(session, decision, venue_done, client_outcomes, now, why)

        self.records.write(f"the record of rule {decision.rule_id} firing", write)

    def _write_fired(  # noqa: PLR0917 - the pieces of one record, called from one place
        self, session: Session, decision: Decision,
        venue_done: list[tuple[PlannedAction, ActionOutcome, list[Event]]],
        client_outcomes: list[ActionOutcome], now: datetime, why: dict[str, Any],
    ) -> None:
        outcomes: list[ActionOutcome] = []
        incident = None
        if any(a.kind is ActionKind.OPEN_OR_UPDATE_INCIDENT for a in decision.actions):
            incident, opened = self._open_or_update(session, decision, now, why)
            outcomes.append(ActionOutcome(
                ActionKind.OPEN_OR_UPDATE_INCIDENT, incident.ref, True,
                f"{'opened' if opened else 'updated'} {incident.ref}"))
        for action, outcome, events in venue_done:
            outcomes.append(outcome)
            self._record_venue_action(session, incident, decision, action=action,
                                      outcome=outcome, events=events, now=now, why=why)
        for outcome in client_outcomes:
            outcomes.append(outcome)
            self._record_plain(session, incident, decision, now, why,
                               action=f"detection.{outcome.kind.value}",
                               message=f"{outcome.kind.value} {outcome.target}: "
                               f"{outcome.detail} ({decision.explanation()})",
                               target=outcome.target, extra={"outcome": outcome.as_dict()})
        if incident is not None and any(a.kind is ActionKind.PAGE for a in decision.actions):
            page_id = incident_flows.page_on_call(
                session, incident, clock=self.clock,
                responder_settings=self.responder_settings,
                summary=f"{incident.ref} {decision.severity} {decision.classification}: "
                f"{decision.title} ({decision.explanation()})",
            )
            outcomes.append(ActionOutcome(
                ActionKind.PAGE, incident.ref, page_id is not None,
                f"page {page_id}" if page_id is not None else "paging failed (see timeline)"))
        records.add_decision(session, decision, now=now,
                             incident_id=incident.id if incident is not None else None,
                             outcomes=[outcome.as_dict() for outcome in outcomes])

    def _open_or_update(
        self, session: Session, decision: Decision, now: datetime, why: dict[str, Any]
    ) -> tuple[Incident, bool]:
        incident = None
        incident_id = records.last_incident_of(session, decision.key)
        if incident_id is not None:
            found = session.get(Incident, incident_id)
            if found is not None and found.status in OPEN_STATUSES:
                incident = found
        opened = incident is None
        if incident is None:
            markets = sorted({a.target for a in decision.actions
                              if a.kind in _TARGET_STATE and a.target}
                             | ({decision.signal.labels["market"]}
                                if "market" in decision.signal.labels else set()))
            component = decision.signal.labels.get("component", "")
            incident = incidents.open_incident(session, IncidentCreate(
                title=decision.title[:200] or decision.rule_id,
                summary=f"Opened automatically: {decision.explanation()}",
                category=decision.classification,
                severity=decision.severity,
                affected_markets=markets,
                affected_components=[component] if component else [],
            ), actor=ACTOR, now=now)
        elif decision.severity.rank < incident.severity.rank:
            incidents.update(session, incident, IncidentUpdate(severity=decision.severity),
                             actor=ACTOR, now=now)
        self._remember(decision.key, incident.ref)
        verb = "fired" if opened else "fired again"
        incidents.record(
            session, incident, kind=TimelineKind.DETECTION, actor=ACTOR, now=now,
            audit_action="detection.rule_fired",
            message=f"{decision.explanation().replace(' fired:', f' {verb}:', 1)}",
            details=why,
        )
        return incident, opened

    def _record_venue_action(
        self, session: Session, incident: Incident | None, decision: Decision, *,
        action: PlannedAction, outcome: ActionOutcome, events: list[Event], now: datetime,
        why: dict[str, Any],
    ) -> None:
        verb = action.kind.value.replace("_", " ")
        message = (f"{verb} {action.target}: {outcome.detail}" if outcome.ok
                   else f"{verb} {action.target} not done: {outcome.detail}")
        message += f" (automatic: {decision.explanation()})"
        extra = {"outcome": outcome.as_dict(), "params": dict(action.params),
                 "events": [incident_flows.describe_event(event) for event in events]}
        if incident is None:
            self._record_plain(session, None, decision, now, why,
                               action=f"detection.{action.kind.value}", message=message,
                               target=action.target, extra=extra)
            return
        kind = (TimelineKind.WITHDRAWALS if action.kind in {
            ActionKind.FREEZE_WITHDRAWALS, ActionKind.FREEZE_ACCOUNT_WITHDRAWALS}
            else TimelineKind.MARKET_ACTION)
        incidents.record(session, incident, kind=kind, actor=ACTOR, now=now,
                         audit_action=f"detection.{action.kind.value}", message=message,
                         details={**why, **extra})
        for event in events:
            if isinstance(event, MarketStateChanged) and event.new is not MarketState.OPEN:
                incidents.add_hold(session, incident, HoldKind.MARKET, event.market,
                                   actor=ACTOR, now=now)
            if not isinstance(event, CommandRejected):
                session.add(VenueEventLink(
                    incident_id=incident.id, seq=None,
                    event_type=str(event.__struct_config__.tag),
                    summary=incident_flows.describe_event(event), linked_at=now, linked_by=ACTOR,
                ))
        if action.kind is ActionKind.FREEZE_WITHDRAWALS and outcome.ok:
            incidents.add_hold(session, incident, HoldKind.WITHDRAWALS, action.target,
                               actor=ACTOR, now=now)

    def _record_plain(
        self, session: Session, incident: Incident | None, decision: Decision, now: datetime,
        why: dict[str, Any], *, action: str, message: str, target: str,
        extra: dict[str, Any],
    ) -> None:
        if incident is not None:
            incidents.record(session, incident, kind=TimelineKind.DETECTION, actor=ACTOR,
                             now=now, audit_action=action, message=message,
                             details={**why, **extra})
            return
        audit.record(session, actor=ACTOR, action=action, target=target or decision.rule_id,
                     details={"message": message, **why, **extra}, at=now)

    def _record_resolved(self, decision: Decision) -> None:
        now = self.clock.now()
        why = _why(decision)

        def write(session: Session) -> None:
            incident = None
            incident_id = records.last_incident_of(session, decision.key)
            if incident_id is not None:
                found = session.get(Incident, incident_id)
                if found is not None and found.status in OPEN_STATUSES:
                    incident = found
            message = (f"{decision.explanation()}; nothing is undone automatically: "
                       "resuming is a person's decision")
            self._record_plain(session, incident, decision, now, why,
                               action="detection.rule_resolved", message=message,
                               target=decision.rule_id, extra={})
            records.add_decision(session, decision, now=now,
                                 incident_id=incident.id if incident is not None else None,
                                 outcomes=[])

        self.records.write(f"the record of rule {decision.rule_id} resolving", write)

    def _record_dry_run(self, decision: Decision) -> None:
        """Dry-run: only the decisions log learns what would have been done."""
        would = [ActionOutcome(action.kind, action.target, False,
                               "dry-run: would " + action.kind.value.replace("_", " ")
                               + (f" {action.target}" if action.target else ""))
                 for action in decision.actions]
        now = self.clock.now()

        def write(session: Session) -> None:
            records.add_decision(session, decision, now=now, incident_id=None,
                                 outcomes=[outcome.as_dict() for outcome in would])

        self.records.write(f"the dry-run record of rule {decision.rule_id}", write)

    def _remember(self, key: str, ref: str) -> None:
        if len(self._incident_refs) >= INCIDENT_CACHE_MAX:
            self._incident_refs.pop(next(iter(self._incident_refs)))
        self._incident_refs[key] = ref


def _tighter_problem(action: PlannedAction, current: MarketState | None) -> str | None:
    """Why the action must be left undone (it would not tighten), or None to go ahead."""
    if current is None:
        return None  # unknown state: let the venue judge (it refuses unknown markets)
    target = _TARGET_STATE[action.kind]
    if action.kind is ActionKind.PAUSE_MARKET and current is not MarketState.OPEN:
        return (f"left {current.value}: an auction ends by reopening, which would loosen a "
                "market that is not open")
    if RESTRICTION[current] >= RESTRICTION[target]:
        return f"already {current.value}, at least as restrictive as {target.value}"
    return None


def _venue_reason(decision: Decision) -> str:
    return f"automatic, {decision.explanation()}"[:500]


def _why(decision: Decision) -> dict[str, Any]:
    """The explanation as data, for the timeline's and the audit chain's details."""
    signal = decision.signal
    return {
        "rule_id": decision.rule_id,
        "ruleset_version": decision.ruleset_version,
        "signal": signal.name,
        "signal_source": signal.source,
        "observed": decision.observed,
        "condition": decision.condition,
        "labels": dict(signal.labels),
        "signal_details": dict(signal.details),
        "signal_ts_ns": signal.ts_ns,
        "classification": decision.classification.value,
        "severity": decision.severity.value,
        "episode": decision.key,
        "dry_run": decision.dry_run,
        "planned": [{"kind": action.kind.value, "target": action.target,
                     "params": dict(action.params)} for action in decision.actions],
    }

