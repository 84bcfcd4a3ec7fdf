"""The support desk's workflows across steps and domains: a bulk reply to every ticket of an
incident when a public update is published, sending the queued replies (with the
anti-phishing phrase), the staffing forecast, and turning an inbound email into a ticket.

Bulk reply: one row per (incident, public update) — unique, so asking again, from another
console or after a crash, answers "already done" and mails nobody again. Every ticket
linked to the incident gets the update as a message (its first response, if it had none);
each customer with an email address gets exactly one mail however many tickets they wrote
(unique per (bulk reply, customer) in the database). Rows are written in batches of plain
inserts, so 50,000 tickets are queued in seconds (``benchmarks/bench_support.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from html import escape
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from haltguard.incidents import service as incidents
from haltguard.incidents.models import TimelineEntry
from haltguard.notify import service as notify
from haltguard.notify.channels import DeliveryError, SmtpConnection
from haltguard.notify.messages import MailIdentity, compose, header_value
from haltguard.notify.settings import NotifySettings
from haltguard.status import service as status_service
from haltguard.status.settings import StatusSettings
from haltguard.support import erlang, service, texts
from haltguard.support.errors import SupportError
from haltguard.support.mail import parse_mail
from haltguard.support.models import (
    AuthorKind,
    BulkReplyRead,
    Channel,
    MailStatus,
    StaffingRead,
    StaffingRowRead,
    SupportBulkReply,
    SupportMessage,
    SupportOutgoingMail,
    SupportTicket,
)
from haltguard.support.settings import BULK_REPLY_TICKETS_MAX, SupportSettings

log = logging.getLogger(__name__)

INSERT_BATCH = 2_000
_MESSAGE_INSERT = SupportMessage.__table__.insert()  # type: ignore[attr-defined]
_MAIL_INSERT = SupportOutgoingMail.__table__.insert()  # type: ignore[attr-defined]
SEND_BATCH_DEFAULT = 200
HANDLE_S_DEFAULT = 300.0


def next_update_at(session: Session, incident_id: int, *, now: datetime,
                   status_settings: StatusSettings) -> datetime | None:
    """When the incident's next public update is due (the status page's cadence)."""
    for row in status_service.cadence(session, now=now, settings=status_settings):
        if row.incident_id == incident_id:
            return row.due_at
    return None


def _public_update(session: Session, incident_id: int,
                   entry_id: int | None) -> TimelineEntry:
    updates = incidents.public_updates_since(session, None, incident_id=incident_id)
    if entry_id is not None:
        updates = [entry for entry in updates if entry.id == entry_id]
    if not updates:
        raise SupportError(
            f"INC-{incident_id} has no public update"
            + (f" {entry_id}" if entry_id is not None else "") + " to send",
            message_ja=f"INC-{incident_id} に送信できる公開のお知らせがありません",
            next_step="publish a status update for the incident first, then reply in bulk")
    return updates[-1]


def _bulk_read(bulk: SupportBulkReply, *, created: bool) -> BulkReplyRead:
    return BulkReplyRead.model_validate(bulk).model_copy(update={"created": created})


def bulk_reply(
    session: Session, incident_id: int, *, update_entry_id: int | None, macro_name: str,
    actor: str, settings: SupportSettings, status_settings: StatusSettings, now: datetime,
) -> BulkReplyRead:
    """Answer every ticket linked to the incident with one of its public updates (the
    latest when none is named): one message per ticket, one mail per customer, once."""
    incident = incidents.get(session, incident_id)
    entry = _public_update(session, incident_id, update_entry_id)
    existing = session.scalar(select(SupportBulkReply).where(
        SupportBulkReply.incident_id == incident_id,
        SupportBulkReply.update_entry_id == entry.id))
    if existing is not None:
        return _bulk_read(existing, created=False)
    template = service.get_macro(session, macro_name or "incident_update")
    tickets = session.execute(select(
        SupportTicket.id, SupportTicket.customer_key, SupportTicket.customer_email,
        SupportTicket.customer_name, SupportTicket.language,
    ).where(SupportTicket.incident_id == incident_id,
            SupportTicket.status.not_in(sorted(service.CLOSED_STATUSES)))
        .order_by(SupportTicket.id).limit(BULK_REPLY_TICKETS_MAX)).all()
    bulk = SupportBulkReply(incident_id=incident_id, update_entry_id=entry.id,
                            macro_name=template.name, created_by=actor, created_at=now,
                            tickets_answered=len(tickets), mails_queued=0,
                            customers_without_address=0)
    try:
        with session.begin_nested():
            session.add(bulk)
            session.flush()
    except IntegrityError:
        existing = session.scalar(select(SupportBulkReply).where(
            SupportBulkReply.incident_id == incident_id,
            SupportBulkReply.update_entry_id == entry.id))
        if existing is None:
            raise
        return _bulk_read(existing, created=False)
    due = next_update_at(session, incident_id, now=now, status_settings=status_settings)
    update_text = {"ja": str(entry.details.get("message_ja") or entry.message),
                   "en": str(entry.details.get("message_en") or entry.message)}
    common = {lang: {**service.incident_values(incident, due, lang),
                     "update_text": update_text[lang], "help_url": settings.help_url}
              for lang in ("ja", "en")}
    messages: list[dict[str, Any]] = []
    mails: dict[str, dict[str, Any]] = {}
    no_address: set[str] = set()
    for ticket_id, key, email, name, language in tickets:
        lang = "ja" if language == "ja" else "en"
        values = {**common[lang], "ticket_ref": f"SUP-{ticket_id}",
                  "customer_name": name or texts.CUSTOMER_NAME_FALLBACK[lang]}
        body = texts.render(template.body_ja if lang == "ja" else template.body_en, values)
        messages.append({"ticket_id": ticket_id, "author_kind": AuthorKind.AGENT.value,
                         "author": actor, "body": body, "created_at": now,
                         "bulk_reply_id": bulk.id})
        if not email:
            no_address.add(key)
            continue
        if key in mails:
            continue
        subject = texts.render(template.subject_ja if lang == "ja" else template.subject_en,
                               values)
        mails[key] = {"ticket_id": ticket_id, "bulk_reply_id": bulk.id, "customer_key": key,
                      "to_address": email, "language": lang, "subject": subject[:300],
                      "body": body, "status": MailStatus.QUEUED.value, "attempts": 0,
                      "last_error": "", "created_at": now, "sent_at": None}
    no_address -= mails.keys()
    connection = session.connection()  # plain executemany: no unit of work per row
    for start in range(0, len(messages), INSERT_BATCH):
        connection.execute(_MESSAGE_INSERT, messages[start:start + INSERT_BATCH])
    rows = list(mails.values())
    for start in range(0, len(rows), INSERT_BATCH):
        connection.execute(_MAIL_INSERT, rows[start:start + INSERT_BATCH])
    ids = [row[0] for row in tickets]
    for start in range(0, len(ids), INSERT_BATCH):
        service.mark_answered(session, incident_id, ids[start:start + INSERT_BATCH], now)
    bulk.mails_queued = len(rows)
    bulk.customers_without_address = len(no_address)
    session.flush()
    return _bulk_read(bulk, created=True)


def answer_new_updates(
    session: Session, *, settings: SupportSettings, status_settings: StatusSettings,
    now: datetime,
) -> list[BulkReplyRead]:
    """The hook on public updates: every open incident whose latest public update has not
    been sent to its linked tickets yet gets its bulk reply (``support.bulk_reply_on_update``;
    ``serve``'s support loop calls this each tick)."""
    done = []
    for incident in service.open_incidents(session):
        updates = incidents.public_updates_since(session, None, incident_id=incident.id)
        if not updates or not service.has_open_tickets(session, incident.id):
            continue
        latest = updates[-1]
        if session.scalar(select(SupportBulkReply.id).where(
                SupportBulkReply.incident_id == incident.id,
                SupportBulkReply.update_entry_id == latest.id)) is not None:
            continue
        done.append(bulk_reply(session, incident.id, update_entry_id=latest.id, macro_name="",
                               actor="system:support", settings=settings,
                               status_settings=status_settings, now=now))
    return done


def reply(
    session: Session, ticket_id: int, *, body: str, macro_name: str, resolve: bool,
    actor: str, settings: SupportSettings, status_settings: StatusSettings, now: datetime,
) -> SupportMessage:
    """An agent's reply, written or from a macro, kept on the ticket and mailed to the
    customer when they gave an address."""
    ticket = service.get_ticket(session, ticket_id)
    lang = "ja" if ticket.language == "ja" else "en"
    values = {"ticket_ref": ticket.ref, "help_url": settings.help_url,
              "customer_name": ticket.customer_name or texts.CUSTOMER_NAME_FALLBACK[lang]}
    if ticket.incident_id is not None:
        incident = incidents.get(session, ticket.incident_id)
        due = next_update_at(session, incident.id, now=now, status_settings=status_settings)
        values.update(service.incident_values(incident, due, lang))
    if macro_name:
        template = service.get_macro(session, macro_name)
        subject = texts.render(template.subject_ja if lang == "ja" else template.subject_en,
                               values)
        text = texts.render(template.body_ja if lang == "ja" else template.body_en, values)
        if body.strip():
            text = body.strip() + "\n\n" + text
    elif body.strip():
        subject = f"Re: {ticket.subject} ({ticket.ref})"
        text = body.strip()
    else:
        raise SupportError("the reply is empty: give a body or a macro",
                           message_ja="返信の本文かテンプレートを指定してください",
                           next_step="write the answer, or name a macro (GET "
                                     "/api/support/macros)")
    if ticket.status in service.CLOSED_STATUSES and not resolve:
        ticket.status = "open"
        ticket.resolved_at = None
    message = service.add_agent_message(session, ticket, author=actor, body=text, now=now,
                                        resolve=resolve)
    service.queue_mail(session, ticket, subject=subject[:300], body=text, now=now)
    return message


# --- sending ------------------------------------------------------------------------------


def _mail_bytes(mail: SupportOutgoingMail, *, phrase: str | None, identity: MailIdentity,
                now: datetime) -> bytes:
    lang = "ja" if mail.language == "ja" else "en"
    if phrase:
        top = f"{texts.PHRASE_LABEL[lang]}: {phrase}\n\n"
    else:
        top = f"{texts.NO_PHRASE_NOTE[lang]}\n\n"
    text = (top + mail.body).replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n"
    html_text = (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
                 f"<title>{escape(mail.subject)}</title></head><body>"
                 + "".join(f"<p>{escape(part)}</p>".replace("\n", "<br>")
                           for part in (top + mail.body).split("\n\n"))
                 + "</body></html>")
    headers = [
        ("From", identity.from_header), ("To", mail.to_address),
        ("Subject", header_value("Subject", mail.subject)),
        ("Date", format_datetime(now)),
        ("Message-ID", f"<support-{mail.id}@{identity.domain}>"),
        ("Content-Language", lang), ("Auto-Submitted", "auto-replied"),
    ]
    return compose(headers, text, html_text, f"hg_support_{mail.id}")


@dataclass(frozen=True)
class SendCounts:
    sent: int
    failed: int
    left: int


def send_queued(session: Session, *, notify_settings: NotifySettings, now: datetime,
                batch_max: int = SEND_BATCH_DEFAULT) -> SendCounts:
    """Send up to ``batch_max`` queued replies, each with the anti-phishing phrase the
    customer chose when they subscribed to our notices with that address (or a note on how
    to check the mail is ours). One sender at a time (``serve`` runs one)."""
    queued = list(session.scalars(select(SupportOutgoingMail).where(
        SupportOutgoingMail.status == MailStatus.QUEUED.value)
        .order_by(SupportOutgoingMail.id).limit(batch_max)))
    identity = MailIdentity(sender_address=notify_settings.smtp.sender,
                            service_name=notify_settings.service_name,
                            domain=notify_settings.link_host)
    sent = failed = 0
    connection = SmtpConnection(notify_settings.smtp)
    try:
        for mail in queued:
            phrase = notify.anti_phishing_phrase(session, mail.to_address)
            mail.attempts += 1
            try:
                connection.send(mail.to_address, _mail_bytes(mail, phrase=phrase,
                                                              identity=identity, now=now))
            except DeliveryError as exc:
                mail.status = MailStatus.FAILED.value
                mail.last_error = str(exc)[:500]
                failed += 1
                continue
            mail.status = MailStatus.SENT.value
            mail.sent_at = now
            sent += 1
    finally:
        connection.close()
    session.flush()
    left = session.scalar(select(SupportOutgoingMail.id).where(
        SupportOutgoingMail.status == MailStatus.QUEUED.value).limit(1))
    return SendCounts(sent=sent, failed=failed, left=0 if left is None else 1)


def retry_failed_mail(session: Session) -> int:
    result = session.execute(update(SupportOutgoingMail).where(
        SupportOutgoingMail.status == MailStatus.FAILED.value).values(
        status=MailStatus.QUEUED.value))
    return int(getattr(result, "rowcount", 0) or 0)


# --- email intake -------------------------------------------------------------------------


def ticket_from_mail(
    session: Session, raw: bytes, *, settings: SupportSettings, now: datetime,
    candidates: service.IncidentCandidates | None = None,
) -> tuple[SupportTicket, bool]:
    """The ticket for an inbound email (the same one when the message is redelivered)."""
    mail = parse_mail(raw, bytes_max=settings.email_bytes_max)
    return service.create_ticket(session, service.NewTicket(
        channel=Channel.EMAIL, subject=mail.subject, body=mail.text, language=mail.language,
        customer_name=mail.from_name, customer_email=mail.from_address,
        source_key=f"email:{mail.message_id}",
    ), settings=settings, now=now,
        candidates=candidates.get(session, now) if candidates is not None else None)


# --- staffing -----------------------------------------------------------------------------


def _row(row: erlang.StaffingRow) -> StaffingRowRead:
    asa = row.average_speed_of_answer_s
    return StaffingRowRead(agents=row.agents, probability_wait=row.probability_wait,
                           service_level=row.service_level,
                           average_speed_of_answer_s=None if asa == float("inf") else asa,
                           occupancy=row.occupancy)


def staffing(
    session: Session, *, incident_id: int | None, arrivals_per_hour: float | None,
    handle_s: float, answer_within_s: float, service_level: float, now: datetime,
) -> StaffingRead:
    """Agents needed for the target, from a given arrival rate or the incident's own (its
    tickets over the last hour) or, before it has any, past incidents of its category
    scaled by affected customers."""
    forecast: dict[str, Any]
    if arrivals_per_hour is not None:
        forecast = {"source": "given", "arrivals_per_hour": arrivals_per_hour}
        rate = arrivals_per_hour
    elif incident_id is not None:
        incident = incidents.get(session, incident_id)
        rate, counted, observed_s = service.arrivals_per_hour(session, incident_id, now=now)
        forecast = {"source": "this incident", "incident_ref": incident.ref,
                    "tickets_counted": counted, "observed_s": observed_s}
        if counted == 0:
            rate, used = service.past_arrivals_per_hour(session, incident)
            forecast = {"source": "past incidents of the same category",
                        "category": service.category_label(incident),
                        "incidents_used": [f"INC-{each}" for each in used]}
        forecast["arrivals_per_hour"] = rate
    else:
        raise SupportError("give an arrival rate or an incident",
                           message_ja="到着率か障害を指定してください",
                           next_step="pass arrivals_per_hour, or incident_id to forecast it")
    try:
        answer = erlang.staffing(rate, handle_s, answer_within_s=answer_within_s,
                                 service_level_target=service_level)
    except erlang.ErlangInputError as exc:
        raise SupportError(str(exc), message_ja="人員計算の入力が正しくありません",
                           next_step="check the arrival rate, handling time and target") from exc
    return StaffingRead(
        arrivals_per_hour=answer.arrivals_per_hour, handle_s=answer.handle_s,
        answer_within_s=answer.answer_within_s,
        service_level_target=answer.service_level_target, load_erlangs=answer.load_erlangs,
        agents=answer.agents, answer=_row(answer.answer),
        rows=[_row(row) for row in answer.rows], forecast=forecast,
    )

