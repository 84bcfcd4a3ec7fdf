"""customers: API keys, second factor, withdrawal addresses, notices, devices, terms

Revision ID: 0014_customers
Revises: 0002
Create Date: 2026-12-08 01:40:00

A customer's protection: API keys (secrets sealed), TOTP with recovery codes (hashed),
withdrawal address allow-list with a hold, the customer's withdrawals, notices with the
anti-phishing phrase, devices seen, terms of service versions and their acceptance.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_customers"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("account", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("anti_phishing_phrase", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("totp_secret", sa.Text(), nullable=False),
        sa.Column("totp_pending", sa.Text(), nullable=False),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lock_reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_customers")),
    )
    op.create_table(
        "terms_versions",
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text_ja", sa.Text(), nullable=False),
        sa.Column("text_en", sa.Text(), nullable=False),
        sa.Column("published_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_terms_versions")),
    )
    op.create_index(
        op.f("ix_terms_versions_published_at"), "terms_versions", ["published_at"], unique=False
    )
    op.create_table(
        "customer_api_keys",
        sa.Column("key_id", sa.String(length=28), nullable=False),
        sa.Column("account", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("networks", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account"], ["customers.account"], name=op.f("fk_customer_api_keys_account_customers")
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_customer_api_keys")),
    )
    op.create_index(
        op.f("ix_customer_api_keys_account"), "customer_api_keys", ["account"], unique=False
    )
    op.create_index(
        op.f("ix_customer_api_keys_changed_at"), "customer_api_keys", ["changed_at"], unique=False
    )
    op.create_table(
        "customer_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latitude_e6", sa.BigInteger(), nullable=True),
        sa.Column("longitude_e6", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account"], ["customers.account"], name=op.f("fk_customer_devices_account_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_devices")),
        sa.UniqueConstraint("account", "address", name="uq_customer_devices"),
    )
    op.create_index(
        op.f("ix_customer_devices_account"), "customer_devices", ["account"], unique=False
    )
    op.create_table(
        "customer_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject_ja", sa.Text(), nullable=False),
        sa.Column("subject_en", sa.Text(), nullable=False),
        sa.Column("body_ja", sa.Text(), nullable=False),
        sa.Column("body_en", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account"], ["customers.account"], name=op.f("fk_customer_notices_account_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_notices")),
    )
    op.create_index(
        "ix_customer_notices_account", "customer_notices", ["account", "id"], unique=False
    )
    op.create_table(
        "customer_recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.BigInteger(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account"],
            ["customers.account"],
            name=op.f("fk_customer_recovery_codes_account_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_recovery_codes")),
    )
    op.create_index(
        op.f("ix_customer_recovery_codes_account"),
        "customer_recovery_codes",
        ["account"],
        unique=False,
    )
    op.create_table(
        "customer_withdrawal_addresses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.BigInteger(), nullable=False),
        sa.Column("asset", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=256), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("usable_from", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account"],
            ["customers.account"],
            name=op.f("fk_customer_withdrawal_addresses_account_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_withdrawal_addresses")),
        sa.UniqueConstraint("account", "asset", "address", name="uq_customer_withdrawal_addresses"),
    )
    op.create_index(
        op.f("ix_customer_withdrawal_addresses_account"),
        "customer_withdrawal_addresses",
        ["account"],
        unique=False,
    )
    op.create_table(
        "customer_withdrawals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.BigInteger(), nullable=False),
        sa.Column("asset", sa.String(length=16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account"],
            ["customers.account"],
            name=op.f("fk_customer_withdrawals_account_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_withdrawals")),
    )
    op.create_index(
        op.f("ix_customer_withdrawals_account"), "customer_withdrawals", ["account"], unique=False
    )
    op.create_table(
        "terms_acceptances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["account"], ["customers.account"], name=op.f("fk_terms_acceptances_account_customers")
        ),
        sa.ForeignKeyConstraint(
            ["version"],
            ["terms_versions.version"],
            name=op.f("fk_terms_acceptances_version_terms_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terms_acceptances")),
        sa.UniqueConstraint("account", "version", name="uq_terms_acceptances"),
    )
    op.create_index(
        op.f("ix_terms_acceptances_account"), "terms_acceptances", ["account"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_terms_acceptances_account"), table_name="terms_acceptances")
    op.drop_table("terms_acceptances")
    op.drop_index(op.f("ix_customer_withdrawals_account"), table_name="customer_withdrawals")
    op.drop_table("customer_withdrawals")
    op.drop_index(
        op.f("ix_customer_withdrawal_addresses_account"), table_name="customer_withdrawal_addresses"
    )
    op.drop_table("customer_withdrawal_addresses")
    op.drop_index(op.f("ix_customer_recovery_codes_account"), table_name="customer_recovery_codes")
    op.drop_table("customer_recovery_codes")
    op.drop_index("ix_customer_notices_account", table_name="customer_notices")
    op.drop_table("customer_notices")
    op.drop_index(op.f("ix_customer_devices_account"), table_name="customer_devices")
    op.drop_table("customer_devices")
    op.drop_index(op.f("ix_customer_api_keys_changed_at"), table_name="customer_api_keys")
    op.drop_index(op.f("ix_customer_api_keys_account"), table_name="customer_api_keys")
    op.drop_table("customer_api_keys")
    op.drop_index(op.f("ix_terms_versions_published_at"), table_name="terms_versions")
    op.drop_table("terms_versions")
    op.drop_table("customers")
