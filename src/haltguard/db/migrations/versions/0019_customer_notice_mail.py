"""customer notice mail: the outbox that emails each customer notice

Revision ID: 0019_customer_notice_mail
Revises: 0014_customers
Create Date: 2026-12-08 03:30:00

One row per notice (unique), written with the notice: queued, sent, or failed with the
error; retried with backoff until ``next_attempt_at``. It follows the customers branch
because it refers to ``customer_notices``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_customer_notice_mail"
down_revision: str | None = "0014_customers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_notice_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["customer_notices.id"],
            name=op.f("fk_customer_notice_mail_notice_id_customer_notices"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_notice_mail")),
        sa.UniqueConstraint("notice_id", name=op.f("uq_customer_notice_mail_notice_id")),
    )
    op.create_index("ix_customer_notice_mail_due", "customer_notice_mail",
                    ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_customer_notice_mail_due", table_name="customer_notice_mail")
    op.drop_table("customer_notice_mail")
