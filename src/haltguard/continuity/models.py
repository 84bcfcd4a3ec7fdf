"""Continuity tables and the shapes that cross the API.

The plan and the risk register are files (reviewed like code, ``bcp.py``); what changes
day by day is kept here: insurance policies, operators' security training and drill
participation, vulnerability findings imported from scanners, the software-update log, and
one row per reminder sent (so an owner is paged once a day per overdue item, not once a
minute).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import JSON, BigInteger, Date, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from haltguard.common.taxonomy import Category
from haltguard.db.base import Base
from haltguard.db.types import UtcDateTime
from haltguard.web.bounds import DbId

NAME_LENGTH_MAX = 200
HANDLE_LENGTH_MAX = 64
TEXT_LENGTH_MAX = 4_000
CONTACTS_MAX = 10
FINDING_KEY_LENGTH_MAX = 300
LIMIT_MINOR_MAX = 10**18
"""Within a signed 64-bit column; far above any policy's limit in minor units."""

Handle = Annotated[str, Field(min_length=1, max_length=HANDLE_LENGTH_MAX,
                              pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


class TrainingKind(StrEnum):
    SECURITY_TRAINING = "security_training"
    """A security course an operator must take (phishing, key handling ...)."""
    DRILL_PARTICIPATION = "drill_participation"
    """Taking part in a drill (``haltguard drill``), due at an interval."""


class Severity(StrEnum):
    """A finding's severity; its deadline to closure comes from the settings."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class FindingStatus(StrEnum):
    OPEN = "open"
    FIXED = "fixed"
    """Closed by an update (the software-update log names it) or by hand with a note."""
    ACCEPTED = "accepted"
    """Closed without a fix: the risk accepted, with a note saying why and by whom."""


# --- tables -----------------------------------------------------------------------------


class InsurancePolicy(Base):
    """An insurance policy: what it covers (cover text and the incident categories it
    applies to), the insurer, the limit, the claim contacts and when it expires."""

    __tablename__ = "continuity_insurance_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    insurer: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    policy_number: Mapped[str] = mapped_column(String(100))
    cover_ja: Mapped[str] = mapped_column(Text)
    cover_en: Mapped[str] = mapped_column(Text)
    categories: Mapped[list[str]] = mapped_column(JSON)
    """The incident categories (chapter 1) the policy applies to."""
    limit_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(16))
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """Claim contacts: name, role, phone, email."""
    owner: Mapped[str] = mapped_column(String(HANDLE_LENGTH_MAX))
    """Who renews it (a person of ``haltguard oncall``), paged before it expires."""
    starts_on: Mapped[date] = mapped_column(Date)
    expires_on: Mapped[date] = mapped_column(Date, index=True)
    created_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class TrainingRecord(Base):
    """One operator's training or drill participation, due by a date, done or not."""

    __tablename__ = "continuity_training"
    __table_args__ = (Index("ix_continuity_training_person", "person", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person: Mapped[str] = mapped_column(String(HANDLE_LENGTH_MAX))
    kind: Mapped[str] = mapped_column(String(32))
    course: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    due_on: Mapped[date] = mapped_column(Date, index=True)
    completed_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    evidence: Mapped[str] = mapped_column(Text, default="")
    """What shows it was done: a certificate id, the drill report's file."""
    recorded_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class VulnerabilityFinding(Base):
    """One finding of a scanner, tracked from its first import to its closure."""

    __tablename__ = "continuity_findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    finding_key: Mapped[str] = mapped_column(String(FINDING_KEY_LENGTH_MAX), unique=True)
    """Stable across imports: the same finding imported again is the same row."""
    scanner: Mapped[str] = mapped_column(String(100))
    identifier: Mapped[str] = mapped_column(String(200))
    """The advisory or rule id (``GHSA-...``, ``CVE-...``, a SARIF ``ruleId``)."""
    package: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX), default="")
    installed_version: Mapped[str] = mapped_column(String(100), default="")
    fix_versions: Mapped[list[str]] = mapped_column(JSON, default=list)
    location: Mapped[str] = mapped_column(String(500), default="")
    title: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(HANDLE_LENGTH_MAX))
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    due_on: Mapped[date] = mapped_column(Date, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    closed_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX), default="")
    closure_note: Mapped[str] = mapped_column(Text, default="")
    update_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The software update that fixed it, when one did."""


class SoftwareUpdate(Base):
    """One software update applied, tied to the status page's scheduled maintenance it was
    done in (if any) and to the findings it fixed."""

    __tablename__ = "continuity_software_updates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    from_version: Mapped[str] = mapped_column(String(100))
    to_version: Mapped[str] = mapped_column(String(100))
    applied_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    applied_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    note: Mapped[str] = mapped_column(Text, default="")
    maintenance_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The status page's maintenance (``status_maintenances.id``) it was applied in."""
    fixes: Mapped[list[int]] = mapped_column(JSON, default=list)
    """The finding ids it closed."""


class Reminder(Base):
    """A reminder sent (or tried) to an item's owner on one day."""

    __tablename__ = "continuity_reminders"
    __table_args__ = (UniqueConstraint("subject", "remind_on",
                                       name="uq_continuity_reminders_subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(100))
    """What it is about: ``risk:R-01``, ``insurance:3``, ``training:5``, ``finding:7``."""
    remind_on: Mapped[date] = mapped_column(Date)
    person: Mapped[str] = mapped_column(String(HANDLE_LENGTH_MAX))
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime())
    page_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")


# --- shapes -----------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimContact(_In):
    name: str = Field(min_length=1, max_length=NAME_LENGTH_MAX)
    role: str = Field(default="", max_length=NAME_LENGTH_MAX)
    phone: str = Field(default="", max_length=40)
    email: str = Field(default="", max_length=320)

    @model_validator(mode="after")
    def _reachable(self) -> ClaimContact:
        if not (self.phone or self.email):
            raise ValueError(f"give {self.name} a phone or an email: a claim contact must be "
                             "reachable")
        return self


class InsuranceCreate(_In):
    name: str = Field(min_length=1, max_length=NAME_LENGTH_MAX)
    insurer: str = Field(min_length=1, max_length=NAME_LENGTH_MAX)
    policy_number: str = Field(min_length=1, max_length=100)
    cover_ja: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)
    cover_en: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)
    categories: list[Category] = Field(min_length=1, max_length=len(Category))
    limit_minor: int = Field(ge=0, le=LIMIT_MINOR_MAX)
    currency: str = Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9]{1,16}$")
    contacts: list[ClaimContact] = Field(min_length=1, max_length=CONTACTS_MAX)
    owner: Handle
    starts_on: date
    expires_on: date

    @model_validator(mode="after")
    def _period(self) -> InsuranceCreate:
        if self.expires_on <= self.starts_on:
            raise ValueError("expires_on must come after starts_on")
        return self


class InsuranceRead(BaseModel):
    id: int
    name: str
    insurer: str
    policy_number: str
    cover_ja: str
    cover_en: str
    categories: list[str]
    limit_minor: int
    currency: str
    contacts: list[dict[str, Any]]
    owner: str
    starts_on: date
    expires_on: date
    in_force: bool
    days_to_expiry: int


class IncidentInsurance(BaseModel):
    """The policies that may pay for one incident, with their claim contacts."""

    incident_id: int
    category: str
    policies: list[InsuranceRead]


class TrainingCreate(_In):
    person: Handle
    kind: TrainingKind = TrainingKind.SECURITY_TRAINING
    course: str = Field(min_length=1, max_length=NAME_LENGTH_MAX)
    due_on: date


class TrainingComplete(_In):
    completed_on: date
    evidence: str = Field(default="", max_length=TEXT_LENGTH_MAX)
    next_due_on: date | None = None
    """When the next round is due (a new record is created); none: not recurring."""


class TrainingRead(BaseModel):
    id: int
    person: str
    kind: str
    course: str
    due_on: date
    completed_on: date | None
    evidence: str
    overdue: bool


class FindingRead(BaseModel):
    id: int
    scanner: str
    identifier: str
    package: str
    installed_version: str
    fix_versions: list[str]
    location: str
    title: str
    severity: str
    owner: str
    first_seen_at: datetime
    last_seen_at: datetime
    due_on: date
    status: str
    overdue: bool
    closed_at: datetime | None
    closed_by: str
    closure_note: str
    update_id: int | None


class FindingClose(_In):
    status: FindingStatus = FindingStatus.FIXED
    note: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)


class ImportSummary(BaseModel):
    scanner: str
    found: int
    new: int
    seen_again: int
    reopened: int


class UpdateCreate(_In):
    component: str = Field(min_length=1, max_length=NAME_LENGTH_MAX)
    from_version: str = Field(min_length=1, max_length=100)
    to_version: str = Field(min_length=1, max_length=100)
    applied_at: datetime
    note: str = Field(default="", max_length=TEXT_LENGTH_MAX)
    maintenance_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    fixes: list[DbId] = Field(default_factory=list, max_length=500)

    @model_validator(mode="after")
    def _aware(self) -> UpdateCreate:
        if self.applied_at.tzinfo is None:
            raise ValueError("applied_at needs a time zone, e.g. 2026-12-08T02:00:00+09:00")
        return self


class UpdateRead(BaseModel):
    id: int
    component: str
    from_version: str
    to_version: str
    applied_at: datetime
    applied_by: str
    note: str
    maintenance_id: int | None
    maintenance_name_en: str | None
    maintenance_name_ja: str | None
    maintenance_window: list[datetime] | None
    in_maintenance_window: bool | None
    fixes: list[int]
