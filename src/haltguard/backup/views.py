"""HTTP routes of the backup domain, thin and read-only: the backup evidence (what the
continuity plan's check reads) and the newest backup and verify records. Taking, verifying
and restoring backups are the ``haltguard backup`` commands' and the schedule's, which work
on the files directly; they need ``continuity.read``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from haltguard.backup import service
from haltguard.backup.models import BackupEvidence
from haltguard.security.dependencies import AuthenticatedOperator, require
from haltguard.security.permissions import Action
from haltguard.web.dependencies import SessionDep
from haltguard.web.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api/backups", tags=["backups"], responses=ERROR_RESPONSES)

Reader = Annotated[AuthenticatedOperator, Depends(require(Action.CONTINUITY_READ))]


class BackupRecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    backup_id: str
    target: str
    status: str
    started_at: datetime
    finished_at: datetime
    venue_seq: int
    database_kind: str
    files: int
    stored_bytes: int
    source_bytes: int
    encrypted: bool
    compression: str
    duration_s: float
    scheduled: bool
    error: str


class VerificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    backup_id: str
    target: str
    finished_at: datetime
    ok: bool
    venue_seq: int
    state_hash: str
    duration_s: float
    problems: list[str]


class BackupsOut(BaseModel):
    evidence: BackupEvidence
    backups: list[BackupRecordOut]
    verifications: list[VerificationOut]


@router.get("", response_model=BackupsOut)
def list_backups(
    _operator: Reader, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=service.LIST_LIMIT_MAX)] = 20,
) -> BackupsOut:
    """The backup evidence and the newest backups and verifications (failures included)."""
    return BackupsOut(
        evidence=service.latest_evidence(session),
        backups=[BackupRecordOut.model_validate(record)
                 for record in service.list_backups(session, limit=limit)],
        verifications=[VerificationOut.model_validate(record)
                       for record in service.list_verifications(session, limit=limit)],
    )
