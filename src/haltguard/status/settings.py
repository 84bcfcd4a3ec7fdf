"""What the status page needs to know that is not in the database: its public name and
address, the update cadence, how often to look for changes, and where to export.

Plain values: ``app/config.py`` builds them from the configuration file and the environment
(``HALTGUARD_STATUS_*``); tests build :class:`StatusSettings` directly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from haltguard.incidents.rules import Severity
from haltguard.responders.settings import PUBLIC_URL_DEFAULT
from haltguard.status.rules import UPDATE_EVERY_MINUTES_DEFAULT
from haltguard.status.texts import Bilingual

PAGE_URL_DEFAULT = f"{PUBLIC_URL_DEFAULT}/status/"
PAGE_NAME_DEFAULT = Bilingual("haltguard 取引所 ステータス", "haltguard exchange status")
REFRESH_INTERVAL_S_DEFAULT = 1.0
REFRESH_INTERVAL_S_MIN = 0.05
LOOP_INTERVAL_S_MIN = 0.5


@dataclass(frozen=True)
class StatusSettings:
    page_id: str = "haltguard"
    name: Bilingual = PAGE_NAME_DEFAULT
    url: str = PAGE_URL_DEFAULT  # the public address of the page, ending in "/"
    update_every_minutes: Mapping[Severity, int | None] = field(
        default_factory=lambda: dict(UPDATE_EVERY_MINUTES_DEFAULT)
    )
    refresh_interval_s: float = REFRESH_INTERVAL_S_DEFAULT
    loop_interval_s: float = 0.0  # 0: the app does not start the status loop
    export_dirs: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")) or not self.url.endswith("/"):
            raise ValueError(
                f"the status page address {self.url!r} must start with http:// or https:// "
                "and end with /, e.g. https://status.example.com/"
            )
        if self.refresh_interval_s < REFRESH_INTERVAL_S_MIN:
            raise ValueError(f"refresh_interval_s must be at least {REFRESH_INTERVAL_S_MIN}")
        if self.loop_interval_s and self.loop_interval_s < LOOP_INTERVAL_S_MIN:
            raise ValueError(f"loop_interval_s must be 0 (off) or at least {LOOP_INTERVAL_S_MIN}")
