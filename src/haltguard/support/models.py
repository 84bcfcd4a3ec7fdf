"""Support tables and the shapes that cross the API.

A ticket is a customer's question from one channel (the contact form, email, a chat
transcript, the API) with the open incident it is about, its SLA due times and its messages.
Replies go out through ``support_outgoing_mail``: one row per (bulk reply, customer), unique,
so a bulk reply repeated, retried or sent from two consoles mails nobody twice. Help-centre
articles are searched through an FTS5 trigram index on SQLite and ``pg_trgm`` on PostgreSQL
(migration ``0011_support``; ``search.py``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    BigInteger,
    Boolean,
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
from haltguard.notify.models import Language
from haltguard.web.bounds import DbId, Int64

SUBJECT_LENGTH_MAX = 300
BODY_LENGTH_MAX = 20_000
NAME_LENGTH_MAX = 200
EMAIL_LENGTH_MAX = 320
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,79}$"
ARTICLE_TEXT_MAX = 50_000
MACRO_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CUSTOMER_KEY_LENGTH = 80


class Channel(StrEnum):
    FORM = "form"
    EMAIL = "email"
    CHAT = "chat"
    API = "api"


class TicketCategory(StrEnum):
    """What the customer asks about; ``incident`` when it is about an interruption."""

    INCIDENT = "incident"
    TRADING = "trading"
    DEPOSIT_WITHDRAWAL = "deposit_withdrawal"
    ACCOUNT = "account"
    COMPENSATION = "compensation"
    OTHER = "other"


class TicketStatus(StrEnum):
    NEW = "new"
    """Nobody answered yet."""
    OPEN = "open"
    """An agent answered; the conversation goes on."""
    PENDING = "pending"
    """Waiting for the customer."""
    RESOLVED = "resolved"
    CLOSED = "closed"


class AuthorKind(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    SYSTEM = "system"


class MailStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    NO_ADDRESS = "no_address"
    """The customer gave no email address (an API or chat ticket): answered in the ticket."""


# --- tables -----------------------------------------------------------------------------


class SupportArticle(Base):
    """A help-centre article in both languages; ``incident_id`` for an incident's own entry
    (pinned at the top of the help centre while the incident is open)."""

    __tablename__ = "support_articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    category: Mapped[str] = mapped_column(String(40), index=True)
    title_ja: Mapped[str] = mapped_column(String(SUBJECT_LENGTH_MAX))
    title_en: Mapped[str] = mapped_column(String(SUBJECT_LENGTH_MAX))
    body_ja: Mapped[str] = mapped_column(Text)
    body_en: Mapped[str] = mapped_column(Text)
    keywords: Mapped[str] = mapped_column(Text, default="")
    search_text: Mapped[str] = mapped_column(Text, default="")
    """Titles, keywords and bodies of both languages, lower-cased: what search matches."""
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SupportTicket(Base):
    __tablename__ = "support_tickets"
    __table_args__ = (
        Index("ix_support_tickets_incident_customer", "incident_id", "customer_key"),
        Index("ix_support_tickets_status_due", "status", "first_response_due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(2))
    subject: Mapped[str] = mapped_column(String(SUBJECT_LENGTH_MAX))
    body: Mapped[str] = mapped_column(Text)
    customer_name: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX), default="")
    customer_email: Mapped[str] = mapped_column(String(EMAIL_LENGTH_MAX), default="")
    customer_key: Mapped[str] = mapped_column(String(CUSTOMER_KEY_LENGTH))
    """Who the customer is for "one mail each": the digest of their email address, else
    their account, else the ticket itself."""
    account: Mapped[int | None] = mapped_column(BigInteger, index=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    link_reason: Mapped[str] = mapped_column(String(300), default="")
    assignee: Mapped[str | None] = mapped_column(String(NAME_LENGTH_MAX), index=True)
    source_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    """What makes a retried submission the same ticket: the email's Message-ID, the chat's
    id, the API client's idempotency key."""
    rating_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    first_response_due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    resolution_due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    first_response_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    first_response_breach_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    """When the first-response breach was alerted (once)."""
    resolution_breach_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    satisfaction_comment: Mapped[str] = mapped_column(Text, default="")

    @property
    def ref(self) -> str:
        return ticket_ref(self.id)


def ticket_ref(ticket_id: int) -> str:
    """The name customers and agents use for a ticket."""
    return f"SUP-{ticket_id}"


class SupportMessage(Base):
    __tablename__ = "support_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("support_tickets.id"), index=True)
    author_kind: Mapped[str] = mapped_column(String(16))
    author: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    bulk_reply_id: Mapped[int | None] = mapped_column(ForeignKey("support_bulk_replies.id"))


class SupportMacro(Base):
    """A reply template in both languages with ``{variables}`` (``macros.VARIABLES``)."""

    __tablename__ = "support_macros"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    subject_ja: Mapped[str] = mapped_column(String(SUBJECT_LENGTH_MAX))
    subject_en: Mapped[str] = mapped_column(String(SUBJECT_LENGTH_MAX))
    body_ja: Mapped[str] = mapped_column(Text)
    body_en: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SupportBulkReply(Base):
    """One answer to every ticket linked to an incident, for one public update (unique)."""

    __tablename__ = "support_bulk_replies"
    __table_args__ = (UniqueConstraint("incident_id", "update_entry_id",
                                       name="uq_support_bulk_replies_update"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    update_entry_id: Mapped[int] = mapped_column(Integer)
    """The incident timeline entry of the public update this reply carries."""
    macro_name: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    tickets_answered: Mapped[int] = mapped_column(BigInteger)
    mails_queued: Mapped[int] = mapped_column(BigInteger)
    customers_without_address: Mapped[int] = mapped_column(BigInteger)


class SupportOutgoingMail(Base):
    """A reply to send; unique per (bulk reply, customer)."""

    __tablename__ = "support_outgoing_mail"
    __table_args__ = (
        UniqueConstraint("bulk_reply_id", "customer_key", name="uq_support_mail_customer"),
        Index("ix_support_outgoing_mail_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("support_tickets.id"), index=True)
    bulk_reply_id: Mapped[int | None] = mapped_column(ForeignKey("support_bulk_replies.id"))
    customer_key: Mapped[str] = mapped_column(String(CUSTOMER_KEY_LENGTH))
    to_address: Mapped[str] = mapped_column(String(EMAIL_LENGTH_MAX))
    language: Mapped[str] = mapped_column(String(2))
    subject: Mapped[str] = mapped_column(String(SUBJECT_LENGTH_MAX))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


# --- shapes -------------------------------------------------------------------------------

Subject = Annotated[str, Field(min_length=1, max_length=SUBJECT_LENGTH_MAX)]
Body = Annotated[str, Field(min_length=1, max_length=BODY_LENGTH_MAX)]
Name = Annotated[str, Field(max_length=NAME_LENGTH_MAX)]
Email = Annotated[str, Field(max_length=EMAIL_LENGTH_MAX)]


class TicketCreate(BaseModel):
    """A ticket through the API (an agent on the phone, another system)."""

    model_config = ConfigDict(extra="forbid")

    subject: Subject
    body: Body
    customer_name: Name = ""
    customer_email: Email = ""
    account: Int64 | None = None
    language: Language = Language.JA
    category: TicketCategory | None = None
    market: Annotated[str, Field(max_length=40)] = ""
    idempotency_key: Annotated[str, Field(max_length=200)] = ""


class ContactForm(BaseModel):
    """The public contact form. ``website`` is a field people never see (a honeypot): a
    form that fills it in was sent by a program and is refused."""

    model_config = ConfigDict(extra="forbid")

    subject: Subject
    body: Body
    customer_name: Name = ""
    customer_email: Email
    account: Int64 | None = None
    language: Language = Language.JA
    market: Annotated[str, Field(max_length=40)] = ""
    website: Annotated[str, Field(max_length=200)] = ""


class TicketAccepted(BaseModel):
    ref: str
    incident_ref: str | None
    message_ja: str
    message_en: str


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    author_kind: str
    author: str
    body: str
    created_at: datetime


class SlaRead(BaseModel):
    first_response_due_at: datetime
    first_response_at: datetime | None
    first_response: str
    """``met``, ``breached`` or ``running``."""
    first_response_remaining_s: float | None
    resolution_due_at: datetime
    resolved_at: datetime | None
    resolution: str
    resolution_remaining_s: float | None


class TicketRead(BaseModel):
    id: int
    ref: str
    channel: Channel
    category: TicketCategory
    status: TicketStatus
    language: Language
    subject: str
    body: str
    customer_name: str
    customer_email: str
    account: int | None
    incident_id: int | None
    link_reason: str
    assignee: str | None
    created_at: datetime
    sla: SlaRead
    satisfaction: int | None
    satisfaction_comment: str


class TicketUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TicketStatus | None = None
    assignee: Name | None = None
    category: TicketCategory | None = None
    incident_id: DbId | None = None


class ReplyCreate(BaseModel):
    """An agent's reply: written out, or from a macro (its variables filled in)."""

    model_config = ConfigDict(extra="forbid")

    body: Annotated[str, Field(max_length=BODY_LENGTH_MAX)] = ""
    macro: Annotated[str, Field(max_length=64)] = ""
    resolve: bool = False


class ChatText(BaseModel):
    """An agent's message in a chat (the hub checks its length and says so)."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, Field(max_length=4_000)]


class Rating(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, Field(min_length=1, max_length=64)]
    score: Annotated[int, Field(ge=1, le=5)]
    comment: Annotated[str, Field(max_length=2_000)] = ""


class MacroCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=MACRO_NAME_PATTERN, max_length=64)]
    subject_ja: Subject
    subject_en: Subject
    body_ja: Body
    body_en: Body


class MacroRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    subject_ja: str
    subject_en: str
    body_ja: str
    body_en: str


class ArticleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=80)]
    category: Annotated[str, Field(min_length=1, max_length=40)]
    title_ja: Subject
    title_en: Subject
    body_ja: Annotated[str, Field(min_length=1, max_length=ARTICLE_TEXT_MAX)]
    body_en: Annotated[str, Field(min_length=1, max_length=ARTICLE_TEXT_MAX)]
    keywords: Annotated[str, Field(max_length=2_000)] = ""
    published: bool = True


class ArticleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    slug: str
    category: str
    title_ja: str
    title_en: str
    body_ja: str
    body_en: str
    keywords: str
    incident_id: int | None
    published: bool
    updated_at: datetime


class SearchHit(BaseModel):
    slug: str
    title: str
    snippet: str
    score: float


class SearchAnswer(BaseModel):
    query: str
    hits: list[SearchHit]
    contact_url: str | None
    """Set when nothing matched: where to ask instead (the contact form)."""


class BulkReplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    update_entry_id: DbId | None = None
    """The public update to carry; none: the incident's latest."""
    macro: Annotated[str, Field(max_length=64)] = ""


class BulkReplyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    incident_id: int
    update_entry_id: int
    macro_name: str
    created_by: str
    created_at: datetime
    tickets_answered: int
    mails_queued: int
    customers_without_address: int
    created: bool = True
    """False when this update had been answered already (nothing was sent again)."""


class StaffingRowRead(BaseModel):
    agents: int
    probability_wait: float
    service_level: float
    average_speed_of_answer_s: float | None
    occupancy: float


class StaffingRead(BaseModel):
    arrivals_per_hour: float
    handle_s: float
    answer_within_s: float
    service_level_target: float
    load_erlangs: float
    agents: int
    answer: StaffingRowRead
    rows: list[StaffingRowRead]
    forecast: dict[str, Any]
    """Where the arrival rate came from (given, this incident's, past incidents')."""


class ReportRead(BaseModel):
    incident_id: int | None
    since: datetime
    until: datetime
    tickets: int
    per_hour: list[dict[str, Any]]
    """Each hour: ``hour`` and counts by channel and by category."""
    by_channel: dict[str, int]
    by_category: dict[str, int]
    backlog: int
    """Tickets neither resolved nor closed."""
    first_response_met: int
    first_response_breached: int
    resolution_met: int
    resolution_breached: int
    satisfaction_mean: float | None
    satisfaction_count: int

