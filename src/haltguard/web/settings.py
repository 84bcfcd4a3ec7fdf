"""What the operations service needs to start: where its database is, and nothing secret."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from haltguard.db.session import DEFAULT_DATA_DIR, database_url


@dataclass(frozen=True)
class Settings:
    database_url: str
    data_dir: Path = DEFAULT_DATA_DIR
    migrate_on_start: bool = True  # bring the schema to the newest migration at start

    @classmethod
    def from_env(cls, data_dir: Path | None = None) -> Settings:
        """``HALTGUARD_DATABASE_URL`` if set, else SQLite under ``HALTGUARD_DATA_DIR`` or
        ``./data``."""
        directory = data_dir or Path(os.environ.get("HALTGUARD_DATA_DIR", DEFAULT_DATA_DIR))
        return cls(database_url=database_url(directory), data_dir=directory)
