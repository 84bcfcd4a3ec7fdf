"""Where compensation reads its policies and reference trades, and how it pays.

Plain values: ``app/config.py`` builds them from the configuration file and the environment
(``HALTGUARD_COMPENSATION_*``); tests build :class:`CompensationSettings` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from haltguard.venue.commands import COMPENSATION_LINES_MAX

POLICIES_DIR_SHIPPED = Path(__file__).with_name("policies")
"""The example policies shipped with haltguard (the 2018 shape, refused orders, fee refund,
goodwill)."""
PAYOUT_BATCH_LINES_LIMIT: Final = COMPENSATION_LINES_MAX
"""The one bound: the venue refuses a credit command of more lines than this."""
PAYOUT_BATCH_LINES_DEFAULT: Final = PAYOUT_BATCH_LINES_LIMIT
"""The venue's largest credit command; benchmarks/bench_payout.py pays a million lines in
about 50 s with it on a loaded machine."""
STATEMENTS_SEND_BATCH_DEFAULT = 200
STATEMENTS_SEND_BATCH_LIMIT = 5_000


class CompensationSettingsError(ValueError):
    """A setting that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class CompensationSettings:
    journal_dir: Path
    """The venue's data directory: its journal and snapshots are read for the cut-off
    balances and the impact analysis."""
    reference_dir: Path
    """Where reference trades CSVs are put for a run; a proposal names a file in it, never
    a path, so the API cannot be used to read other files of the server."""
    policies_dir: Path = POLICIES_DIR_SHIPPED
    """Where the policy files are; a proposal names files in it."""
    payout_batch_lines_max: int = PAYOUT_BATCH_LINES_DEFAULT
    """Lines per credit command sent to the venue (one journaled command, one fsync); at
    most the venue's ``COMPENSATION_LINES_MAX``."""
    statements_send_batch_max: int = STATEMENTS_SEND_BATCH_DEFAULT
    """Statements emailed per request; the CLI sends the contacts in parts of this size."""

    def __post_init__(self) -> None:
        checks = (
            ("compensation.payout_batch_lines_max", self.payout_batch_lines_max,
             PAYOUT_BATCH_LINES_LIMIT),
            ("compensation.statements_send_batch_max", self.statements_send_batch_max,
             STATEMENTS_SEND_BATCH_LIMIT),
        )
        for name, value, high in checks:
            if not 1 <= value <= high:
                raise CompensationSettingsError(f"{name} must be 1..{high}, got {value}")
