"""Status page tables and the shapes that cross the operator API.

Components carry both the status the rules chose (``automatic_status``) and the one shown
(``status``), which differs only while an operator's override is set. Every change of the
shown status appends a row to ``status_component_history``, from which the uptime bars are
drawn. Public updates start as drafts; publishing one records it on the incident's timeline
(``timeline_entry_id``), the single record of what customers were told.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
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
from haltguard.status.rules import ComponentStatus, MaintenanceStatus, UpdateStatus

KEY_LENGTH_MAX = 64
NAME_LENGTH_MAX = 200
TEXT_LENGTH_MAX = 20_000
ACTOR_LENGTH_MAX = 64
COMPONENTS_PER_ITEM_MAX = 200


def _enum(enum_type: type[StrEnum]) -> Enum:
    """A portable enum column: plain VARCHAR holding the value, no native PostgreSQL type."""
    return Enum(
        enum_type,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [member.value for member in members],
    )


class UpdateState(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    DISCARDED = "discarded"


class ComponentKind(StrEnum):
    GROUP = "group"
    MARKET = "market"
    DEPOSITS = "deposits"
    WITHDRAWALS = "withdrawals"
    SERVICE = "service"


class StatusComponent(Base):
    __tablename__ = "status_components"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_LENGTH_MAX), unique=True)
    kind: Mapped[ComponentKind] = mapped_column(_enum(ComponentKind))
    group_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH_MAX))
    position: Mapped[int] = mapped_column(Integer)
    name_ja: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    name_en: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    description_ja: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    showcase: Mapped[bool] = mapped_column(Boolean, default=True)
    only_show_if_degraded: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[ComponentStatus] = mapped_column(_enum(ComponentStatus))
    automatic_status: Mapped[ComponentStatus] = mapped_column(_enum(ComponentStatus))
    reason: Mapped[str] = mapped_column(Text, default="")
    override_status: Mapped[ComponentStatus | None] = mapped_column(_enum(ComponentStatus))
    override_note: Mapped[str] = mapped_column(Text, default="")
    override_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH_MAX))
    override_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ComponentHistory(Base):
    """From ``started_at`` the component showed ``status`` (until the next row)."""

    __tablename__ = "status_component_history"
    __table_args__ = (Index("ix_status_component_history_component_at",
                            "component_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component_id: Mapped[int] = mapped_column(ForeignKey("status_components.id"))
    status: Mapped[ComponentStatus] = mapped_column(_enum(ComponentStatus))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(Text)


class PublicIncident(Base):
    """An incident customers have been told about: its public names, once published."""

    __tablename__ = "status_incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), unique=True)
    name_ja: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    name_en: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Maintenance(Base):
    __tablename__ = "status_maintenances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name_ja: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    name_en: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    scheduled_for: Mapped[datetime] = mapped_column(UtcDateTime)
    scheduled_until: Mapped[datetime] = mapped_column(UtcDateTime)
    components: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[MaintenanceStatus] = mapped_column(_enum(MaintenanceStatus))
    created_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH_MAX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    announced_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    @property
    def ref(self) -> str:
        return f"MNT-{self.id}"


class StatusUpdate(Base):
    """One public update of an incident or a maintenance: a draft until published."""

    __tablename__ = "status_updates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    maintenance_id: Mapped[int | None] = mapped_column(
        ForeignKey("status_maintenances.id"), index=True
    )
    state: Mapped[UpdateState] = mapped_column(_enum(UpdateState), index=True)
    status: Mapped[str] = mapped_column(String(32))  # an UpdateStatus or MaintenanceStatus
    name_ja: Mapped[str | None] = mapped_column(String(NAME_LENGTH_MAX))
    name_en: Mapped[str | None] = mapped_column(String(NAME_LENGTH_MAX))
    body_ja: Mapped[str] = mapped_column(Text)
    body_en: Mapped[str] = mapped_column(Text)
    components: Mapped[list[str]] = mapped_column(JSON, default=list)
    affected: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH_MAX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    edited_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH_MAX))
    edited_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    published_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH_MAX))
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    timeline_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("incident_timeline.id"), unique=True
    )


class CadencePage(Base):
    """The incident commander was paged because the update due at ``due_at`` was late."""

    __tablename__ = "status_cadence_pages"
    __table_args__ = (UniqueConstraint("incident_id", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    paged_at: Mapped[datetime] = mapped_column(UtcDateTime)
    page_id: Mapped[int | None] = mapped_column(Integer)


class StatusRevision(Base):
    """One row counting changes, so every process serving the page sees a change cheaply."""

    __tablename__ = "status_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


# --- shapes that cross the operator API -------------------------------------------------------

_Text = Field(min_length=1, max_length=TEXT_LENGTH_MAX)
_Name = Field(default=None, min_length=1, max_length=NAME_LENGTH_MAX)
_ComponentKey = Annotated[str, Field(max_length=KEY_LENGTH_MAX)]


def _clean_keys(values: list[str]) -> list[str]:
    cleaned = list(dict.fromkeys(value.strip() for value in values if value.strip()))
    if len(cleaned) > COMPONENTS_PER_ITEM_MAX:
        raise ValueError(f"at most {COMPONENTS_PER_ITEM_MAX} components")
    if any(len(value) > KEY_LENGTH_MAX for value in cleaned):
        raise ValueError(f"a component key is at most {KEY_LENGTH_MAX} characters")
    return cleaned


def _clean_optional_keys(values: list[str] | None) -> list[str] | None:
    return None if values is None else _clean_keys(values)


class ComponentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str
    kind: ComponentKind
    group_key: str | None
    position: int
    name_ja: str
    name_en: str
    status: ComponentStatus
    automatic_status: ComponentStatus
    reason: str
    override_status: ComponentStatus | None
    override_note: str
    override_by: str | None
    override_at: datetime | None
    updated_at: datetime


class OverrideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: ComponentStatus
    reason: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)


class ClearOverrideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)


class IncidentDraftRequest(BaseModel):
    """Start a public update of an incident. Text left out is written from the template;
    the operator reads and edits it before publishing."""

    model_config = ConfigDict(extra="forbid")

    status: UpdateStatus
    name_ja: str | None = _Name
    name_en: str | None = _Name
    body_ja: str | None = Field(default=None, min_length=1, max_length=TEXT_LENGTH_MAX)
    body_en: str | None = Field(default=None, min_length=1, max_length=TEXT_LENGTH_MAX)
    cause_ja: str | None = Field(default=None, min_length=1, max_length=2_000)
    cause_en: str | None = Field(default=None, min_length=1, max_length=2_000)
    expected_recovery_at: datetime | None = None
    components: list[_ComponentKey] | None = Field(
        default=None, max_length=COMPONENTS_PER_ITEM_MAX
    )

    _keys = field_validator("components")(_clean_optional_keys)


class DraftEdit(BaseModel):
    """Change a draft; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(default=None, max_length=32)
    name_ja: str | None = _Name
    name_en: str | None = _Name
    body_ja: str | None = Field(default=None, min_length=1, max_length=TEXT_LENGTH_MAX)
    body_en: str | None = Field(default=None, min_length=1, max_length=TEXT_LENGTH_MAX)
    components: list[_ComponentKey] | None = Field(
        default=None, max_length=COMPONENTS_PER_ITEM_MAX
    )

    _keys = field_validator("components")(_clean_optional_keys)


class MaintenanceCreate(BaseModel):
    """Schedule a maintenance; its announcement starts as a draft to read and publish."""

    model_config = ConfigDict(extra="forbid")

    scheduled_for: datetime
    scheduled_until: datetime
    components: list[_ComponentKey] = Field(min_length=1, max_length=COMPONENTS_PER_ITEM_MAX)
    name_ja: str | None = _Name
    name_en: str | None = _Name
    details_ja: str | None = Field(default=None, min_length=1, max_length=2_000)
    details_en: str | None = Field(default=None, min_length=1, max_length=2_000)

    _keys = field_validator("components")(_clean_keys)


class MaintenanceDraftRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: MaintenanceStatus
    body_ja: str | None = Field(default=None, min_length=1, max_length=TEXT_LENGTH_MAX)
    body_en: str | None = Field(default=None, min_length=1, max_length=TEXT_LENGTH_MAX)


class UpdateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    incident_id: int | None
    maintenance_id: int | None
    state: UpdateState
    status: str
    name_ja: str | None
    name_en: str | None
    body_ja: str
    body_en: str
    components: list[str]
    created_by: str
    created_at: datetime
    edited_by: str | None
    edited_at: datetime | None
    published_by: str | None
    published_at: datetime | None
    timeline_entry_id: int | None


class MaintenanceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    ref: str
    name_ja: str
    name_en: str
    scheduled_for: datetime
    scheduled_until: datetime
    components: list[str]
    status: MaintenanceStatus
    created_by: str
    created_at: datetime
    announced_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None


class CadenceRead(BaseModel):
    """An open incident's public-update clock."""

    incident_id: int
    ref: str
    severity: str
    every_minutes: int
    last_published_at: datetime | None
    due_at: datetime
    overdue: bool
    paged_at: datetime | None
