"""the audit chain is keyed and refuses UPDATE and DELETE; room for sealed TOTP seeds

Revision ID: 0006_audit_protection
Revises: 0002
Create Date: 2026-11-26 09:00:00

- ``audit_entries`` gets ``entry_mac`` (HMAC-SHA256 with the audit key kept outside the
  database; "" for the entries already there) and, like ``incident_timeline``, triggers that
  refuse UPDATE, DELETE (and on PostgreSQL TRUNCATE).
- ``audit_chain_head`` gets ``chain_id`` (set at the next append), ``key_id`` and
  ``keyed_from``: the entries already written stay verifiable by their SHA-256 chain, every
  later one must carry a valid MAC.
- ``operators.totp_secret`` widens to 255 characters for the sealed seed. SQLite cannot
  change a column's type in place, and rebuilding ``operators`` would fight the foreign keys
  that point at it, so there the column is added anew, copied, dropped and renamed
  (SQLite 3.35+).

Encrypting the secrets already stored needs the secrets key, which a migration does not
hold; ``haltguard.db.migrate.upgrade`` does it right after, in the same transaction.
Downgrading leaves ``totp_secret`` at 255 characters, since sealed seeds do not fit in 64.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_audit_protection"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "audit_entries"
MESSAGE = "audit_entries is append-only: entries are never changed or deleted"
SEALED_LENGTH_MAX = 255


def _refuse_changes(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION haltguard_refuse_audit_change() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'restrict_violation'; "
            "END $$"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION haltguard_refuse_audit_change()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION haltguard_refuse_audit_change()"
        )
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_{event.lower()} BEFORE {event} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
        )


def _widen_totp_secret(dialect: str) -> None:
    if dialect == "postgresql":
        op.alter_column("operators", "totp_secret", type_=sa.String(length=SEALED_LENGTH_MAX),
                        existing_type=sa.String(length=64), existing_nullable=False)
        return
    op.execute(f"ALTER TABLE operators ADD COLUMN totp_secret_sealed "
               f"VARCHAR({SEALED_LENGTH_MAX}) NOT NULL DEFAULT ''")
    op.execute("UPDATE operators SET totp_secret_sealed = totp_secret")
    op.execute("ALTER TABLE operators DROP COLUMN totp_secret")
    op.execute("ALTER TABLE operators RENAME COLUMN totp_secret_sealed TO totp_secret")


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    op.add_column(TABLE, sa.Column("entry_mac", sa.String(length=64), nullable=False,
                                   server_default=""))
    op.add_column("audit_chain_head", sa.Column("chain_id", sa.String(length=32),
                                                nullable=False, server_default=""))
    op.add_column("audit_chain_head", sa.Column("key_id", sa.String(length=16),
                                                nullable=False, server_default=""))
    op.add_column("audit_chain_head", sa.Column("keyed_from", sa.BigInteger(),
                                                nullable=False, server_default="1"))
    op.execute("UPDATE audit_chain_head SET keyed_from = entry_count + 1")
    _refuse_changes(dialect)
    _widen_totp_secret(dialect)


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.execute(f"DROP TRIGGER {TABLE}_no_truncate ON {TABLE}")
        op.execute(f"DROP TRIGGER {TABLE}_append_only ON {TABLE}")
        op.execute("DROP FUNCTION haltguard_refuse_audit_change()")
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER {TABLE}_no_{event.lower()}")
    for column in ("keyed_from", "key_id", "chain_id"):
        op.drop_column("audit_chain_head", column)
    op.drop_column(TABLE, "entry_mac")
