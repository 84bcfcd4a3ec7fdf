"""backup: records of backups taken, verifications and restores

Revision ID: 0012_backup
Revises: 0002
Create Date: 2026-12-08 02:00:00

Each row is written once, when what it records ended; the continuity plan's check reads the
newest of each (``haltguard.backup.service.latest_evidence``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_backup"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backup_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("backup_id", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("venue_seq", sa.BigInteger(), nullable=False),
        sa.Column("venue_ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("database_kind", sa.String(length=16), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("source_bytes", sa.BigInteger(), nullable=False),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.Column("compression", sa.String(length=16), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("scheduled", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_records")),
    )
    with op.batch_alter_table("backup_records") as batch_op:
        batch_op.create_index(batch_op.f("ix_backup_records_backup_id"), ["backup_id"])
        batch_op.create_index(batch_op.f("ix_backup_records_status"), ["status"])
        batch_op.create_index(batch_op.f("ix_backup_records_finished_at"), ["finished_at"])
    op.create_table(
        "backup_verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("backup_id", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("venue_seq", sa.BigInteger(), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_verifications")),
    )
    with op.batch_alter_table("backup_verifications") as batch_op:
        batch_op.create_index(batch_op.f("ix_backup_verifications_backup_id"), ["backup_id"])
        batch_op.create_index(batch_op.f("ix_backup_verifications_finished_at"),
                              ["finished_at"])
        batch_op.create_index(batch_op.f("ix_backup_verifications_ok"), ["ok"])
    op.create_table(
        "backup_restores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("backup_id", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("restore_s", sa.Float(), nullable=False),
        sa.Column("commands_lost", sa.BigInteger(), nullable=False),
        sa.Column("data_lost_s", sa.Float(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_restores")),
    )
    with op.batch_alter_table("backup_restores") as batch_op:
        batch_op.create_index(batch_op.f("ix_backup_restores_kind"), ["kind"])
        batch_op.create_index(batch_op.f("ix_backup_restores_finished_at"), ["finished_at"])


def downgrade() -> None:
    op.drop_table("backup_restores")
    op.drop_table("backup_verifications")
    op.drop_table("backup_records")
