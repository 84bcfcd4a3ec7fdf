"""compensation: runs, lines, approvals, payouts and statements

Revision ID: 0010_compensation
Revises: 0002
Create Date: 2026-12-07 23:30:00

A computed run and its lines are never changed: triggers make the database refuse UPDATE and
DELETE on ``compensation_runs`` and ``compensation_lines``, so what a second operator
approved is what is paid and what each customer is told. A recomputation is a new run.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_compensation"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FROZEN_TABLES = ("compensation_runs", "compensation_lines")
FUNCTION = "haltguard_refuse_compensation_change"
MESSAGE = "computed compensation runs are immutable: a recomputation is a new run"


def upgrade() -> None:
    op.create_table(
        "compensation_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("proposed_by", sa.String(length=200), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("policies", sa.JSON(), nullable=False),
        sa.Column("cutoff", sa.JSON(), nullable=False),
        sa.Column("window", sa.JSON(), nullable=False),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("line_count", sa.BigInteger(), nullable=False),
        sa.Column("account_count", sa.BigInteger(), nullable=False),
        sa.Column("totals", sa.JSON(), nullable=False),
        sa.Column("currency_scales", sa.JSON(), nullable=False),
        sa.Column("histogram", sa.JSON(), nullable=False),
        sa.Column("top_accounts", sa.JSON(), nullable=False),
        sa.Column("supersedes_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"],
                                name=op.f("fk_compensation_runs_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compensation_runs")),
    )
    with op.batch_alter_table("compensation_runs") as batch_op:
        batch_op.create_index(batch_op.f("ix_compensation_runs_digest"), ["digest"])
        batch_op.create_index(batch_op.f("ix_compensation_runs_incident_id"), ["incident_id"])
    op.create_table(
        "compensation_lines",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["compensation_runs.id"],
                                name=op.f("fk_compensation_lines_run_id_compensation_runs")),
        sa.PrimaryKeyConstraint("run_id", "line_no", name=op.f("pk_compensation_lines")),
    )
    with op.batch_alter_table("compensation_lines") as batch_op:
        batch_op.create_index("ix_compensation_lines_account", ["run_id", "account"])
    op.create_table(
        "compensation_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["compensation_runs.id"],
                                name=op.f("fk_compensation_approvals_run_id_compensation_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compensation_approvals")),
        sa.UniqueConstraint("run_id", name=op.f("uq_compensation_approvals_run_id")),
    )
    op.create_table(
        "compensation_payouts",
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("started_by", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lines_total", sa.BigInteger(), nullable=False),
        sa.Column("lines_paid", sa.BigInteger(), nullable=False),
        sa.Column("amounts_paid", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("public_note_posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["compensation_runs.id"],
                                name=op.f("fk_compensation_payouts_run_id_compensation_runs")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_compensation_payouts")),
    )
    op.create_table(
        "compensation_statements",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("account", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("line_nos", sa.JSON(), nullable=False),
        sa.Column("subject_ja", sa.String(length=200), nullable=False),
        sa.Column("subject_en", sa.String(length=200), nullable=False),
        sa.Column("body_ja", sa.Text(), nullable=False),
        sa.Column("body_en", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=True),
        sa.Column("phrase_shown", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["compensation_runs.id"],
            name=op.f("fk_compensation_statements_run_id_compensation_runs")),
        sa.PrimaryKeyConstraint("run_id", "account", name=op.f("pk_compensation_statements")),
    )
    _freeze()


def _freeze() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'restrict_violation'; END $$"
        )
        for table in FROZEN_TABLES:
            op.execute(f"CREATE TRIGGER {table}_frozen BEFORE UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION {FUNCTION}()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")
        return
    for table in FROZEN_TABLES:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in FROZEN_TABLES:
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER {table}_frozen ON {table}")
        op.execute(f"DROP FUNCTION {FUNCTION}()")
    else:
        for table in FROZEN_TABLES:
            for event in ("UPDATE", "DELETE"):
                op.execute(f"DROP TRIGGER {table}_no_{event.lower()}")
    for table in ("compensation_statements", "compensation_payouts", "compensation_approvals",
                  "compensation_lines", "compensation_runs"):
        op.drop_table(table)
