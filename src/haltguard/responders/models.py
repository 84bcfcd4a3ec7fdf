"""Tables for people, schedules, policies, the contact tree and pages; and the Pydantic
shapes that cross the API and the YAML files.

Every page keeps a snapshot of the plan it follows, every notification, every delivery and
every delivery attempt with its result, so what happened can be shown and audited later.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from haltguard.db.base import Base
from haltguard.db.types import UtcDateTime
from haltguard.responders.escalation import ACK_TIMEOUT_S_MAX, ACK_TIMEOUT_S_MIN, LEVELS_MAX

HANDLE_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
HANDLE_LENGTH_MAX = 64  # what both patterns allow, stated for the API's schema
KEYWORD_LENGTH_MAX = 32  # a category, a severity or "*"
TARGET_LENGTH_MAX = 80  # "schedule:" or "person:" and a name
TIMEZONE_LENGTH_MAX = 64
CONFIG_PEOPLE_MAX = 1_000
CONFIG_ITEMS_MAX = 200  # schedules, policies, routes in one set-up
CONTACT_CATEGORIES_MAX = 64
CONTACTS_PER_CATEGORY_MAX = 50
ANY = "*"


# --- configuration: people, schedules, policies, routes, contact tree -----------------------


class Person(Base):
    """Someone who can be paged; not necessarily an operator account."""

    __tablename__ = "oncall_people"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(2), default="ja")
    contact_methods: Mapped[list[ContactMethod]] = relationship(
        back_populates="person",
        order_by="ContactMethod.position",
        cascade="all, delete-orphan",
    )


class ContactMethod(Base):
    __tablename__ = "oncall_contact_methods"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("oncall_people.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(100), default="")
    person: Mapped[Person] = relationship(back_populates="contact_methods")


class Schedule(Base):
    __tablename__ = "oncall_schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    timezone: Mapped[str] = mapped_column(String(64))
    start_date: Mapped[date] = mapped_column(Date)
    handoff: Mapped[str] = mapped_column(String(5))
    rotation_days: Mapped[int] = mapped_column(Integer)
    members: Mapped[list[ScheduleMember]] = relationship(
        order_by="ScheduleMember.position", cascade="all, delete-orphan"
    )
    overrides: Mapped[list[ScheduleOverride]] = relationship(
        order_by="ScheduleOverride.id", cascade="all, delete-orphan"
    )


class ScheduleMember(Base):
    __tablename__ = "oncall_schedule_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        ForeignKey("oncall_schedules.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    person_id: Mapped[int] = mapped_column(ForeignKey("oncall_people.id", ondelete="RESTRICT"))
    person: Mapped[Person] = relationship()


class ScheduleOverride(Base):
    __tablename__ = "oncall_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        ForeignKey("oncall_schedules.id", ondelete="CASCADE")
    )
    person_id: Mapped[int] = mapped_column(ForeignKey("oncall_people.id", ondelete="RESTRICT"))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    person: Mapped[Person] = relationship()


class EscalationPolicy(Base):
    __tablename__ = "oncall_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    repeat_count: Mapped[int] = mapped_column(Integer, default=0)
    levels: Mapped[list[PolicyLevel]] = relationship(
        order_by="PolicyLevel.position", cascade="all, delete-orphan"
    )


class PolicyLevel(Base):
    __tablename__ = "oncall_policy_levels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("oncall_policies.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    ack_timeout_s: Mapped[int] = mapped_column(Integer)
    targets: Mapped[list[LevelTarget]] = relationship(
        order_by="LevelTarget.position", cascade="all, delete-orphan"
    )


class LevelTarget(Base):
    """Schedule and person targets are foreign keys, so nothing a policy names can vanish."""

    __tablename__ = "oncall_level_targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    level_id: Mapped[int] = mapped_column(
        ForeignKey("oncall_policy_levels.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("oncall_schedules.id", ondelete="RESTRICT"), nullable=True
    )
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("oncall_people.id", ondelete="RESTRICT"), nullable=True
    )
    schedule: Mapped[Schedule | None] = relationship()
    person: Mapped[Person | None] = relationship()


class PolicyRoute(Base):
    """Which policy pages for a category and severity; ``*`` matches any."""

    __tablename__ = "oncall_routes"
    __table_args__ = (UniqueConstraint("category", "severity"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(8))
    policy_id: Mapped[int] = mapped_column(ForeignKey("oncall_policies.id", ondelete="RESTRICT"))
    policy: Mapped[EscalationPolicy] = relationship()


class EmergencyContact(Base):
    """One line of the contact tree: for ``category``, call ``person``, else ``backup``."""

    __tablename__ = "oncall_contact_tree"
    __table_args__ = (UniqueConstraint("category", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(200), default="")
    person_id: Mapped[int] = mapped_column(ForeignKey("oncall_people.id", ondelete="RESTRICT"))
    backup_person_id: Mapped[int] = mapped_column(
        ForeignKey("oncall_people.id", ondelete="RESTRICT")
    )
    person: Mapped[Person] = relationship(foreign_keys=[person_id])
    backup: Mapped[Person] = relationship(foreign_keys=[backup_person_id])


class ResponderSecret(Base):
    """Secrets generated once (the ack-link key when none is configured)."""

    __tablename__ = "oncall_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


# --- pages and what happened to them ---------------------------------------------------------


class PageStatus:
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    EXHAUSTED = "exhausted"
    CANCELLED = "cancelled"
    ALL = (TRIGGERED, ACKNOWLEDGED, EXHAUSTED, CANCELLED)


class DeliveryStatus:
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"
    ABANDONED = "abandoned"


class Page(Base):
    __tablename__ = "pages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    summary: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(8))
    policy_name: Mapped[str] = mapped_column(String(64))
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    level_index: Mapped[int] = mapped_column(Integer, default=0)
    cycle: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    """How many levels have been paged; guards against two workers escalating at once."""
    level_paged_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ack_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    acknowledged_by: Mapped[str] = mapped_column(String(200), default="")
    ack_via: Mapped[str] = mapped_column(String(16), default="")
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    notifications: Mapped[list[PageNotification]] = relationship(
        order_by="PageNotification.id", cascade="all, delete-orphan"
    )
    events: Mapped[list[PageEventRecord]] = relationship(
        order_by="PageEventRecord.id", cascade="all, delete-orphan"
    )


class PageNotification(Base):
    """One person asked to respond at one step of a page."""

    __tablename__ = "page_notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    level_index: Mapped[int] = mapped_column(Integer)
    cycle: Mapped[int] = mapped_column(Integer)
    person_handle: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(200))
    notified_at: Mapped[datetime] = mapped_column(UtcDateTime())
    deliveries: Mapped[list[PageDelivery]] = relationship(
        order_by="PageDelivery.id", cascade="all, delete-orphan"
    )


class PageDelivery(Base):
    """One contact method of one notified person; retried with bounded backoff."""

    __tablename__ = "page_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int] = mapped_column(
        ForeignKey("page_notifications.id", ondelete="CASCADE"), index=True
    )
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"), index=True)
    contact_method_id: Mapped[int | None] = mapped_column(
        ForeignKey("oncall_contact_methods.id", ondelete="SET NULL"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    address_shown: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    attempt_log: Mapped[list[PageDeliveryAttempt]] = relationship(
        order_by="PageDeliveryAttempt.number", cascade="all, delete-orphan"
    )


class PageDeliveryAttempt(Base):
    __tablename__ = "page_delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("page_deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(Integer)


class PageEventRecord(Base):
    """What the incident timeline shows about a page, in both languages."""

    __tablename__ = "page_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    level_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    people: Mapped[list[str]] = mapped_column(JSON)
    text_ja: Mapped[str] = mapped_column(Text)
    text_en: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


# --- shapes that cross the API and the YAML files --------------------------------------------


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ContactMethodIn(_Shape):
    kind: Literal["email", "apprise"]
    address: str = Field(min_length=1, max_length=2000)
    label: str = Field(default="", max_length=100)


class ContactMethodOut(_Shape):
    kind: str
    address: str = Field(description="Email address, or the apprise URL with secrets masked.")
    label: str


class PersonIn(_Shape):
    handle: str = Field(max_length=HANDLE_LENGTH_MAX, pattern=HANDLE_PATTERN,
                        description="Short id, e.g. 'tanaka'.")
    display_name: str = Field(min_length=1, max_length=200)
    language: Literal["ja", "en"] = "ja"
    contacts: list[ContactMethodIn] = Field(default_factory=list, max_length=10)


class PersonOut(_Shape):
    handle: str
    display_name: str
    language: str
    contacts: list[ContactMethodOut]


_HANDOFF = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ScheduleIn(_Shape):
    name: str = Field(max_length=HANDLE_LENGTH_MAX, pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=2000)
    timezone: str = Field(default="Asia/Tokyo", max_length=TIMEZONE_LENGTH_MAX)
    start_date: date
    handoff: str = Field(default="09:00", max_length=5, description="Local time of day, HH:MM.")
    rotation_days: int = Field(default=7, ge=1, le=366)
    members: list[Annotated[str, Field(max_length=HANDLE_LENGTH_MAX)]] = Field(
        min_length=1, max_length=100
    )

    @field_validator("handoff")
    @classmethod
    def _handoff_is_hh_mm(cls, value: str) -> str:
        if not _HANDOFF.match(value):
            raise ValueError(f"handoff must be HH:MM (00:00..23:59), got {value!r}")
        return value


class OverrideIn(_Shape):
    person: str = Field(max_length=HANDLE_LENGTH_MAX, pattern=HANDLE_PATTERN)
    start: datetime
    end: datetime
    reason: str = Field(default="", max_length=500)


class OverrideOut(_Shape):
    id: int
    person: str
    start: datetime
    end: datetime
    reason: str
    created_by: str


class ScheduleOut(_Shape):
    name: str
    description: str
    timezone: str
    start_date: date
    handoff: str
    rotation_days: int
    members: list[str]
    overrides: list[OverrideOut]


class ShiftOut(_Shape):
    schedule: str
    person: str | None
    start: datetime | None
    end: datetime | None
    override: bool


class LevelIn(_Shape):
    ack_timeout_s: int = Field(ge=ACK_TIMEOUT_S_MIN, le=ACK_TIMEOUT_S_MAX)
    targets: list[Annotated[str, Field(max_length=TARGET_LENGTH_MAX)]] = Field(
        min_length=1,
        max_length=20,
        description="schedule:NAME, person:HANDLE, contacts:primary or contacts:backup",
    )


class PolicyIn(_Shape):
    name: str = Field(max_length=HANDLE_LENGTH_MAX, pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=2000)
    repeat_count: int = Field(default=0, ge=0, le=5)
    levels: list[LevelIn] = Field(min_length=1, max_length=LEVELS_MAX)


PolicyOut = PolicyIn


class RouteIn(_Shape):
    category: str = Field(default=ANY, max_length=KEYWORD_LENGTH_MAX,
                          description="An incident category, or * for any.")
    severity: str = Field(default=ANY, max_length=KEYWORD_LENGTH_MAX,
                          description="SEV1..SEV4, or * for any.")
    policy: str = Field(max_length=HANDLE_LENGTH_MAX, pattern=NAME_PATTERN)


RouteOut = RouteIn


class ContactIn(_Shape):
    person: str = Field(max_length=HANDLE_LENGTH_MAX, pattern=HANDLE_PATTERN)
    backup: str = Field(max_length=HANDLE_LENGTH_MAX, pattern=HANDLE_PATTERN)
    role: str = Field(default="", max_length=200)


CategoryContactsIn = Annotated[list[ContactIn], Field(max_length=CONTACTS_PER_CATEGORY_MAX)]
"""One category's contacts, in the order they are called."""
ContactTreeIn = Annotated[
    dict[Annotated[str, Field(max_length=KEYWORD_LENGTH_MAX)], CategoryContactsIn],
    Field(max_length=CONTACT_CATEGORIES_MAX),
]
"""The contact tree: each incident category's contacts."""
RoutesIn = Annotated[list[RouteIn], Field(max_length=CONFIG_ITEMS_MAX)]
"""The routing table, first match wins."""


class OncallConfig(_Shape):
    """The whole on-call set-up as one YAML document; applied all at once or not at all."""

    people: list[PersonIn] = Field(default_factory=list, max_length=CONFIG_PEOPLE_MAX)
    schedules: list[ScheduleIn] = Field(default_factory=list, max_length=CONFIG_ITEMS_MAX)
    policies: list[PolicyIn] = Field(default_factory=list, max_length=CONFIG_ITEMS_MAX)
    routes: RoutesIn = Field(default_factory=list)
    contact_tree: ContactTreeIn | None = None


class PageIn(_Shape):
    incident_id: str = Field(min_length=1, max_length=64)
    summary: str = Field(min_length=1, max_length=2000)
    category: str = Field(max_length=KEYWORD_LENGTH_MAX)
    severity: str = Field(max_length=KEYWORD_LENGTH_MAX)


class PersonPageIn(_Shape):
    """Page one named person directly; ``reason`` says why them (kept in the audit log)."""

    incident_id: str = Field(min_length=1, max_length=64)
    summary: str = Field(min_length=1, max_length=2000)
    category: str = Field(max_length=KEYWORD_LENGTH_MAX)
    severity: str = Field(max_length=KEYWORD_LENGTH_MAX)
    reason: str = Field(min_length=1, max_length=500)
    ack_timeout_s: int | None = Field(default=None, ge=60, le=24 * 3600)


class AckIn(_Shape):
    note: str = Field(default="", max_length=500)


class CancelIn(_Shape):
    reason: str = Field(min_length=1, max_length=500)


class DeliveryAttemptOut(_Shape):
    number: int
    attempted_at: datetime
    ok: bool
    error: str
    duration_ms: int


class DeliveryOut(_Shape):
    kind: str
    address: str
    status: str
    attempts: list[DeliveryAttemptOut]
    next_attempt_at: datetime | None


class NotificationOut(_Shape):
    person: str
    level_number: int
    cycle: int
    reason: str
    notified_at: datetime
    deliveries: list[DeliveryOut]


class PageEventOut(_Shape):
    page_id: int
    incident_id: str
    at: datetime
    kind: str
    actor: str
    level_number: int | None
    people: list[str]
    text_ja: str
    text_en: str
    details: dict[str, Any]


class PageOut(_Shape):
    id: int
    incident_id: str
    summary: str
    category: str
    severity: str
    policy: str
    status: str
    level_number: int
    cycle: int
    created_at: datetime
    created_by: str
    ack_due_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str
    ack_via: str
    notifications: list[NotificationOut]
    events: list[PageEventOut]
