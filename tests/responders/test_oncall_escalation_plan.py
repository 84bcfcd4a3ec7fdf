"""Escalation plans: levels in order, bounded repeats, targets written as text."""

from __future__ import annotations

import pytest

from haltguard.responders.escalation import (
    FIRST_POSITION,
    REPEAT_COUNT_MAX,
    EscalationError,
    Level,
    Plan,
    Position,
    Target,
    TargetKind,
    fallback_plan,
    next_position,
)


def three_levels(repeat_count: int = 0) -> Plan:
    return Plan(
        name="infra",
        levels=(
            Level(300, (Target.parse("schedule:infra-primary"),)),
            Level(600, (Target.parse("contacts:primary"),)),
            Level(900, (Target.parse("person:kobayashi"), Target.parse("contacts:backup"))),
        ),
        repeat_count=repeat_count,
    )


def walk(plan: Plan) -> list[Position]:
    positions = [FIRST_POSITION]
    while (following := next_position(plan, positions[-1])) is not None:
        positions.append(following)
        assert len(positions) <= 100
    return positions


def test_levels_are_paged_in_order_and_the_plan_then_ends() -> None:
    assert walk(three_levels()) == [Position(0, 0), Position(1, 0), Position(2, 0)]


def test_repeat_starts_again_from_level_one_a_bounded_number_of_times() -> None:
    positions = walk(three_levels(repeat_count=2))
    assert len(positions) == 9 == three_levels(repeat_count=2).steps_total
    assert positions[3] == Position(0, 1)
    assert positions[-1] == Position(2, 2)


def test_repeat_count_above_the_bound_is_refused() -> None:
    with pytest.raises(EscalationError, match=f"0..{REPEAT_COUNT_MAX}"):
        three_levels(repeat_count=REPEAT_COUNT_MAX + 1)


def test_plan_survives_its_json_snapshot_unchanged() -> None:
    plan = three_levels(repeat_count=1)
    assert Plan.from_json(plan.to_json()) == plan


def test_targets_read_and_write_their_text_form() -> None:
    for text in ("schedule:infra-primary", "person:tanaka", "contacts:primary", "contacts:backup"):
        assert Target.parse(text).text() == text
    assert Target.parse(" person:ito ").kind is TargetKind.PERSON


@pytest.mark.parametrize("text", ["team:infra", "person:", "contacts:everyone", "tanaka"])
def test_unreadable_target_says_how_to_write_one(text: str) -> None:
    with pytest.raises(EscalationError, match=r"schedule:NAME, person:HANDLE"):
        Target.parse(text)


def test_level_timeout_and_target_count_are_bounded() -> None:
    with pytest.raises(EscalationError, match="acknowledgement timeout"):
        Level(10, (Target.parse("person:a"),))
    with pytest.raises(EscalationError, match=r"1\.\.20 targets"):
        Level(300, ())


def test_fallback_pages_contact_tree_primaries_then_backups() -> None:
    plan = fallback_plan()
    assert [level.targets[0].kind for level in plan.levels] == [
        TargetKind.CONTACTS_PRIMARY, TargetKind.CONTACTS_BACKUP,
    ]
