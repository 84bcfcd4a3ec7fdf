"""Customer protection tables and the shapes that cross the API.

A customer is a venue account with its own protection: API keys (secrets sealed with the
secrets key, shown once), a TOTP second factor with one-use recovery codes (hashed), an
allow-list of withdrawal addresses that become usable only after a hold, a self-lock only
support can lift, notices carrying the customer's own anti-phishing phrase, the devices
(addresses) seen, and which version of the terms of service the customer accepted.
Withdrawals the customer asked for are kept with their outcome.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from haltguard.db.base import Base
from haltguard.db.types import UtcDateTime
from haltguard.web.bounds import DbId

EMAIL_LENGTH_MAX = 320
PHRASE_LENGTH_MAX = 64
LABEL_LENGTH_MAX = 100
ADDRESS_LENGTH_MAX = 256
KEY_ID_LENGTH = 28  # "hgk_" and 24 url-safe characters
NETWORKS_PER_KEY_MAX = 20
KEYS_PER_ACCOUNT_MAX = 20
ADDRESSES_PER_ACCOUNT_MAX = 100
RECOVERY_CODES_COUNT = 10
TERMS_TEXT_LENGTH_MAX = 100_000
TERMS_VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._-]{0,31}$"
ASSET_PATTERN = r"^[A-Z0-9]{1,16}$"
DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?$"

Account = Annotated[int, Field(ge=1, le=2**63 - 1)]
TotpCode = Annotated[str, Field(min_length=6, max_length=32,
                                description="A TOTP code (6 digits) or a recovery code.")]


class CustomerStatus(StrEnum):
    ACTIVE = "active"
    LOCKED = "locked"
    """Locked by the customer (or by detection): reads only until support unlocks."""


class WithdrawalStatus(StrEnum):
    SENT = "sent"
    """Debited at the venue and handed to the wallet."""
    HELD = "held"
    """Above the review limit: waiting for support's review."""
    REFUSED = "refused"
    """Refused by the venue (frozen, insufficient funds) after the customer's checks."""


class NoticeKind(StrEnum):
    NEW_DEVICE = "new_device"
    NEW_KEY = "new_key"
    NEW_ADDRESS = "new_address"
    WITHDRAWAL_REQUESTED = "withdrawal_requested"
    WITHDRAWAL_SENT = "withdrawal_sent"
    SECURITY_CHANGED = "security_changed"


class Customer(Base):
    __tablename__ = "customers"

    account: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH_MAX))
    anti_phishing_phrase: Mapped[str] = mapped_column(String(PHRASE_LENGTH_MAX), default="")
    status: Mapped[str] = mapped_column(String(16), default=CustomerStatus.ACTIVE.value)
    totp_secret: Mapped[str] = mapped_column(Text, default="")  # sealed; "" = no 2FA
    totp_pending: Mapped[str] = mapped_column(Text, default="")  # sealed, until confirmed
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    locked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    lock_reason: Mapped[str] = mapped_column(Text, default="")


class RecoveryCode(Base):
    __tablename__ = "customer_recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[int] = mapped_column(ForeignKey("customers.account"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))  # sha-256 of a 50-bit random code
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class ApiKey(Base):
    __tablename__ = "customer_api_keys"

    key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH), primary_key=True)
    account: Mapped[int] = mapped_column(ForeignKey("customers.account"), index=True)
    label: Mapped[str] = mapped_column(String(LABEL_LENGTH_MAX), default="")
    secret: Mapped[str] = mapped_column(Text)  # sealed, bound to the key id
    permissions: Mapped[list[str]] = mapped_column(JSON)
    networks: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class WithdrawalAddress(Base):
    __tablename__ = "customer_withdrawal_addresses"
    __table_args__ = (UniqueConstraint("account", "asset", "address",
                                       name="uq_customer_withdrawal_addresses"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[int] = mapped_column(ForeignKey("customers.account"), index=True)
    asset: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(ADDRESS_LENGTH_MAX))
    label: Mapped[str] = mapped_column(String(LABEL_LENGTH_MAX), default="")
    added_at: Mapped[datetime] = mapped_column(UtcDateTime())
    usable_from: Mapped[datetime] = mapped_column(UtcDateTime())


class CustomerWithdrawal(Base):
    __tablename__ = "customer_withdrawals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[int] = mapped_column(ForeignKey("customers.account"), index=True)
    asset: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    address: Mapped[str] = mapped_column(String(ADDRESS_LENGTH_MAX))
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class CustomerNotice(Base):
    """A notice to one customer, kept as sent (both languages, the phrase inside)."""

    __tablename__ = "customer_notices"
    __table_args__ = (Index("ix_customer_notices_account", "account", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[int] = mapped_column(ForeignKey("customers.account"))
    kind: Mapped[str] = mapped_column(String(32))
    subject_ja: Mapped[str] = mapped_column(Text)
    subject_en: Mapped[str] = mapped_column(Text)
    body_ja: Mapped[str] = mapped_column(Text)
    body_en: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class NoticeMailStatus(StrEnum):
    QUEUED = "queued"
    """Waiting for its first or next attempt (``next_attempt_at``)."""
    SENT = "sent"
    FAILED = "failed"
    """Refused for good, or out of attempts; ``last_error`` says why."""


class CustomerNoticeMail(Base):
    """The outbox row that emails one notice: written in the notice's transaction, so a
    restart loses no notice and a retry mails nobody twice (one row per notice)."""

    __tablename__ = "customer_notice_mail"
    __table_args__ = (Index("ix_customer_notice_mail_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("customer_notices.id"), unique=True)
    to_address: Mapped[str] = mapped_column(String(EMAIL_LENGTH_MAX))
    status: Mapped[str] = mapped_column(String(16), default=NoticeMailStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class CustomerDevice(Base):
    """An address a customer's key was used from, with where it was (when known)."""

    __tablename__ = "customer_devices"
    __table_args__ = (UniqueConstraint("account", "address", name="uq_customer_devices"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[int] = mapped_column(ForeignKey("customers.account"), index=True)
    address: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    latitude_e6: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    longitude_e6: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class TermsVersion(Base):
    __tablename__ = "terms_versions"

    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    published_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    text_ja: Mapped[str] = mapped_column(Text)
    text_en: Mapped[str] = mapped_column(Text)
    published_by: Mapped[str] = mapped_column(String(200))


class TermsAcceptance(Base):
    __tablename__ = "terms_acceptances"
    __table_args__ = (UniqueConstraint("account", "version", name="uq_terms_acceptances"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[int] = mapped_column(ForeignKey("customers.account"), index=True)
    version: Mapped[str] = mapped_column(ForeignKey("terms_versions.version"))
    accepted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    address: Mapped[str] = mapped_column(String(64), default="")


# --- shapes crossing the API ------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CustomerCreate(_Request):
    account: Account
    email: str = Field(min_length=3, max_length=EMAIL_LENGTH_MAX, pattern=r"^[^@\s]+@[^@\s]+$")
    anti_phishing_phrase: str = Field(default="", max_length=PHRASE_LENGTH_MAX)


class KeyCreate(_Request):
    label: str = Field(default="", max_length=LABEL_LENGTH_MAX)
    permissions: list[Literal["read", "trade", "withdraw"]] = Field(min_length=1, max_length=3)
    networks: list[Annotated[str, Field(max_length=64)]] = Field(  # CIDR text
        default_factory=list, max_length=NETWORKS_PER_KEY_MAX)
    expires_in_days: int = Field(default=0, ge=0, le=3_650, description="0: never.")
    code: str = Field(default="", max_length=32,
                      description="A second-factor code: needed for the withdraw permission.")


class CodeOnly(_Request):
    code: TotpCode


class PhraseChange(_Request):
    anti_phishing_phrase: str = Field(min_length=1, max_length=PHRASE_LENGTH_MAX)
    code: TotpCode


class AddressCreate(_Request):
    asset: str = Field(pattern=ASSET_PATTERN, max_length=16)
    address: str = Field(min_length=1, max_length=ADDRESS_LENGTH_MAX,
                         pattern=r"^[\x21-\x7e]+$")
    label: str = Field(default="", max_length=LABEL_LENGTH_MAX)
    code: TotpCode


class WithdrawalCreate(_Request):
    asset: str = Field(pattern=ASSET_PATTERN, max_length=16)
    amount: str = Field(pattern=DECIMAL_PATTERN, max_length=40,
                        description="A decimal string in the asset's units, e.g. \"0.5\".")
    address: str = Field(min_length=1, max_length=ADDRESS_LENGTH_MAX)
    code: TotpCode


class LockRequest(_Request):
    reason: str = Field(default="", max_length=1_000)


class TermsAccept(_Request):
    version: str = Field(pattern=TERMS_VERSION_PATTERN, max_length=32)


class KeyRead(BaseModel):
    key_id: str
    account: int
    label: str
    permissions: list[str]
    networks: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    secret: str = Field(description="Shown once: store it now; it cannot be shown again.")


class Enrolment(BaseModel):
    secret: str
    otpauth_uri: str
    recovery_codes: list[str] = Field(description="Shown once; each works once.")


class AddressRead(BaseModel):
    id: DbId
    asset: str
    address: str
    label: str
    added_at: datetime
    usable_from: datetime


class WithdrawalRead(BaseModel):
    id: DbId
    account: int
    asset: str
    amount_minor: int
    address: str
    status: str
    detail: str
    requested_at: datetime


class NoticeRead(BaseModel):
    id: DbId
    kind: str
    subject_ja: str
    subject_en: str
    body_ja: str
    body_en: str
    created_at: datetime


class CustomerRead(BaseModel):
    account: int
    email: str
    status: str
    two_factor: bool
    anti_phishing_phrase_set: bool
    accepted_terms: list[str]
