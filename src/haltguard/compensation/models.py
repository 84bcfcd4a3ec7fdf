"""Compensation tables and the shapes that cross the API.

A run is written once, when it is computed, with every line and the inputs that produced
each one; the database refuses UPDATE and DELETE on ``compensation_runs`` and
``compensation_lines`` (migration ``0010_compensation``), so what was approved is what is
paid and what a customer is told. A recomputation is a new run. What happens to a run after
that lives in its own rows: one approval (unique per run), one payout with its progress, one
statement per paid line.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from haltguard.db.base import Base
from haltguard.db.types import UtcDateTime
from haltguard.notify.models import Language
from haltguard.web.bounds import Count, DbId, Int64

NAME_LENGTH_MAX = 100
NOTE_LENGTH_MAX = 2_000
DIGEST_LENGTH = 64
POLICIES_PER_RUN_MAX = 20
REFERENCES_PER_RUN_MAX = 20
CONTACTS_PER_REQUEST_MAX = 5_000
EMAIL_LENGTH_MAX = 320
_FILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
"""A policy or reference file is named inside its configured directory, never by a path."""

MARKET_PATTERN = r"^[A-Z0-9]{1,16}-[A-Z0-9]{1,16}$"
"""A market as the venue names it: BASE-QUOTE (``BTC-JPY``)."""
FileName = Annotated[str, Field(min_length=1, max_length=NAME_LENGTH_MAX,
                                pattern=_FILE_NAME_PATTERN)]


class RunState(StrEnum):
    COMPUTED = "computed"
    """Lines computed and frozen; waiting for a second operator's approval."""
    APPROVED = "approved"
    """Approved by someone other than the proposer; may be paid."""
    PAYING = "paying"
    """A payout started and has not credited every line yet (resumable)."""
    PAID = "paid"
    """Every line credited into the venue exactly once."""


class StatementStatus(StrEnum):
    STORED = "stored"
    """Written in both languages; no contact address was given for the account yet."""
    SENT = "sent"
    FAILED = "failed"
    """The mail server refused it; ``last_error`` says why; asking again retries it."""


# --- tables -----------------------------------------------------------------------------


class CompensationRun(Base):
    """A computed run: what it binds (incident, policies, cut-off, reference prices) and what
    came out (totals, distribution, top accounts, digest). Never changed once written."""

    __tablename__ = "compensation_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    proposed_by: Mapped[str] = mapped_column(String(200))
    proposed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    note: Mapped[str] = mapped_column(Text, default="")
    policies: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """Each policy as loaded: file, name, kind, version and its ja/en description."""
    cutoff: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The cut-off the balances were read at: ``seq`` and ``ts_ns`` of the journal."""
    window: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The journal range the affected accounts and refused orders came from."""
    references: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """Each reference price: name, source file, window, price, trades and volume used."""
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), index=True)
    """The computation's digest over its inputs and lines: same inputs, same digest."""
    line_count: Mapped[int] = mapped_column(BigInteger)
    account_count: Mapped[int] = mapped_column(BigInteger)
    totals: Mapped[dict[str, int]] = mapped_column(JSON)
    """Currency -> minor units owed over all lines."""
    currency_scales: Mapped[dict[str, int]] = mapped_column(JSON)
    """Currency or held asset -> minor units per whole unit, so amounts and holdings are shown
    as decimals exactly."""
    histogram: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    top_accounts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    supersedes_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The earlier run of the same incident this one recomputes, if any."""


class CompensationLine(Base):
    """One amount owed to one account in one currency, with the parts that make it up."""

    __tablename__ = "compensation_lines"
    __table_args__ = (Index("ix_compensation_lines_account", "run_id", "account"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("compensation_runs.id"), primary_key=True)
    line_no: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    parts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """Each policy's part: its name, the inputs it used and the amount it gave."""


class CompensationApproval(Base):
    """The second pair of eyes: one per run, never by its proposer, bound to its digest."""

    __tablename__ = "compensation_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("compensation_runs.id"), unique=True)
    approved_by: Mapped[str] = mapped_column(String(200))
    approved_at: Mapped[datetime] = mapped_column(UtcDateTime())
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH))
    note: Mapped[str] = mapped_column(Text, default="")


class CompensationPayout(Base):
    """A run's payout and its progress; a restarted payout continues on the same row."""

    __tablename__ = "compensation_payouts"

    run_id: Mapped[int] = mapped_column(ForeignKey("compensation_runs.id"), primary_key=True,
                                        autoincrement=False)
    started_by: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    lines_total: Mapped[int] = mapped_column(BigInteger)
    lines_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    amounts_paid: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    public_note_posted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class CompensationStatement(Base):
    """What one paid account is told, in both languages, and whether it went out."""

    __tablename__ = "compensation_statements"

    run_id: Mapped[int] = mapped_column(ForeignKey("compensation_runs.id"), primary_key=True)
    account: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    line_nos: Mapped[list[int]] = mapped_column(JSON)
    """The account's lines the statement explains (one per currency)."""
    subject_ja: Mapped[str] = mapped_column(String(200))
    subject_en: Mapped[str] = mapped_column(String(200))
    body_ja: Mapped[str] = mapped_column(Text)
    body_en: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    language: Mapped[str | None] = mapped_column(String(2), nullable=True)
    """The language it was sent in, once sent."""
    phrase_shown: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    """Whether the customer's anti-phishing phrase was in the email."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(String(500), default="")


# --- shapes -----------------------------------------------------------------------------


class ReferenceSource(BaseModel):
    """A reference price: the VWAP over a window of either a trades CSV (in the reference
    directory, e.g. another venue's XEM-JPY trades from the halt to the announcement) or the
    venue's own market (its trades in the journal)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_LENGTH_MAX,
                      description="The name the policies refer to, e.g. xem-jpy-vwap.")
    csv: FileName | None = Field(
        default=None, description="A trades CSV inside the configured reference directory.")
    market: str | None = Field(
        default=None, min_length=3, max_length=33, pattern=MARKET_PATTERN,
        description="One of the venue's markets (e.g. BTC-JPY): its own trades are used.")
    from_time: datetime
    to_time: datetime
    gap_s_max: int = Field(default=3_600, ge=1, le=30 * 86_400,
                           description="The longest gap allowed between two trades, seconds.")
    price_places: int = Field(default=3, ge=0, le=18,
                              description="Decimals the VWAP is rounded down to.")

    @model_validator(mode="after")
    def _window(self) -> ReferenceSource:
        if (self.csv is None) == (self.market is None):
            raise ValueError("give exactly one source of trades for a reference: csv (a file "
                             "in the reference directory) or market (the venue's own)")
        if self.from_time.tzinfo is None or self.to_time.tzinfo is None:
            raise ValueError("give the reference window with a time zone, "
                             "e.g. 2018-01-26T12:52:00+09:00")
        if self.to_time <= self.from_time:
            raise ValueError("the reference window's to_time must come after its from_time")
        return self


class RunProposal(BaseModel):
    """What a run binds: an incident, policies, a cut-off and reference prices. The journal
    range of the impact analysis defaults to the incident's (detected until resolved)."""

    model_config = ConfigDict(extra="forbid")

    incident_id: DbId
    policies: list[FileName] = Field(min_length=1, max_length=POLICIES_PER_RUN_MAX)
    cutoff_seq: Count | None = None
    cutoff_time: datetime | None = None
    references: list[ReferenceSource] = Field(default_factory=list,
                                              max_length=REFERENCES_PER_RUN_MAX)
    from_time: datetime | None = None
    to_time: datetime | None = None
    supersedes_run_id: DbId | None = None
    note: str = Field(default="", max_length=NOTE_LENGTH_MAX)

    @model_validator(mode="after")
    def _one_cutoff(self) -> RunProposal:
        if (self.cutoff_seq is None) == (self.cutoff_time is None):
            raise ValueError("give exactly one cut-off: cutoff_seq (a journal sequence number) "
                             "or cutoff_time (a time with its zone)")
        for moment in (self.cutoff_time, self.from_time, self.to_time):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("times need a zone, e.g. 2026-12-07T10:00:00+09:00")
        return self


class RunRead(BaseModel):
    id: int
    incident_id: int
    state: RunState
    proposed_by: str
    proposed_at: datetime
    note: str
    policies: list[dict[str, Any]]
    cutoff: dict[str, Any]
    window: dict[str, Any]
    references: list[dict[str, Any]]
    digest: str
    line_count: int
    account_count: int
    totals: dict[str, int]
    currency_scales: dict[str, int]
    histogram: list[dict[str, Any]]
    top_accounts: list[dict[str, Any]]
    supersedes_run_id: int | None
    approved_by: str | None
    approved_at: datetime | None


class LineRead(BaseModel):
    line_no: int
    account: int
    currency: str
    amount_minor: int
    parts: list[dict[str, Any]]


class Explanation(BaseModel):
    """Why one account gets what it gets: each line with the inputs that produced it, and
    the rules in both languages as published."""

    run_id: int
    account: int
    digest: str
    cutoff: dict[str, Any]
    window: dict[str, Any] = Field(default_factory=dict)
    """The journal range read, and how refused orders were priced (and which could not be)."""
    references: list[dict[str, Any]]
    policies: list[dict[str, Any]]
    lines: list[LineRead]


class Approve(BaseModel):
    """An approval names the digest the approver reviewed, so what is approved is exactly
    what they saw (a recomputation has its own run and its own approval)."""

    model_config = ConfigDict(extra="forbid")

    digest: str = Field(min_length=DIGEST_LENGTH, max_length=DIGEST_LENGTH,
                        pattern=r"^[0-9a-f]{64}$")
    note: str = Field(default="", max_length=NOTE_LENGTH_MAX)


class PayoutRead(BaseModel):
    run_id: int
    state: RunState
    lines_total: int
    lines_paid: int
    amounts_paid: dict[str, int]
    attempts: int
    started_by: str
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    last_error: str
    public_note_posted_at: datetime | None
    running: bool = False
    """Whether the service is paying this run now (false after a stop or a restart: pay
    again to resume)."""


class Contact(BaseModel):
    """Where one account's statement goes (the venue keeps no addresses)."""

    model_config = ConfigDict(extra="forbid")

    account: Int64
    email: str = Field(min_length=3, max_length=EMAIL_LENGTH_MAX)
    language: Language = Language.JA


class StatementsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contacts: list[Contact] = Field(default_factory=list, max_length=CONTACTS_PER_REQUEST_MAX)


class StatementRead(BaseModel):
    run_id: int
    account: int
    line_nos: list[int]
    status: StatementStatus
    subject_ja: str
    subject_en: str
    body_ja: str
    body_en: str
    language: str | None
    phrase_shown: bool | None
    sent_at: datetime | None
    last_error: str


class StatementCounts(BaseModel):
    run_id: int
    stored: int = 0
    sent: int = 0
    failed: int = 0
    written_now: int = 0
    sent_now: int = 0
