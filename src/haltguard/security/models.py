"""Tables of operator security and the shapes that cross the API.

No secret sits in a table in clear: the TOTP seed, which the server needs to check codes, is
encrypted with the secrets key kept outside the database (``keys.py``); sessions and API
tokens are stored as SHA-256 hashes, passwords as argon2id hashes.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, Boolean, Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from haltguard.db.base import Base
from haltguard.db.types import UtcDateTime
from haltguard.security.config import PASSWORD_LENGTH_MAX
from haltguard.security.permissions import Role
from haltguard.web.bounds import Int64

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{2,63}$"
"""Lower-case letters, digits, dot, underscore and hyphen; 3 to 64 characters."""
USERNAME_LENGTH_MAX = 64  # what USERNAME_PATTERN allows, stated for the API's schema
TOTP_CODE_LENGTH_MAX = 16  # six digits, with room for spaces a person may type
DISPLAY_NAME_LENGTH_MAX = 200
EMAIL_LENGTH_MAX = 320
PHONE_LENGTH_MAX = 40
TOKEN_NAME_LENGTH_MAX = 100
AUDIT_ACTOR_LENGTH_MAX = 200
AUDIT_ACTION_LENGTH_MAX = 100
AUDIT_TARGET_LENGTH_MAX = 500
PAGE_LIMIT_MAX = 500
SEALED_SECRET_LENGTH_MAX = 255
CHAIN_ID_LENGTH = 32
KEY_ID_LENGTH_MAX = 16

_ROLE_TYPE = Enum(
    Role,
    name="operator_role",
    native_enum=False,
    create_constraint=True,
    length=32,
    values_callable=lambda roles: [role.value for role in roles],
    validate_strings=True,
)


class Operator(Base):
    """A person who may act on the exchange through haltguard."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(DISPLAY_NAME_LENGTH_MAX))
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH_MAX))
    phone: Mapped[str] = mapped_column(String(PHONE_LENGTH_MAX), default="")
    role: Mapped[Role] = mapped_column(_ROLE_TYPE)
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str] = mapped_column(String(SEALED_SECRET_LENGTH_MAX))
    """The TOTP seed sealed by ``keys.seal`` for ``totp_secret_context(username)``."""
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OperatorSession(Base):
    """A browser login: the cookie holds the secret, the table only its hash."""

    __tablename__ = "operator_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_address: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ApiToken(Base):
    """A long-lived bearer token an operator made for scripts; acts with the owner's role."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    name: Mapped[str] = mapped_column(String(TOKEN_NAME_LENGTH_MAX))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AuditEntry(Base):
    """One link of the append-only audit chain; ``entry_hash`` covers every other field and
    ``entry_mac`` seals it with the audit key ("" for entries written before the chain was
    keyed). The database refuses UPDATE and DELETE on this table."""

    __tablename__ = "audit_entries"

    index: Mapped[int] = mapped_column(
        "entry_index", BigInteger, primary_key=True, autoincrement=False
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(AUDIT_ACTOR_LENGTH_MAX), index=True)
    action: Mapped[str] = mapped_column(String(AUDIT_ACTION_LENGTH_MAX), index=True)
    target: Mapped[str] = mapped_column(String(AUDIT_TARGET_LENGTH_MAX))
    details_json: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))
    entry_mac: Mapped[str] = mapped_column(String(64), default="")


class AuditChainHead(Base):
    """The single row every append locks: how many entries exist and the last one's hash.

    Serialises writers and lets ``verify`` notice entries cut from the end of the chain.
    ``chain_id`` names this chain in the anchor file; ``key_id`` says which audit key seals
    it, and entries from ``keyed_from`` on must carry a valid ``entry_mac``.
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    entry_count: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
    chain_id: Mapped[str] = mapped_column(String(CHAIN_ID_LENGTH), default="")
    key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH_MAX), default="")
    keyed_from: Mapped[int] = mapped_column(BigInteger, default=1)


# --- shapes that cross the API -------------------------------------------------------------


class OperatorRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    email: str
    phone: str
    role: Role
    disabled: bool
    locked_until: datetime | None
    created_at: datetime


class OperatorCreate(BaseModel):
    username: str = Field(max_length=USERNAME_LENGTH_MAX, examples=["akiko.sato"])
    display_name: str = Field(max_length=DISPLAY_NAME_LENGTH_MAX)
    email: str = Field(max_length=EMAIL_LENGTH_MAX)
    phone: str = Field(default="", max_length=PHONE_LENGTH_MAX)
    role: Role
    password: str = Field(max_length=PASSWORD_LENGTH_MAX)


class RoleChange(BaseModel):
    role: Role


class TotpEnrolmentRead(BaseModel):
    """Shown once: put ``otpauth_uri`` into an authenticator app (or type ``secret``)."""

    secret: str
    otpauth_uri: str


class OperatorCreated(BaseModel):
    operator: OperatorRead
    totp: TotpEnrolmentRead


class LoginRequest(BaseModel):
    username: str = Field(max_length=USERNAME_LENGTH_MAX)
    password: str = Field(max_length=PASSWORD_LENGTH_MAX)
    totp_code: str = Field(max_length=TOTP_CODE_LENGTH_MAX, examples=["123456"])


class LoginResult(BaseModel):
    operator: OperatorRead
    session_expires_at: datetime


class ApiTokenCreate(BaseModel):
    name: str = Field(max_length=TOKEN_NAME_LENGTH_MAX, examples=["status-page exporter"])
    expires_in_days: Int64 | None = Field(default=None, description="omit for no expiry")


class ApiTokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiTokenCreated(BaseModel):
    """The token itself appears only in this response; store it now."""

    token: str
    api_token: ApiTokenRead


class AuditEntryRead(BaseModel):
    index: int
    created_at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, object]
    prev_hash: str
    entry_hash: str


class AuditVerificationRead(BaseModel):
    """What ``haltguard audit verify`` prints: ``anchored_index`` is the newest entry the
    anchor file vouches for (0: none yet), later ones are not yet safe from being cut off."""

    ok: bool
    entries_checked: int
    first_bad_index: int | None
    problem: str
    anchored_index: int
    anchor_file: str
    summary: str
