"""Where impact analysis reads the venue's journal. Plain values: the composition root builds
:class:`ImpactSettings` from the operations settings (``data_dir``, the directory the venue
journals in when ``serve`` runs it); tests build it directly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

LIST_ITEMS_MAX: Final = 200
"""Items of each list an API answer carries (the counts are totals; the CSV has them all)."""


@dataclass(frozen=True)
class ImpactSettings:
    data_dir: Path
    """The venue's data directory (its ``segments/`` and ``snapshots/``)."""
