"""What the notify domain does, as plain functions over a session.

Other domains call :func:`enqueue_notice` (the status page, when it publishes an incident
update or a maintenance). It works inside the caller's session and transaction (it flushes,
never commits), so the status page's update and the notice become durable together or not
at all. Sending happens later, in the outbox workers (:mod:`haltguard.notify.outbox`).

The rest serves the public endpoints (subscribe, confirm, unsubscribe) and operators (list,
add a social channel, remove, retry). Public subscriptions are not written to the audit
chain: it is append-only and must not keep customers' addresses forever; operator actions
and every queued notice are.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Result,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from haltguard.common.clock import utc_now
from haltguard.db import keys
from haltguard.db.types import UtcDateTime
from haltguard.notify import channels
from haltguard.notify.errors import (
    ConfirmationNotSentError,
    InvalidInputError,
    LinkRefusedError,
    NotFoundError,
)
from haltguard.notify.messages import MailIdentity, confirmation_email
from haltguard.notify.models import (
    ChannelCreate,
    Delivery,
    DeliveryStatus,
    EmailSubscribe,
    Language,
    Notice,
    NoticeComponent,
    NoticeKind,
    NoticeRead,
    NoticeRecord,
    NoticeText,
    NotifySecret,
    OutboxCounts,
    StoredNotice,
    Subscriber,
    SubscriberComponent,
    SubscriberKind,
    SubscriberRead,
    SubscriberStatus,
    WebhookSubscribe,
)
from haltguard.notify.settings import NotifySettings
from haltguard.notify.tokens import LinkToken, TokenError, TokenPurpose, sign, verify
from haltguard.security import audit

# What other domains use; the rest serves this domain's views and CLI.
__all__ = ["Notice", "NoticeKind", "NoticeRecord", "NoticeText", "enqueue_notice"]

SYSTEM_ACTOR = "system:notify"
PUBLIC_ACTOR = "public"
SECRET_ROW_ID = 1
SECRET_BYTES = 48
SIGNING_SECRET_BYTES = 32


def _insert_for(session: Session, table: type[object]) -> postgresql.Insert | sqlite.Insert:
    """An ``INSERT`` that can say ``ON CONFLICT DO NOTHING`` on either database."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def enqueue_notice(
    session: Session, notice: Notice, *, now: datetime | None = None
) -> NoticeRecord:
    """Store ``notice`` and queue one delivery per matching confirmed subscriber.

    Idempotent on ``notice.key``: a second call with a stored key changes nothing and answers
    ``created=False`` with the first call's counts, even when two callers race. The caller
    commits; until then nothing is visible to the outbox workers.
    """
    at = now or utc_now()
    values = {
        "key": notice.key,
        "kind": notice.kind.value,
        "subject_ja": notice.ja.subject,
        "subject_en": notice.en.subject,
        "body_ja": notice.ja.body,
        "body_en": notice.en.body,
        "html_ja": notice.ja.html,
        "html_en": notice.en.html,
        "link": notice.link,
        "all_components": not notice.affected_component_ids,
        "deliveries_queued": 0,
        "created_at": at,
    }
    inserted_id = session.execute(
        _insert_for(session, StoredNotice).values(**values)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(StoredNotice.id)
    ).scalar_one_or_none()
    if inserted_id is None:
        existing = session.execute(
            select(StoredNotice).where(StoredNotice.key == notice.key)
        ).scalar_one()
        return _record(existing, created=False)
    if notice.affected_component_ids:
        session.execute(
            insert(NoticeComponent),
            [
                {"notice_id": inserted_id, "component_id": component_id}
                for component_id in notice.affected_component_ids
            ],
        )
    queued = fan_out(session, inserted_id, all_components=not notice.affected_component_ids,
                     now=at)
    session.execute(
        update(StoredNotice)
        .where(StoredNotice.id == inserted_id)
        .values(deliveries_queued=queued)
    )
    audit.record(
        session,
        actor=SYSTEM_ACTOR,
        action="notify.notice_queued",
        target=f"notice:{notice.key}",
        details={
            "kind": notice.kind.value,
            "affected_component_ids": notice.affected_component_ids,
            "deliveries_queued": queued,
            "rule": "every confirmed subscriber to all components or to an affected one",
        },
        at=at,
    )
    stored = session.get(StoredNotice, inserted_id, populate_existing=True)
    assert stored is not None
    return _record(stored, created=True)


def fan_out(session: Session, notice_id: int, *, all_components: bool, now: datetime) -> int:
    """One ``INSERT ... SELECT`` that writes a pending delivery for every confirmed subscriber
    the notice concerns; the database does the work, so 100,000 rows take seconds, not
    minutes. Returns how many rows were written."""
    concerns: ColumnElement[bool] = true()
    if not all_components:
        shares_component = exists(
            select(literal(1))
            .select_from(SubscriberComponent)
            .join(
                NoticeComponent,
                and_(
                    NoticeComponent.component_id == SubscriberComponent.component_id,
                    NoticeComponent.notice_id == notice_id,
                ),
            )
            .where(SubscriberComponent.subscriber_id == Subscriber.id)
        )
        concerns = or_(Subscriber.all_components == true(), shares_component)
    rows = select(
        literal(notice_id),
        Subscriber.id,
        literal(DeliveryStatus.PENDING.value),
        literal(0),
        literal(now, UtcDateTime()),
        literal(""),
    ).where(Subscriber.status == SubscriberStatus.CONFIRMED.value, concerns)
    session.execute(
        insert(Delivery).from_select(
            ["notice_id", "subscriber_id", "status", "attempts", "next_attempt_at",
             "last_error"],
            rows,
        )
    )
    # Counted, not taken from rowcount: psycopg reports -1 for INSERT ... SELECT here.
    count = session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.notice_id == notice_id)
    )
    return int(count or 0)


def _rowcount(result: Result[Any]) -> int:
    """Rows an INSERT or UPDATE touched (both drivers report it exactly)."""
    return int(getattr(result, "rowcount", 0))


def _record(stored: StoredNotice, *, created: bool) -> NoticeRecord:
    return NoticeRecord(
        id=stored.id,
        key=stored.key,
        kind=NoticeKind(stored.kind),
        created=created,
        deliveries_queued=stored.deliveries_queued,
        created_at=stored.created_at,
    )



# --- the link secret ----------------------------------------------------------------------


def link_secret(session: Session, settings: NotifySettings, now: datetime) -> bytes:
    """The key for confirm and unsubscribe links: the configured one, else one made once
    and kept in the database, encrypted with the secrets key (``db/keys.py``); the
    first caller's wins when two race."""
    if settings.secret:
        return settings.secret
    keyring = keys.keyring_for(session)
    context = keys.notify_secret_context(SECRET_ROW_ID)
    stored = session.get(NotifySecret, SECRET_ROW_ID)
    if stored is None:
        sealed = keys.seal_bytes(keyring, secrets.token_bytes(SECRET_BYTES), context=context)
        session.execute(
            _insert_for(session, NotifySecret)
            .values(id=SECRET_ROW_ID, value=sealed, created_at=now)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        stored = session.get(NotifySecret, SECRET_ROW_ID)
    assert stored is not None
    secret = keys.open_sealed_bytes(keyring, stored.value, context=context)
    assert len(secret) >= 32
    return secret


# --- public subscriptions -----------------------------------------------------------------


@dataclass(frozen=True)
class ConfirmationEmail:
    """A confirmation to send once the subscription is committed."""

    subscriber_id: int
    to_address: str
    language: Language
    phrase: str
    confirm_url: str


@dataclass(frozen=True)
class SubscribeOutcome:
    confirmation: ConfirmationEmail | None
    """None when nothing is to be sent: already confirmed, or a link went out recently."""
    signing_secret: str | None = None
    """A new webhook's HMAC key, to show its owner once."""


def _digest(kind: SubscriberKind, address: str) -> str:
    return hashlib.sha256(f"{kind.value}:{address}".encode()).hexdigest()


def _set_components(session: Session, subscriber_id: int, component_ids: list[str]) -> None:
    session.execute(
        delete(SubscriberComponent).where(SubscriberComponent.subscriber_id == subscriber_id)
    )
    if component_ids:
        session.execute(
            insert(SubscriberComponent),
            [{"subscriber_id": subscriber_id, "component_id": c} for c in component_ids],
        )


def _confirm_url(settings: NotifySettings, secret: bytes, subscriber: Subscriber,
                 now: datetime) -> str:
    expires_at_s = int(now.timestamp()) + settings.confirmation_ttl_s
    token = sign(
        secret,
        LinkToken(TokenPurpose.CONFIRM, subscriber.id, subscriber.token_generation, expires_at_s),
    )
    return f"{settings.public_url}/api/notify/confirm?token={token}"


def _subscribe(
    session: Session,
    *,
    kind: SubscriberKind,
    address: str,
    contact_email: str,
    language: Language,
    component_ids: list[str],
    phrase: str,
    settings: NotifySettings,
    secret: bytes,
    now: datetime,
) -> SubscribeOutcome:
    digest = _digest(kind, address)
    signing_secret = secrets.token_urlsafe(SIGNING_SECRET_BYTES) if kind is (
        SubscriberKind.WEBHOOK) else ""
    keyring = keys.keyring_for(session)
    stored_secret = keys.seal_signing_secret(keyring, digest,
                                             signing_secret) if signing_secret else ""
    inserted_id = session.execute(
        _insert_for(session, Subscriber)
        .values(
            kind=kind.value, address=channels.stored_address(keyring, kind.value, digest, address),
            address_digest=digest, contact_email=contact_email, label="", language=language.value,
            status=SubscriberStatus.PENDING.value, all_components=not component_ids,
            anti_phishing_phrase=phrase, signing_secret=stored_secret, token_generation=0,
            created_by=PUBLIC_ACTOR, created_at=now, confirmation_sent_at=now,
        )
        .on_conflict_do_nothing(index_elements=["kind", "address_digest"])
        .returning(Subscriber.id)
    ).scalar_one_or_none()
    if inserted_id is not None:
        _set_components(session, inserted_id, component_ids)
        subscriber = session.get(Subscriber, inserted_id)
        assert subscriber is not None
    else:
        subscriber = session.execute(
            select(Subscriber)
            .where(Subscriber.kind == kind.value, Subscriber.address_digest == digest)
            .with_for_update()
        ).scalar_one()
        if subscriber.status == SubscriberStatus.CONFIRMED.value:
            return SubscribeOutcome(None)
        sent_at = subscriber.confirmation_sent_at
        if sent_at is not None and now - sent_at < timedelta(
            seconds=settings.confirmation_resend_s
        ):
            return SubscribeOutcome(None)
        subscriber.status = SubscriberStatus.PENDING.value
        subscriber.language = language.value
        subscriber.contact_email = contact_email
        subscriber.all_components = not component_ids
        subscriber.anti_phishing_phrase = phrase
        subscriber.signing_secret = stored_secret
        subscriber.token_generation += 1
        subscriber.confirmation_sent_at = now
        subscriber.unsubscribed_at = None
        _set_components(session, subscriber.id, component_ids)
        session.flush()
    confirmation = ConfirmationEmail(
        subscriber_id=subscriber.id,
        to_address=contact_email,
        language=language,
        phrase=phrase,
        confirm_url=_confirm_url(settings, secret, subscriber, now),
    )
    return SubscribeOutcome(confirmation, signing_secret or None)


def subscribe_email(
    session: Session, request: EmailSubscribe, *, settings: NotifySettings, secret: bytes,
    now: datetime,
) -> SubscribeOutcome:
    """Record a pending email subscriber; the caller commits, then sends the confirmation.

    Nothing about a known address changes without a new confirmation, and an address gets
    at most one confirmation per ``confirmation_resend_s``, so the endpoint cannot be used
    to flood someone's inbox or to rewrite their phrase.
    """
    try:
        address = channels.check_email(request.email)
    except channels.AddressError as exc:
        raise InvalidInputError(str(exc)) from exc
    return _subscribe(
        session, kind=SubscriberKind.EMAIL, address=address, contact_email=address,
        language=request.language, component_ids=request.component_ids,
        phrase=request.anti_phishing_phrase, settings=settings, secret=secret, now=now,
    )


def subscribe_webhook(
    session: Session, request: WebhookSubscribe, *, settings: NotifySettings, secret: bytes,
    now: datetime,
) -> SubscribeOutcome:
    """Record a pending webhook; its owner confirms through ``contact_email``."""
    try:
        url = channels.check_webhook_url(
            request.url, allow_private_hosts=settings.allow_private_webhook_hosts
        )
        contact = channels.check_email(request.contact_email)
    except channels.AddressError as exc:
        raise InvalidInputError(str(exc)) from exc
    return _subscribe(
        session, kind=SubscriberKind.WEBHOOK, address=url, contact_email=contact,
        language=request.language, component_ids=request.component_ids,
        phrase=request.anti_phishing_phrase, settings=settings,
        secret=secret, now=now,
    )


def send_confirmation(settings: NotifySettings, confirmation: ConfirmationEmail,
                      now: datetime) -> None:
    """Send the confirmation email now (the subscriber waits for it on the page)."""
    message = confirmation_email(
        identity=MailIdentity(settings.smtp.sender, settings.service_name, settings.link_host),
        language=confirmation.language,
        to_address=confirmation.to_address,
        phrase=confirmation.phrase,
        confirm_url=confirmation.confirm_url,
        ttl_hours=settings.confirmation_ttl_s // 3600,
        date=now,
    )
    connection = channels.SmtpConnection(settings.smtp)
    try:
        connection.send(confirmation.to_address, message)
    except channels.DeliveryError as exc:
        raise ConfirmationNotSentError(
            "we could not send the confirmation email just now; please try again in a few "
            "minutes"
        ) from exc
    finally:
        connection.close()


def subscriber_for_link(
    session: Session, token_text: str, purpose: TokenPurpose, *, secret: bytes, now: datetime
) -> Subscriber:
    """The subscriber a genuine, current link is about; LinkRefusedError otherwise."""
    try:
        token = verify(secret, token_text, purpose, int(now.timestamp()))
    except TokenError as exc:
        raise LinkRefusedError(str(exc)) from exc
    subscriber = session.get(Subscriber, token.subscriber_id)
    if subscriber is None:
        raise LinkRefusedError("this subscription no longer exists; subscribe again")
    if purpose is TokenPurpose.CONFIRM and token.generation != subscriber.token_generation:
        raise LinkRefusedError(
            "a newer confirmation email was sent for this address: use the link in that one"
        )
    return subscriber


def confirm(session: Session, token_text: str, *, secret: bytes, now: datetime) -> Subscriber:
    """Confirm the subscription of a confirmation link; confirming twice is harmless."""
    subscriber = subscriber_for_link(
        session, token_text, TokenPurpose.CONFIRM, secret=secret, now=now
    )
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED.value:
        raise LinkRefusedError("you unsubscribed after this link was sent; subscribe again")
    if subscriber.status == SubscriberStatus.PENDING.value:
        subscriber.status = SubscriberStatus.CONFIRMED.value
        subscriber.confirmed_at = now
        session.flush()
    return subscriber


def unsubscribe(session: Session, token_text: str, *, secret: bytes, now: datetime) -> Subscriber:
    """Stop all notices to the subscriber of an unsubscribe link, at once; idempotent.
    Deliveries already queued for them are skipped by the outbox."""
    subscriber = subscriber_for_link(
        session, token_text, TokenPurpose.UNSUBSCRIBE, secret=secret, now=now
    )
    if subscriber.status != SubscriberStatus.UNSUBSCRIBED.value:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED.value
        subscriber.unsubscribed_at = now
        session.flush()
    return subscriber


# --- operators ----------------------------------------------------------------------------


SEALED_ADDRESS_SHOWN = "(sealed under another secrets key)"


def _shown_address(session: Session, subscriber: Subscriber) -> str:
    """The address as operators see it: webhook and apprise URLs masked (opened from their
    sealed form first; one the secrets key does not open is named as such)."""
    kind = SubscriberKind(subscriber.kind)
    if kind is SubscriberKind.EMAIL:
        return subscriber.address
    try:
        address = channels.clear_address(keys.keyring_for(session), subscriber.kind,
                                         subscriber.address_digest, subscriber.address)
    except keys.KeyringError:
        return SEALED_ADDRESS_SHOWN
    if kind is SubscriberKind.WEBHOOK:
        return channels.redact_webhook(address)
    return channels.redact_apprise(address)


def subscriber_read(session: Session, subscriber: Subscriber) -> SubscriberRead:
    component_ids = list(
        session.scalars(
            select(SubscriberComponent.component_id)
            .where(SubscriberComponent.subscriber_id == subscriber.id)
            .order_by(SubscriberComponent.component_id)
        )
    )
    return SubscriberRead(
        id=subscriber.id,
        kind=SubscriberKind(subscriber.kind),
        address=_shown_address(session, subscriber),
        label=subscriber.label,
        language=Language(subscriber.language),
        status=SubscriberStatus(subscriber.status),
        component_ids=component_ids,
        created_by=subscriber.created_by,
        created_at=subscriber.created_at,
        confirmed_at=subscriber.confirmed_at,
        unsubscribed_at=subscriber.unsubscribed_at,
    )


def list_subscribers(
    session: Session,
    *,
    kind: SubscriberKind | None = None,
    status: SubscriberStatus | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[SubscriberRead], int]:
    assert 0 < limit <= 1_000 and offset >= 0
    conditions = []
    if kind is not None:
        conditions.append(Subscriber.kind == kind.value)
    if status is not None:
        conditions.append(Subscriber.status == status.value)
    total = session.scalar(select(func.count()).select_from(Subscriber).where(*conditions))
    rows = session.scalars(
        select(Subscriber).where(*conditions).order_by(Subscriber.id).offset(offset).limit(limit)
    )
    return [subscriber_read(session, row) for row in rows], int(total or 0)


def get_subscriber(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise NotFoundError(
            f"no subscriber {subscriber_id}; list them with GET /api/notify/subscribers"
        )
    return subscriber


def anti_phishing_phrase(session: Session, email: str) -> str | None:
    """The phrase the confirmed email subscriber at ``email`` chose, so another domain's
    email to the same person (a compensation statement) shows it too; None when that address
    has not subscribed and confirmed."""
    try:
        address = channels.check_email(email)
    except channels.AddressError:
        return None
    phrase = session.scalar(select(Subscriber.anti_phishing_phrase).where(
        Subscriber.kind == SubscriberKind.EMAIL.value,
        Subscriber.address_digest == _digest(SubscriberKind.EMAIL, address),
        Subscriber.status == SubscriberStatus.CONFIRMED.value,
    ))
    return phrase or None


def add_channel(session: Session, request: ChannelCreate, *, actor: str,
                now: datetime) -> Subscriber:
    """An operator's social or chat channel: confirmed at once, because an operator set it.
    A removed channel added again keeps its id and delivery history."""
    try:
        url = channels.check_apprise_url(request.url)
    except channels.AddressError as exc:
        raise InvalidInputError(str(exc)) from exc
    digest = _digest(SubscriberKind.APPRISE, url)
    existing = session.scalar(
        select(Subscriber).where(
            Subscriber.kind == SubscriberKind.APPRISE.value, Subscriber.address_digest == digest
        )
    )
    if existing is not None and existing.status != SubscriberStatus.UNSUBSCRIBED.value:
        raise InvalidInputError(
            f"this channel is already subscriber {existing.id} ({existing.label}); remove it "
            "first to change it"
        )
    if existing is not None:
        subscriber = existing
        subscriber.label = request.label
        subscriber.language = request.language.value
        subscriber.status = SubscriberStatus.CONFIRMED.value
        subscriber.all_components = not request.component_ids
        subscriber.created_by = actor
        subscriber.confirmed_at = now
        subscriber.unsubscribed_at = None
    else:
        stored = channels.stored_address(keys.keyring_for(session),
                                         SubscriberKind.APPRISE.value, digest, url)
        subscriber = Subscriber(
            kind=SubscriberKind.APPRISE.value, address=stored, address_digest=digest,
            contact_email=None, label=request.label, language=request.language.value,
            status=SubscriberStatus.CONFIRMED.value, all_components=not request.component_ids,
            anti_phishing_phrase="", signing_secret="", token_generation=0, created_by=actor,
            created_at=now, confirmed_at=now,
        )
        session.add(subscriber)
    session.flush()
    _set_components(session, subscriber.id, request.component_ids)
    audit.record(
        session, actor=actor, action="notify.channel_added", target=f"subscriber:{subscriber.id}",
        details={
            "label": request.label, "address": channels.redact_apprise(url),
            "language": request.language.value, "component_ids": request.component_ids,
        },
        at=now,
    )
    return subscriber


def remove_subscriber(session: Session, subscriber_id: int, *, actor: str, reason: str,
                      now: datetime) -> Subscriber:
    """Stop notices to a subscriber (kept, as unsubscribed, for the delivery history)."""
    subscriber = get_subscriber(session, subscriber_id)
    if subscriber.status != SubscriberStatus.UNSUBSCRIBED.value:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED.value
        subscriber.unsubscribed_at = now
    audit.record(
        session, actor=actor, action="notify.subscriber_removed",
        target=f"subscriber:{subscriber.id}",
        details={"kind": subscriber.kind, "address": _shown_address(session, subscriber),
                 "reason": reason},
        at=now,
    )
    session.flush()
    return subscriber


def outbox_counts(session: Session, notice_id: int | None = None) -> OutboxCounts:
    query = select(Delivery.status, func.count()).group_by(Delivery.status)
    if notice_id is not None:
        query = query.where(Delivery.notice_id == notice_id)
    counts = {str(status): int(count) for status, count in session.execute(query)}
    return OutboxCounts(**{status.value: counts.get(status.value, 0)
                           for status in DeliveryStatus})


def list_notices(session: Session, *, offset: int = 0,
                 limit: int = 50) -> tuple[list[NoticeRead], int]:
    assert 0 < limit <= 1_000 and offset >= 0
    total = session.scalar(select(func.count()).select_from(StoredNotice))
    rows = list(session.scalars(
        select(StoredNotice).order_by(StoredNotice.id.desc()).offset(offset).limit(limit)
    ))
    return [notice_read(session, row) for row in rows], int(total or 0)


def notice_read(session: Session, stored: StoredNotice) -> NoticeRead:
    components = list(session.scalars(
        select(NoticeComponent.component_id)
        .where(NoticeComponent.notice_id == stored.id)
        .order_by(NoticeComponent.component_id)
    ))
    return NoticeRead(
        id=stored.id, key=stored.key, kind=NoticeKind(stored.kind),
        subject_en=stored.subject_en, subject_ja=stored.subject_ja,
        affected_component_ids=components, created_at=stored.created_at,
        deliveries=outbox_counts(session, stored.id),
    )


def get_notice(session: Session, notice_id: int) -> StoredNotice:
    stored = session.get(StoredNotice, notice_id)
    if stored is None:
        raise NotFoundError(f"no notice {notice_id}; list them with GET /api/notify/notices")
    return stored


def retry_failed(session: Session, notice_id: int, *, actor: str, now: datetime) -> int:
    """Give a notice's failed deliveries a fresh set of attempts (after an operator fixed
    the mail server, say); returns how many were queued again."""
    stored = get_notice(session, notice_id)
    queued = _rowcount(session.execute(
        update(Delivery)
        .where(Delivery.notice_id == stored.id,
               Delivery.status == DeliveryStatus.FAILED.value)
        .values(status=DeliveryStatus.PENDING.value, attempts=0, next_attempt_at=now)
    ))
    audit.record(
        session, actor=actor, action="notify.failed_retried", target=f"notice:{stored.key}",
        details={"deliveries_queued_again": int(queued)}, at=now,
    )
    return int(queued)


@dataclass(frozen=True)
class KeyedNotices:
    """The notices queued under some keys and their deliveries, by state."""

    notices: int
    deliveries: OutboxCounts


def notices_by_key(session: Session, keys: Sequence[str]) -> KeyedNotices:
    """The notices whose keys are in ``keys`` (what a caller of :func:`enqueue_notice` named
    them, e.g. the status page's ``status-update-<id>``) and how their deliveries stand."""
    if not keys:
        return KeyedNotices(0, OutboxCounts())
    notice_ids = list(session.scalars(select(StoredNotice.id).where(StoredNotice.key.in_(keys))))
    if not notice_ids:
        return KeyedNotices(0, OutboxCounts())
    query = (select(Delivery.status, func.count())
             .where(Delivery.notice_id.in_(notice_ids)).group_by(Delivery.status))
    counts = {str(status): int(count) for status, count in session.execute(query)}
    return KeyedNotices(len(notice_ids), OutboxCounts(
        **{status.value: counts.get(status.value, 0) for status in DeliveryStatus}))
