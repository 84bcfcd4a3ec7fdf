"""Backup tables and the shapes other domains read.

Three kinds of record, each written once when the thing it records finished:

- ``backup_records``: one backup taken (or that failed), where it went, the venue seq and
  database state it holds, and the SHA-256 of its manifest;
- ``backup_verifications``: one ``backup verify`` (restored into scratch, replayed, checked);
- ``backup_restores``: one restore into a data directory, by an operator or by the
  ``disk-loss`` drill, with the restore time and what was lost (the real RPO).

:class:`BackupEvidence` is the stable contract the continuity domain (``bcp check``) reads
through :func:`haltguard.backup.service.latest_evidence`; its fields only ever grow.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, BigInteger, Boolean, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from haltguard.db.base import Base
from haltguard.db.types import UtcDateTime

BACKUP_ID_LENGTH = 40
TARGET_LENGTH_MAX = 500
DIGEST_LENGTH = 64


class BackupStatus(StrEnum):
    OK = "ok"
    """Every file written to the target and the manifest last: the backup can be restored."""
    FAILED = "failed"
    """Something went wrong; ``error`` says what. Nothing of it counts as a backup."""


class RestoreKind(StrEnum):
    RESTORE = "restore"
    """An operator's ``haltguard backup restore``."""
    DRILL = "drill"
    """The ``disk-loss`` drill: data directory deleted, restored, measured."""


# --- tables -----------------------------------------------------------------------------


class BackupRecord(Base):
    """One backup attempt, as it ended."""

    __tablename__ = "backup_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backup_id: Mapped[str] = mapped_column(String(BACKUP_ID_LENGTH), index=True)
    """The backup's name at its target (``20261208T013000Z-1a2b3c``); empty for a failure
    before one was chosen."""
    target: Mapped[str] = mapped_column(String(TARGET_LENGTH_MAX))
    """The target URL without credentials (``file:///mnt/backup``, ``s3://bucket/prefix``)."""
    status: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    venue_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    """The last journal seq the backup holds (the venue's state at that seq)."""
    venue_ts_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    """The sequencer's time of that seq: what a restore loses is measured from it."""
    database_kind: Mapped[str] = mapped_column(String(16), default="")
    """``sqlite``, ``postgresql`` or empty (no database in the backup)."""
    files: Mapped[int] = mapped_column(Integer, default=0)
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    """Bytes written to the target (after compression and encryption)."""
    source_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    compression: Mapped[str] = mapped_column(String(16), default="")
    manifest_sha256: Mapped[str] = mapped_column(String(DIGEST_LENGTH), default="")
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    scheduled: Mapped[bool] = mapped_column(Boolean, default=False)
    """Taken by the schedule inside ``serve`` rather than by an operator."""
    error: Mapped[str] = mapped_column(Text, default="")


class BackupVerification(Base):
    """One ``backup verify``: what was restored into scratch and what the checks found."""

    __tablename__ = "backup_verifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backup_id: Mapped[str] = mapped_column(String(BACKUP_ID_LENGTH), index=True)
    target: Mapped[str] = mapped_column(String(TARGET_LENGTH_MAX))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    ok: Mapped[bool] = mapped_column(Boolean, index=True)
    venue_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    state_hash: Mapped[str] = mapped_column(String(DIGEST_LENGTH), default="")
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    problems: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Each problem found, naming the file when a file is at fault."""


class BackupRestore(Base):
    """One restore into a data directory (an operator's, or the ``disk-loss`` drill's)."""

    __tablename__ = "backup_restores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    backup_id: Mapped[str] = mapped_column(String(BACKUP_ID_LENGTH))
    target: Mapped[str] = mapped_column(String(TARGET_LENGTH_MAX))
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    restore_s: Mapped[float] = mapped_column(Float, default=0.0)
    """From the start of the restore to a venue recovered from it (the real RTO part)."""
    commands_lost: Mapped[int] = mapped_column(BigInteger, default=0)
    """Journaled commands after the backup's seq that the restore could not bring back."""
    data_lost_s: Mapped[float] = mapped_column(Float, default=0.0)
    """Sequencer time between the backup's last seq and the last seq lost (the real RPO)."""
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# --- shapes other domains read ----------------------------------------------------------


class BackupEvidence(BaseModel):
    """What the backups prove, for the continuity plan's check (``bcp check``).

    Every ``*_at`` is UTC; ``None`` means there is no such record yet (which is itself a
    finding for a plan that needs one). Read it with
    :func:`haltguard.backup.service.latest_evidence`.
    """

    model_config = ConfigDict(frozen=True)

    last_good_backup_at: datetime | None = None
    """When the newest backup with status ``ok`` finished."""
    last_good_backup_id: str | None = None
    last_good_backup_target: str | None = None
    last_good_backup_seq: int | None = None
    last_failed_backup_at: datetime | None = None
    """When the newest failed backup ended (``None``: none failed)."""
    last_failure: str | None = None
    last_verified_at: datetime | None = None
    """When the newest *passing* ``backup verify`` finished (the last verified restore)."""
    last_verified_backup_id: str | None = None
    last_verify_failed_at: datetime | None = None
    """When the newest failing ``backup verify`` finished, if any did."""
    last_drill_at: datetime | None = None
    """When the newest ``disk-loss`` drill finished."""
    last_drill_passed: bool | None = None
    last_drill_restore_s: float | None = None
    """The drill's measured restore time (compare with the plan's RTO)."""
    last_drill_data_lost_s: float | None = None
    """The drill's measured data loss in seconds of journal time (compare with the RPO)."""
    last_drill_commands_lost: int | None = None

    def backup_age_s(self, now: datetime) -> float | None:
        """Seconds since the last good backup at ``now``: the RPO if the disk died now."""
        if self.last_good_backup_at is None:
            return None
        return max(0.0, (now - self.last_good_backup_at).total_seconds())
