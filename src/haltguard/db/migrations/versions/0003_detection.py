"""detection: the decisions log and the rule sets that came into force

Revision ID: 0003_detection
Revises: 0002
Create Date: 2026-11-25 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_detection"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "detection_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("ruleset_version", sa.String(length=32), nullable=False),
        sa.Column("classification", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("signal_source", sa.String(length=128), nullable=False),
        sa.Column("signal_name", sa.String(length=128), nullable=False),
        sa.Column("signal_value", sa.String(length=64), nullable=False),
        sa.Column("signal_ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("observed", sa.String(length=128), nullable=False),
        sa.Column("condition", sa.String(length=128), nullable=False),
        sa.Column("planned", sa.JSON(), nullable=False),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"],
            name=op.f("fk_detection_decisions_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detection_decisions")),
    )
    with op.batch_alter_table("detection_decisions", schema=None) as batch_op:
        for column in ("decided_at", "dry_run", "incident_id", "key", "rule_id"):
            batch_op.create_index(
                batch_op.f(f"ix_detection_decisions_{column}"), [column], unique=False
            )
    op.create_table(
        "detection_rule_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("loaded_by", sa.String(length=128), nullable=False),
        sa.Column("rule_count", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detection_rule_sets")),
    )
    with op.batch_alter_table("detection_rule_sets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_detection_rule_sets_version"), ["version"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("detection_rule_sets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_detection_rule_sets_version"))
    op.drop_table("detection_rule_sets")
    with op.batch_alter_table("detection_decisions", schema=None) as batch_op:
        for column in ("decided_at", "dry_run", "incident_id", "key", "rule_id"):
            batch_op.drop_index(batch_op.f(f"ix_detection_decisions_{column}"))
    op.drop_table("detection_decisions")
