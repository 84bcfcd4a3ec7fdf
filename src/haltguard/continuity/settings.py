"""Where continuity reads its plan, register and drill evidence, and the deadlines it keeps.

Plain values: ``app/config.py`` builds them from the configuration file and the environment
(``HALTGUARD_CONTINUITY_*``); tests and the CLI build :class:`ContinuitySettings` directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from haltguard.continuity.bcp import PLAN_EXAMPLE, REGISTER_EXAMPLE
from haltguard.continuity.models import Severity

FINDING_DAYS_DEFAULT: Final = "critical=7,high=30,medium=90,low=180"
"""Days from a finding's first import to its deadline, by severity."""
FINDING_DAYS_MAX: Final = 3_650
INSURANCE_REMIND_DAYS_DEFAULT: Final = 60
INSURANCE_REMIND_DAYS_MAX: Final = 365
REMIND_INTERVAL_S_DEFAULT: Final = 3_600.0
REMIND_INTERVAL_S_MIN: Final = 10.0
REMIND_INTERVAL_S_MAX: Final = 86_400.0


class ContinuitySettingsError(ValueError):
    """A setting that cannot be used; the message names it and the fix."""


def parse_finding_days(text: str) -> dict[Severity, int]:
    """``critical=7,high=30,...`` as days by severity; severities not named keep the
    defaults. A ValueError says what is wrong."""
    days = {Severity(name): int(value) for name, value in
            (part.split("=") for part in FINDING_DAYS_DEFAULT.split(","))}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        name, equals, value = part.partition("=")
        if not equals or name.strip() not in Severity.__members__.values():
            raise ValueError(f"{part!r}: write severity=days with a severity of "
                             + ", ".join(Severity))
        if not value.strip().isdigit() or not 1 <= int(value) <= FINDING_DAYS_MAX:
            raise ValueError(f"{part!r}: days must be 1..{FINDING_DAYS_MAX}")
        days[Severity(name.strip())] = int(value)
    return days


@dataclass(frozen=True)
class ContinuitySettings:
    plan_file: Path = PLAN_EXAMPLE
    """The business continuity plan (YAML); the shipped example until one is configured."""
    register_file: Path = REGISTER_EXAMPLE
    """The risk register (YAML); the shipped example until one is configured."""
    drill_report_dirs: tuple[Path, ...] = ()
    """Where drill reports (and their ``.json`` records) are found, searched recursively."""
    report_dir: Path = Path("continuity-reports")
    """Where ``bcp check`` writes its report."""
    finding_days: Mapping[Severity, int] = field(
        default_factory=lambda: parse_finding_days(""))
    pip_audit_severity: Severity = Severity.HIGH
    """The severity of a pip-audit finding (pip-audit does not say one)."""
    insurance_remind_days: int = INSURANCE_REMIND_DAYS_DEFAULT
    """Days before a policy expires from which its owner is reminded (daily)."""
    remind_interval_s: float = REMIND_INTERVAL_S_DEFAULT
    """Seconds between the reminder runs inside ``serve``; 0: none there."""
    rules_file: Path | None = None
    """The detection rules in force (``detection.rules_file``; None: the shipped ones): a
    register control naming a rule is checked against them."""

    def __post_init__(self) -> None:
        if not 1 <= self.insurance_remind_days <= INSURANCE_REMIND_DAYS_MAX:
            raise ContinuitySettingsError(
                f"continuity.insurance_remind_days must be 1..{INSURANCE_REMIND_DAYS_MAX}, "
                f"got {self.insurance_remind_days}")
        if self.remind_interval_s != 0 and not (
                REMIND_INTERVAL_S_MIN <= self.remind_interval_s <= REMIND_INTERVAL_S_MAX):
            raise ContinuitySettingsError(
                f"continuity.remind_interval_s must be 0 or {REMIND_INTERVAL_S_MIN:g}.."
                f"{REMIND_INTERVAL_S_MAX:g}, got {self.remind_interval_s}")
        if set(self.finding_days) != set(Severity):
            raise ContinuitySettingsError("continuity.finding_days must give every severity")
