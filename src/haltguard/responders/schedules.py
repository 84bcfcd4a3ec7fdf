"""On-call schedules as plain values: a rotation of people plus overrides, and who holds it.

Pure: no database, no clock. Handoffs happen at a local time of day in the schedule's time
zone (Asia/Tokyo unless told otherwise), so a 09:00 handoff stays at 09:00 on the wall
clock across daylight-saving changes in zones that have them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from haltguard.common.clock import require_aware

DEFAULT_TIMEZONE = "Asia/Tokyo"
ROTATION_DAYS_MAX = 366
MEMBERS_MAX = 100
SHIFTS_LISTED_MAX = 1000


class ScheduleError(ValueError):
    """A schedule definition that cannot work; the message says which part and why."""


@dataclass(frozen=True)
class Rotation:
    """``members`` take turns of ``length_days`` days, handing off at ``handoff`` local time.

    The first turn (``members[0]``) starts on ``start_date`` at ``handoff``.
    """

    members: tuple[str, ...]
    start_date: date
    handoff: time = time(9, 0)
    length_days: int = 7

    def __post_init__(self) -> None:
        if not self.members:
            raise ScheduleError("a rotation needs at least one member")
        if len(self.members) > MEMBERS_MAX:
            raise ScheduleError(f"a rotation has at most {MEMBERS_MAX} members")
        if not 1 <= self.length_days <= ROTATION_DAYS_MAX:
            raise ScheduleError(
                f"rotation length must be 1..{ROTATION_DAYS_MAX} days, got {self.length_days}"
            )
        if self.handoff.tzinfo is not None:
            raise ScheduleError("the handoff time is local to the schedule; give it without a zone")


@dataclass(frozen=True)
class Override:
    """``person`` covers the schedule from ``start`` (inclusive) to ``end`` (exclusive)."""

    person: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        require_aware(self.start, "override start")
        require_aware(self.end, "override end")
        if self.end <= self.start:
            raise ScheduleError(
                f"an override must end after it starts ({self.start.isoformat()} .. "
                f"{self.end.isoformat()})"
            )

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class Schedule:
    """A named rotation; later overrides win over earlier ones where they overlap."""

    name: str
    rotation: Rotation
    timezone: str = DEFAULT_TIMEZONE
    overrides: tuple[Override, ...] = field(default=())

    def __post_init__(self) -> None:
        zone(self.timezone)

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)


@dataclass(frozen=True)
class Shift:
    """One stretch of on-call duty; ``override`` is True when it comes from an override."""

    person: str
    start: datetime
    end: datetime
    override: bool = False


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or a clear error naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"unknown time zone {name!r}; use an IANA name such as 'Asia/Tokyo' or 'UTC'"
        ) from exc


def handoff_at(schedule: Schedule, turn: int) -> datetime:
    """The instant turn number ``turn`` begins (turn 0 is the rotation's first), in UTC.

    A handoff time that does not exist on a spring-forward day is read with the offset in
    force before the change, as :mod:`zoneinfo` does for ``fold=0``.
    """
    rotation = schedule.rotation
    local_day = rotation.start_date + timedelta(days=turn * rotation.length_days)
    local = datetime.combine(local_day, rotation.handoff, tzinfo=schedule.zone)
    return local.astimezone(UTC)


def rotation_turn(schedule: Schedule, at: datetime) -> int:
    """The turn number in force at ``at``; negative before the rotation starts."""
    require_aware(at, "at")
    rotation = schedule.rotation
    local_day = at.astimezone(schedule.zone).date()
    turn = (local_day - rotation.start_date).days // rotation.length_days
    # The local-day estimate is off by at most one turn around a handoff; settle it exactly.
    while handoff_at(schedule, turn) > at:
        turn -= 1
    while handoff_at(schedule, turn + 1) <= at:
        turn += 1
    return turn


def rotation_shift(schedule: Schedule, at: datetime) -> Shift | None:
    """The rotation's own shift at ``at`` (overrides ignored), or None before it starts."""
    turn = rotation_turn(schedule, at)
    if turn < 0:
        return None
    members = schedule.rotation.members
    return Shift(
        person=members[turn % len(members)],
        start=handoff_at(schedule, turn),
        end=handoff_at(schedule, turn + 1),
    )


def shift_at(schedule: Schedule, at: datetime) -> Shift | None:
    """The shift in force at ``at``: the latest override covering it, else the rotation's."""
    require_aware(at, "at")
    for override in reversed(schedule.overrides):
        if override.covers(at):
            return Shift(override.person, override.start, override.end, override=True)
    return rotation_shift(schedule, at)


def who_is_on_call(schedule: Schedule, at: datetime) -> str | None:
    """The person on call for ``schedule`` at ``at``; None before the rotation starts
    (unless an override covers that moment)."""
    shift = shift_at(schedule, at)
    return shift.person if shift is not None else None


def shifts_between(schedule: Schedule, start: datetime, end: datetime) -> list[Shift]:
    """Every stretch of duty from ``start`` to ``end``, overrides applied, clipped to the
    window. Each rotation handoff starts a new shift, even when the same person continues.

    At most :data:`SHIFTS_LISTED_MAX` shifts, so a careless window cannot run away.
    """
    require_aware(start, "start")
    require_aware(end, "end")
    if end <= start:
        raise ScheduleError("the window must end after it starts")
    handoffs: set[datetime] = set()
    turn = rotation_turn(schedule, start)
    while True:
        turn += 1
        moment = handoff_at(schedule, turn)
        if moment >= end:
            break
        handoffs.add(moment)
        if len(handoffs) > SHIFTS_LISTED_MAX:
            raise ScheduleError(
                f"the window holds more than {SHIFTS_LISTED_MAX} handoffs; ask for a shorter one"
            )
    boundaries = {start, end} | handoffs
    for override in schedule.overrides:
        boundaries.update(m for m in (override.start, override.end) if start < m < end)
    ordered = sorted(boundaries)
    shifts: list[Shift] = []
    for piece_start, piece_end in itertools.pairwise(ordered):
        current = shift_at(schedule, piece_start)
        if current is None:
            continue
        previous = shifts[-1] if shifts else None
        continues_previous = (
            previous is not None
            and previous.end == piece_start
            and previous.person == current.person
            and previous.override == current.override
            and piece_start not in handoffs
        )
        if previous is not None and continues_previous:
            shifts[-1] = Shift(previous.person, previous.start, piece_end, previous.override)
        else:
            shifts.append(Shift(current.person, piece_start, piece_end, current.override))
    if len(shifts) > SHIFTS_LISTED_MAX:
        raise ScheduleError(
            f"the window holds more than {SHIFTS_LISTED_MAX} shifts; ask for a shorter one"
        )
    return shifts
