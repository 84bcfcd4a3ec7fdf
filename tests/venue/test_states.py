"""Market-state transitions, what each state admits, and resume plans."""

from __future__ import annotations

import msgspec
import pytest

from haltguard.venue.commands import ResumePhase
from haltguard.venue.states import (
    RESUME_PHASES_MAX,
    OrderKind,
    PhaseChange,
    ResumePlan,
    ResumePlanError,
    ResumePlanSnapshot,
    admits,
    allowed_targets,
    check_transition,
    order_kind,
    refusal_detail,
    uncrosses_on_exit,
)
from haltguard.venue.types import MarketState, OrderType, RejectReason, TimeInForce

S = MarketState
K = OrderKind
R = RejectReason
SECOND = 1_000_000_000


@pytest.mark.parametrize("old", list(MarketState))
def test_every_state_can_be_halted(old: MarketState) -> None:
    assert check_transition(old, S.HALTED) is None


@pytest.mark.parametrize("state", list(MarketState))
def test_reentering_the_same_state_is_legal(state: MarketState) -> None:
    assert check_transition(state, state) is None


@pytest.mark.parametrize("old", [S.HALTED, S.CANCEL_ONLY])
def test_halted_market_cannot_reopen_without_auction(old: MarketState) -> None:
    message = check_transition(old, S.OPEN)
    assert message is not None
    assert "auction" in message
    assert "post_only" in message and "limit_only" in message


def test_refusal_message_names_every_allowed_target() -> None:
    message = check_transition(S.CLOSED, S.CANCEL_ONLY)
    assert message == (
        "cannot move from closed to cancel_only; from closed the market may go to: "
        "open, halted, auction, closed"
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.HALTED, S.AUCTION),
        (S.HALTED, S.CANCEL_ONLY),
        (S.HALTED, S.POST_ONLY),
        (S.HALTED, S.LIMIT_ONLY),
        (S.HALTED, S.CLOSED),
        (S.CANCEL_ONLY, S.AUCTION),
        (S.POST_ONLY, S.OPEN),
        (S.LIMIT_ONLY, S.OPEN),
        (S.AUCTION, S.OPEN),
        (S.CLOSED, S.AUCTION),
        (S.CLOSED, S.OPEN),
        (S.OPEN, S.CLOSED),
    ],
)
def test_reopening_paths_are_legal(old: MarketState, new: MarketState) -> None:
    assert check_transition(old, new) is None


@pytest.mark.parametrize("new", [S.CANCEL_ONLY, S.POST_ONLY, S.LIMIT_ONLY])
def test_closed_market_opens_only_through_auction_open_or_halt(new: MarketState) -> None:
    assert check_transition(S.CLOSED, new) is not None


@pytest.mark.parametrize(
    ("new", "uncrosses"),
    [
        (S.OPEN, True),
        (S.LIMIT_ONLY, True),
        (S.POST_ONLY, True),
        (S.HALTED, False),
        (S.CANCEL_ONLY, False),
        (S.CLOSED, False),
        (S.AUCTION, False),
    ],
)
def test_leaving_auction_uncrosses_only_into_trading_states(
    new: MarketState, uncrosses: bool
) -> None:
    assert uncrosses_on_exit(S.AUCTION, new) is uncrosses


def test_no_state_other_than_auction_uncrosses_on_exit() -> None:
    for old in MarketState:
        if old is not S.AUCTION:
            assert not any(uncrosses_on_exit(old, new) for new in MarketState)


@pytest.mark.parametrize(
    ("old", "new"), [(S.HALTED, S.POST_ONLY), (S.HALTED, S.LIMIT_ONLY), (S.CLOSED, S.OPEN)]
)
def test_crossed_book_must_go_through_an_auction(old: MarketState, new: MarketState) -> None:
    assert check_transition(old, new) is None
    message = check_transition(old, new, book_crossed=True)
    assert message is not None
    assert "crossed" in message
    assert check_transition(old, S.AUCTION, book_crossed=True) is None


def test_refusal_over_crossed_book_lists_only_states_still_reachable() -> None:
    message = check_transition(S.HALTED, S.OPEN, book_crossed=True)
    assert message is not None
    assert message.split("may go to: ")[1].startswith("halted, cancel_only, auction, closed;")


def test_auction_uncross_may_leave_a_crossed_book_for_open() -> None:
    assert check_transition(S.AUCTION, S.OPEN, book_crossed=True) is None


def test_allowed_targets_with_crossed_book_exclude_matching_states() -> None:
    assert allowed_targets(S.LIMIT_ONLY, book_crossed=True) == [
        S.HALTED,
        S.CANCEL_ONLY,
        S.AUCTION,
        S.CLOSED,
    ]


# The admission table, written out by hand so a change to the rules fails here.
ADMITTED = {
    S.OPEN: {K.LIMIT, K.IMMEDIATE_LIMIT, K.POST_ONLY_LIMIT, K.MARKET, K.CANCEL},
    S.HALTED: {K.CANCEL},
    S.CANCEL_ONLY: {K.CANCEL},
    S.POST_ONLY: {K.POST_ONLY_LIMIT, K.CANCEL},
    S.LIMIT_ONLY: {K.LIMIT, K.IMMEDIATE_LIMIT, K.POST_ONLY_LIMIT, K.CANCEL},
    S.AUCTION: {K.LIMIT, K.CANCEL},
    S.CLOSED: {K.CANCEL},
}


@pytest.mark.parametrize("state", list(MarketState))
@pytest.mark.parametrize("kind", list(OrderKind))
def test_each_state_admits_exactly_its_commands(state: MarketState, kind: OrderKind) -> None:
    reason = admits(state, True, kind)
    if kind in ADMITTED[state]:
        assert reason is None
    else:
        assert reason is not None
        assert refusal_detail(state, True, kind)


@pytest.mark.parametrize(
    ("state", "kind", "reason"),
    [
        (S.HALTED, K.LIMIT, R.MARKET_HALTED),
        (S.HALTED, K.MARKET, R.MARKET_HALTED),
        (S.CANCEL_ONLY, K.POST_ONLY_LIMIT, R.MARKET_CANCEL_ONLY),
        (S.POST_ONLY, K.LIMIT, R.MARKET_POST_ONLY),
        (S.POST_ONLY, K.MARKET, R.MARKET_POST_ONLY),
        (S.LIMIT_ONLY, K.MARKET, R.MARKET_LIMIT_ONLY),
        (S.AUCTION, K.MARKET, R.MARKET_LIMIT_ONLY),
        (S.AUCTION, K.IMMEDIATE_LIMIT, R.INVALID_TIME_IN_FORCE),
        (S.AUCTION, K.POST_ONLY_LIMIT, R.INVALID_TIME_IN_FORCE),
        (S.CLOSED, K.LIMIT, R.MARKET_CLOSED),
    ],
)
def test_refusals_carry_the_reason_of_the_state(
    state: MarketState, kind: OrderKind, reason: RejectReason
) -> None:
    assert admits(state, True, kind) is reason


def test_halt_that_refuses_cancels_rejects_cancels() -> None:
    assert admits(S.HALTED, False, K.CANCEL) is R.CANCELS_REFUSED
    assert "refuses cancels" in refusal_detail(S.HALTED, False, K.CANCEL)
    assert admits(S.HALTED, True, K.CANCEL) is None


@pytest.mark.parametrize("state", [s for s in MarketState if s is not S.HALTED])
def test_cancels_allowed_flag_only_matters_while_halted(state: MarketState) -> None:
    assert admits(state, False, K.CANCEL) is None


@pytest.mark.parametrize(
    ("order_type", "tif", "post_only", "kind"),
    [
        (OrderType.LIMIT, TimeInForce.GTC, False, K.LIMIT),
        (OrderType.LIMIT, TimeInForce.IOC, False, K.IMMEDIATE_LIMIT),
        (OrderType.LIMIT, TimeInForce.FOK, False, K.IMMEDIATE_LIMIT),
        (OrderType.LIMIT, TimeInForce.GTC, True, K.POST_ONLY_LIMIT),
        (OrderType.MARKET, TimeInForce.IOC, False, K.MARKET),
    ],
)
def test_order_kind_classifies_new_orders(
    order_type: OrderType, tif: TimeInForce, post_only: bool, kind: OrderKind
) -> None:
    assert order_kind(order_type, tif, post_only) is kind


# --- resume plans -----------------------------------------------------------------------

STANDARD = [(S.CANCEL_ONLY, 60 * SECOND), (S.AUCTION, 180 * SECOND), (S.OPEN, 0)]


def test_resume_plan_enters_first_phase_at_start() -> None:
    plan, changes = ResumePlan.start(S.HALTED, STANDARD, ts=1_000)
    assert changes == [
        PhaseChange(
            index=0,
            old=S.HALTED,
            new=S.CANCEL_ONLY,
            entered_ts=1_000,
            earliest_next_ts=1_000 + 60 * SECOND,
            uncross=False,
        )
    ]
    assert plan.state is S.CANCEL_ONLY
    assert plan.due_ts() == 1_000 + 60 * SECOND
    assert not plan.done


def test_resume_plan_holds_each_phase_its_minimum_time() -> None:
    plan, _ = ResumePlan.start(S.HALTED, STANDARD, ts=0)
    assert plan.advance(60 * SECOND - 1) == []
    assert plan.state is S.CANCEL_ONLY
    changes = plan.advance(60 * SECOND)
    assert [(c.old, c.new) for c in changes] == [(S.CANCEL_ONLY, S.AUCTION)]
    assert plan.due_ts() == 240 * SECOND


def test_resume_plan_times_a_phase_from_when_it_was_entered() -> None:
    plan, _ = ResumePlan.start(S.HALTED, STANDARD, ts=0)
    plan.advance(100 * SECOND)  # the heartbeat came 40 s late
    assert plan.due_ts() == 280 * SECOND
    assert plan.advance(240 * SECOND) == []


def test_resume_plan_leaving_auction_asks_for_the_uncross_and_finishes() -> None:
    plan, _ = ResumePlan.start(S.HALTED, STANDARD, ts=0)
    plan.advance(60 * SECOND)
    changes = plan.advance(240 * SECOND)
    assert changes == [
        PhaseChange(
            index=2,
            old=S.AUCTION,
            new=S.OPEN,
            entered_ts=240 * SECOND,
            earliest_next_ts=0,
            uncross=True,
        )
    ]
    assert plan.done
    assert plan.due_ts() is None
    assert plan.advance(10_000 * SECOND) == []


def test_zero_length_phases_pass_in_one_step() -> None:
    plan, changes = ResumePlan.start(
        S.HALTED, [(S.CANCEL_ONLY, 0), (S.POST_ONLY, 0), (S.OPEN, 0)], ts=5
    )
    assert [c.new for c in changes] == [S.CANCEL_ONLY, S.POST_ONLY, S.OPEN]
    assert all(c.entered_ts == 5 for c in changes)
    assert plan.done


def test_late_heartbeat_passes_every_phase_that_is_due() -> None:
    plan, _ = ResumePlan.start(
        S.HALTED, [(S.CANCEL_ONLY, 10), (S.POST_ONLY, 0), (S.LIMIT_ONLY, 10), (S.OPEN, 0)], ts=0
    )
    changes = plan.advance(10)
    assert [c.new for c in changes] == [S.POST_ONLY, S.LIMIT_ONLY]
    assert plan.due_ts() == 20


def test_resume_plan_accepts_command_phases() -> None:
    phases = [ResumePhase(state=S.AUCTION, min_ns=SECOND), ResumePhase(state=S.OPEN, min_ns=0)]
    plan, changes = ResumePlan.start(S.HALTED, phases, ts=0)
    assert changes[0].new is S.AUCTION
    assert plan.phases == phases


@pytest.mark.parametrize(
    ("current", "phases", "complaint"),
    [
        (S.HALTED, [], "at least one phase"),
        (S.HALTED, [(S.OPEN, 0)], "phase 1 (open): cannot move from halted to open"),
        (S.HALTED, [(S.AUCTION, -1), (S.OPEN, 0)], "phase 1 (auction): min_ns"),
        (S.HALTED, [(S.AUCTION, 10), (S.AUCTION, 10), (S.OPEN, 0)], "repeats"),
        (S.HALTED, [(S.CANCEL_ONLY, 10), (S.OPEN, 0)], "phase 2 (open): cannot move"),
        (S.HALTED, [(S.AUCTION, 10), (S.HALTED, 0)], "must end in a trading state"),
        (S.CLOSED, [(S.CANCEL_ONLY, 10), (S.OPEN, 0)], "from closed to cancel_only"),
        (S.HALTED, [(S.AUCTION, 8 * 24 * 3600 * SECOND), (S.OPEN, 0)], "one week"),
    ],
)
def test_invalid_resume_plans_are_refused_with_the_reason(
    current: MarketState, phases: list[tuple[MarketState, int]], complaint: str
) -> None:
    with pytest.raises(ResumePlanError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        ResumePlan.start(current, phases, ts=0)


def test_resume_plan_has_a_phase_limit() -> None:
    ladder = [S.POST_ONLY, S.LIMIT_ONLY] * RESUME_PHASES_MAX + [S.OPEN]
    with pytest.raises(ResumePlanError, match="at most"):
        ResumePlan.start(S.HALTED, [(state, 0) for state in ladder], ts=0)


def test_resume_plan_over_a_crossed_book_needs_an_auction_first() -> None:
    with pytest.raises(ResumePlanError, match="crossed"):
        ResumePlan.start(S.HALTED, [(S.POST_ONLY, 10), (S.OPEN, 0)], ts=0, book_crossed=True)
    plan, _ = ResumePlan.start(
        S.HALTED, [(S.AUCTION, 10), (S.POST_ONLY, 10), (S.OPEN, 0)], ts=0, book_crossed=True
    )
    assert plan.state is S.AUCTION


def test_resume_plan_survives_a_snapshot_round_trip() -> None:
    plan, _ = ResumePlan.start(S.HALTED, STANDARD, ts=0)
    plan.advance(70 * SECOND)
    encoded = msgspec.msgpack.encode(plan.export())
    restored = ResumePlan.restore(msgspec.msgpack.decode(encoded, type=ResumePlanSnapshot))
    assert restored.export() == plan.export()
    assert restored.due_ts() == plan.due_ts() == 250 * SECOND
    assert restored.advance(250 * SECOND) == plan.advance(250 * SECOND)
