"""Where corrections read the journal and the published policy.

Plain values: ``app/config.py`` builds them from the configuration file and the environment
(``HALTGUARD_CORRECTIONS_*``); tests build :class:`CorrectionsSettings` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

POLICY_FILE_SHIPPED: Final = Path(__file__).with_name("policies") / "erroneous-trades.yaml"
"""The example erroneous-trade policy shipped with haltguard (copy it and make it yours)."""


@dataclass(frozen=True)
class CorrectionsSettings:
    journal_dir: Path
    """The venue's data directory: its journal is reviewed and rollbacks are planned on it."""
    policy_file: Path = POLICY_FILE_SHIPPED
    """The published erroneous-trade policy (YAML, ja/en)."""
