"""Notify tables and the shapes that cross the API.

A notice is stored once (``notify_notices``); fan-out writes one delivery row per subscriber
and notice (``notify_deliveries``, unique on the pair), and the outbox sends each row at most
once per successful attempt. Components are plain ids owned by the status page.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from haltguard.db.base import Base
from haltguard.db.types import UtcDateTime

NOTICE_KEY_LENGTH_MAX = 200
SUBJECT_LENGTH_MAX = 200
BODY_LENGTH_MAX = 20_000
HTML_LENGTH_MAX = 100_000
LINK_LENGTH_MAX = 2_000
COMPONENT_ID_LENGTH_MAX = 64
COMPONENTS_PER_ITEM_MAX = 200
ADDRESS_LENGTH_MAX = 2_000
PHRASE_LENGTH_MAX = 64
LABEL_LENGTH_MAX = 200
ERROR_LENGTH_MAX = 500

_KEY_PATTERN = re.compile(r"^[A-Za-z0-9._:/@+-]+$")
_COMPONENT_PATTERN = re.compile(r"^[^\s\x00-\x1f]+$")
"""Component ids are the status page's keys (``market:BTC/JPY``, ``website``): any text
without spaces or control characters."""


class Language(StrEnum):
    JA = "ja"
    EN = "en"


class NoticeKind(StrEnum):
    INCIDENT_UPDATE = "incident_update"
    MAINTENANCE = "maintenance"


class SubscriberKind(StrEnum):
    EMAIL = "email"
    """A person who subscribed on the status page and confirmed by email (double opt-in)."""
    WEBHOOK = "webhook"
    """An HTTP endpoint that receives signed JSON; its owner confirmed by email."""
    APPRISE = "apprise"
    """A social or chat channel (X, Mastodon, Slack, Discord, Telegram, LINE) an operator set."""


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    """Waiting for the confirmation link; gets nothing but that one email."""
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    """Waiting for its turn (``next_attempt_at``)."""
    SENDING = "sending"
    """Claimed by a worker until ``lease_expires_at``; retried after that if the worker died."""
    SENT = "sent"
    FAILED = "failed"
    """Gave up after the last allowed attempt; ``last_error`` says why."""
    SKIPPED = "skipped"
    """The subscriber left (or was removed) before the delivery went out."""


# --- tables -----------------------------------------------------------------------------


class NotifySecret(Base):
    """The key that signs confirmation and unsubscribe links, made once per database, so
    links keep working across restarts and on every instance."""

    __tablename__ = "notify_secrets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[bytes] = mapped_column(LargeBinary())
    """The key sealed by ``db.keys.seal_bytes``; never in clear."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


SEALED_SECRET_LENGTH_MAX = 255


class Subscriber(Base):
    __tablename__ = "notify_subscribers"
    __table_args__ = (UniqueConstraint("kind", "address_digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(Text)
    """Email address, webhook URL or apprise URL (the last two may hold secrets)."""
    address_digest: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the normalised address: one subscription per address and kind."""
    contact_email: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Where a webhook's confirmation link went; the email itself for email subscribers."""
    label: Mapped[str] = mapped_column(String(LABEL_LENGTH_MAX), default="")
    language: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(16), index=True)
    all_components: Mapped[bool] = mapped_column(Boolean)
    anti_phishing_phrase: Mapped[str] = mapped_column(String(PHRASE_LENGTH_MAX), default="")
    signing_secret: Mapped[str] = mapped_column(String(SEALED_SECRET_LENGTH_MAX), default="")
    """A webhook's HMAC key, shown once when it subscribes; stored sealed with the secrets key
    and bound to ``address_digest`` (``keys.seal_signing_secret``), "" for other kinds."""
    token_generation: Mapped[int] = mapped_column(Integer, default=0)
    """Raised on every re-subscription so older confirmation links stop working."""
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class SubscriberComponent(Base):
    __tablename__ = "notify_subscriber_components"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("notify_subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    component_id: Mapped[str] = mapped_column(
        String(COMPONENT_ID_LENGTH_MAX), primary_key=True, index=True
    )


class StoredNotice(Base):
    __tablename__ = "notify_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(NOTICE_KEY_LENGTH_MAX), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject_ja: Mapped[str] = mapped_column(String(SUBJECT_LENGTH_MAX))
    subject_en: Mapped[str] = mapped_column(String(SUBJECT_LENGTH_MAX))
    body_ja: Mapped[str] = mapped_column(Text)
    body_en: Mapped[str] = mapped_column(Text)
    html_ja: Mapped[str | None] = mapped_column(Text, nullable=True)
    html_en: Mapped[str | None] = mapped_column(Text, nullable=True)
    link: Mapped[str] = mapped_column(Text)
    all_components: Mapped[bool] = mapped_column(Boolean)
    """True when the notice names no component: it concerns the whole service."""
    deliveries_queued: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class NoticeComponent(Base):
    __tablename__ = "notify_notice_components"

    notice_id: Mapped[int] = mapped_column(
        ForeignKey("notify_notices.id", ondelete="CASCADE"), primary_key=True
    )
    component_id: Mapped[str] = mapped_column(String(COMPONENT_ID_LENGTH_MAX), primary_key=True)


class Delivery(Base):
    __tablename__ = "notify_deliveries"
    __table_args__ = (
        UniqueConstraint("notice_id", "subscriber_id"),
        Index("ix_notify_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notify_notices.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("notify_subscribers.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(String(ERROR_LENGTH_MAX), default="")


# --- shapes -----------------------------------------------------------------------------


ComponentIdIn = Annotated[str, Field(max_length=COMPONENT_ID_LENGTH_MAX)]
"""A status component's id as a request names it (checked in full by the validators)."""


def _clean_component_ids(values: list[str]) -> list[str]:
    cleaned = [value.strip() for value in values if value.strip()]
    if len(cleaned) > COMPONENTS_PER_ITEM_MAX:
        raise ValueError(f"at most {COMPONENTS_PER_ITEM_MAX} component ids")
    for value in cleaned:
        if len(value) > COMPONENT_ID_LENGTH_MAX or not _COMPONENT_PATTERN.match(value):
            raise ValueError(
                f"component id {value[:80]!r} must be 1..{COMPONENT_ID_LENGTH_MAX} characters "
                "without spaces, as the status page names it (e.g. market:BTC/JPY)"
            )
    return sorted(set(cleaned))


def _clean_phrase(value: str) -> str:
    cleaned = " ".join(value.split())
    if not cleaned or not cleaned.isprintable():
        raise ValueError("choose a phrase of your own, such as a few words only you know")
    return cleaned


class NoticeText(BaseModel):
    """A notice in one language. ``html`` is optional: without it the email's HTML part is
    made from ``body``; with it, the operator-edited HTML is used as given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str = Field(min_length=1, max_length=SUBJECT_LENGTH_MAX)
    body: str = Field(min_length=1, max_length=BODY_LENGTH_MAX)
    html: str | None = Field(default=None, max_length=HTML_LENGTH_MAX)

    @field_validator("subject")
    @classmethod
    def _one_line_subject(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("a subject is one line: remove the line breaks")
        return value.strip()


class Notice(BaseModel):
    """What the status page asks to tell subscribers: one incident update or maintenance.

    ``key`` is the caller's stable name for it (say ``incident-42/update-3``); enqueueing a
    notice whose key is already stored does nothing, so a retried publish never sends twice.
    ``affected_component_ids`` empty means the notice concerns the whole service and goes to
    every confirmed subscriber; otherwise to those subscribed to everything or to one of them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=NOTICE_KEY_LENGTH_MAX)
    kind: NoticeKind
    affected_component_ids: list[str] = Field(default_factory=list)
    ja: NoticeText
    en: NoticeText
    link: str = Field(min_length=1, max_length=LINK_LENGTH_MAX)
    """The status page address of this incident or maintenance."""

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _KEY_PATTERN.match(value):
            raise ValueError("a notice key is letters, digits and . _ : / @ + - only")
        return value

    @field_validator("affected_component_ids")
    @classmethod
    def _components(cls, values: list[str]) -> list[str]:
        return _clean_component_ids(values)

    @field_validator("link")
    @classmethod
    def _link(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("the link must be an http:// or https:// address of the status page")
        return value

    def text(self, language: Language) -> NoticeText:
        return self.ja if language is Language.JA else self.en


class NoticeRecord(BaseModel):
    """The stored notice as the caller learns it: ``created`` is False when the key was
    already there (nothing new was queued)."""

    model_config = ConfigDict(frozen=True)

    id: int
    key: str
    kind: NoticeKind
    created: bool
    deliveries_queued: int
    created_at: datetime


class EmailSubscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    language: Language = Language.JA
    component_ids: list[ComponentIdIn] = Field(
        default_factory=list, max_length=COMPONENTS_PER_ITEM_MAX
    )
    """Empty: everything."""
    anti_phishing_phrase: str = Field(min_length=1, max_length=PHRASE_LENGTH_MAX)
    """Shown in every email we send, so a phishing email without it stands out (chapter 5)."""

    _components = field_validator("component_ids")(_clean_component_ids)

    _phrase = field_validator("anti_phishing_phrase")(_clean_phrase)


class WebhookSubscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=ADDRESS_LENGTH_MAX)
    contact_email: str = Field(min_length=3, max_length=320)
    """Receives the confirmation link; the webhook gets nothing until it is followed."""
    language: Language = Language.JA
    component_ids: list[ComponentIdIn] = Field(
        default_factory=list, max_length=COMPONENTS_PER_ITEM_MAX
    )
    anti_phishing_phrase: str = Field(min_length=1, max_length=PHRASE_LENGTH_MAX)
    """Shown in the confirmation email to ``contact_email``."""

    _components = field_validator("component_ids")(_clean_component_ids)
    _phrase = field_validator("anti_phishing_phrase")(_clean_phrase)


class ChannelCreate(BaseModel):
    """An operator-run social or chat channel, addressed by an apprise URL."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=4, max_length=ADDRESS_LENGTH_MAX)
    label: str = Field(min_length=1, max_length=LABEL_LENGTH_MAX)
    language: Language = Language.JA
    component_ids: list[ComponentIdIn] = Field(
        default_factory=list, max_length=COMPONENTS_PER_ITEM_MAX
    )

    _components = field_validator("component_ids")(_clean_component_ids)


class SubscribeAccepted(BaseModel):
    """The same answer whether or not the address was known, so the endpoint does not tell
    strangers who subscribes."""

    message: str
    signing_secret: str | None = None
    """A webhook's HMAC key: shown here once, keep it to check the signature header."""


class SubscriberRead(BaseModel):
    id: int
    kind: SubscriberKind
    address: str
    """Emails in full; webhook and apprise URLs with their secrets masked."""
    label: str
    language: Language
    status: SubscriberStatus
    component_ids: list[str]
    """Empty: subscribed to everything."""
    created_by: str
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None


class OutboxCounts(BaseModel):
    """How many delivery rows are in each state (for one notice or all)."""

    pending: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0


class NoticeRead(BaseModel):
    id: int
    key: str
    kind: NoticeKind
    subject_en: str
    subject_ja: str
    affected_component_ids: list[str]
    created_at: datetime
    deliveries: OutboxCounts
