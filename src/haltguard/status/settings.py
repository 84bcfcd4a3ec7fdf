"""What the status page needs to know that is not in the database: its public name and
address, the update cadence, how often to look for changes, and where to export."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from haltguard.incidents.rules import Severity
from haltguard.status.rules import UPDATE_EVERY_MINUTES_DEFAULT, parse_update_every
from haltguard.status.texts import Bilingual

PAGE_URL_DEFAULT = "http://127.0.0.1:8000/status/"
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StatusSettings:
        """``HALTGUARD_STATUS_URL``, ``HALTGUARD_STATUS_NAME_JA`` / ``_EN``,
        ``HALTGUARD_STATUS_UPDATE_EVERY`` (``SEV1=15,SEV2=30,SEV3=60,SEV4=off``),
        ``HALTGUARD_STATUS_LOOP_S`` (seconds between ticks of the status loop started with
        the app; 0 or unset: not started) and ``HALTGUARD_STATUS_EXPORT_DIR`` (directories,
        separated by ``:``, that every change is exported to)."""
        env = os.environ if environ is None else environ
        defaults = cls()
        exports = tuple(Path(part) for part in env.get("HALTGUARD_STATUS_EXPORT_DIR", "")
                        .split(os.pathsep) if part)
        return cls(
            url=env.get("HALTGUARD_STATUS_URL", defaults.url),
            name=Bilingual(env.get("HALTGUARD_STATUS_NAME_JA", defaults.name.ja),
                           env.get("HALTGUARD_STATUS_NAME_EN", defaults.name.en)),
            update_every_minutes=parse_update_every(env.get("HALTGUARD_STATUS_UPDATE_EVERY", "")),
            loop_interval_s=float(env.get("HALTGUARD_STATUS_LOOP_S", "0") or 0),
            export_dirs=exports,
        )
