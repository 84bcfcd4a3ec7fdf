"""support: help-centre articles with a full-text index, tickets, messages, macros, bulk
replies and the outgoing mail

Revision ID: 0011_support
Revises: 0002
Create Date: 2026-12-08 02:00:00

Search: on SQLite an FTS5 table with the trigram tokenizer (so Japanese, which has no spaces
between words, is found by any three characters of it), kept in step with
``support_articles`` by triggers; on PostgreSQL a ``pg_trgm`` GIN index on ``search_text``
where the extension is available (``search.py`` works without it, by a scan).
``support_outgoing_mail`` is unique per (bulk reply, customer): nobody is mailed twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_support"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FTS_COLUMNS = (
    "new.title_ja || ' ' || new.title_en || ' ' || new.keywords, new.body_ja || ' ' || new.body_en"
)
SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE support_articles_fts USING fts5(title, body, tokenize='trigram')",
    "CREATE TRIGGER support_articles_fts_insert AFTER INSERT ON support_articles BEGIN "
    f"INSERT INTO support_articles_fts(rowid, title, body) VALUES (new.id, {_FTS_COLUMNS}); "
    "END",
    "CREATE TRIGGER support_articles_fts_update AFTER UPDATE ON support_articles BEGIN "
    "DELETE FROM support_articles_fts WHERE rowid = old.id; "
    f"INSERT INTO support_articles_fts(rowid, title, body) VALUES (new.id, {_FTS_COLUMNS}); "
    "END",
    "CREATE TRIGGER support_articles_fts_delete AFTER DELETE ON support_articles BEGIN "
    "DELETE FROM support_articles_fts WHERE rowid = old.id; END",
)


def _search_index() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for statement in SQLITE_SEARCH:
            op.execute(statement)
        return
    if bind.dialect.name == "postgresql":
        available = bind.execute(
            sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        ).first()
        if available is not None:
            op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            op.execute(
                "CREATE INDEX ix_support_articles_trgm ON support_articles "
                "USING gin (search_text gin_trgm_ops)"
            )


def upgrade() -> None:
    op.create_table(
        "support_macros",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("subject_ja", sa.String(length=300), nullable=False),
        sa.Column("subject_en", sa.String(length=300), nullable=False),
        sa.Column("body_ja", sa.Text(), nullable=False),
        sa.Column("body_en", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_macros")),
        sa.UniqueConstraint("name", name=op.f("uq_support_macros_name")),
    )
    op.create_table(
        "support_articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=80), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("title_ja", sa.String(length=300), nullable=False),
        sa.Column("title_en", sa.String(length=300), nullable=False),
        sa.Column("body_ja", sa.Text(), nullable=False),
        sa.Column("body_en", sa.Text(), nullable=False),
        sa.Column("keywords", sa.Text(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_support_articles_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_articles")),
        sa.UniqueConstraint("slug", name=op.f("uq_support_articles_slug")),
    )
    op.create_index(
        op.f("ix_support_articles_category"), "support_articles", ["category"], unique=False
    )
    op.create_index(
        op.f("ix_support_articles_incident_id"), "support_articles", ["incident_id"], unique=False
    )
    op.create_table(
        "support_bulk_replies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("update_entry_id", sa.Integer(), nullable=False),
        sa.Column("macro_name", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tickets_answered", sa.BigInteger(), nullable=False),
        sa.Column("mails_queued", sa.BigInteger(), nullable=False),
        sa.Column("customers_without_address", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_support_bulk_replies_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_bulk_replies")),
        sa.UniqueConstraint(
            "incident_id", "update_entry_id", name="uq_support_bulk_replies_update"
        ),
    )
    op.create_table(
        "support_tickets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("customer_name", sa.String(length=200), nullable=False),
        sa.Column("customer_email", sa.String(length=320), nullable=False),
        sa.Column("customer_key", sa.String(length=80), nullable=False),
        sa.Column("account", sa.BigInteger(), nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("link_reason", sa.String(length=300), nullable=False),
        sa.Column("assignee", sa.String(length=200), nullable=True),
        sa.Column("source_key", sa.String(length=300), nullable=True),
        sa.Column("rating_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_response_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolution_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_breach_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_breach_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("satisfaction", sa.Integer(), nullable=True),
        sa.Column("satisfaction_comment", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_support_tickets_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_tickets")),
        sa.UniqueConstraint("source_key", name=op.f("uq_support_tickets_source_key")),
    )
    op.create_index(
        op.f("ix_support_tickets_account"), "support_tickets", ["account"], unique=False
    )
    op.create_index(
        op.f("ix_support_tickets_assignee"), "support_tickets", ["assignee"], unique=False
    )
    op.create_index(
        op.f("ix_support_tickets_created_at"), "support_tickets", ["created_at"], unique=False
    )
    op.create_index(
        "ix_support_tickets_incident_customer",
        "support_tickets",
        ["incident_id", "customer_key"],
        unique=False,
    )
    op.create_index(
        "ix_support_tickets_status_due",
        "support_tickets",
        ["status", "first_response_due_at"],
        unique=False,
    )
    op.create_table(
        "support_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("author_kind", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bulk_reply_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["bulk_reply_id"],
            ["support_bulk_replies.id"],
            name=op.f("fk_support_messages_bulk_reply_id_support_bulk_replies"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["support_tickets.id"],
            name=op.f("fk_support_messages_ticket_id_support_tickets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_messages")),
    )
    op.create_index(
        op.f("ix_support_messages_ticket_id"), "support_messages", ["ticket_id"], unique=False
    )
    op.create_table(
        "support_outgoing_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("bulk_reply_id", sa.Integer(), nullable=True),
        sa.Column("customer_key", sa.String(length=80), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["bulk_reply_id"],
            ["support_bulk_replies.id"],
            name=op.f("fk_support_outgoing_mail_bulk_reply_id_support_bulk_replies"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["support_tickets.id"],
            name=op.f("fk_support_outgoing_mail_ticket_id_support_tickets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_outgoing_mail")),
        sa.UniqueConstraint("bulk_reply_id", "customer_key", name="uq_support_mail_customer"),
    )
    op.create_index(
        "ix_support_outgoing_mail_status", "support_outgoing_mail", ["status", "id"], unique=False
    )
    op.create_index(
        op.f("ix_support_outgoing_mail_ticket_id"),
        "support_outgoing_mail",
        ["ticket_id"],
        unique=False,
    )

    _search_index()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS support_articles_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_support_articles_trgm")
    op.drop_index(op.f("ix_support_outgoing_mail_ticket_id"), table_name="support_outgoing_mail")
    op.drop_index("ix_support_outgoing_mail_status", table_name="support_outgoing_mail")
    op.drop_table("support_outgoing_mail")
    op.drop_index(op.f("ix_support_messages_ticket_id"), table_name="support_messages")
    op.drop_table("support_messages")
    op.drop_index("ix_support_tickets_status_due", table_name="support_tickets")
    op.drop_index("ix_support_tickets_incident_customer", table_name="support_tickets")
    op.drop_index(op.f("ix_support_tickets_created_at"), table_name="support_tickets")
    op.drop_index(op.f("ix_support_tickets_assignee"), table_name="support_tickets")
    op.drop_index(op.f("ix_support_tickets_account"), table_name="support_tickets")
    op.drop_table("support_tickets")
    op.drop_table("support_bulk_replies")
    op.drop_index(op.f("ix_support_articles_incident_id"), table_name="support_articles")
    op.drop_index(op.f("ix_support_articles_category"), table_name="support_articles")
    op.drop_table("support_articles")
    op.drop_table("support_macros")
