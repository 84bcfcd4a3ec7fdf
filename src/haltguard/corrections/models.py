"""Correction tables and the shapes that cross the API.

A correction request is written once, when it is proposed, with exactly the venue commands it
will send (the approver's name filled in at approval) and the plan a person reviews; its
digest covers both, so what is approved is what is journaled. What happens to it after lives
in its own rows: one decision (unique per request: applied or refused by the venue) and one
notice per affected account, in Japanese and English.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from haltguard.db.base import Base
from haltguard.db.types import UtcDateTime
from haltguard.web.bounds import DbId, Int64

DIGEST_LENGTH = 64
REASON_LENGTH_MAX = 500
TRADES_PER_REQUEST_MAX = 1_000
REFERENCE_POINTS_MAX = 10_000
MARKET_PATTERN = r"^[A-Z0-9]{1,16}-[A-Z0-9]{1,16}$"
DECIMAL_PATTERN = r"^(0|[1-9][0-9]*)(\.[0-9]+)?$"


class CorrectionKind(StrEnum):
    BUST = "bust"
    ADJUST = "adjust"
    ROLLBACK = "rollback"


class CorrectionStatus(StrEnum):
    PROPOSED = "proposed"  # waiting for a second operator
    APPLIED = "applied"  # journaled by the venue
    REFUSED = "refused"  # the venue refused it at approval; nothing changed
    REJECTED = "rejected"  # a second operator declined it; nothing went to the venue


# --- tables -----------------------------------------------------------------------------


class CorrectionRequest(Base):
    """A proposed correction: the commands it sends and the plan shown to the approver."""

    __tablename__ = "correction_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    proposed_by: Mapped[str] = mapped_column(String(200))
    proposed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reason: Mapped[str] = mapped_column(Text)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The policy cited: id, version, the sha256 of its file and its ja/en text."""
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    """What would change: the trades with their deviation and balance effects, or the
    rollback's summary, in the venue's integer units, with the asset decimals to show them."""
    commands: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """The venue commands, as journaled, with an empty approver until approval."""
    accounts: Mapped[list[int]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), index=True)
    allow_debit: Mapped[bool] = mapped_column(Boolean)


class CorrectionDecision(Base):
    """The second operator's decision and what the venue did with it."""

    __tablename__ = "correction_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("correction_requests.id"), unique=True)
    approved_by: Mapped[str] = mapped_column(String(200))
    approved_at: Mapped[datetime] = mapped_column(UtcDateTime())
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    venue_events: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """The venue's correction events (trade busted or adjusted, venue rolled back)."""


class CorrectionNotice(Base):
    """What one affected account is told, in both languages."""

    __tablename__ = "correction_notices"

    request_id: Mapped[int] = mapped_column(
        ForeignKey("correction_requests.id"), primary_key=True)
    account: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    subject_en: Mapped[str] = mapped_column(String(200))
    body_en: Mapped[str] = mapped_column(Text)
    subject_ja: Mapped[str] = mapped_column(String(200))
    body_ja: Mapped[str] = mapped_column(Text)


# --- API shapes -----------------------------------------------------------------------------

Market = Annotated[str, Field(pattern=MARKET_PATTERN, max_length=32)]
DecimalText = Annotated[str, Field(pattern=DECIMAL_PATTERN, max_length=40)]
Reason = Annotated[str, Field(min_length=1, max_length=REASON_LENGTH_MAX)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferencePointBody(_Body):
    market: Market
    time: datetime
    price: DecimalText


class ReviewBody(_Body):
    """A window (both ends included) and the filters of a review."""

    from_time: datetime
    to_time: datetime
    market: Market | None = None
    account: Int64 | None = None
    deviation_bps_min: Annotated[int, Field(ge=0, le=10_000)] = 0
    reference_series: Annotated[list[ReferencePointBody],
                                Field(max_length=REFERENCE_POINTS_MAX)] = []


class BustBody(ReviewBody):
    """Bust the erroneous trades a review of the window finds (``trade_ids``: only these)."""

    incident_id: DbId
    reason: Reason
    trade_ids: Annotated[list[Int64], Field(max_length=TRADES_PER_REQUEST_MAX)] = []
    dry_run: bool = False


class AdjustBody(ReviewBody):
    """Re-price one erroneous trade of the window to ``price`` (on the market's tick grid)."""

    incident_id: DbId
    reason: Reason
    trade_id: Int64
    price: DecimalText
    dry_run: bool = False


class RollbackBody(_Body):
    """Roll the venue back to the state after ``target_seq``."""

    incident_id: DbId
    reason: Reason
    target_seq: Int64
    dry_run: bool = False


class ApproveBody(_Body):
    digest: Annotated[str, Field(min_length=DIGEST_LENGTH, max_length=DIGEST_LENGTH)]


class RejectBody(ApproveBody):
    reason: Reason


class RequestRead(BaseModel):
    id: int | None
    """None for a dry run: nothing was stored or sent."""
    incident_id: int
    kind: CorrectionKind
    status: CorrectionStatus | None
    proposed_by: str
    proposed_at: datetime
    reason: str
    policy: dict[str, Any]
    plan: dict[str, Any]
    accounts: list[int]
    digest: str
    allow_debit: bool
    approved_by: str | None = None
    approved_at: datetime | None = None
    detail: str = ""


class NoticeRead(BaseModel):
    account: int
    subject_en: str
    body_en: str
    subject_ja: str
    body_ja: str
