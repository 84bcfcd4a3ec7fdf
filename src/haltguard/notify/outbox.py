"""The durable outbox: claim delivery rows, send them, record what happened.

Guarantees, and where they stop:

* A delivery row exists once per (notice, subscriber) — a unique constraint — so fan-out
  can never queue a second copy.
* Workers claim rows with one ``UPDATE ... WHERE status = 'pending'`` that writes a random
  claim token and a lease; only the worker holding the token may finish the row. On
  PostgreSQL the candidate rows are picked ``FOR UPDATE SKIP LOCKED``; the outer
  ``status = 'pending'`` is re-checked after any lock wait, so two workers never both win.
  SQLite serialises writers, which gives the same result.
* Each row is marked ``sent`` in its own short transaction right after the receiver accepted
  it. A crash therefore leaves at most the message each sender had in hand unresolved. Its
  lease expires and it is sent again: **at least once** for that one message (an SMTP server
  may have accepted it just before the crash), **exactly once** for every other. The retry
  carries the same Message-ID (webhooks: the same ``delivery`` field), so the duplicate is
  recognisable. Sending at most once instead would mean losing that message whenever the
  crash came before the server's reply; for customer notices a rare duplicate is the
  smaller harm.
* Failures are retried with exponential backoff up to ``attempts_max`` attempts (a crash
  mid-attempt counts as one), then the row is ``failed`` with the last error kept. A
  permanent refusal (SMTP 5xx for the recipient, a webhook's 4xx) fails at once.
* Other ways to get a duplicate, all of the same kind (sent twice, never lost): a sender so
  slow that its lease runs out although it renews at half-lease; a PostgreSQL *server*
  crash losing the last marks written with ``synchronous_commit = off``; an SMTP server
  that accepted a message but whose reply was lost in a timeout.

``tests/notify/test_notify_crash.py`` kills a real worker process with SIGKILL while the
SMTP server holds a message, restarts it, and counts Message-IDs: every subscriber once,
the held one twice.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime

from sqlalchemy import Connection, Engine, and_, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

from haltguard.common.clock import Now, utc_now
from haltguard.db import keys
from haltguard.db.types import UtcDateTime
from haltguard.notify.channels import (
    DeliveryError,
    PermanentError,
    SmtpConnection,
    TransientError,
    WebhookClient,
    send_to_apprise,
)
from haltguard.notify.messages import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    MailIdentity,
    NoticeContent,
    NoticeEmail,
    delivery_message_id,
    plain_message,
    webhook_body,
    webhook_signature,
)
from haltguard.notify.models import (
    Delivery,
    DeliveryStatus,
    Language,
    NoticeComponent,
    StoredNotice,
    Subscriber,
    SubscriberKind,
    SubscriberStatus,
)
from haltguard.notify.settings import NotifySettings
from haltguard.notify.tokens import NEVER, LinkToken, TokenPurpose, sign

NOTICE_CACHE_MAX = 64
RELEASE_EVERY_S = 1.0
STOP_TIMEOUT_S = 15.0
"""How long :meth:`OutboxWorker.stop` waits by default for the deliveries in hand."""

log = logging.getLogger(__name__)


def backoff_s(attempts: int, base_s: int, max_s: int) -> int:
    """Seconds to wait after the ``attempts``-th failed attempt: base, 2x, 4x ... capped."""
    assert attempts >= 1
    delay_s: int = base_s * 2 ** min(attempts - 1, 30)
    return min(max_s, delay_s)


def unsubscribe_url(settings: NotifySettings, secret: bytes, subscriber_id: int) -> str:
    """The subscriber's one-click unsubscribe link: the same in every message, never expires."""
    token = sign(secret, LinkToken(TokenPurpose.UNSUBSCRIBE, subscriber_id, 0, NEVER))
    return f"{settings.public_url}/api/notify/unsubscribe?token={token}"


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    notice_id: int
    subscriber_id: int
    attempts: int
    """Including the attempt just claimed."""
    kind: SubscriberKind
    address: str
    language: Language
    phrase: str
    signing_secret: str
    """As stored: sealed, bound to ``address_digest``; opened only to sign a webhook. The
    ``address`` of a webhook or apprise subscriber is sealed the same way."""
    address_digest: str
    subscriber_status: SubscriberStatus


@dataclass
class OutboxStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    lost_claims: int = 0
    """Rows whose lease ran out under us (another worker may have taken them)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


_MARK_SENT = (
    update(Delivery)
    .where(Delivery.id == bindparam("delivery_id"), Delivery.claim_token == bindparam("token"))
    .values(
        status=DeliveryStatus.SENT.value,
        sent_at=bindparam("now", type_=UtcDateTime()),
        claim_token=None,
        lease_expires_at=None,
        last_error="",
    )
)


class OutboxStore:
    """The outbox's SQL, one short transaction per call, SQLite and PostgreSQL alike."""

    def __init__(self, engine: Engine, settings: NotifySettings) -> None:
        self.engine = engine
        self.settings = settings
        self._skip_locked = engine.dialect.name == "postgresql"
        self._local = threading.local()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """This thread's own connection, kept open between calls and in autocommit mode.

        Every outbox write is one statement that is correct on its own (a claim, a mark), so
        none needs a wider transaction; taking a pooled connection and a BEGIN/COMMIT per
        message cost as much as the UPDATE itself. On PostgreSQL the worker's commits do
        not wait for the WAL flush (``synchronous_commit = off``): a database *server*
        crash may forget the last marks, and those messages are sent again — a duplicate,
        never a loss.
        """
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name == "postgresql":
                connection.exec_driver_sql("SET synchronous_commit TO OFF")
            self._local.connection = connection
        try:
            yield connection
        except BaseException:
            self.close_connection()
            raise

    def close_connection(self) -> None:
        """Give this thread's connection back; the next call opens another."""
        connection: Connection | None = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def release_expired(self, now: datetime) -> int:
        """Rows whose worker died (lease ran out) go back to pending, or to failed when they
        used up their attempts; returns how many."""
        with self._transaction() as connection:
            expired = and_(
                Delivery.status == DeliveryStatus.SENDING.value,
                Delivery.lease_expires_at <= now,
            )
            given_up = connection.execute(
                update(Delivery)
                .where(expired, Delivery.attempts >= self.settings.attempts_max)
                .values(
                    status=DeliveryStatus.FAILED.value,
                    claim_token=None,
                    lease_expires_at=None,
                    last_error="the worker stopped during every allowed attempt",
                )
            ).rowcount
            returned = connection.execute(
                update(Delivery)
                .where(expired)
                .values(
                    status=DeliveryStatus.PENDING.value,
                    claim_token=None,
                    lease_expires_at=None,
                    next_attempt_at=now,
                    last_error="the worker stopped before finishing; sent again with the "
                    "same Message-ID",
                )
            ).rowcount
        return int(given_up) + int(returned)

    def claim(self, now: datetime, limit: int) -> tuple[str, list[ClaimedDelivery]]:
        """Take up to ``limit`` due rows for this worker; answers the claim token and rows."""
        assert 0 < limit <= 10_000
        token = secrets.token_hex(16)
        candidates = (
            select(Delivery.id)
            .where(
                Delivery.status == DeliveryStatus.PENDING.value,
                Delivery.next_attempt_at <= now,
            )
            .order_by(Delivery.next_attempt_at)
            .limit(limit)
        )
        if self._skip_locked:
            candidates = candidates.with_for_update(skip_locked=True)
        with self._transaction() as connection:
            connection.execute(
                update(Delivery)
                .where(
                    Delivery.id.in_(candidates.scalar_subquery()),
                    Delivery.status == DeliveryStatus.PENDING.value,
                )
                .values(
                    status=DeliveryStatus.SENDING.value,
                    claim_token=token,
                    lease_expires_at=now + timedelta(seconds=self.settings.lease_s),
                    attempts=Delivery.attempts + 1,
                )
            )
            rows = connection.execute(
                select(
                    Delivery.id,
                    Delivery.notice_id,
                    Delivery.subscriber_id,
                    Delivery.attempts,
                    Subscriber.kind,
                    Subscriber.address,
                    Subscriber.language,
                    Subscriber.anti_phishing_phrase,
                    Subscriber.signing_secret,
                    Subscriber.status,
                    Subscriber.address_digest,
                )
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Delivery.claim_token == token)
                .order_by(Delivery.id)
            ).all()
        claimed = [
            ClaimedDelivery(
                id=row[0],
                notice_id=row[1],
                subscriber_id=row[2],
                attempts=row[3],
                kind=SubscriberKind(row[4]),
                address=row[5],
                language=Language(row[6]),
                phrase=row[7],
                signing_secret=row[8],
                subscriber_status=SubscriberStatus(row[9]),
                address_digest=row[10],
            )
            for row in rows
        ]
        return token, claimed

    def renew(self, token: str, now: datetime) -> int:
        """Extend the lease of the rows still held under ``token``."""
        with self._transaction() as connection:
            return int(
                connection.execute(
                    update(Delivery)
                    .where(
                        Delivery.claim_token == token,
                        Delivery.status == DeliveryStatus.SENDING.value,
                    )
                    .values(lease_expires_at=now + timedelta(seconds=self.settings.lease_s))
                ).rowcount
            )

    def mark_sent(self, delivery_id: int, token: str, now: datetime) -> bool:
        """The common outcome, on its own prepared statement: it runs once per message."""
        with self._transaction() as connection:
            changed = connection.execute(
                _MARK_SENT, {"delivery_id": delivery_id, "token": token, "now": now}
            ).rowcount
        return bool(changed)

    def finish(
        self,
        delivery_id: int,
        token: str,
        status: DeliveryStatus,
        now: datetime,
        *,
        error: str = "",
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """Record the outcome of one claimed row; False if our claim was lost meanwhile."""
        assert status is not DeliveryStatus.SENDING
        values: dict[str, object] = {
            "status": status.value,
            "claim_token": None,
            "lease_expires_at": None,
            "last_error": error[:500],
        }
        if status is DeliveryStatus.SENT:
            values["sent_at"] = now
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        with self._transaction() as connection:
            changed = connection.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.claim_token == token)
                .values(**values)
            ).rowcount
        return bool(changed)

    def release(self, token: str) -> int:
        """Give back rows claimed but not attempted (a worker stopping politely)."""
        with self._transaction() as connection:
            return int(
                connection.execute(
                    update(Delivery)
                    .where(
                        Delivery.claim_token == token,
                        Delivery.status == DeliveryStatus.SENDING.value,
                    )
                    .values(
                        status=DeliveryStatus.PENDING.value,
                        claim_token=None,
                        lease_expires_at=None,
                        attempts=Delivery.attempts - 1,
                    )
                ).rowcount
            )

    def notice_contents(self, notice_id: int) -> dict[Language, NoticeContent]:
        with self._transaction() as connection:
            stored = connection.execute(
                select(StoredNotice).where(StoredNotice.id == notice_id)
            ).one()
            components = tuple(
                connection.execute(
                    select(NoticeComponent.component_id)
                    .where(NoticeComponent.notice_id == notice_id)
                    .order_by(NoticeComponent.component_id)
                ).scalars()
            )
        return {
            language: NoticeContent(
                notice_id=stored.id,
                key=stored.key,
                kind=stored.kind,
                language=language,
                subject=stored.subject_ja if language is Language.JA else stored.subject_en,
                body=stored.body_ja if language is Language.JA else stored.body_en,
                html=stored.html_ja if language is Language.JA else stored.html_en,
                link=stored.link,
                affected_component_ids=components,
                created_at=stored.created_at,
            )
            for language in Language
        }

    def work_remains(self) -> bool:
        """True while a row is pending (due or not) or held by a sender."""
        with self._transaction() as connection:
            found = connection.execute(
                select(Delivery.id)
                .where(Delivery.status.in_(
                    [DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]
                ))
                .limit(1)
            ).first()
        return found is not None


class ChannelSenders:
    """What one sender thread needs to deliver any row: an SMTP connection kept open, an
    HTTP client, and the notices it has prepared (bounded)."""

    def __init__(self, store: OutboxStore, settings: NotifySettings, secret: bytes) -> None:
        self._store = store
        self._settings = settings
        self._secret = secret
        self._identity = MailIdentity(
            sender_address=settings.smtp.sender,
            service_name=settings.service_name,
            domain=settings.link_host,
        )
        self._smtp = SmtpConnection(settings.smtp)
        self._webhooks = WebhookClient(
            settings.channel_timeout_s, allow_private_hosts=settings.allow_private_webhook_hosts
        )
        self._emails: dict[tuple[int, Language], NoticeEmail] = {}
        self._contents: dict[int, dict[Language, NoticeContent]] = {}

    def _content(self, notice_id: int, language: Language) -> NoticeContent:
        contents = self._contents.get(notice_id)
        if contents is None:
            if len(self._contents) >= NOTICE_CACHE_MAX:
                self._contents.clear()
                self._emails.clear()
            contents = self._store.notice_contents(notice_id)
            self._contents[notice_id] = contents
        return contents[language]

    def _email(self, notice_id: int, language: Language) -> NoticeEmail:
        email = self._emails.get((notice_id, language))
        if email is None:
            email = NoticeEmail(self._content(notice_id, language), self._identity)
            self._emails[(notice_id, language)] = email
        return email

    def deliver(self, row: ClaimedDelivery, now: datetime) -> None:
        """Send one row; raises a :class:`DeliveryError` saying whether to retry."""
        if row.kind is SubscriberKind.EMAIL:
            message = self._email(row.notice_id, row.language).render(
                to_address=row.address,
                subscriber_id=row.subscriber_id,
                phrase=row.phrase,
                unsubscribe_url=unsubscribe_url(self._settings, self._secret, row.subscriber_id),
                date_header=format_datetime(now, usegmt=True),
            )
            self._smtp.send(row.address, message)
            return
        content = self._content(row.notice_id, row.language)
        if row.kind is SubscriberKind.WEBHOOK:
            reference = delivery_message_id(
                content.key, content.notice_id, row.subscriber_id, self._identity.domain
            ).strip("<>")
            body = webhook_body(
                content,
                delivery_ref=reference,
                unsubscribe_url=unsubscribe_url(self._settings, self._secret, row.subscriber_id),
            )
            timestamp_s = int(now.timestamp())
            signing_secret = self._opened(row, row.signing_secret, "sign the webhook",
                                          keys.signing_secret_context(row.address_digest))
            self._webhooks.post(
                self._address(row),
                body,
                {
                    SIGNATURE_HEADER: webhook_signature(signing_secret, timestamp_s, body),
                    DELIVERY_HEADER: reference,
                },
            )
            return
        title, text = plain_message(content)
        send_to_apprise(self._address(row), title, text, self._settings.channel_timeout_s)

    def _address(self, row: ClaimedDelivery) -> str:
        """A webhook or apprise URL, opened from its sealed form."""
        return self._opened(row, row.address, "reach the subscriber",
                            keys.subscriber_address_context(row.address_digest))

    def _opened(self, row: ClaimedDelivery, stored: str, purpose: str, context: str) -> str:
        """A value sealed with the secrets key, opened; a key that does not open it is worth
        a retry once an operator has restored the right key, so the delivery waits."""
        try:
            return keys.open_sealed(keys.keyring_for_engine(self._store.engine), stored,
                                    context=context)
        except keys.KeyringError as exc:
            raise TransientError(f"cannot {purpose} {row.subscriber_id}: {exc}") from exc

    def close(self) -> None:
        self._smtp.close()
        self._webhooks.close()
        self._store.close_connection()


class OutboxWorker:
    """Runs ``settings.senders`` sender threads over one outbox until stopped or idle."""

    def __init__(
        self,
        engine: Engine,
        settings: NotifySettings,
        secret: bytes,
        *,
        now: Now = utc_now,
        on_progress: Callable[[OutboxStats], None] | None = None,
    ) -> None:
        self.store = OutboxStore(engine, settings)
        self.settings = settings
        self.secret = secret
        self.now = now
        self.stats = OutboxStats()
        self.stop_event = threading.Event()
        self._on_progress = on_progress
        self._last_release = 0.0
        self._release_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    def start(self) -> None:
        """Send in the background (a daemon thread running :meth:`run`) until :meth:`stop`;
        for a service. A worker starts once and does not start again after a stop."""
        with self._thread_lock:
            if self._thread is not None or self.stop_event.is_set():
                raise RuntimeError("this outbox worker was already started or stopped; "
                                   "make a new one")
            self._thread = threading.Thread(target=self.run, name="notify-outbox", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Let each sender finish the delivery in hand, hand back the rest of its batch and
        stop (also a :meth:`run` called on another thread); True when the background thread
        stopped within ``timeout_s``. Safe to call twice."""
        self.stop_event.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def _release_expired_now_and_then(self) -> None:
        with self._release_lock:
            if time.monotonic() - self._last_release < RELEASE_EVERY_S:
                return
            self._last_release = time.monotonic()
        returned = self.store.release_expired(self.now())
        if returned:
            log.warning("%d deliveries had an expired lease and were queued again", returned)

    def _settle(self, row: ClaimedDelivery, token: str, error: DeliveryError) -> None:
        now = self.now()
        final = isinstance(error, PermanentError) or row.attempts >= self.settings.attempts_max
        if final:
            held = self.store.finish(row.id, token, DeliveryStatus.FAILED, now, error=str(error))
            self.stats.add(failed=int(held), lost_claims=int(not held))
            return
        wait_s = backoff_s(row.attempts, self.settings.backoff_base_s, self.settings.backoff_max_s)
        held = self.store.finish(
            row.id, token, DeliveryStatus.PENDING, now,
            error=str(error), next_attempt_at=now + timedelta(seconds=wait_s),
        )
        self.stats.add(retried=int(held), lost_claims=int(not held))

    def _work_batch(self, senders: ChannelSenders) -> int:
        """Claim and work one batch; returns how many rows it claimed."""
        self._release_expired_now_and_then()
        token, rows = self.store.claim(self.now(), self.settings.batch_max)
        renew_at = time.monotonic() + self.settings.lease_s / 2
        for index, row in enumerate(rows):
            if self.stop_event.is_set():
                self.store.release(token)
                return index
            if time.monotonic() >= renew_at:
                self.store.renew(token, self.now())
                renew_at = time.monotonic() + self.settings.lease_s / 2
            if row.subscriber_status is not SubscriberStatus.CONFIRMED:
                held = self.store.finish(
                    row.id, token, DeliveryStatus.SKIPPED, self.now(),
                    error=f"subscriber is {row.subscriber_status.value}",
                )
                self.stats.add(skipped=int(held), lost_claims=int(not held))
                continue
            try:
                senders.deliver(row, self.now())
            except DeliveryError as exc:
                self._settle(row, token, exc)
                continue
            except Exception as exc:
                log.exception("unexpected error delivering %d", row.id)
                self._settle(row, token, TransientError(f"{type(exc).__name__}: {exc}"))
                continue
            held = self.store.mark_sent(row.id, token, self.now())
            self.stats.add(sent=int(held), lost_claims=int(not held))
        if rows and self._on_progress is not None:
            self._on_progress(self.stats)
        return len(rows)

    def _sender_loop(self, until_idle: bool) -> None:
        senders = ChannelSenders(self.store, self.settings, self.secret)
        try:
            while not self.stop_event.is_set():
                try:
                    if self._work_batch(senders):
                        continue
                    if until_idle and not self.store.work_remains():
                        return
                except SQLAlchemyError:
                    # The database went away or stayed locked: rows in hand return after
                    # their lease; try again after a pause rather than lose the thread.
                    log.exception("outbox database error; retrying")
                    self.store.close_connection()
                self.stop_event.wait(self.settings.poll_interval_s)
        finally:
            senders.close()

    def run(self, *, until_idle: bool = False) -> OutboxStats:
        """Send until :attr:`stop_event` is set, or (``until_idle``) until nothing is due
        and nothing is in flight. Rows waiting for a later retry keep ``until_idle`` going."""
        threads = [
            threading.Thread(
                target=self._sender_loop, args=(until_idle,), name=f"notify-sender-{index}"
            )
            for index in range(self.settings.senders)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.5)
        finally:
            self.stop_event.set()
            for thread in threads:
                thread.join()
        return self.stats
