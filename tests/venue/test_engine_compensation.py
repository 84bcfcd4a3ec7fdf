"""Compensation credits: each (run id, line number) is paid once, and that survives replay and
snapshots.

A payout may be retried, resumed after a crash or started twice; the venue is what makes it
pay nobody twice, by refusing a line whose reference it has credited before.
"""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from venue_support import Harness, funded

from haltguard.venue.commands import (
    COMPENSATION_LINES_MAX,
    LINE_NO_MAX,
    RUN_ID_MAX,
    CompensationLine,
    CreditCompensation,
)
from haltguard.venue.engine import Venue
from haltguard.venue.events import CommandRejected, CompensationCredited, CompensationRefused
from haltguard.venue.types import RejectReason

ACTOR = "payout"


def credit(*lines: CompensationLine) -> CreditCompensation:
    return CreditCompensation(list(lines), ACTOR, "run approved")


def line(account: int, amount: int, run_id: int = 7, line_no: int = 1,
         asset: str = "JPY") -> CompensationLine:
    return CompensationLine(account, asset, amount, run_id, line_no)


def test_a_credited_line_adds_to_the_available_balance() -> None:
    harness = funded()
    before = harness.balance(1, "JPY")

    events = harness(credit(line(1, 5_000)))

    assert events == [CompensationCredited(1, "JPY", 5_000, 7, 1)]
    assert harness.balance(1, "JPY") == (before[0] + 5_000, before[1])
    assert harness.venue.check_invariants() == []


def test_a_line_credited_before_is_refused_as_already_credited_and_pays_nothing() -> None:
    harness = funded()
    harness(credit(line(1, 5_000)))
    paid_once = harness.balance(1, "JPY")

    events = harness(credit(line(1, 5_000)))

    assert [type(e) for e in events] == [CompensationRefused]
    assert events[0].reason is RejectReason.ALREADY_CREDITED  # type: ignore[union-attr]
    assert harness.balance(1, "JPY") == paid_once


def test_the_same_reference_twice_in_one_batch_is_credited_once() -> None:
    harness = funded()
    before = harness.balance(2, "JPY")

    events = harness(credit(line(2, 100, line_no=9), line(2, 100, line_no=9)))

    assert type(events[0]) is CompensationCredited
    assert type(events[1]) is CompensationRefused
    assert events[1].reason is RejectReason.ALREADY_CREDITED
    assert harness.balance(2, "JPY")[0] == before[0] + 100


def test_a_bad_line_is_refused_alone_and_the_others_are_credited() -> None:
    harness = funded()
    lines = [
        line(1, 10, line_no=1),
        line(1, 10, line_no=2, asset="DOGE"),
        line(1, 0, line_no=3),
        line(1, -5, line_no=4),
        line(0, 10, line_no=5),
        line(1, 10, run_id=0, line_no=6),
        line(1, 10, run_id=RUN_ID_MAX + 1, line_no=7),
        line(1, 10, line_no=LINE_NO_MAX + 1),
        line(1, 10, line_no=8),
    ]

    events = harness(credit(*lines))

    outcomes = [
        "credited" if type(e) is CompensationCredited else e.reason.value  # type: ignore[union-attr]
        for e in events
    ]
    assert outcomes == [
        "credited", "unknown_asset", "invalid_amount", "invalid_amount", "invalid_account",
        "invalid_reference", "invalid_reference", "invalid_reference", "credited",
    ]
    assert harness.venue.credited_line_ranges(7) == [(1, 1), (8, 8)]
    # A refused line did not spend its reference: corrected, it is credited.
    assert type(harness(credit(line(1, 10, line_no=3)))[0]) is CompensationCredited


def test_a_batch_over_the_limit_is_refused_whole() -> None:
    harness = funded()
    before = harness.venue.export_state()
    lines = [line(1, 1, line_no=n) for n in range(COMPENSATION_LINES_MAX + 1)]

    events = harness(credit(*lines))

    assert [type(e) for e in events] == [CommandRejected]
    assert events[0].reason is RejectReason.INVALID_COMMAND  # type: ignore[union-attr]
    assert harness.venue.export_state().balances == before.balances
    assert harness.venue.credited_line_ranges(7) == []


def test_an_empty_batch_is_refused() -> None:
    events = funded()(credit())

    assert [type(e) for e in events] == [CommandRejected]


def test_a_line_with_a_float_amount_is_refused_as_malformed() -> None:
    harness = funded()
    before = harness.balance(1, "JPY")

    events = harness(credit(line(1, 10.0)))  # type: ignore[arg-type]

    assert [type(e) for e in events] == [CommandRejected]
    assert harness.balance(1, "JPY") == before


def test_credited_lines_read_back_as_ranges_per_run() -> None:
    harness = funded()
    harness(credit(*(line(1, 1, run_id=3, line_no=n) for n in (0, 1, 2, 5, 7, 8))))
    harness(credit(line(1, 1, run_id=4, line_no=1)))

    assert harness.venue.credited_line_ranges(3) == [(0, 2), (5, 5), (7, 8)]
    assert harness.venue.credited_line_ranges(4) == [(1, 1)]
    assert harness.venue.credited_line_ranges(5) == []


def test_credited_references_survive_a_snapshot_round_trip() -> None:
    harness = funded()
    harness(credit(line(1, 5, line_no=1), line(2, 6, line_no=2)))
    state = harness.venue.export_state()
    encoded = msgspec.msgpack.encode(state)

    restored = Venue.restore(msgspec.msgpack.decode(encoded, type=type(state)))

    assert restored.state_hash() == harness.venue.state_hash()
    again = Harness(restored)(credit(line(1, 5, line_no=1)))
    assert type(again[0]) is CompensationRefused
    assert again[0].reason is RejectReason.ALREADY_CREDITED


def test_a_state_without_credits_encodes_as_before_credits_existed() -> None:
    """Snapshots and state hashes written before compensation keep their bytes."""
    state = funded().venue.export_state()

    assert "credited_references" not in msgspec.to_builtins(state)


lines_strategy = st.lists(
    st.builds(
        CompensationLine,
        account=st.integers(-1, 4),
        asset=st.sampled_from(["JPY", "COIN", "NOPE"]),
        amount=st.integers(-3, 1_000),
        run_id=st.integers(0, 3),
        line_no=st.integers(0, 12),
    ),
    min_size=0,
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(lines_strategy, min_size=1, max_size=6))
def test_replay_and_restore_reach_the_state_apply_reaches(
    batches: list[list[CompensationLine]],
) -> None:
    applied = funded()
    replayed = funded()
    for batch in batches:
        applied(credit(*batch))
        replayed.seq += 1
        replayed.ts += 1
        replayed.venue.replay(replayed.seq, replayed.ts, credit(*batch))
        assert replayed.venue.state_hash() == applied.venue.state_hash()
    restored = Venue.restore(applied.venue.export_state())
    assert restored.state_hash() == applied.venue.state_hash()
    assert applied.venue.check_invariants() == []


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(lines_strategy, min_size=1, max_size=6))
def test_no_reference_is_ever_credited_twice(batches: list[list[CompensationLine]]) -> None:
    harness = funded()
    credited: list[tuple[int, int]] = []
    for batch in batches:
        for event in harness(credit(*batch)):
            if type(event) is CompensationCredited:
                credited.append((event.run_id, event.line_no))
    assert len(credited) == len(set(credited))
    for run_id in range(4):
        ranges = harness.venue.credited_line_ranges(run_id)
        read_back = {(run_id, n) for first, last in ranges for n in range(first, last + 1)}
        assert read_back == {c for c in credited if c[0] == run_id}
