"""Customer notices by email: the outbox ``customer_notice_mail`` (one row per notice,
written in the notice's transaction) and the loop ``serve`` runs to send it.

Each mail carries the notice as stored, Japanese then English, so it opens with the
customer's own anti-phishing phrase. It goes through the SMTP connection the support desk
and the status notices use (``notify.smtp_*``); a failure worth retrying waits with the
notice outbox's backoff (``notify.backoff_*``) up to ``notify.attempts_max`` attempts, a
permanent refusal is kept as failed with the server's answer.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from html import escape

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import Clock
from haltguard.customers.models import CustomerNotice, CustomerNoticeMail, NoticeMailStatus
from haltguard.db.session import session_scope
from haltguard.notify.channels import DeliveryError, PermanentError, SmtpConnection
from haltguard.notify.messages import MailIdentity, compose, header_value
from haltguard.notify.outbox import backoff_s
from haltguard.notify.settings import NotifySettings

log = logging.getLogger(__name__)

SEND_BATCH_DEFAULT = 100
INTERVAL_S_DEFAULT = 5.0
SEND_ROUNDS_MAX = 50
"""Batches one tick sends at most, so a long queue does not hold the loop."""
SEPARATOR = "\n\n" + "-" * 40 + "\n\n"


def notice_mail_bytes(notice: CustomerNotice, *, to_address: str, mail_id: int,
                      identity: MailIdentity, now: datetime) -> bytes:
    """The email for ``notice``: both languages, the stored text as the customer sees it."""
    subject = f"{notice.subject_ja} / {notice.subject_en}"
    text = notice.body_ja.rstrip() + SEPARATOR + notice.body_en.rstrip()
    html_text = ('<!DOCTYPE html><html lang="ja"><head><meta charset="utf-8">'
                 f"<title>{escape(subject)}</title></head><body>"
                 + f'<div lang="ja">{_paragraphs(notice.body_ja)}</div><hr>'
                 + f'<div lang="en">{_paragraphs(notice.body_en)}</div></body></html>')
    headers = [
        ("From", identity.from_header), ("To", to_address),
        ("Subject", header_value("Subject", subject)),
        ("Date", format_datetime(now)),
        ("Message-ID", f"<customer-notice-{notice.id}@{identity.domain}>"),
        ("Content-Language", "ja, en"), ("Auto-Submitted", "auto-generated"),
    ]
    body = text.replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n"
    return compose(headers, body, html_text, f"hg_notice_{mail_id}")


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{escape(part)}</p>".replace("\n", "<br>")
                   for part in text.strip().split("\n\n"))


@dataclass(frozen=True)
class SendCounts:
    sent: int
    retrying: int
    failed: int
    left: bool
    """More mail is due now than this batch took."""


def send_due(session: Session, *, notify_settings: NotifySettings, now: datetime,
             batch_max: int = SEND_BATCH_DEFAULT) -> SendCounts:
    """Send up to ``batch_max`` notice mails that are due. One sender at a time (``serve``
    runs one loop)."""
    due = list(session.execute(
        select(CustomerNoticeMail, CustomerNotice)
        .join(CustomerNotice, CustomerNotice.id == CustomerNoticeMail.notice_id)
        .where(CustomerNoticeMail.status == NoticeMailStatus.QUEUED.value,
               CustomerNoticeMail.next_attempt_at <= now)
        .order_by(CustomerNoticeMail.id).limit(batch_max)).all())
    identity = MailIdentity(sender_address=notify_settings.smtp.sender,
                            service_name=notify_settings.service_name,
                            domain=notify_settings.link_host)
    sent = retrying = failed = 0
    connection = SmtpConnection(notify_settings.smtp)
    try:
        for mail, notice in due:
            mail.attempts += 1
            try:
                connection.send(mail.to_address, notice_mail_bytes(
                    notice, to_address=mail.to_address, mail_id=mail.id, identity=identity,
                    now=now))
            except DeliveryError as exc:
                mail.last_error = str(exc)[:500]
                if isinstance(exc, PermanentError) or mail.attempts >= notify_settings.attempts_max:
                    mail.status = NoticeMailStatus.FAILED.value
                    failed += 1
                else:
                    mail.next_attempt_at = now + timedelta(seconds=backoff_s(
                        mail.attempts, notify_settings.backoff_base_s,
                        notify_settings.backoff_max_s))
                    retrying += 1
                continue
            mail.status = NoticeMailStatus.SENT.value
            mail.sent_at = now
            sent += 1
    finally:
        connection.close()
    session.flush()
    return SendCounts(sent=sent, retrying=retrying, failed=failed,
                      left=len(due) == batch_max)


class NoticeMailLoop:
    """The thread that sends due notice mail every ``interval_s``; ``start``/``stop`` by
    ``serve``, ``tick`` by tests."""

    def __init__(self, session_factory: sessionmaker[Session], clock: Clock,
                 notify_settings: NotifySettings, *,
                 interval_s: float = INTERVAL_S_DEFAULT) -> None:
        self._factory = session_factory
        self._clock = clock
        self._notify = notify_settings
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="customer-notice-mail",
                                        daemon=True)

    def start(self) -> NoticeMailLoop:
        self._thread.start()
        return self

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def tick(self) -> SendCounts:
        """Send what is due now, batch after batch (at most ``SEND_ROUNDS_MAX``)."""
        total = SendCounts(sent=0, retrying=0, failed=0, left=False)
        for _ in range(SEND_ROUNDS_MAX):
            with session_scope(self._factory) as session:
                counts = send_due(session, notify_settings=self._notify, now=self._clock.now())
            total = SendCounts(sent=total.sent + counts.sent,
                               retrying=total.retrying + counts.retrying,
                               failed=total.failed + counts.failed, left=counts.left)
            if counts.failed or counts.retrying:
                log.warning("customer notice mail: %d sent, %d to retry, %d failed",
                            counts.sent, counts.retrying, counts.failed)
            if not counts.left or not counts.sent:
                break
        return total

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.tick()
            except Exception:
                log.exception("customer notice mail tick failed; retrying next tick")
