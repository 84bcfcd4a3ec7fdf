"""Market states: which transitions are legal, what each state admits, and resume plans.

Pure rules, no clock: the engine asks and applies. The table follows what real venues do
(docs/adr/0003-market-states-auctions-and-breakers.md has the reasoning):

- Any state may go to ``halted``: a brake must always be available, and re-entering a state
  is allowed (it is how a halt switches ``cancels_allowed`` or an auction moves its end).
- ``halted`` and ``cancel_only`` never go straight to ``open``. No new order could arrive
  while they lasted, so the book's prices are stale; reopening goes through an ``auction``
  (Coincheck's itayose) or through the Coinbase ladder ``post_only`` -> ``limit_only`` ->
  ``open``, where liquidity is rebuilt before anything can take it at any price.
- ``auction`` may leave to any state. Leaving it for a state that trades or quotes
  (``open``, ``limit_only``, ``post_only``) uncrosses first (:func:`uncrosses_on_exit`);
  leaving it for a brake (``halted``, ``cancel_only``, ``closed``) does not, and the book may
  stay crossed. A crossed book can only go to a state that never matches or quotes against
  it, until an auction uncrosses it (the ``book_crossed`` argument).
- ``closed`` (listed but not trading) opens through an ``auction`` or directly (a new
  listing with an empty book), or is ``halted``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

import msgspec

from haltguard.common.units import NS_PER_DAY
from haltguard.venue.commands import ResumePhase
from haltguard.venue.types import MarketState, OrderType, RejectReason, TimeInForce

_S = MarketState

LEGAL_TRANSITIONS: dict[MarketState, frozenset[MarketState]] = {
    _S.OPEN: frozenset(
        {_S.OPEN, _S.HALTED, _S.CANCEL_ONLY, _S.POST_ONLY, _S.LIMIT_ONLY, _S.AUCTION, _S.CLOSED}
    ),
    _S.HALTED: frozenset(
        {_S.HALTED, _S.CANCEL_ONLY, _S.POST_ONLY, _S.LIMIT_ONLY, _S.AUCTION, _S.CLOSED}
    ),
    _S.CANCEL_ONLY: frozenset(
        {_S.CANCEL_ONLY, _S.HALTED, _S.POST_ONLY, _S.LIMIT_ONLY, _S.AUCTION, _S.CLOSED}
    ),
    _S.POST_ONLY: frozenset(
        {_S.POST_ONLY, _S.OPEN, _S.HALTED, _S.CANCEL_ONLY, _S.LIMIT_ONLY, _S.AUCTION, _S.CLOSED}
    ),
    _S.LIMIT_ONLY: frozenset(
        {_S.LIMIT_ONLY, _S.OPEN, _S.HALTED, _S.CANCEL_ONLY, _S.POST_ONLY, _S.AUCTION, _S.CLOSED}
    ),
    _S.AUCTION: frozenset(
        {_S.AUCTION, _S.OPEN, _S.HALTED, _S.CANCEL_ONLY, _S.POST_ONLY, _S.LIMIT_ONLY, _S.CLOSED}
    ),
    _S.CLOSED: frozenset({_S.CLOSED, _S.AUCTION, _S.OPEN, _S.HALTED}),
}
"""``old -> the states it may move to``. The single source of the transition rules."""

# States where a crossed book would match or be quoted against: a crossed book left by an
# interrupted auction must be uncrossed by an auction before reaching them.
_NEEDS_UNCROSSED_BOOK = frozenset({_S.OPEN, _S.POST_ONLY, _S.LIMIT_ONLY})

# Listing order for messages, so they read the same every time.
_STATE_ORDER = tuple(MarketState)


def _names(states: Iterable[MarketState]) -> str:
    chosen = set(states)
    return ", ".join(state.value for state in _STATE_ORDER if state in chosen)


def allowed_targets(old: MarketState, *, book_crossed: bool = False) -> list[MarketState]:
    """The states ``old`` may move to now, in a stable order."""
    targets = LEGAL_TRANSITIONS[old]
    if book_crossed:
        targets = targets - _NEEDS_UNCROSSED_BOOK
    return [state for state in _STATE_ORDER if state in targets]


def uncrosses_on_exit(old: MarketState, new: MarketState) -> bool:
    """True when moving ``old -> new`` ends an auction with its uncross (the engine runs it)."""
    return old is MarketState.AUCTION and new in _NEEDS_UNCROSSED_BOOK


def check_transition(
    old: MarketState, new: MarketState, *, book_crossed: bool = False
) -> str | None:
    """``None`` if ``old -> new`` is legal, else a message naming the legal targets.

    ``book_crossed`` says the book is crossed (an auction was interrupted by a brake), which
    also forbids states that would match against it, unless ``old`` is the auction whose
    uncross the move performs.
    """
    if new not in LEGAL_TRANSITIONS[old]:
        hint = ""
        if new is MarketState.OPEN and old in (MarketState.HALTED, MarketState.CANCEL_ONLY):
            hint = (
                "; reopening after a halt goes through an auction (set 'auction' with an "
                "auction length, or start a resume plan)"
            )
        return (
            f"cannot move from {old.value} to {new.value}; from {old.value} the market may go "
            f"to: {_names(allowed_targets(old, book_crossed=book_crossed))}{hint}"
        )
    if book_crossed and new in _NEEDS_UNCROSSED_BOOK and not uncrosses_on_exit(old, new):
        return (
            f"cannot move from {old.value} to {new.value} while the book is crossed (an "
            "auction was interrupted before its uncross); go through an auction first. "
            f"Allowed now: {_names(allowed_targets(old, book_crossed=True))}"
        )
    return None


class OrderKind(StrEnum):
    """What a command asks of the book, as far as market states care."""

    LIMIT = "limit"  # a good-till-cancelled limit order
    IMMEDIATE_LIMIT = "immediate_limit"  # an IOC or FOK limit order
    POST_ONLY_LIMIT = "post_only_limit"
    MARKET = "market"
    CANCEL = "cancel"  # cancel one order, or cancel-all by its owner


def order_kind(order_type: OrderType, tif: TimeInForce, post_only: bool) -> OrderKind:
    """Classify a new order for :func:`admits`."""
    if order_type is OrderType.MARKET:
        return OrderKind.MARKET
    if post_only:
        return OrderKind.POST_ONLY_LIMIT
    if tif is TimeInForce.GTC:
        return OrderKind.LIMIT
    return OrderKind.IMMEDIATE_LIMIT


_K = OrderKind
_R = RejectReason
_NEW_ORDER_KINDS = (_K.LIMIT, _K.IMMEDIATE_LIMIT, _K.POST_ONLY_LIMIT, _K.MARKET)


def _refuse_all_new(reason: RejectReason) -> dict[OrderKind, RejectReason | None]:
    table: dict[OrderKind, RejectReason | None] = dict.fromkeys(_NEW_ORDER_KINDS, reason)
    table[_K.CANCEL] = None
    return table


ADMISSION: dict[MarketState, dict[OrderKind, RejectReason | None]] = {
    _S.OPEN: dict.fromkeys(OrderKind),
    _S.HALTED: _refuse_all_new(_R.MARKET_HALTED),
    _S.CANCEL_ONLY: _refuse_all_new(_R.MARKET_CANCEL_ONLY),
    _S.POST_ONLY: {
        _K.LIMIT: _R.MARKET_POST_ONLY,
        _K.IMMEDIATE_LIMIT: _R.MARKET_POST_ONLY,
        _K.POST_ONLY_LIMIT: None,
        _K.MARKET: _R.MARKET_POST_ONLY,
        _K.CANCEL: None,
    },
    _S.LIMIT_ONLY: {
        _K.LIMIT: None,
        _K.IMMEDIATE_LIMIT: None,
        _K.POST_ONLY_LIMIT: None,
        _K.MARKET: _R.MARKET_LIMIT_ONLY,
        _K.CANCEL: None,
    },
    # An auction collects good-till-cancelled limit orders: a market order has no price to
    # bid in the uncross, an IOC/FOK order would be cancelled before anything can match,
    # and a post-only order cannot be promised the maker side of an uncross.
    _S.AUCTION: {
        _K.LIMIT: None,
        _K.IMMEDIATE_LIMIT: _R.INVALID_TIME_IN_FORCE,
        _K.POST_ONLY_LIMIT: _R.INVALID_TIME_IN_FORCE,
        _K.MARKET: _R.MARKET_LIMIT_ONLY,
        _K.CANCEL: None,
    },
    # Closed still lets owners pull resting orders (and the funds they hold) off the book.
    _S.CLOSED: _refuse_all_new(_R.MARKET_CLOSED),
}
"""``state -> kind -> reject reason (None: admitted)``. Cancels in ``halted`` also depend on
the halt's ``cancels_allowed``; see :func:`admits`."""

_REFUSAL_DETAIL: dict[tuple[MarketState, OrderKind], str] = {
    (_S.POST_ONLY, _K.LIMIT): "the market is post-only: send a post-only limit order",
    (_S.POST_ONLY, _K.IMMEDIATE_LIMIT): "the market is post-only: send a post-only limit order",
    (_S.POST_ONLY, _K.MARKET): "the market is post-only: send a post-only limit order",
    (_S.LIMIT_ONLY, _K.MARKET): "the market is limit-only: send a limit order",
    (_S.AUCTION, _K.MARKET): "the market is in an auction, which collects limit orders only",
    (_S.AUCTION, _K.IMMEDIATE_LIMIT): (
        "the market is in an auction: IOC and FOK orders cannot wait for the uncross; "
        "send a good-till-cancelled limit order"
    ),
    (_S.AUCTION, _K.POST_ONLY_LIMIT): (
        "the market is in an auction: post-only cannot be honoured in an uncross; "
        "send a good-till-cancelled limit order"
    ),
}


def admits(state: MarketState, cancels_allowed: bool, kind: OrderKind) -> RejectReason | None:
    """``None`` if ``state`` lets a command of ``kind`` through, else the reason it does not.

    ``cancels_allowed`` only matters while ``halted``: False refuses even cancels, like
    Kraken's maintenance. Every other state admits cancels.
    """
    if kind is OrderKind.CANCEL and state is MarketState.HALTED and not cancels_allowed:
        return RejectReason.CANCELS_REFUSED
    return ADMISSION[state][kind]


def refusal_detail(state: MarketState, cancels_allowed: bool, kind: OrderKind) -> str:
    """The human sentence for a refusal by :func:`admits` (what is wrong, what to do)."""
    if kind is OrderKind.CANCEL and state is MarketState.HALTED and not cancels_allowed:
        return "the market is halted and this halt refuses cancels too; wait until it lifts"
    detail = _REFUSAL_DETAIL.get((state, kind))
    if detail is not None:
        return detail
    return f"the market is {state.value}: no new orders are accepted, cancels are"


class ResumePlanError(ValueError):
    """A resume plan that cannot run; the message says which phase and why."""


RESUME_PHASES_MAX = 16
RESUME_PHASE_NS_MAX = 7 * NS_PER_DAY  # a week: longer is surely a typo
_RESUME_END_STATES = frozenset({_S.OPEN, _S.LIMIT_ONLY, _S.POST_ONLY})


class PhaseChange(msgspec.Struct, frozen=True):
    """The plan moved the market ``old -> new`` at ``entered_ts``.

    ``uncross``: the engine runs the auction's uncross before entering ``new``.
    ``earliest_next_ts``: when the plan may leave ``new``; 0 when ``new`` is the last phase.
    """

    index: int
    old: MarketState
    new: MarketState
    entered_ts: int
    earliest_next_ts: int
    uncross: bool


class ResumePlanSnapshot(msgspec.Struct, frozen=True):
    """A running plan, for engine snapshots. ``index`` -1: not started."""

    phases: list[ResumePhase]
    index: int
    phase_start_ts: int


def _as_phase(item: ResumePhase | tuple[MarketState, int]) -> ResumePhase:
    if isinstance(item, ResumePhase):
        return item
    state, min_ns = item
    return ResumePhase(state=MarketState(state), min_ns=min_ns)


def validate_resume_plan(
    current: MarketState,
    phases: Sequence[ResumePhase],
    *,
    book_crossed: bool = False,
) -> None:
    """Raise :class:`ResumePlanError` unless ``phases`` can run from ``current``.

    A plan has 1..RESUME_PHASES_MAX phases, each ``min_ns`` in 0..RESUME_PHASE_NS_MAX, each
    step a legal transition, no state repeated back to back, and ends in a state that trades
    (``open``, or ``limit_only``/``post_only`` when the last step is left to a person).
    """
    if not phases:
        raise ResumePlanError("a resume plan needs at least one phase, e.g. auction then open")
    if len(phases) > RESUME_PHASES_MAX:
        raise ResumePlanError(
            f"a resume plan has at most {RESUME_PHASES_MAX} phases, this one has {len(phases)}"
        )
    previous, crossed = current, book_crossed
    for index, phase in enumerate(phases):
        where = f"phase {index + 1} ({phase.state.value})"
        if not 0 <= phase.min_ns <= RESUME_PHASE_NS_MAX:
            raise ResumePlanError(
                f"{where}: min_ns must be between 0 and {RESUME_PHASE_NS_MAX} ns (one week), "
                f"got {phase.min_ns}"
            )
        if index > 0 and phase.state is previous:
            raise ResumePlanError(
                f"{where} repeats the previous phase's state; merge them into one phase"
            )
        problem = check_transition(previous, phase.state, book_crossed=crossed)
        if problem is not None:
            raise ResumePlanError(f"{where}: {problem}")
        if uncrosses_on_exit(previous, phase.state):
            crossed = False
        previous = phase.state
    if phases[-1].state not in _RESUME_END_STATES:
        raise ResumePlanError(
            f"a resume plan must end in a trading state ({_names(_RESUME_END_STATES)}), "
            f"not {phases[-1].state.value}; end it with 'open'"
        )


class ResumePlan:
    """A market's way back: hold each phase at least its ``min_ns``, then move on.

    Starting a plan is the human decision; :meth:`advance` is called with each command's
    ``ts`` (a Heartbeat at :meth:`due_ts` at the latest) and moves through every phase whose
    time is up, so zero-length phases pass at once. A phase is timed from when it was
    entered, which is the ``ts`` that entered it, never earlier: a late heartbeat only
    lengthens phases. The plan is done on entering its last phase.
    """

    __slots__ = ("index", "phase_start_ts", "phases")

    def __init__(self, phases: Sequence[ResumePhase], index: int, phase_start_ts: int) -> None:
        assert -1 <= index < len(phases), "phase index out of range"
        self.phases = list(phases)
        self.index = index
        self.phase_start_ts = phase_start_ts

    @classmethod
    def start(
        cls,
        current: MarketState,
        phases: Iterable[ResumePhase | tuple[MarketState, int]],
        ts: int,
        *,
        book_crossed: bool = False,
    ) -> tuple[ResumePlan, list[PhaseChange]]:
        """Validate and enter the first phase (and any zero-length ones after it) at ``ts``.

        Raises :class:`ResumePlanError` before changing anything if the plan cannot run.
        """
        steps = [_as_phase(item) for item in phases]
        validate_resume_plan(current, steps, book_crossed=book_crossed)
        plan = cls(steps, index=-1, phase_start_ts=ts)
        changes = [plan._enter(0, current, ts)]
        changes.extend(plan.advance(ts))
        return plan, changes

    @property
    def state(self) -> MarketState | None:
        """The state of the current phase (None before the start)."""
        return self.phases[self.index].state if self.index >= 0 else None

    @property
    def done(self) -> bool:
        return self.index == len(self.phases) - 1

    def due_ts(self) -> int | None:
        """When the current phase may end, or None when the plan is done."""
        if self.index < 0 or self.done:
            return None
        return self.phase_start_ts + self.phases[self.index].min_ns

    def advance(self, ts: int) -> list[PhaseChange]:
        """Enter every phase whose predecessor has lasted its minimum by ``ts``."""
        assert self.index >= 0, "advance() before start()"
        assert ts >= self.phase_start_ts, "time went backwards"
        changes: list[PhaseChange] = []
        due = self.due_ts()
        while due is not None and ts >= due:
            old = self.phases[self.index].state
            changes.append(self._enter(self.index + 1, old, ts))
            due = self.due_ts()
        return changes

    def _enter(self, index: int, old: MarketState, ts: int) -> PhaseChange:
        self.index = index
        self.phase_start_ts = ts
        new = self.phases[index].state
        last = index == len(self.phases) - 1
        return PhaseChange(
            index=index,
            old=old,
            new=new,
            entered_ts=ts,
            earliest_next_ts=0 if last else ts + self.phases[index].min_ns,
            uncross=uncrosses_on_exit(old, new),
        )

    def export(self) -> ResumePlanSnapshot:
        return ResumePlanSnapshot(
            phases=list(self.phases), index=self.index, phase_start_ts=self.phase_start_ts
        )

    @classmethod
    def restore(cls, snapshot: ResumePlanSnapshot) -> ResumePlan:
        return cls(snapshot.phases, snapshot.index, snapshot.phase_start_ts)
