"""Recording backups, verifications and restores, and reading them back as evidence.

Plain functions over a session with the time passed in. :func:`latest_evidence` is the
contract the continuity domain reads (``bcp check``); its shape is
:class:`~haltguard.backup.models.BackupEvidence`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from haltguard.backup.flows import RestoreOutcome, VerifyOutcome
from haltguard.backup.manifest import Manifest
from haltguard.backup.models import (
    BackupEvidence,
    BackupRecord,
    BackupRestore,
    BackupStatus,
    BackupVerification,
    RestoreKind,
)

ERROR_LENGTH_MAX = 4_000
LIST_LIMIT_MAX = 200


def record_backup(
    session: Session, manifest: Manifest, target: str, *, started_at: datetime,
    finished_at: datetime, scheduled: bool = False,
) -> BackupRecord:
    """Record a backup that completed (its manifest written)."""
    venue, database = manifest.venue, manifest.database
    record = BackupRecord(
        backup_id=manifest.backup_id, target=target, status=BackupStatus.OK.value,
        started_at=started_at, finished_at=finished_at,
        venue_seq=venue.last_seq if venue else 0, venue_ts_ns=venue.last_ts if venue else 0,
        database_kind=database.kind if database else "", files=len(manifest.files),
        stored_bytes=manifest.stored_bytes, source_bytes=manifest.source_bytes,
        encrypted=manifest.encrypted, compression=manifest.compression,
        manifest_sha256=hashlib.sha256(manifest.encode()).hexdigest(),
        duration_s=(finished_at - started_at).total_seconds(), scheduled=scheduled, error="",
    )
    session.add(record)
    session.flush()
    return record


def record_backup_failure(
    session: Session, target: str, error: str, *, started_at: datetime,
    finished_at: datetime, scheduled: bool = False,
) -> BackupRecord:
    """Record a backup that failed; ``error`` is what the operator is told."""
    record = BackupRecord(
        backup_id="", target=target[:500], status=BackupStatus.FAILED.value,
        started_at=started_at, finished_at=finished_at, venue_seq=0, venue_ts_ns=0,
        database_kind="", files=0, stored_bytes=0, source_bytes=0, encrypted=False,
        compression="", manifest_sha256="",
        duration_s=(finished_at - started_at).total_seconds(), scheduled=scheduled,
        error=error[:ERROR_LENGTH_MAX],
    )
    session.add(record)
    session.flush()
    return record


def record_verification(
    session: Session, outcome: VerifyOutcome, *, finished_at: datetime
) -> BackupVerification:
    record = BackupVerification(
        backup_id=outcome.backup_id, target=outcome.target,
        started_at=_before(finished_at, outcome.duration_s), finished_at=finished_at,
        ok=outcome.ok,
        venue_seq=outcome.venue_seq, state_hash=outcome.state_hash,
        duration_s=outcome.duration_s, problems=list(outcome.problems),
    )
    session.add(record)
    session.flush()
    return record


def record_restore(
    session: Session, outcome: RestoreOutcome, *, kind: RestoreKind, finished_at: datetime,
    ok: bool = True, commands_lost: int = 0, data_lost_s: float = 0.0,
    detail: dict[str, Any] | None = None,
) -> BackupRestore:
    """Record a restore (an operator's, or the ``disk-loss`` drill's with its losses)."""
    record = BackupRestore(
        kind=kind.value, backup_id=outcome.backup_id, target=outcome.target,
        finished_at=finished_at, ok=ok, restore_s=outcome.restore_s,
        commands_lost=commands_lost, data_lost_s=data_lost_s,
        detail={"venue_seq": outcome.venue_seq, "state_hash": outcome.state_hash,
                "destination": str(outcome.destination), **(detail or {})},
    )
    session.add(record)
    session.flush()
    return record


def _before(moment: datetime, seconds: float) -> datetime:
    return moment - timedelta(seconds=seconds)


def list_backups(session: Session, *, limit: int = 50) -> list[BackupRecord]:
    """The newest backup records first (failures included)."""
    return list(session.scalars(
        select(BackupRecord).order_by(BackupRecord.finished_at.desc(), BackupRecord.id.desc())
        .limit(min(limit, LIST_LIMIT_MAX))))


def list_verifications(session: Session, *, limit: int = 50) -> list[BackupVerification]:
    return list(session.scalars(
        select(BackupVerification)
        .order_by(BackupVerification.finished_at.desc(), BackupVerification.id.desc())
        .limit(min(limit, LIST_LIMIT_MAX))))


def last_good_backup(session: Session) -> BackupRecord | None:
    return session.scalars(
        select(BackupRecord).where(BackupRecord.status == BackupStatus.OK.value)
        .order_by(BackupRecord.finished_at.desc(), BackupRecord.id.desc()).limit(1)).first()


def latest_evidence(session: Session) -> BackupEvidence:
    """What the backups prove now: the last good and last failed backup, the last passing
    and failing verify, and the last ``disk-loss`` drill (each ``None`` when there is none).
    """
    good = last_good_backup(session)
    failed = session.scalars(
        select(BackupRecord).where(BackupRecord.status == BackupStatus.FAILED.value)
        .order_by(BackupRecord.finished_at.desc(), BackupRecord.id.desc()).limit(1)).first()
    verified = session.scalars(
        select(BackupVerification).where(BackupVerification.ok.is_(True))
        .order_by(BackupVerification.finished_at.desc(), BackupVerification.id.desc())
        .limit(1)).first()
    verify_failed = session.scalars(
        select(BackupVerification).where(BackupVerification.ok.is_(False))
        .order_by(BackupVerification.finished_at.desc(), BackupVerification.id.desc())
        .limit(1)).first()
    drill = session.scalars(
        select(BackupRestore).where(BackupRestore.kind == RestoreKind.DRILL.value)
        .order_by(BackupRestore.finished_at.desc(), BackupRestore.id.desc()).limit(1)).first()
    return BackupEvidence(
        last_good_backup_at=good.finished_at if good else None,
        last_good_backup_id=good.backup_id if good else None,
        last_good_backup_target=good.target if good else None,
        last_good_backup_seq=good.venue_seq if good else None,
        last_failed_backup_at=failed.finished_at if failed else None,
        last_failure=failed.error if failed else None,
        last_verified_at=verified.finished_at if verified else None,
        last_verified_backup_id=verified.backup_id if verified else None,
        last_verify_failed_at=verify_failed.finished_at if verify_failed else None,
        last_drill_at=drill.finished_at if drill else None,
        last_drill_passed=drill.ok if drill else None,
        last_drill_restore_s=drill.restore_s if drill else None,
        last_drill_data_lost_s=drill.data_lost_s if drill else None,
        last_drill_commands_lost=drill.commands_lost if drill else None,
    )
