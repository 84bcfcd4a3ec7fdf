"""room for sealed webhook signing secrets

Revision ID: 0008_sealed_webhook_secrets
Revises: 0005_notify
Create Date: 2026-12-07 21:30:00

``notify_subscribers.signing_secret`` widens from 64 to 255 characters: a webhook's signing
secret is stored sealed with the secrets key (``hgs1.<key id>.<...>``, about 110 characters),
as TOTP seeds are since ``0006_audit_protection``. SQLite cannot change a column's type in
place, and rebuilding ``notify_subscribers`` would fight the foreign keys that point at it, so
there the column is added anew, copied, dropped and renamed (SQLite 3.35+).

Encrypting the secrets already stored needs the secrets key, which a migration does not hold;
``haltguard.db.migrate.upgrade`` does it right after, in the same transaction. Downgrading
leaves the column at 255 characters, since sealed secrets do not fit in 64.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_sealed_webhook_secrets"
down_revision: str | None = "0005_notify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "notify_subscribers"
SEALED_LENGTH_MAX = 255


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.alter_column(TABLE, "signing_secret", type_=sa.String(length=SEALED_LENGTH_MAX),
                        existing_type=sa.String(length=64), existing_nullable=False)
        return
    op.execute(f"ALTER TABLE {TABLE} ADD COLUMN signing_secret_sealed "
               f"VARCHAR({SEALED_LENGTH_MAX}) NOT NULL DEFAULT ''")
    op.execute(f"UPDATE {TABLE} SET signing_secret_sealed = signing_secret")
    op.execute(f"ALTER TABLE {TABLE} DROP COLUMN signing_secret")
    op.execute(f"ALTER TABLE {TABLE} RENAME COLUMN signing_secret_sealed TO signing_secret")


def downgrade() -> None:
    """Nothing to undo: sealed secrets need the wider column."""
