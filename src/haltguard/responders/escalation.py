"""Escalation plans as plain values: ordered levels, a timeout each, a bounded repeat.

A page walks the plan one level at a time: when a level is not acknowledged within its
``ack_timeout_s``, the next level is paged; after the last level the plan starts again from
level 1 at most ``repeat_count`` times, then the page is *exhausted* (loudly recorded).
Pure: the service snapshots a plan onto each page so later edits never change a live page.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

ACK_TIMEOUT_S_MIN = 60
ACK_TIMEOUT_S_MAX = 24 * 3600
LEVELS_MAX = 10
TARGETS_PER_LEVEL_MAX = 20
REPEAT_COUNT_MAX = 5
FALLBACK_ACK_TIMEOUT_S = 15 * 60
FALLBACK_PLAN_NAME = "contact-tree"


class EscalationError(ValueError):
    """An escalation plan that cannot work; the message says which part and why."""


class TargetKind(StrEnum):
    SCHEDULE = "schedule"
    PERSON = "person"
    CONTACTS_PRIMARY = "contacts_primary"
    CONTACTS_BACKUP = "contacts_backup"


_NEEDS_REF = {TargetKind.SCHEDULE, TargetKind.PERSON}
_TEXT_FORMS = {
    "contacts:primary": TargetKind.CONTACTS_PRIMARY,
    "contacts:backup": TargetKind.CONTACTS_BACKUP,
}


@dataclass(frozen=True)
class Target:
    """Who a level pages: whoever is on call for a schedule, one person, or the emergency
    contact tree's primary (or backup) people for the page's category."""

    kind: TargetKind
    ref: str = ""

    def __post_init__(self) -> None:
        if (self.kind in _NEEDS_REF) != bool(self.ref):
            need = "needs a name" if self.kind in _NEEDS_REF else "takes no name"
            raise EscalationError(f"target kind {self.kind.value!r} {need} (got {self.ref!r})")

    def text(self) -> str:
        """The short written form used in YAML files and the CLI."""
        for text, kind in _TEXT_FORMS.items():
            if kind is self.kind:
                return text
        return f"{self.kind.value}:{self.ref}"

    @classmethod
    def parse(cls, text: str) -> Target:
        """Read ``schedule:NAME``, ``person:HANDLE``, ``contacts:primary`` or
        ``contacts:backup``."""
        cleaned = text.strip()
        if cleaned in _TEXT_FORMS:
            return cls(_TEXT_FORMS[cleaned])
        kind_text, _, ref = cleaned.partition(":")
        if kind_text not in (TargetKind.SCHEDULE.value, TargetKind.PERSON.value) or not ref:
            raise EscalationError(
                f"cannot read target {text!r}; write schedule:NAME, person:HANDLE, "
                "contacts:primary or contacts:backup"
            )
        return cls(TargetKind(kind_text), ref.strip())


@dataclass(frozen=True)
class Level:
    ack_timeout_s: int
    targets: tuple[Target, ...]

    def __post_init__(self) -> None:
        if not ACK_TIMEOUT_S_MIN <= self.ack_timeout_s <= ACK_TIMEOUT_S_MAX:
            raise EscalationError(
                f"acknowledgement timeout must be {ACK_TIMEOUT_S_MIN}..{ACK_TIMEOUT_S_MAX} s, "
                f"got {self.ack_timeout_s}"
            )
        if not 1 <= len(self.targets) <= TARGETS_PER_LEVEL_MAX:
            raise EscalationError(
                f"a level pages 1..{TARGETS_PER_LEVEL_MAX} targets, got {len(self.targets)}"
            )


@dataclass(frozen=True)
class Position:
    """Where a page stands: which level (0-based) in which pass over the plan (0-based)."""

    level_index: int
    cycle: int


@dataclass(frozen=True)
class Plan:
    name: str
    levels: tuple[Level, ...]
    repeat_count: int = 0

    def __post_init__(self) -> None:
        if not 1 <= len(self.levels) <= LEVELS_MAX:
            raise EscalationError(
                f"a policy has 1..{LEVELS_MAX} levels, got {len(self.levels)}"
            )
        if not 0 <= self.repeat_count <= REPEAT_COUNT_MAX:
            raise EscalationError(
                f"repeat count must be 0..{REPEAT_COUNT_MAX}, got {self.repeat_count}"
            )

    @property
    def steps_total(self) -> int:
        """How many levels a page that nobody acknowledges will page, repeats included."""
        return len(self.levels) * (self.repeat_count + 1)

    def level(self, position: Position) -> Level:
        return self.levels[position.level_index]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "repeat_count": self.repeat_count,
            "levels": [
                {
                    "ack_timeout_s": level.ack_timeout_s,
                    "targets": [target.text() for target in level.targets],
                }
                for level in self.levels
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(
            name=str(data["name"]),
            repeat_count=int(data["repeat_count"]),
            levels=tuple(
                Level(
                    ack_timeout_s=int(level["ack_timeout_s"]),
                    targets=tuple(Target.parse(text) for text in level["targets"]),
                )
                for level in data["levels"]
            ),
        )


FIRST_POSITION = Position(level_index=0, cycle=0)


def next_position(plan: Plan, position: Position) -> Position | None:
    """The level to page after ``position`` times out, or None when the plan is spent."""
    if position.level_index + 1 < len(plan.levels):
        return Position(position.level_index + 1, position.cycle)
    if position.cycle < plan.repeat_count:
        return Position(0, position.cycle + 1)
    return None


def fallback_plan() -> Plan:
    """Used when no policy matches: the contact tree's primary people, then their backups."""
    return Plan(
        name=FALLBACK_PLAN_NAME,
        levels=(
            Level(FALLBACK_ACK_TIMEOUT_S, (Target(TargetKind.CONTACTS_PRIMARY),)),
            Level(FALLBACK_ACK_TIMEOUT_S, (Target(TargetKind.CONTACTS_BACKUP),)),
        ),
        repeat_count=1,
    )
