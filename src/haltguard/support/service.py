"""Plain functions over a session for the support desk: articles, tickets, messages, macros,
SLA timers and reports. ``now`` is always passed in; nothing here reads the environment or
knows of HTTP. Other domains are reached through their ``service`` modules only (incidents
for linking, impact for a customer's own impact)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from haltguard.common.taxonomy import CATEGORIES
from haltguard.impact import service as impact_service
from haltguard.impact.errors import ImpactError
from haltguard.incidents import service as incidents
from haltguard.incidents.models import Incident
from haltguard.security import audit
from haltguard.support import linking, texts
from haltguard.support.errors import SupportConflictError, SupportError, not_found
from haltguard.support.models import (
    ArticleCreate,
    AuthorKind,
    Channel,
    MacroCreate,
    SlaRead,
    SupportArticle,
    SupportMacro,
    SupportMessage,
    SupportOutgoingMail,
    SupportTicket,
    TicketCategory,
    TicketRead,
    TicketStatus,
    TicketUpdate,
    ticket_ref,
)
from haltguard.support.search import search_text_of
from haltguard.support.settings import SupportSettings

JST = timezone(timedelta(hours=9), "JST")
CLOSED_STATUSES = frozenset({TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value})


def jst_text(moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment.astimezone(JST):%Y-%m-%d %H:%M} JST"


def customer_key(email: str, account: int | None, source: str) -> str:
    """Who the customer is, for one mail each: their email's digest, else their account,
    else the submission itself."""
    if email:
        return "email:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:64]
    if account is not None:
        return f"account:{account}"
    return "source:" + hashlib.sha256(source.encode()).hexdigest()[:64]


# --- incidents, as linking sees them --------------------------------------------------------


def open_incidents(session: Session) -> list[linking.OpenIncident]:
    """Every open incident, as the linking rules need it."""
    found = session.scalars(incidents.list_query(open_only=True).limit(100))
    return [linking.OpenIncident(
        id=incident.id, category=incident.category,
        markets=tuple(incident.affected_markets or ()),
        started_at=incident.started_at or incident.detected_at,
        resolved_at=incident.resolved_at,
    ) for incident in found]


class IncidentCandidates:
    """The open incidents linking compares a ticket with, read at most once per
    ``ttl_s`` of the clock: under a burst of questions the incidents are read once, not per
    ticket. Safe to share between threads (a stale read is at most ``ttl_s`` old)."""

    def __init__(self, ttl_s: float = 2.0) -> None:
        self._ttl = timedelta(seconds=ttl_s)
        self._read_at: datetime | None = None
        self._found: list[linking.OpenIncident] = []

    def get(self, session: Session, now: datetime) -> list[linking.OpenIncident]:
        read_at = self._read_at
        if read_at is None or not read_at <= now < read_at + self._ttl:
            self._found = open_incidents(session)
            self._read_at = now
        return self._found


def incident_values(incident: Incident, next_update_at: datetime | None,
                    language: str) -> dict[str, str]:
    """The macro variables an incident fills in."""
    markets = ", ".join(incident.affected_markets or ()) or (
        "全市場" if language == "ja" else "all markets")
    return {
        "incident_ref": incident.ref,
        "incident_title": incident.title,
        "incident_markets": markets,
        "incident_started_at": jst_text(incident.started_at or incident.detected_at),
        "next_update_at": jst_text(next_update_at),
    }


# --- tickets ------------------------------------------------------------------------------


_TICKETS = SupportTicket.__table__
_TICKET_INSERT = _TICKETS.insert().returning(_TICKETS.c.id)  # type: ignore[attr-defined]
_MESSAGE_INSERT = SupportMessage.__table__.insert()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class NewTicket:
    """A question from any channel, before it is a ticket."""

    channel: Channel
    subject: str
    body: str
    language: str
    customer_name: str = ""
    customer_email: str = ""
    account: int | None = None
    market: str = ""
    category: TicketCategory | None = None
    source_key: str = ""
    transcript: Sequence[tuple[str, str, str]] = ()
    """For a chat: each message's author kind, author and text, in order."""


def create_ticket(
    session: Session, new: NewTicket, *, settings: SupportSettings, now: datetime,
    candidates: Sequence[linking.OpenIncident] | None = None,
) -> tuple[SupportTicket, bool]:
    """The ticket for ``new`` and whether it was created (False: the same ``source_key``
    arrived before, and that ticket is returned)."""
    if new.source_key:
        existing = session.scalar(select(SupportTicket).where(
            SupportTicket.source_key == new.source_key))
        if existing is not None:
            return existing, False
    found = linking.link(f"{new.subject}\n{new.body}", new.market, now,
                         open_incidents(session) if candidates is None else candidates,
                         grace_s=settings.link_grace_s)
    category = new.category or (TicketCategory.INCIDENT if found else
                                linking.topic(f"{new.subject}\n{new.body}"))
    messages = list(new.transcript) or [(AuthorKind.CUSTOMER.value,
                                         new.customer_name or "customer", new.body)]
    answered = any(kind == AuthorKind.AGENT.value for kind, _, _ in messages)
    values: dict[str, Any] = {
        "channel": new.channel.value, "category": category.value,
        "status": (TicketStatus.OPEN if answered else TicketStatus.NEW).value,
        "language": new.language, "subject": new.subject, "body": new.body,
        "customer_name": new.customer_name, "customer_email": new.customer_email.strip(),
        "customer_key": customer_key(new.customer_email, new.account,
                                     new.source_key or secrets.token_hex(16)),
        "account": new.account, "incident_id": found.incident_id if found else None,
        "link_reason": found.reason[:300] if found else "", "assignee": None,
        "source_key": new.source_key or None, "rating_token": secrets.token_urlsafe(24),
        "created_at": now,
        "first_response_due_at": now + timedelta(seconds=settings.first_response_s),
        "resolution_due_at": now + timedelta(seconds=settings.resolution_s),
        "first_response_at": now if answered else None, "resolved_at": None,
        "first_response_breach_at": None, "resolution_breach_at": None,
        "satisfaction": None, "satisfaction_comment": "",
    }
    # Written with plain inserts, not the unit of work: a burst of questions is written in
    # about half the time. The ticket returned is a detached copy of the row, to read.
    connection = session.connection()
    ticket_id = connection.execute(_TICKET_INSERT, values).scalar_one()
    connection.execute(_MESSAGE_INSERT, [
        {"ticket_id": ticket_id, "author_kind": kind, "author": author[:200], "body": body,
         "created_at": now, "bulk_reply_id": None} for kind, author, body in messages])
    ticket = SupportTicket(id=ticket_id, **values)
    return ticket, True


def get_ticket(session: Session, ticket_id: int) -> SupportTicket:
    ticket = session.get(SupportTicket, ticket_id)
    if ticket is None:
        raise not_found("ticket", "問い合わせ", ticket_ref(ticket_id), "GET /api/support/tickets")
    return ticket


def _timer(due: datetime, done: datetime | None, now: datetime) -> tuple[str, float | None]:
    if done is not None:
        return ("met" if done <= due else "breached"), None
    remaining = (due - now).total_seconds()
    return ("running" if remaining >= 0 else "breached"), remaining


def sla_of(ticket: SupportTicket, now: datetime) -> SlaRead:
    """The ticket's two timers: met, breached or running (with the seconds left)."""
    first, first_left = _timer(ticket.first_response_due_at, ticket.first_response_at, now)
    resolution, resolution_left = _timer(ticket.resolution_due_at, ticket.resolved_at, now)
    return SlaRead(
        first_response_due_at=ticket.first_response_due_at,
        first_response_at=ticket.first_response_at, first_response=first,
        first_response_remaining_s=first_left, resolution_due_at=ticket.resolution_due_at,
        resolved_at=ticket.resolved_at, resolution=resolution,
        resolution_remaining_s=resolution_left,
    )


def ticket_read(ticket: SupportTicket, now: datetime) -> TicketRead:
    return TicketRead(
        id=ticket.id, ref=ticket.ref, channel=Channel(ticket.channel),
        category=TicketCategory(ticket.category), status=TicketStatus(ticket.status),
        language=ticket.language, subject=ticket.subject, body=ticket.body,  # type: ignore[arg-type]
        customer_name=ticket.customer_name, customer_email=ticket.customer_email,
        account=ticket.account, incident_id=ticket.incident_id,
        link_reason=ticket.link_reason, assignee=ticket.assignee,
        created_at=ticket.created_at, sla=sla_of(ticket, now),
        satisfaction=ticket.satisfaction, satisfaction_comment=ticket.satisfaction_comment,
    )


def list_tickets(
    session: Session, *, status: TicketStatus | None = None, incident_id: int | None = None,
    assignee: str | None = None, channel: Channel | None = None, offset: int, limit: int,
) -> tuple[list[SupportTicket], int]:
    query = select(SupportTicket)
    if status is not None:
        query = query.where(SupportTicket.status == status.value)
    if incident_id is not None:
        query = query.where(SupportTicket.incident_id == incident_id)
    if assignee is not None:
        query = query.where(SupportTicket.assignee == assignee)
    if channel is not None:
        query = query.where(SupportTicket.channel == channel.value)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(SupportTicket.id.desc()).offset(offset).limit(limit))
    return list(rows), total


def messages_of(session: Session, ticket_id: int) -> list[SupportMessage]:
    return list(session.scalars(select(SupportMessage).where(
        SupportMessage.ticket_id == ticket_id).order_by(SupportMessage.id)))


def update_ticket(session: Session, ticket_id: int, change: TicketUpdate, *,
                  now: datetime) -> SupportTicket:
    """Assign, re-categorise, re-link or move a ticket along its statuses."""
    ticket = get_ticket(session, ticket_id)
    if change.incident_id is not None:
        incidents.get(session, change.incident_id)
        ticket.incident_id = change.incident_id
        ticket.link_reason = "linked by an agent"
    if change.category is not None:
        ticket.category = change.category.value
    if change.assignee is not None:
        ticket.assignee = change.assignee or None
    if change.status is not None:
        ticket.status = change.status.value
        if change.status.value in CLOSED_STATUSES and ticket.resolved_at is None:
            ticket.resolved_at = now
        elif change.status.value not in CLOSED_STATUSES:
            ticket.resolved_at = None
    return ticket


def add_agent_message(session: Session, ticket: SupportTicket, *, author: str, body: str,
                      now: datetime, resolve: bool) -> SupportMessage:
    """An agent's answer on the ticket: starts the conversation (first response) and
    resolves it when asked."""
    message = SupportMessage(ticket_id=ticket.id, author_kind=AuthorKind.AGENT.value,
                             author=author, body=body, created_at=now)
    session.add(message)
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    if resolve:
        ticket.status = TicketStatus.RESOLVED.value
        ticket.resolved_at = ticket.resolved_at or now
    elif ticket.status == TicketStatus.NEW.value:
        ticket.status = TicketStatus.OPEN.value
    session.flush()
    return message


def queue_mail(session: Session, ticket: SupportTicket, *, subject: str, body: str,
               now: datetime) -> SupportOutgoingMail | None:
    """A reply to the ticket's customer, queued for the mail sender (None: no address)."""
    if not ticket.customer_email:
        return None
    mail = SupportOutgoingMail(
        ticket_id=ticket.id, bulk_reply_id=None, customer_key=ticket.customer_key,
        to_address=ticket.customer_email, language=ticket.language, subject=subject,
        body=body, status="queued", attempts=0, last_error="", created_at=now)
    session.add(mail)
    return mail


def rate(session: Session, ticket_id: int, *, token: str, score: int, comment: str) -> None:
    """The customer's satisfaction rating, once the ticket is resolved (the token comes in
    the reply that resolved it)."""
    ticket = get_ticket(session, ticket_id)
    if not hmac.compare_digest(ticket.rating_token.encode(), token.encode()):
        raise not_found("ticket", "問い合わせ", ticket_ref(ticket_id), "the link in our reply")
    if ticket.status not in CLOSED_STATUSES:
        raise SupportConflictError(
            f"{ticket.ref} is not resolved yet; it can be rated once it is",
            message_ja=f"{ticket.ref} はまだ解決していません。解決後に評価できます",
            next_step="rate it after our answer marks it resolved")
    ticket.satisfaction = score
    ticket.satisfaction_comment = comment


# --- SLA breaches -------------------------------------------------------------------------


@dataclass(frozen=True)
class Breach:
    ticket_id: int
    ref: str
    timer: str
    due_at: datetime
    assignee: str | None
    incident_id: int | None


def alert_breaches(session: Session, *, now: datetime, limit: int = 1_000) -> list[Breach]:
    """The tickets whose first-response or resolution time passed since the last call, each
    timer alerted once (its ``..._breach_at`` is stamped)."""
    found: list[Breach] = []
    first = session.scalars(select(SupportTicket).where(
        SupportTicket.first_response_at.is_(None),
        SupportTicket.first_response_breach_at.is_(None),
        SupportTicket.first_response_due_at < now,
        SupportTicket.status.not_in(sorted(CLOSED_STATUSES)),
    ).order_by(SupportTicket.first_response_due_at).limit(limit))
    for ticket in first:
        ticket.first_response_breach_at = now
        found.append(Breach(ticket.id, ticket.ref, "first_response",
                            ticket.first_response_due_at, ticket.assignee, ticket.incident_id))
    resolution = session.scalars(select(SupportTicket).where(
        SupportTicket.resolved_at.is_(None), SupportTicket.resolution_breach_at.is_(None),
        SupportTicket.resolution_due_at < now,
    ).order_by(SupportTicket.resolution_due_at).limit(limit))
    for ticket in resolution:
        ticket.resolution_breach_at = now
        found.append(Breach(ticket.id, ticket.ref, "resolution", ticket.resolution_due_at,
                            ticket.assignee, ticket.incident_id))
    session.flush()
    return found


# --- macros -------------------------------------------------------------------------------


def _check_template(*parts: str) -> None:
    unknown = sorted({name for part in parts for name in texts.unknown_variables(part)})
    if unknown:
        known = ", ".join(texts.VARIABLES)
        raise SupportError(
            f"unknown variables {', '.join(unknown)}; the variables are {known}",
            message_ja=f"使えない変数があります: {', '.join(unknown)}",
            next_step=f"use only {{{'}, {'.join(texts.VARIABLES)}}}")


def create_macro(session: Session, data: MacroCreate, *, actor: str,
                 now: datetime) -> SupportMacro:
    _check_template(data.subject_ja, data.subject_en, data.body_ja, data.body_en)
    if session.scalar(select(SupportMacro.id).where(SupportMacro.name == data.name)) \
            is not None or data.name in texts.BUILT_IN_MACROS:
        raise SupportConflictError(
            f"a macro named {data.name} exists", message_ja=f"{data.name} は既にあります",
            next_step="choose another name")
    macro = SupportMacro(**data.model_dump(), created_by=actor, created_at=now)
    session.add(macro)
    session.flush()
    return macro


def list_macros(session: Session) -> list[texts.Template]:
    """Built-in macros first, then the ones agents saved."""
    saved = [texts.Template(m.name, m.subject_ja, m.subject_en, m.body_ja, m.body_en)
             for m in session.scalars(select(SupportMacro).order_by(SupportMacro.name))]
    return list(texts.BUILT_IN_MACROS.values()) + saved


def get_macro(session: Session, name: str) -> texts.Template:
    if name in texts.BUILT_IN_MACROS:
        return texts.BUILT_IN_MACROS[name]
    macro = session.scalar(select(SupportMacro).where(SupportMacro.name == name))
    if macro is None:
        raise not_found("macro", "テンプレート", name, "GET /api/support/macros")
    return texts.Template(macro.name, macro.subject_ja, macro.subject_en, macro.body_ja,
                          macro.body_en)


# --- articles -----------------------------------------------------------------------------


def _fill_search_text(article: SupportArticle) -> None:
    article.search_text = search_text_of(article.title_ja, article.title_en, article.keywords,
                                         article.body_ja, article.body_en)


def create_article(session: Session, data: ArticleCreate, *, actor: str, now: datetime,
                   incident_id: int | None = None) -> SupportArticle:
    if session.scalar(select(SupportArticle.id).where(SupportArticle.slug == data.slug)):
        raise SupportConflictError(
            f"an article with the slug {data.slug} exists",
            message_ja=f"{data.slug} の記事は既にあります",
            next_step="choose another slug, or edit that article")
    article = SupportArticle(**data.model_dump(), incident_id=incident_id, created_by=actor,
                             created_at=now, updated_at=now)
    _fill_search_text(article)
    session.add(article)
    session.flush()
    return article


def get_article(session: Session, slug: str, *, published_only: bool) -> SupportArticle:
    query = select(SupportArticle).where(SupportArticle.slug == slug)
    if published_only:
        query = query.where(SupportArticle.published.is_(True))
    article = session.scalar(query)
    if article is None:
        raise not_found("article", "記事", slug, "GET /api/support/articles")
    return article


def set_published(session: Session, slug: str, published: bool, *,
                  now: datetime) -> SupportArticle:
    article = get_article(session, slug, published_only=False)
    article.published = published
    article.updated_at = now
    return article


def list_articles(session: Session, *, published_only: bool, offset: int = 0,
                  limit: int = 200, category: str | None = None,
                  ) -> tuple[list[SupportArticle], int]:
    query = select(SupportArticle)
    if published_only:
        query = query.where(SupportArticle.published.is_(True))
    if category:
        query = query.where(SupportArticle.category == category)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(SupportArticle.category, SupportArticle.id)
                           .offset(offset).limit(limit))
    return list(rows), total


def pinned_articles(session: Session) -> list[SupportArticle]:
    """Published entries of incidents still open: shown first in the help centre."""
    open_ids = [incident.id for incident in open_incidents(session)]
    if not open_ids:
        return []
    return list(session.scalars(select(SupportArticle).where(
        SupportArticle.incident_id.in_(open_ids), SupportArticle.published.is_(True),
    ).order_by(SupportArticle.incident_id.desc(), SupportArticle.id)))


def draft_incident_faq(session: Session, incident_id: int, *, actor: str, now: datetime,
                       next_update_at: datetime | None) -> list[SupportArticle]:
    """The incident's FAQ entries drafted from the templates with its facts, unpublished
    until an agent reviews them; drafting again keeps those already there."""
    incident = incidents.get(session, incident_id)
    drafted = []
    for template in texts.INCIDENT_FAQ:
        slug = f"inc-{incident.id}-{template.slug}"
        existing = session.scalar(select(SupportArticle).where(SupportArticle.slug == slug))
        if existing is not None:
            drafted.append(existing)
            continue
        ja = incident_values(incident, next_update_at, "ja")
        en = incident_values(incident, next_update_at, "en")
        drafted.append(create_article(session, ArticleCreate(
            slug=slug, category="incident",
            title_ja=texts.render(template.title_ja, ja),
            title_en=texts.render(template.title_en, en),
            body_ja=texts.render(template.body_ja, ja),
            body_en=texts.render(template.body_en, en),
            keywords=template.keywords, published=False,
        ), actor=actor, now=now, incident_id=incident.id))
    return drafted


# --- a customer's own impact ----------------------------------------------------------------


def customer_impact(session: Session, ticket: SupportTicket, data_dir: Path,
                    items_max: int = 50) -> dict[str, Any]:
    """What the journal says the incident did to this ticket's account: its refused orders
    and its resting orders caught in a halted market."""
    if ticket.incident_id is None or ticket.account is None:
        return {"known": False, "why": "the ticket has no incident or no account"}
    try:
        report = impact_service.analyse_incident(session, data_dir, ticket.incident_id)
    except ImpactError as exc:
        return {"known": False, "why": exc.message}
    account = ticket.account
    refused = [order for order in report.refused_orders if order.account == account]
    caught = [order for order in report.caught_orders if order.account == account]
    return {
        "known": True, "account": account, "incident_ref": report.incident_ref,
        "refused_orders": [{"market": o.market, "side": o.side, "reason": o.reason,
                            "client_order_id": o.client_order_id, "ts_ns": o.ts_ns}
                           for o in refused[:items_max]],
        "refused_orders_total": len(refused),
        "resting_orders_in_halted_markets": [
            {"market": o.market, "order_id": o.order_id, "side": o.side,
             "market_state": o.market_state, "remaining_lots": o.remaining_lots}
            for o in caught[:items_max]],
        "resting_orders_total": len(caught),
    }


# --- reporting ----------------------------------------------------------------------------


def report(session: Session, *, incident_id: int | None, since: datetime, until: datetime,
           now: datetime) -> dict[str, Any]:
    """Contacts per hour by channel and category, backlog, SLA attainment, satisfaction."""
    query = select(SupportTicket.created_at, SupportTicket.channel, SupportTicket.category,
                   SupportTicket.status, SupportTicket.first_response_due_at,
                   SupportTicket.first_response_at, SupportTicket.resolution_due_at,
                   SupportTicket.resolved_at, SupportTicket.satisfaction).where(
        SupportTicket.created_at >= since, SupportTicket.created_at <= until)
    if incident_id is not None:
        query = query.where(SupportTicket.incident_id == incident_id)
    hours: dict[datetime, Counter[str]] = {}
    by_channel: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    sla: Counter[str] = Counter()
    backlog = 0
    ratings: list[int] = []
    for row in session.execute(query):
        hour = row.created_at.replace(minute=0, second=0, microsecond=0)
        counts = hours.setdefault(hour, Counter())
        counts[f"channel:{row.channel}"] += 1
        counts[f"category:{row.category}"] += 1
        by_channel[row.channel] += 1
        by_category[row.category] += 1
        backlog += row.status not in CLOSED_STATUSES
        for name, due, done in (("first_response", row.first_response_due_at,
                                 row.first_response_at),
                                ("resolution", row.resolution_due_at, row.resolved_at)):
            state, _ = _timer(due, done, now)
            sla[f"{name}_{state}"] += 1
        if row.satisfaction is not None:
            ratings.append(row.satisfaction)
    per_hour = [{"hour": hour.isoformat(), "total": sum(
        value for key, value in counts.items() if key.startswith("channel:")),
        "by_channel": {k.partition(":")[2]: v for k, v in counts.items()
                       if k.startswith("channel:")},
        "by_category": {k.partition(":")[2]: v for k, v in counts.items()
                        if k.startswith("category:")}} for hour, counts in sorted(hours.items())]
    return {
        "incident_id": incident_id, "since": since, "until": until,
        "tickets": sum(by_channel.values()), "per_hour": per_hour,
        "by_channel": dict(by_channel), "by_category": dict(by_category), "backlog": backlog,
        "first_response_met": sla["first_response_met"],
        "first_response_breached": sla["first_response_breached"],
        "resolution_met": sla["resolution_met"],
        "resolution_breached": sla["resolution_breached"],
        "satisfaction_mean": sum(ratings) / len(ratings) if ratings else None,
        "satisfaction_count": len(ratings),
    }


def arrivals_per_hour(session: Session, incident_id: int, *, now: datetime,
                      window: timedelta = timedelta(hours=1)) -> tuple[float, int, float]:
    """The incident's ticket arrival rate over the last ``window`` (or since its first
    ticket, if sooner): (per hour, tickets counted, seconds observed)."""
    since = now - window
    first = session.scalar(select(func.min(SupportTicket.created_at)).where(
        SupportTicket.incident_id == incident_id))
    if first is None:
        return 0.0, 0, 0.0
    start = max(since, first)
    count = session.scalar(select(func.count()).where(
        SupportTicket.incident_id == incident_id, SupportTicket.created_at >= start,
        SupportTicket.created_at <= now)) or 0
    observed_s = max((now - start).total_seconds(), 60.0)
    return count * 3600.0 / observed_s, count, observed_s


def past_arrivals_per_hour(session: Session, incident: Incident) -> tuple[float, list[int]]:
    """Past incidents of the same category: their tickets in their first hour, each scaled by
    this incident's estimated affected customers over theirs. (rate, incidents used)."""
    rates: list[float] = []
    used: list[int] = []
    past = session.scalars(select(Incident).where(
        Incident.category == incident.category, Incident.id != incident.id,
    ).order_by(Incident.id.desc()).limit(20))
    for other in past:
        start = other.started_at or other.detected_at
        count = session.scalar(select(func.count()).where(
            SupportTicket.incident_id == other.id, SupportTicket.created_at >= start,
            SupportTicket.created_at < start + timedelta(hours=1))) or 0
        if count == 0:
            continue
        scale = 1.0
        if incident.estimated_affected_customers and other.estimated_affected_customers:
            scale = incident.estimated_affected_customers / other.estimated_affected_customers
        rates.append(count * scale)
        used.append(other.id)
    return (sum(rates) / len(rates) if rates else 0.0), used


def category_label(incident: Incident) -> str:
    info = CATEGORIES[incident.category]
    return f"{info.label_en} / {info.label_ja}"


def has_open_tickets(session: Session, incident_id: int) -> bool:
    return session.scalar(select(SupportTicket.id).where(
        SupportTicket.incident_id == incident_id,
        SupportTicket.status.not_in(sorted(CLOSED_STATUSES))).limit(1)) is not None


def answered_ticket_ids(session: Session, incident_id: int) -> list[int]:
    return list(session.scalars(select(SupportTicket.id).where(
        SupportTicket.incident_id == incident_id,
        SupportTicket.first_response_at.is_not(None))))


def mark_answered(session: Session, incident_id: int, ticket_ids: Sequence[int],
                  now: datetime) -> None:
    """Start the conversation on the tickets just answered in bulk."""
    session.execute(update(SupportTicket).where(
        SupportTicket.incident_id == incident_id, SupportTicket.id.in_(ticket_ids),
        SupportTicket.first_response_at.is_(None)).values(first_response_at=now))
    session.execute(update(SupportTicket).where(
        SupportTicket.incident_id == incident_id, SupportTicket.id.in_(ticket_ids),
        SupportTicket.status == TicketStatus.NEW.value).values(status=TicketStatus.OPEN.value))


def audit_change(session: Session, *, actor: str, action: str, target: str,
                 details: dict[str, object], now: datetime) -> None:
    """Every change an agent makes lands in the audit chain (``support.*`` actions)."""
    audit.record(session, actor=actor, action=action, target=target, details=details, at=now)
