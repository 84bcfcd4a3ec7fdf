"""Incident tables and the shapes that cross the API.

The timeline is append-only: this module offers no way to change or remove an entry, and the
migration installs database triggers that refuse UPDATE and DELETE on it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from sqlalchemy import JSON, BigInteger, Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from haltguard.db.base import Base
from haltguard.db.types import UtcDateTime
from haltguard.incidents.rules import Category, IncidentStatus, Severity, incident_ref
from haltguard.venue.types import MarketState
from haltguard.web.bounds import AssetCode, Count, DbId, MarketSymbol

TITLE_LENGTH_MAX = 200
TEXT_LENGTH_MAX = 20_000
NAME_LENGTH_MAX = 64
LIST_ITEMS_MAX = 100


def _enum(enum_type: type[StrEnum]) -> Enum:
    """A portable enum column: plain VARCHAR holding the value, no native PostgreSQL type."""
    return Enum(
        enum_type,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [member.value for member in members],
    )


class TimelineKind(StrEnum):
    OPENED = "opened"
    STATUS_CHANGED = "status_changed"
    SEVERITY_CHANGED = "severity_changed"
    UPDATED = "updated"
    COMMANDER_ASSIGNED = "commander_assigned"
    COMMENT = "comment"
    TASK_DONE = "task_done"
    PAGE = "page"
    PUBLIC_UPDATE = "public_update"
    VENUE_EVENT_LINKED = "venue_event_linked"
    MARKET_ACTION = "market_action"
    KILL_SWITCH = "kill_switch"
    WITHDRAWALS = "withdrawals"
    RESUME = "resume"
    HANDOFF = "handoff"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_DECIDED = "approval_decided"
    POSTMORTEM = "postmortem"
    REPORT = "report"
    DETECTION = "detection"  # what automatic detection saw and decided (rule, values)


class HoldKind(StrEnum):
    """Something an incident put on the venue that must be lifted (or handed over) before
    the incident can be resolved."""

    MARKET = "market"
    KILL_SWITCH = "kill_switch"
    WITHDRAWALS = "withdrawals"


class ApprovalAction(StrEnum):
    KILL_SWITCH_RELEASE = "kill_switch_release"
    MARKET_RESUME = "market_resume"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    EXECUTED = "executed"
    REJECTED = "rejected"
    FAILED = "failed"


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_LENGTH_MAX))
    summary: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[Category] = mapped_column(_enum(Category))
    severity: Mapped[Severity] = mapped_column(_enum(Severity))
    # The worst severity it ever had: a SEV1 downgraded later still needs four eyes to resume.
    peak_severity: Mapped[Severity] = mapped_column(_enum(Severity))
    status: Mapped[IncidentStatus] = mapped_column(_enum(IncidentStatus), index=True)
    affected_markets: Mapped[list[str]] = mapped_column(JSON, default=list)
    affected_components: Mapped[list[str]] = mapped_column(JSON, default=list)
    estimated_affected_customers: Mapped[int | None] = mapped_column(BigInteger)
    orders_rejected: Mapped[int | None] = mapped_column(BigInteger)
    cause: Mapped[str] = mapped_column(Text, default="")
    incident_commander: Mapped[str | None] = mapped_column(String(NAME_LENGTH_MAX))
    runbook_name: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    runbook_version: Mapped[int] = mapped_column(Integer)
    runbook_digest: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    mitigated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    tasks: Mapped[list[IncidentTask]] = relationship(
        back_populates="incident", order_by="IncidentTask.position", lazy="selectin"
    )

    @property
    def ref(self) -> str:
        """The name people and the venue journal use for it."""
        return incident_ref(self.id)


class TimelineEntry(Base):
    __tablename__ = "incident_timeline"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    kind: Mapped[TimelineKind] = mapped_column(_enum(TimelineKind))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class IncidentTask(Base):
    """One runbook step instantiated for one incident."""

    __tablename__ = "incident_tasks"
    __table_args__ = (UniqueConstraint("incident_id", "step_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    step_key: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    title_ja: Mapped[str] = mapped_column(Text)
    title_en: Mapped[str] = mapped_column(Text)
    owner_role: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    done_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH_MAX))
    note: Mapped[str] = mapped_column(Text, default="")
    overdue_paged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    incident: Mapped[Incident] = relationship(back_populates="tasks")


class VenueEventLink(Base):
    """A venue event that belongs to the story of an incident."""

    __tablename__ = "incident_venue_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    summary: Mapped[str] = mapped_column(Text)
    linked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    linked_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))


class ProtectiveHold(Base):
    __tablename__ = "incident_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[HoldKind] = mapped_column(_enum(HoldKind))
    target: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))  # market, asset, or ""
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    placed_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    released_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH_MAX))
    handed_to_incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))


class Approval(Base):
    """A four-eyes request: one operator asks, a different one approves, then it runs."""

    __tablename__ = "incident_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    action: Mapped[ApprovalAction] = mapped_column(_enum(ApprovalAction))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[ApprovalStatus] = mapped_column(_enum(ApprovalStatus), index=True)
    requested_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH_MAX))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(Text, default="")


class Postmortem(Base):
    __tablename__ = "incident_postmortems"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), unique=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    cause: Mapped[str] = mapped_column(Text)
    went_well: Mapped[list[str]] = mapped_column(JSON, default=list)
    went_badly: Mapped[list[str]] = mapped_column(JSON, default=list)
    recurrence_prevention: Mapped[list[str]] = mapped_column(JSON, default=list)
    action_items: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    written_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    written_at: Mapped[datetime] = mapped_column(UtcDateTime)


# --- shapes that cross the API ------------------------------------------------------------

_Text = Field(default="", max_length=TEXT_LENGTH_MAX)
_Name = Field(min_length=1, max_length=NAME_LENGTH_MAX)
_Item = Annotated[str, Field(max_length=NAME_LENGTH_MAX)]
"""A market, component or channel named in a list."""
_Line = Annotated[str, Field(max_length=TEXT_LENGTH_MAX)]


def _clean_list(values: list[str]) -> list[str]:
    cleaned = [value.strip() for value in values if value.strip()]
    if len(cleaned) > LIST_ITEMS_MAX:
        raise ValueError(f"at most {LIST_ITEMS_MAX} items")
    if any(len(value) > TEXT_LENGTH_MAX for value in cleaned):
        raise ValueError(f"each item must be at most {TEXT_LENGTH_MAX} characters")
    return list(dict.fromkeys(cleaned))


class IncidentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=TITLE_LENGTH_MAX)
    summary: str = _Text
    category: Category
    severity: Severity
    affected_markets: list[_Item] = Field(default_factory=list, max_length=LIST_ITEMS_MAX)
    affected_components: list[_Item] = Field(default_factory=list, max_length=LIST_ITEMS_MAX)
    estimated_affected_customers: Count | None = None
    incident_commander: str | None = Field(default=None, max_length=NAME_LENGTH_MAX)
    started_at: datetime | None = None

    _lists = field_validator("affected_markets", "affected_components")(_clean_list)


class IncidentUpdate(BaseModel):
    """Fields an operator may correct while the incident runs; missing ones stay as they are."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=TITLE_LENGTH_MAX)
    summary: str | None = Field(default=None, max_length=TEXT_LENGTH_MAX)
    severity: Severity | None = None
    affected_markets: list[_Item] | None = Field(default=None, max_length=LIST_ITEMS_MAX)
    affected_components: list[_Item] | None = Field(default=None, max_length=LIST_ITEMS_MAX)
    estimated_affected_customers: Count | None = None
    orders_rejected: Count | None = None
    cause: str | None = Field(default=None, max_length=TEXT_LENGTH_MAX)
    started_at: datetime | None = None

    @field_validator("affected_markets", "affected_components")
    @classmethod
    def _lists(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _clean_list(values)


class TransitionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: IncidentStatus
    note: str = _Text


class CommanderAssign(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = _Name


class CommentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)


class PublicUpdateCreate(BaseModel):
    """What customers are told, in both languages (manual 2.3)."""

    model_config = ConfigDict(extra="forbid")

    message_ja: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)
    message_en: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)
    channels: list[_Item] = Field(default_factory=lambda: ["website"], max_length=LIST_ITEMS_MAX)


class TaskDone(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = _Text


class VenueEventLinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: Count | None = None
    event_type: str = _Name
    summary: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)


class ActionItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)
    owner: str = _Name
    due: str = Field(default="", max_length=32, description="A date such as 2025-02-01.")


class PostmortemWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str = _Text
    cause: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)
    went_well: list[_Line] = Field(default_factory=list, max_length=LIST_ITEMS_MAX)
    went_badly: list[_Line] = Field(default_factory=list, max_length=LIST_ITEMS_MAX)
    recurrence_prevention: list[_Line] = Field(default_factory=list, max_length=LIST_ITEMS_MAX)
    action_items: list[ActionItem] = Field(default_factory=list, max_length=LIST_ITEMS_MAX)

    _lists = field_validator("went_well", "went_badly", "recurrence_prevention")(_clean_list)


class HaltRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    markets: list[MarketSymbol] = Field(min_length=1, max_length=LIST_ITEMS_MAX)
    reason: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)
    cancels_allowed: bool = True


class MarketStateRequest(BaseModel):
    """Tighten a market: cancel-only, post-only, limit-only or an auction. Loosening a market
    that takes no orders is a resume, which has its own request."""

    model_config = ConfigDict(extra="forbid")

    markets: list[MarketSymbol] = Field(min_length=1, max_length=LIST_ITEMS_MAX)
    state: MarketState
    reason: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)
    auction_seconds: int = Field(default=0, ge=0, le=24 * 3600)


class KillSwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


class WithdrawalsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    asset: Annotated[AssetCode, BeforeValidator(_upper)] = Field(
        description="An asset, e.g. BTC (any case)."
    )
    reason: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)


class ResumePhaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: MarketState
    min_seconds: int = Field(ge=0, le=24 * 3600)


REOPEN_AUCTION_SECONDS_DEFAULT = 180


class ResumeRequest(BaseModel):
    """Reopen markets through a resume plan. Without ``phases`` the plan is the usual one:
    an opening auction (itayose) of ``auction_seconds`` that uncrosses, then open."""

    model_config = ConfigDict(extra="forbid")

    markets: list[MarketSymbol] = Field(min_length=1, max_length=LIST_ITEMS_MAX)
    reason: str = Field(min_length=1, max_length=TEXT_LENGTH_MAX)
    auction_seconds: int = Field(default=REOPEN_AUCTION_SECONDS_DEFAULT, ge=0, le=3600)
    phases: list[ResumePhaseSpec] = Field(default_factory=list, max_length=10)

    def plan(self) -> list[ResumePhaseSpec]:
        if self.phases:
            return list(self.phases)
        return [ResumePhaseSpec(state=MarketState.AUCTION, min_seconds=self.auction_seconds),
                ResumePhaseSpec(state=MarketState.OPEN, min_seconds=0)]


class HandoffRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    market: MarketSymbol
    to_incident_id: DbId
    note: str = _Text


class ApprovalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = _Text


class IncidentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    ref: str
    title: str
    summary: str
    category: Category
    severity: Severity
    peak_severity: Severity
    status: IncidentStatus
    affected_markets: list[str]
    affected_components: list[str]
    estimated_affected_customers: int | None
    orders_rejected: int | None
    cause: str
    incident_commander: str | None
    runbook_name: str
    runbook_version: int
    started_at: datetime | None
    detected_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    created_by: str
    created_at: datetime


class TaskProgress(BaseModel):
    done: int
    total: int
    overdue: int


class IncidentDetail(IncidentRead):
    progress: TaskProgress


class TimelineEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    kind: TimelineKind
    message: str
    details: dict[str, Any]


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    position: int
    phase: str
    step_key: str
    title_ja: str
    title_en: str
    owner_role: str
    due_at: datetime
    done_at: datetime | None
    done_by: str | None
    note: str
    overdue: bool = False


class VenueEventLinkRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    seq: int | None
    event_type: str
    summary: str
    linked_at: datetime
    linked_by: str


class HoldRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: HoldKind
    target: str
    placed_at: datetime
    placed_by: str
    released_at: datetime | None
    released_by: str | None
    handed_to_incident_id: int | None


class ApprovalRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    incident_id: int
    action: ApprovalAction
    params: dict[str, Any]
    reason: str
    status: ApprovalStatus
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    outcome: str


class PostmortemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    summary: str
    cause: str
    went_well: list[str]
    went_badly: list[str]
    recurrence_prevention: list[str]
    action_items: list[ActionItem]
    written_by: str
    written_at: datetime


class MetricsRead(BaseModel):
    """Seconds; ``None`` where the incident has not got that far."""

    time_to_detect_s: float | None
    time_to_acknowledge_s: float | None
    time_to_mitigate_s: float | None
    time_to_resolve_s: float | None


class PeriodMetricsRead(BaseModel):
    since: datetime
    until: datetime
    incidents: int
    by_severity: dict[str, int]
    mean_time_to_detect_s: float | None
    mean_time_to_acknowledge_s: float | None
    mean_time_to_mitigate_s: float | None
    mean_time_to_resolve_s: float | None


class ActionResult(BaseModel):
    target: str
    ok: bool
    detail: str


class ActionOutcome(BaseModel):
    """What a protective action did, target by target; or the approval it is waiting for."""

    action: str
    results: list[ActionResult] = Field(default_factory=list)
    approval: ApprovalRead | None = None
