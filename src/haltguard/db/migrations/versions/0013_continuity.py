"""continuity: insurance policies, training, vulnerability findings, software updates,
reminders

Revision ID: 0013_continuity
Revises: 0002
Create Date: 2026-12-08 01:45:00

The continuity plan and the risk register are files; these tables keep the records that
change day by day. No foreign key reaches another domain's tables (an update names the status
page's maintenance by id, checked by the service), so this branch applies in any order
beside the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_continuity"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "continuity_insurance_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("insurer", sa.String(length=200), nullable=False),
        sa.Column("policy_number", sa.String(length=100), nullable=False),
        sa.Column("cover_ja", sa.Text(), nullable=False),
        sa.Column("cover_en", sa.Text(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("limit_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("contacts", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_continuity_insurance_policies")),
    )
    with op.batch_alter_table("continuity_insurance_policies") as batch_op:
        batch_op.create_index(batch_op.f("ix_continuity_insurance_policies_expires_on"),
                              ["expires_on"])
    op.create_table(
        "continuity_training",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("course", sa.String(length=200), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("completed_on", sa.Date(), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_continuity_training")),
    )
    with op.batch_alter_table("continuity_training") as batch_op:
        batch_op.create_index(batch_op.f("ix_continuity_training_due_on"), ["due_on"])
        batch_op.create_index("ix_continuity_training_person", ["person", "kind"])
    op.create_table(
        "continuity_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("finding_key", sa.String(length=300), nullable=False),
        sa.Column("scanner", sa.String(length=100), nullable=False),
        sa.Column("identifier", sa.String(length=200), nullable=False),
        sa.Column("package", sa.String(length=200), nullable=False),
        sa.Column("installed_version", sa.String(length=100), nullable=False),
        sa.Column("fix_versions", sa.JSON(), nullable=False),
        sa.Column("location", sa.String(length=500), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=200), nullable=False),
        sa.Column("closure_note", sa.Text(), nullable=False),
        sa.Column("update_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_continuity_findings")),
        sa.UniqueConstraint("finding_key", name=op.f("uq_continuity_findings_finding_key")),
    )
    with op.batch_alter_table("continuity_findings") as batch_op:
        batch_op.create_index(batch_op.f("ix_continuity_findings_due_on"), ["due_on"])
        batch_op.create_index(batch_op.f("ix_continuity_findings_status"), ["status"])
    op.create_table(
        "continuity_software_updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("component", sa.String(length=200), nullable=False),
        sa.Column("from_version", sa.String(length=100), nullable=False),
        sa.Column("to_version", sa.String(length=100), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_by", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("maintenance_id", sa.Integer(), nullable=True),
        sa.Column("fixes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_continuity_software_updates")),
    )
    with op.batch_alter_table("continuity_software_updates") as batch_op:
        batch_op.create_index(batch_op.f("ix_continuity_software_updates_applied_at"),
                              ["applied_at"])
    op.create_table(
        "continuity_reminders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("remind_on", sa.Date(), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("page_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_continuity_reminders")),
        sa.UniqueConstraint("subject", "remind_on", name="uq_continuity_reminders_subject"),
    )


def downgrade() -> None:
    for table in ("continuity_reminders", "continuity_software_updates", "continuity_findings",
                  "continuity_training", "continuity_insurance_policies"):
        op.drop_table(table)
