"""notify: subscribers, notices and the delivery outbox

Revision ID: 0005_notify
Revises: 0002
Create Date: 2026-11-25 09:00:00

One delivery row per (notice, subscriber), unique on the pair, is what makes "sent at most
once per subscriber and notice" a property of the database rather than of the code.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_notify"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notify_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject_ja", sa.String(length=200), nullable=False),
        sa.Column("subject_en", sa.String(length=200), nullable=False),
        sa.Column("body_ja", sa.Text(), nullable=False),
        sa.Column("body_en", sa.Text(), nullable=False),
        sa.Column("html_ja", sa.Text(), nullable=True),
        sa.Column("html_en", sa.Text(), nullable=True),
        sa.Column("link", sa.Text(), nullable=False),
        sa.Column("all_components", sa.Boolean(), nullable=False),
        sa.Column("deliveries_queued", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_notices")),
        sa.UniqueConstraint("key", name=op.f("uq_notify_notices_key")),
    )
    op.create_table(
        "notify_secrets",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.LargeBinary(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_secrets")),
    )
    op.create_table(
        "notify_subscribers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("address_digest", sa.String(length=64), nullable=False),
        sa.Column("contact_email", sa.Text(), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("all_components", sa.Boolean(), nullable=False),
        sa.Column("anti_phishing_phrase", sa.String(length=64), nullable=False),
        sa.Column("signing_secret", sa.String(length=64), nullable=False),
        sa.Column("token_generation", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmation_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_subscribers")),
        sa.UniqueConstraint("kind", "address_digest", name=op.f("uq_notify_subscribers_kind")),
    )
    with op.batch_alter_table("notify_subscribers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notify_subscribers_status"), ["status"], unique=False)

    op.create_table(
        "notify_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["notice_id"],
            ["notify_notices.id"],
            name=op.f("fk_notify_deliveries_notice_id_notify_notices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["notify_subscribers.id"],
            name=op.f("fk_notify_deliveries_subscriber_id_notify_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_deliveries")),
        sa.UniqueConstraint(
            "notice_id", "subscriber_id", name=op.f("uq_notify_deliveries_notice_id")
        ),
    )
    with op.batch_alter_table("notify_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notify_deliveries_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notify_deliveries_claim_token"), ["claim_token"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notify_deliveries_subscriber_id"), ["subscriber_id"], unique=False
        )

    op.create_table(
        "notify_notice_components",
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("component_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["notice_id"],
            ["notify_notices.id"],
            name=op.f("fk_notify_notice_components_notice_id_notify_notices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "notice_id", "component_id", name=op.f("pk_notify_notice_components")
        ),
    )
    op.create_table(
        "notify_subscriber_components",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("component_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["notify_subscribers.id"],
            name=op.f("fk_notify_subscriber_components_subscriber_id_notify_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "subscriber_id", "component_id", name=op.f("pk_notify_subscriber_components")
        ),
    )
    with op.batch_alter_table("notify_subscriber_components", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notify_subscriber_components_component_id"),
            ["component_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("notify_subscriber_components", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notify_subscriber_components_component_id"))
    op.drop_table("notify_subscriber_components")
    op.drop_table("notify_notice_components")
    with op.batch_alter_table("notify_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notify_deliveries_subscriber_id"))
        batch_op.drop_index(batch_op.f("ix_notify_deliveries_claim_token"))
        batch_op.drop_index("ix_notify_deliveries_due")
    op.drop_table("notify_deliveries")
    with op.batch_alter_table("notify_subscribers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notify_subscribers_status"))
    op.drop_table("notify_subscribers")
    op.drop_table("notify_secrets")
    op.drop_table("notify_notices")
