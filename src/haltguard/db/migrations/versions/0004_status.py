"""status page: components and their history, public updates, maintenance, cadence pages

Revision ID: 0004_status
Revises: 0002
Create Date: 2026-11-25 05:52:15

The history of component statuses is what the 90-day uptime bars are drawn from; public
updates link to the incident timeline entry that records them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_status"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "status_components",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "group",
                "market",
                "deposits",
                "withdrawals",
                "service",
                name="componentkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("group_key", sa.String(length=64), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name_ja", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("description_ja", sa.Text(), nullable=False),
        sa.Column("description_en", sa.Text(), nullable=False),
        sa.Column("showcase", sa.Boolean(), nullable=False),
        sa.Column("only_show_if_degraded", sa.Boolean(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "operational",
                "degraded_performance",
                "partial_outage",
                "major_outage",
                "under_maintenance",
                name="componentstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "automatic_status",
            sa.Enum(
                "operational",
                "degraded_performance",
                "partial_outage",
                "major_outage",
                "under_maintenance",
                name="componentstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "override_status",
            sa.Enum(
                "operational",
                "degraded_performance",
                "partial_outage",
                "major_outage",
                "under_maintenance",
                name="componentstatus",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("override_note", sa.Text(), nullable=False),
        sa.Column("override_by", sa.String(length=64), nullable=True),
        sa.Column("override_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_components")),
        sa.UniqueConstraint("key", name=op.f("uq_status_components_key")),
    )
    op.create_table(
        "status_maintenances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name_ja", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scheduled_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "scheduled",
                "in_progress",
                "verifying",
                "completed",
                name="maintenancestatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_maintenances")),
    )
    op.create_table(
        "status_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_revision")),
    )
    op.create_table(
        "status_cadence_pages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("page_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_status_cadence_pages_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_cadence_pages")),
        sa.UniqueConstraint(
            "incident_id", "due_at", name=op.f("uq_status_cadence_pages_incident_id")
        ),
    )
    with op.batch_alter_table("status_cadence_pages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_status_cadence_pages_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "status_component_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("component_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "operational",
                "degraded_performance",
                "partial_outage",
                "major_outage",
                "under_maintenance",
                name="componentstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["component_id"],
            ["status_components.id"],
            name=op.f("fk_status_component_history_component_id_status_components"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_component_history")),
    )
    with op.batch_alter_table("status_component_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_status_component_history_component_at", ["component_id", "started_at"], unique=False
        )

    op.create_table(
        "status_incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("name_ja", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_status_incidents_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_incidents")),
        sa.UniqueConstraint("incident_id", name=op.f("uq_status_incidents_incident_id")),
    )
    op.create_table(
        "status_updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("maintenance_id", sa.Integer(), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "draft", "published", "discarded", name="updatestate", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("name_ja", sa.String(length=200), nullable=True),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column("body_ja", sa.Text(), nullable=False),
        sa.Column("body_en", sa.Text(), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("affected", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("edited_by", sa.String(length=64), nullable=True),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_by", sa.String(length=64), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("timeline_entry_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_status_updates_incident_id_incidents")
        ),
        sa.ForeignKeyConstraint(
            ["maintenance_id"],
            ["status_maintenances.id"],
            name=op.f("fk_status_updates_maintenance_id_status_maintenances"),
        ),
        sa.ForeignKeyConstraint(
            ["timeline_entry_id"],
            ["incident_timeline.id"],
            name=op.f("fk_status_updates_timeline_entry_id_incident_timeline"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_updates")),
        sa.UniqueConstraint("timeline_entry_id", name=op.f("uq_status_updates_timeline_entry_id")),
    )
    with op.batch_alter_table("status_updates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_status_updates_incident_id"), ["incident_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_status_updates_maintenance_id"), ["maintenance_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_status_updates_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("status_updates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_status_updates_state"))
        batch_op.drop_index(batch_op.f("ix_status_updates_maintenance_id"))
        batch_op.drop_index(batch_op.f("ix_status_updates_incident_id"))

    op.drop_table("status_updates")
    op.drop_table("status_incidents")
    with op.batch_alter_table("status_component_history", schema=None) as batch_op:
        batch_op.drop_index("ix_status_component_history_component_at")

    op.drop_table("status_component_history")
    with op.batch_alter_table("status_cadence_pages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_status_cadence_pages_incident_id"))

    op.drop_table("status_cadence_pages")
    op.drop_table("status_revision")
    op.drop_table("status_maintenances")
    op.drop_table("status_components")
