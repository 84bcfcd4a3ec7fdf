"""corrections: trade correction requests, their decisions and the notices to accounts

Revision ID: 0016_corrections
Revises: 0002
Create Date: 2026-12-08 02:00:00

A request is written once with the venue commands it sends; its decision (unique per request)
and the notices per account live in their own rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_corrections"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "correction_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("proposed_by", sa.String(length=200), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("commands", sa.JSON(), nullable=False),
        sa.Column("accounts", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("allow_debit", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"],
                                name=op.f("fk_correction_requests_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_correction_requests")),
    )
    with op.batch_alter_table("correction_requests") as batch_op:
        batch_op.create_index(batch_op.f("ix_correction_requests_digest"), ["digest"])
        batch_op.create_index(batch_op.f("ix_correction_requests_incident_id"), ["incident_id"])
    op.create_table(
        "correction_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("venue_events", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["correction_requests.id"],
            name=op.f("fk_correction_decisions_request_id_correction_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_correction_decisions")),
        sa.UniqueConstraint("request_id", name=op.f("uq_correction_decisions_request_id")),
    )
    op.create_table(
        "correction_notices",
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("account", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("subject_en", sa.String(length=200), nullable=False),
        sa.Column("body_en", sa.Text(), nullable=False),
        sa.Column("subject_ja", sa.String(length=200), nullable=False),
        sa.Column("body_ja", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["correction_requests.id"],
            name=op.f("fk_correction_notices_request_id_correction_requests")),
        sa.PrimaryKeyConstraint("request_id", "account", name=op.f("pk_correction_notices")),
    )


def downgrade() -> None:
    op.drop_table("correction_notices")
    op.drop_table("correction_decisions")
    with op.batch_alter_table("correction_requests") as batch_op:
        batch_op.drop_index(batch_op.f("ix_correction_requests_incident_id"))
        batch_op.drop_index(batch_op.f("ix_correction_requests_digest"))
    op.drop_table("correction_requests")
