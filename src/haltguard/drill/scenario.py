"""What a drill scenario is, what it is given and what it hands back.

A scenario injects one of the manual's chapter 1 interruptions into a running system and
drives the incident end to end: detection, classification, automatic protection, incident and
runbook, pages, public updates in Japanese and English, recovery, a phased resume and the
reports. Where the manual requires a person (approving a resume, approving a SEV1 resume), the
drill plays that operator and says so in every record it leaves (``DRILL_ACTOR``).

A scenario measures; it never assumes. Every figure in :class:`Measurements` comes from what
the system recorded (incident timeline, venue journal, status page, notify outbox), and every
:class:`Check` says what was expected and what was seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from haltguard.drill.surface import DrillSurface

DRILL_ACTOR = "drill (playing the approving operator)"
"""Who the drill says it is when it does what the manual leaves to a person."""


@dataclass(frozen=True)
class Targets:
    """Pass/fail limits, from the configuration's ``[drill]`` section (seconds)."""

    time_to_detect_s: float = 5.0
    time_to_halt_s: float = 5.0
    time_to_first_update_s: float = 30.0
    recovery_time_s: float = 60.0


@dataclass
class Measurements:
    """The report's figures. ``None``: the step does not apply to this scenario (for
    example no halt in ``database-down`` when policy keeps trading); the report shows "n/a"
    and the target is not checked."""

    time_to_detect_s: float | None = None
    time_to_halt_s: float | None = None
    time_to_first_update_s: float | None = None
    recovery_time_s: float | None = None
    acknowledged_orders_lost: int = 0
    ledger_invariant_ok: bool = False
    notices_sent: int = 0
    extra: dict[str, str] = field(default_factory=dict)  # scenario figures, e.g. "restarts"


@dataclass(frozen=True)
class Check:
    """One outcome asserted: ``expected`` and ``seen`` in words a reader understands.

    The ``*_ja`` texts are the Japanese a reader of the report sees; where a scenario gives
    none, the report shows the English text in both columns."""

    name: str
    passed: bool
    expected: str
    seen: str
    name_ja: str = ""
    expected_ja: str = ""
    seen_ja: str = ""


@dataclass
class DrillResult:
    scenario: str
    incident_id: int | None
    measurements: Measurements
    checks: list[Check]
    notes: list[str] = field(default_factory=list)  # what the drill played, what it skipped
    report_paths: list[str] = field(default_factory=list)
    notes_ja: list[str] = field(default_factory=list)  # the same notes in Japanese
    started_at: datetime | None = None
    finished_at: datetime | None = None
    completed: bool = True  # False: stopped midway, so the figures were not measured

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def note(self, ja: str, en: str) -> None:
        """Say what the drill did or skipped, in both languages."""
        self.notes_ja.append(ja)
        self.notes.append(en)

    def failures(self) -> list[str]:
        """Why the drill failed, one line per failed check (empty when it passed)."""
        if not self.checks:
            return ["the drill recorded no check, so nothing was proved"]
        return [f"{check.name}: expected {check.expected}; seen {check.seen}"
                for check in self.checks if not check.passed]


Progress = Callable[[str], None]
"""Tells the person watching what the drill is doing now (one short line per step)."""


@dataclass(frozen=True)
class Scale:
    """How big the drill is: full on a demo system, reduced in the test suite."""

    orders: int = 2_000  # orders submitted as background load
    load_multiple: float = 4.0  # surge: offered rate / configured capacity
    burst: int = 200  # credential-stuffing attempts, flood requests, ...
    timeout_s: float = 60.0  # longest wait for any one step


@dataclass
class DrillContext:
    system: DrillSurface  # what the scenario may touch of the running system
    targets: Targets
    scale: Scale
    progress: Progress
    report_dir: Path | None = None  # where the incident's reports go; None: not written


class Scenario(Protocol):
    name: str  # the CLI argument: "server-down"
    title_en: str
    title_ja: str

    def run(self, context: DrillContext) -> DrillResult: ...


SCALES: dict[str, Scale] = {
    "full": Scale(),
    "reduced": Scale(orders=200, burst=50, timeout_s=30.0),
}
"""The scales ``haltguard drill --scale`` offers; the test suite runs ``reduced``."""
