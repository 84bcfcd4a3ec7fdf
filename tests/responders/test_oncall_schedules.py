"""Who is on call: rotation handoffs at local time, overrides, time zones with DST."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haltguard.responders.schedules import (
    Override,
    Rotation,
    Schedule,
    ScheduleError,
    shift_at,
    shifts_between,
    who_is_on_call,
)

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")


def weekly(members: tuple[str, ...] = ("tanaka", "suzuki", "sato"), **kwargs: object) -> Schedule:
    rotation = Rotation(members=members, start_date=date(2026, 3, 2), handoff=time(9, 0),
                        length_days=7)
    return Schedule(name="infra", rotation=rotation, **kwargs)  # type: ignore[arg-type]


def jst(year: int, month: int, day: int, hour: int, minute: int, *, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=TOKYO)


def test_first_member_holds_the_rotation_from_its_first_handoff() -> None:
    assert who_is_on_call(weekly(), jst(2026, 3, 2, 9, 0)) == "tanaka"
    assert who_is_on_call(weekly(), jst(2026, 3, 8, 23, 59)) == "tanaka"


def test_handoff_happens_exactly_at_the_local_handoff_time() -> None:
    schedule = weekly()
    assert who_is_on_call(schedule, jst(2026, 3, 9, 8, 59, second=59)) == "tanaka"
    assert who_is_on_call(schedule, jst(2026, 3, 9, 9, 0)) == "suzuki"


def test_rotation_wraps_around_to_the_first_member() -> None:
    schedule = weekly()
    assert who_is_on_call(schedule, jst(2026, 3, 16, 9, 0)) == "sato"
    assert who_is_on_call(schedule, jst(2026, 3, 23, 9, 0)) == "tanaka"
    assert who_is_on_call(schedule, jst(2027, 3, 1, 12, 0)) == ["tanaka", "suzuki", "sato"][
        ((date(2027, 3, 1) - date(2026, 3, 2)).days // 7) % 3
    ]


def test_nobody_is_on_call_before_the_rotation_starts() -> None:
    assert who_is_on_call(weekly(), jst(2026, 3, 2, 8, 59)) is None


def test_same_instant_given_in_utc_or_tokyo_gives_the_same_person() -> None:
    moment = jst(2026, 3, 9, 9, 0)
    assert who_is_on_call(weekly(), moment.astimezone(UTC)) == who_is_on_call(weekly(), moment)


def test_override_replaces_the_rotation_only_inside_its_range() -> None:
    override = Override("ito", jst(2026, 3, 4, 18, 0), jst(2026, 3, 5, 9, 0))
    schedule = weekly(overrides=(override,))
    assert who_is_on_call(schedule, jst(2026, 3, 4, 17, 59)) == "tanaka"
    assert who_is_on_call(schedule, jst(2026, 3, 4, 18, 0)) == "ito"
    assert who_is_on_call(schedule, jst(2026, 3, 5, 8, 59)) == "ito"
    assert who_is_on_call(schedule, jst(2026, 3, 5, 9, 0)) == "tanaka"
    shift = shift_at(schedule, jst(2026, 3, 4, 20, 0))
    assert shift is not None and shift.override and shift.end == override.end


def test_later_override_wins_where_overrides_overlap() -> None:
    first = Override("ito", jst(2026, 3, 4, 0, 0), jst(2026, 3, 6, 0, 0))
    second = Override("kobayashi", jst(2026, 3, 5, 0, 0), jst(2026, 3, 5, 12, 0))
    schedule = weekly(overrides=(first, second))
    assert who_is_on_call(schedule, jst(2026, 3, 4, 12, 0)) == "ito"
    assert who_is_on_call(schedule, jst(2026, 3, 5, 6, 0)) == "kobayashi"
    assert who_is_on_call(schedule, jst(2026, 3, 5, 12, 0)) == "ito"


def test_override_covers_time_before_the_rotation_starts() -> None:
    schedule = weekly(overrides=(Override("ito", jst(2026, 3, 1, 0, 0), jst(2026, 3, 2, 0, 0)),))
    assert who_is_on_call(schedule, jst(2026, 3, 1, 12, 0)) == "ito"


def test_handoff_stays_at_local_time_across_a_dst_change() -> None:
    rotation = Rotation(("alice", "bob"), start_date=date(2026, 3, 2), handoff=time(9, 0),
                        length_days=7)
    schedule = Schedule("ny", rotation, timezone="America/New_York")
    # DST starts in New York on 2026-03-08: the 09:00 handoff moves from 14:00 to 13:00 UTC.
    before = datetime(2026, 3, 9, 8, 59, tzinfo=NEW_YORK)
    after = datetime(2026, 3, 9, 9, 0, tzinfo=NEW_YORK)
    assert who_is_on_call(schedule, before) == "alice"
    assert who_is_on_call(schedule, after) == "bob"
    shift = shift_at(schedule, after)
    assert shift is not None
    assert shift.start == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    assert shift.end == datetime(2026, 3, 16, 13, 0, tzinfo=UTC)


def test_handoff_in_the_spring_forward_gap_still_gives_one_person_per_instant() -> None:
    rotation = Rotation(("alice", "bob"), start_date=date(2026, 3, 1), handoff=time(2, 30),
                        length_days=1)
    schedule = Schedule("ny", rotation, timezone="America/New_York")
    start = datetime(2026, 3, 7, 0, 0, tzinfo=UTC)
    shifts = shifts_between(schedule, start, start + timedelta(days=3))
    for earlier, later in itertools.pairwise(shifts):
        assert earlier.end == later.start
        assert earlier.person != later.person
    # 02:30 does not exist on 2026-03-08; the handoff falls at 07:30 UTC (03:30 EDT).
    assert any(s.start == datetime(2026, 3, 8, 7, 30, tzinfo=UTC) for s in shifts)


def test_shifts_between_lists_handoffs_and_overrides_in_order() -> None:
    override = Override("ito", jst(2026, 3, 10, 0, 0), jst(2026, 3, 11, 0, 0))
    schedule = weekly(overrides=(override,))
    shifts = shifts_between(schedule, jst(2026, 3, 2, 9, 0), jst(2026, 3, 16, 9, 0))
    assert [(s.person, s.override) for s in shifts] == [
        ("tanaka", False), ("suzuki", False), ("ito", True), ("suzuki", False),
    ]
    assert shifts[1].start == jst(2026, 3, 9, 9, 0)
    assert shifts[2].start == override.start and shifts[2].end == override.end


def test_same_person_on_consecutive_turns_gets_separate_shifts() -> None:
    rotation = Rotation(("solo",), start_date=date(2026, 3, 2), handoff=time(9, 0),
                        length_days=1)
    schedule = Schedule("solo", rotation)
    shifts = shifts_between(schedule, jst(2026, 3, 2, 9, 0), jst(2026, 3, 5, 9, 0))
    assert len(shifts) == 3


def test_bad_definitions_are_refused_with_what_to_fix() -> None:
    with pytest.raises(ScheduleError, match="at least one member"):
        Rotation((), start_date=date(2026, 1, 1))
    with pytest.raises(ScheduleError, match=r"1\.\.366 days"):
        Rotation(("a",), start_date=date(2026, 1, 1), length_days=0)
    with pytest.raises(ScheduleError, match="unknown time zone 'Asia/Tokio'"):
        Schedule("x", Rotation(("a",), start_date=date(2026, 1, 1)), timezone="Asia/Tokio")
    with pytest.raises(ScheduleError, match="must end after it starts"):
        Override("a", jst(2026, 3, 2, 0, 0), jst(2026, 3, 2, 0, 0))
    with pytest.raises(ValueError, match="time zone"):
        who_is_on_call(weekly(), datetime(2026, 3, 2, 9, 0))


def test_a_window_with_too_many_handoffs_is_refused() -> None:
    rotation = Rotation(("a", "b"), start_date=date(2020, 1, 1), length_days=1)
    schedule = Schedule("daily", rotation)
    with pytest.raises(ScheduleError, match="shorter one"):
        shifts_between(schedule, jst(2020, 1, 2, 0, 0), jst(2024, 1, 2, 0, 0))


@given(
    offset_minutes=st.integers(min_value=0, max_value=3 * 365 * 24 * 60),
    length_days=st.integers(min_value=1, max_value=14),
    members=st.integers(min_value=1, max_value=5),
    zone_name=st.sampled_from(["Asia/Tokyo", "America/New_York", "Europe/London", "UTC"]),
)
def test_every_instant_after_start_has_exactly_the_member_whose_turn_it_is(
    offset_minutes: int, length_days: int, members: int, zone_name: str
) -> None:
    names = tuple(f"m{i}" for i in range(members))
    rotation = Rotation(names, start_date=date(2026, 1, 5), handoff=time(9, 0),
                        length_days=length_days)
    schedule = Schedule("p", rotation, timezone=zone_name)
    first = datetime(2026, 1, 5, 9, 0, tzinfo=ZoneInfo(zone_name))
    at = first + timedelta(minutes=offset_minutes)
    shift = shift_at(schedule, at)
    assert shift is not None
    assert shift.start <= at < shift.end
    local_start = shift.start.astimezone(ZoneInfo(zone_name))
    assert local_start.time() == time(9, 0)
    turn = (local_start.date() - date(2026, 1, 5)).days // length_days
    assert (local_start.date() - date(2026, 1, 5)).days % length_days == 0
    assert shift.person == names[turn % members]
