"""HTTP routes of the support desk. Thin: each calls the service, a flow or the chat hub.

Public, without an account (``/api/support/public/...``): the contact form (limited per
address, with a honeypot field), FAQ search, the satisfaction rating of a resolved ticket
and the chat WebSocket. For agents (``/api/support/...``): tickets, replies and macros,
bulk replies, the help centre's articles and incident FAQ, chats, SLA alerts, staffing and
the report, guarded by ``support.read``, ``support.reply`` and ``support.manage``; every
change is written to the audit chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime, timedelta
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Path, Query, Request, WebSocket, WebSocketDisconnect

from haltguard.common.errors import HaltguardError
from haltguard.impact.settings import ImpactSettings
from haltguard.notify.channels import AddressError, check_email
from haltguard.notify.models import Language
from haltguard.notify.settings import NotifySettings
from haltguard.security.dependencies import AuthenticatedOperator, require
from haltguard.security.permissions import Action
from haltguard.status.settings import StatusSettings
from haltguard.support import flows, search, service, texts
from haltguard.support.chat import ChatHub
from haltguard.support.errors import FormFloodError, SupportError
from haltguard.support.intake import TicketWriter
from haltguard.support.models import (
    ArticleCreate,
    ArticleRead,
    BulkReplyRead,
    BulkReplyRequest,
    Channel,
    ChatText,
    ContactForm,
    MacroCreate,
    MacroRead,
    MessageRead,
    Rating,
    ReplyCreate,
    ReportRead,
    SearchAnswer,
    SearchHit,
    StaffingRead,
    TicketAccepted,
    TicketCreate,
    TicketRead,
    TicketStatus,
    TicketUpdate,
)
from haltguard.support.settings import SupportSettings
from haltguard.web.bounds import DbId
from haltguard.web.context import context_of
from haltguard.web.dependencies import ClockDep, ContextDep, SessionDep
from haltguard.web.errors import ERROR_RESPONSES
from haltguard.web.pagination import Page, PageParamsDep, make_page
from haltguard.web.ratelimit import RateLimiter

router = APIRouter(tags=["support"], responses=ERROR_RESPONSES)

Reader = Annotated[AuthenticatedOperator, Depends(require(Action.SUPPORT_READ))]
Replier = Annotated[AuthenticatedOperator, Depends(require(Action.SUPPORT_REPLY))]
Manager = Annotated[AuthenticatedOperator, Depends(require(Action.SUPPORT_MANAGE))]

FORM_BUCKET = "support-form"
SEARCH_QUERY_MAX = 200
CHAT_RECEIVE_BYTES_MAX = 16_384


def support_settings(operations: ContextDep) -> SupportSettings:
    return operations.part(SupportSettings)


def chat_hub(operations: ContextDep) -> ChatHub:
    return operations.part(ChatHub)


def status_settings(operations: ContextDep) -> StatusSettings:
    return operations.part(StatusSettings)


SettingsDep = Annotated[SupportSettings, Depends(support_settings)]
Slug = Annotated[str, Path(min_length=1, max_length=80)]
ChatId = Annotated[str, Path(min_length=1, max_length=40)]
HubDep = Annotated[ChatHub, Depends(chat_hub)]
StatusSettingsDep = Annotated[StatusSettings, Depends(status_settings)]


# --- public -------------------------------------------------------------------------------


def _checked_form(request: Request, form: ContactForm,
                  settings: SupportSettings) -> service.NewTicket:
    """The question of a contact form, once it passed the checks: a usable address, an
    empty honeypot, and its address under the per-minute limit."""
    try:
        check_email(form.customer_email)
    except AddressError as exc:
        raise SupportError(f"the email address is not usable: {exc}",
                           message_ja="メールアドレスが正しくありません",
                           next_step="give an address we can answer") from exc
    if form.website:
        raise SupportError(
            "the form was sent with the hidden field filled in, as programs do",
            message_ja="フォームの送信内容を受け付けられませんでした",
            next_step="send the form from the help centre in a browser")
    client = request.client.host if request.client else "unknown"
    operations = context_of(request.app)
    wait_s = operations.part(RateLimiter).allow(FORM_BUCKET, client, settings.form_per_minute)
    if wait_s:
        raise FormFloodError(
            f"too many questions from your address; at most {settings.form_per_minute} a "
            f"minute are taken",
            message_ja=f"同じ送信元からのお問い合わせが多すぎます（1分に{settings.form_per_minute}件まで）",
            next_step=f"try again in {wait_s} s; questions already sent are kept",
            headers={"Retry-After": str(wait_s)})
    return service.NewTicket(
        channel=Channel.FORM, subject=form.subject, body=form.body,
        language=form.language.value, customer_name=form.customer_name,
        customer_email=form.customer_email, account=form.account, market=form.market)


async def accept_form(request: Request, form: ContactForm, *,
                      settings: SupportSettings) -> TicketAccepted:
    """A contact form, from the JSON route or the help centre's HTML form: checked, then
    written by the intake's group commit."""
    new = _checked_form(request, form, settings)
    writer = context_of(request.app).part(TicketWriter)
    written = await asyncio.wrap_future(writer.submit(new))
    incident_ref = f"INC-{written.incident_id}" if written.incident_id else None
    words = texts.ACCEPTED_INCIDENT if incident_ref else texts.ACCEPTED
    values = {"ticket_ref": written.ref, "incident_ref": incident_ref or ""}
    return TicketAccepted(ref=written.ref, incident_ref=incident_ref,
                          message_ja=words["ja"].format(**values),
                          message_en=words["en"].format(**values))


@router.post("/api/support/public/tickets", status_code=201,
             summary="Ask a question (the contact form)")
async def contact_form(request: Request, form: ContactForm,
                       settings: SettingsDep) -> TicketAccepted:
    return await accept_form(request, form, settings=settings)


def search_answer(session: Any, query: str, language: str,
                  settings: SupportSettings) -> SearchAnswer:
    hits = search.search(session, query, language=language)
    return SearchAnswer(
        query=query,
        hits=[SearchHit(slug=hit.article.slug,
                        title=hit.article.title_ja if language == "ja" else hit.article.title_en,
                        snippet=hit.snippet, score=hit.score) for hit in hits],
        contact_url=None if hits else settings.help_url + (
            "contact" if language == "ja" else "en/contact"),
    )


@router.get("/api/support/public/search", summary="Search the help centre")
def public_search(
    request: Request, q: Annotated[str, Query(min_length=1, max_length=SEARCH_QUERY_MAX)],
    session: SessionDep, settings: SettingsDep, lang: Language = Language.JA,
) -> SearchAnswer:
    """Published articles matching ``q`` (Japanese or English); none: where to ask instead.
    The same question within a few seconds gets the kept answer (``search.AnswerCache``)."""
    answers = context_of(request.app).part(search.AnswerCache)
    key = answers.key("api", q, lang.value)
    kept = answers.get(key)
    if isinstance(kept, SearchAnswer):
        return kept
    answer = search_answer(session, q, lang.value, settings)
    answers.put(key, answer)
    return answer


@router.post("/api/support/public/tickets/{ticket_id}/rating", status_code=204,
             summary="Rate the answer to a resolved ticket")
def rate_ticket(ticket_id: DbId, body: Rating, session: SessionDep) -> None:
    service.rate(session, ticket_id, token=body.token, score=body.score, comment=body.comment)


def _chat_error(exc: HaltguardError) -> dict[str, Any]:
    return {"type": "error", "code": exc.code, "message": exc.message,
            "message_ja": exc.message_ja or ""}


@router.websocket("/api/support/public/chat")
async def chat_socket(websocket: WebSocket) -> None:
    """The chat widget's socket: JSON messages ``start``, ``message``, ``agent``, ``close``
    from the customer; ``welcome``, ``suggestions``, ``queue``, ``agent_joined``,
    ``message``, ``closed`` and ``error`` to them."""
    hub = context_of(websocket.app).part(ChatHub)
    await websocket.accept()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    chat_id: str | None = None

    async def forward() -> None:
        while True:
            event = await outbox.get()
            await websocket.send_json(event)
            if event.get("type") == "closed":
                return

    sender = asyncio.create_task(forward())
    try:
        while True:
            raw = await websocket.receive_text()
            if len(raw) > CHAT_RECEIVE_BYTES_MAX:
                await outbox.put({"type": "error", "code": "support_chat_message_too_long",
                                  "message": "the message is too long",
                                  "message_ja": "メッセージが長すぎます"})
                continue
            try:
                event = await _chat_event(hub, raw, chat_id, loop, outbox)
            except HaltguardError as exc:
                await outbox.put(_chat_error(exc))
                continue
            if event.get("type") == "welcome":
                chat_id = str(event["chat_id"])
            if event:
                await outbox.put(event)
            if event.get("type") == "closing":
                break
    except WebSocketDisconnect:
        pass
    finally:
        if chat_id is not None:
            with contextlib.suppress(HaltguardError):
                await to_thread.run_sync(hub.close, chat_id)
        if not sender.done():
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(sender, 2.0)
        sender.cancel()


async def _chat_event(hub: ChatHub, raw: str, chat_id: str | None,
                      loop: asyncio.AbstractEventLoop,
                      outbox: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise SupportError("the message is not JSON",
                           message_ja="メッセージの形式が正しくありません",
                           next_step="send the chat widget's messages") from exc
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "start" and chat_id is None:
        language = "en" if message.get("language") == "en" else "ja"
        chat = hub.start(name=str(message.get("name", ""))[:200],
                         email=str(message.get("email", ""))[:320], language=language,
                         loop=loop, outbox=outbox)
        return {"type": "welcome", "chat_id": chat.id}
    if chat_id is None:
        raise SupportError("start the chat first", message_ja="先にチャットを開始してください",
                           next_step='send {"type": "start"}')
    if kind == "message":
        text = message.get("text")
        return await to_thread.run_sync(hub.customer_says, chat_id,
                                        text if isinstance(text, str) else "")
    if kind == "agent":
        return hub.ask_for_agent(chat_id)
    if kind == "close":
        return {"type": "closing"}
    raise SupportError(f"unknown message type {kind!r}",
                       message_ja="不明なメッセージです",
                       next_step="send start, message, agent or close")


# --- tickets --------------------------------------------------------------------------------


@router.get("/api/support/tickets", summary="Tickets, newest first")
def list_tickets(
    _: Reader, session: SessionDep, *, clock: ClockDep, params: PageParamsDep,
    status: TicketStatus | None = None, incident_id: DbId | None = None,
    assignee: Annotated[str | None, Query(max_length=200)] = None,
    channel: Channel | None = None,
) -> Page[TicketRead]:
    rows, total = service.list_tickets(session, status=status, incident_id=incident_id,
                                       assignee=assignee, channel=channel,
                                       offset=params.offset, limit=params.limit)
    now = clock.now()
    return make_page([service.ticket_read(row, now) for row in rows], total, params)


@router.post("/api/support/tickets", status_code=201, summary="Open a ticket for a customer")
def create_ticket(body: TicketCreate, operator: Replier, session: SessionDep, clock: ClockDep,
                  settings: SettingsDep) -> TicketRead:
    now = clock.now()
    ticket, created = service.create_ticket(session, service.NewTicket(
        channel=Channel.API, subject=body.subject, body=body.body, language=body.language.value,
        customer_name=body.customer_name, customer_email=body.customer_email,
        account=body.account, market=body.market, category=body.category,
        source_key=f"api:{body.idempotency_key}" if body.idempotency_key else "",
    ), settings=settings, now=now)
    if created:
        service.audit_change(session, actor=operator.actor, action="support.ticket_create",
                             target=ticket.ref, details={"channel": "api"}, now=now)
    return service.ticket_read(ticket, now)


@router.get("/api/support/tickets/{ticket_id}", summary="One ticket with its SLA timers")
def get_ticket(ticket_id: DbId, _: Reader, session: SessionDep, clock: ClockDep) -> TicketRead:
    return service.ticket_read(service.get_ticket(session, ticket_id), clock.now())


@router.get("/api/support/tickets/{ticket_id}/messages", summary="A ticket's conversation")
def ticket_messages(ticket_id: DbId, _: Reader, session: SessionDep,
                    params: PageParamsDep) -> Page[MessageRead]:
    service.get_ticket(session, ticket_id)
    messages = service.messages_of(session, ticket_id)
    shown = messages[params.offset:params.offset + params.limit]
    return make_page([MessageRead.model_validate(m) for m in shown], len(messages), params)


@router.patch("/api/support/tickets/{ticket_id}",
              summary="Assign, re-categorise, link or change a ticket's status")
def update_ticket(ticket_id: DbId, body: TicketUpdate, operator: Replier, session: SessionDep,
                  clock: ClockDep) -> TicketRead:
    now = clock.now()
    ticket = service.update_ticket(session, ticket_id, body, now=now)
    service.audit_change(session, actor=operator.actor, action="support.ticket_update",
                         target=ticket.ref, details=body.model_dump(exclude_none=True,
                                                                    mode="json"), now=now)
    return service.ticket_read(ticket, now)


@router.post("/api/support/tickets/{ticket_id}/replies", status_code=201,
             summary="Reply to the customer (written, or from a macro)")
def reply(ticket_id: DbId, body: ReplyCreate, operator: Replier, session: SessionDep, *,
          clock: ClockDep, settings: SettingsDep, status: StatusSettingsDep) -> MessageRead:
    now = clock.now()
    message = flows.reply(session, ticket_id, body=body.body, macro_name=body.macro,
                          resolve=body.resolve, actor=operator.username, settings=settings,
                          status_settings=status, now=now)
    service.audit_change(session, actor=operator.actor, action="support.reply",
                         target=f"SUP-{ticket_id}",
                         details={"macro": body.macro, "resolve": body.resolve}, now=now)
    return MessageRead.model_validate(message)


@router.get("/api/support/tickets/{ticket_id}/impact",
            summary="What the incident did to this customer's account, from the journal")
def ticket_impact(ticket_id: DbId, _: Reader, session: SessionDep,
                  operations: ContextDep) -> dict[str, Any]:
    ticket = service.get_ticket(session, ticket_id)
    return service.customer_impact(session, ticket, operations.part(ImpactSettings).data_dir)


# --- replies in bulk, macros, mail ----------------------------------------------------------


@router.post("/api/support/incidents/{incident_id}/bulk-reply",
             summary="Answer every ticket of an incident with a public update, once")
def bulk_reply(incident_id: DbId, body: BulkReplyRequest, operator: Replier,
               session: SessionDep, *, clock: ClockDep, settings: SettingsDep,
               status: StatusSettingsDep) -> BulkReplyRead:
    now = clock.now()
    answer = flows.bulk_reply(session, incident_id, update_entry_id=body.update_entry_id,
                              macro_name=body.macro, actor=operator.username,
                              settings=settings, status_settings=status, now=now)
    if answer.created:
        service.audit_change(session, actor=operator.actor, action="support.bulk_reply",
                             target=f"INC-{incident_id}",
                             details={"update_entry_id": answer.update_entry_id,
                                      "tickets": answer.tickets_answered,
                                      "mails": answer.mails_queued}, now=now)
    return answer


@router.get("/api/support/macros", summary="Reply templates (built-in first)")
def list_macros(_: Reader, session: SessionDep, params: PageParamsDep) -> Page[dict[str, str]]:
    macros = service.list_macros(session)
    shown = macros[params.offset:params.offset + params.limit]
    return make_page([{"name": m.name, "subject_ja": m.subject_ja, "subject_en": m.subject_en,
                       "body_ja": m.body_ja, "body_en": m.body_en} for m in shown],
                     len(macros), params)


@router.post("/api/support/macros", status_code=201, summary="Save a reply template")
def create_macro(body: MacroCreate, operator: Manager, session: SessionDep,
                 clock: ClockDep) -> MacroRead:
    now = clock.now()
    macro = service.create_macro(session, body, actor=operator.username, now=now)
    service.audit_change(session, actor=operator.actor, action="support.macro_create",
                         target=macro.name, details={}, now=now)
    return MacroRead.model_validate(macro)


@router.post("/api/support/mail/send", summary="Send queued replies now (one batch)")
def send_mail(_: Replier, session: SessionDep, clock: ClockDep,
              operations: ContextDep) -> dict[str, int]:
    counts = flows.send_queued(session, notify_settings=operations.part(NotifySettings),
                               now=clock.now())
    return {"sent": counts.sent, "failed": counts.failed, "more_queued": counts.left}


# --- help centre ----------------------------------------------------------------------------


@router.get("/api/support/articles", summary="Help-centre articles, drafts included")
def list_articles(_: Reader, session: SessionDep, params: PageParamsDep,
                  category: Annotated[str | None, Query(max_length=40)] = None,
                  ) -> Page[ArticleRead]:
    rows, total = service.list_articles(session, published_only=False, offset=params.offset,
                                        limit=params.limit, category=category)
    return make_page([ArticleRead.model_validate(row) for row in rows], total, params)


@router.post("/api/support/articles", status_code=201, summary="Write an article")
def create_article(body: ArticleCreate, operator: Manager, session: SessionDep,
                   clock: ClockDep, operations: ContextDep) -> ArticleRead:
    now = clock.now()
    article = service.create_article(session, body, actor=operator.username, now=now)
    operations.part(search.AnswerCache).clear()
    service.audit_change(session, actor=operator.actor, action="support.article_create",
                         target=article.slug, details={"published": body.published}, now=now)
    return ArticleRead.model_validate(article)


@router.post("/api/support/articles/{slug}/publish", summary="Publish an article")
def publish_article(slug: Slug, operator: Manager, session: SessionDep, clock: ClockDep,
                    operations: ContextDep) -> ArticleRead:
    now = clock.now()
    article = service.set_published(session, slug, True, now=now)
    operations.part(search.AnswerCache).clear()
    service.audit_change(session, actor=operator.actor, action="support.article_publish",
                         target=slug, details={}, now=now)
    return ArticleRead.model_validate(article)


@router.post("/api/support/articles/{slug}/unpublish", summary="Take an article down")
def unpublish_article(slug: Slug, operator: Manager, session: SessionDep, clock: ClockDep,
                      operations: ContextDep) -> ArticleRead:
    now = clock.now()
    article = service.set_published(session, slug, False, now=now)
    operations.part(search.AnswerCache).clear()
    service.audit_change(session, actor=operator.actor, action="support.article_unpublish",
                         target=slug, details={}, now=now)
    return ArticleRead.model_validate(article)


@router.post("/api/support/incidents/{incident_id}/faq", status_code=201,
             summary="Draft the incident's FAQ entries from its facts")
def draft_faq(incident_id: DbId, operator: Manager, session: SessionDep, *, clock: ClockDep,
              status: StatusSettingsDep, operations: ContextDep) -> list[ArticleRead]:
    now = clock.now()
    due = flows.next_update_at(session, incident_id, now=now, status_settings=status)
    articles = service.draft_incident_faq(session, incident_id, actor=operator.username,
                                          now=now, next_update_at=due)
    operations.part(search.AnswerCache).clear()
    service.audit_change(session, actor=operator.actor, action="support.faq_draft",
                         target=f"INC-{incident_id}",
                         details={"slugs": [a.slug for a in articles]}, now=now)
    return [ArticleRead.model_validate(article) for article in articles]


# --- chats ----------------------------------------------------------------------------------


@router.get("/api/support/chats", summary="Open chats: waiting (with position) and taken")
def list_chats(_: Reader, hub: HubDep, params: PageParamsDep) -> Page[dict[str, Any]]:
    chats = hub.list_chats()
    return make_page(chats[params.offset:params.offset + params.limit], len(chats), params)


@router.post("/api/support/chats/{chat_id}/take", summary="Take a chat")
def take_chat(chat_id: ChatId,
              operator: Replier, hub: HubDep) -> dict[str, Any]:
    return hub.take(chat_id, operator.username)


@router.post("/api/support/chats/{chat_id}/messages", status_code=201,
             summary="Write to the customer in a chat you took")
def chat_message(chat_id: ChatId,
                 body: ChatText, operator: Replier, hub: HubDep) -> dict[str, Any]:
    message = hub.agent_says(chat_id, operator.username, body.text)
    return {"n": message.n, "at": message.at}


@router.get("/api/support/chats/{chat_id}/messages", summary="A chat's messages after n")
def chat_messages(chat_id: ChatId,
                  _: Reader, hub: HubDep, params: PageParamsDep,
                  after: Annotated[int, Query(ge=0, le=10_000)] = 0) -> Page[dict[str, Any]]:
    found = [{"n": m.n, "author_kind": m.author_kind, "author": m.author, "text": m.text,
              "at": m.at} for m in hub.messages(chat_id, after)]
    return make_page(found[params.offset:params.offset + params.limit], len(found), params)


@router.post("/api/support/chats/{chat_id}/close",
             summary="End a chat; its transcript becomes a ticket")
def close_chat(chat_id: ChatId,
               _: Replier, hub: HubDep) -> dict[str, str | None]:
    return {"ticket_ref": hub.close(chat_id)}


# --- timers, staffing, reporting ------------------------------------------------------------


@router.post("/api/support/sla/alerts",
             summary="Tickets whose SLA timer ran out since last asked (each alerted once)")
def sla_alerts(_: Replier, session: SessionDep, clock: ClockDep,
               params: PageParamsDep) -> Page[dict[str, Any]]:
    breaches = service.alert_breaches(session, now=clock.now(), limit=params.limit)
    return make_page([breach.__dict__ for breach in breaches], len(breaches), params)


@router.get("/api/support/staffing", summary="Agents needed (Erlang C), with the calculation")
def staffing(
    _: Reader, session: SessionDep, *, clock: ClockDep, settings: SettingsDep,
    incident_id: DbId | None = None,
    arrivals_per_hour: Annotated[float | None, Query(ge=0, le=10_000_000)] = None,
    handle_s: Annotated[float, Query(gt=0, le=86_400)] = flows.HANDLE_S_DEFAULT,
    answer_within_s: Annotated[float | None, Query(ge=0, le=3_600)] = None,
    service_level: Annotated[float | None, Query(gt=0, lt=1)] = None,
) -> StaffingRead:
    return flows.staffing(
        session, incident_id=incident_id, arrivals_per_hour=arrivals_per_hour,
        handle_s=handle_s,
        answer_within_s=settings.answer_within_s if answer_within_s is None else answer_within_s,
        service_level=settings.service_level if service_level is None else service_level,
        now=clock.now())


@router.get("/api/support/report",
            summary="Contacts per hour by channel and category, backlog, SLA attainment")
def report(_: Reader, session: SessionDep, clock: ClockDep, incident_id: DbId | None = None,
           since: datetime | None = None, until: datetime | None = None) -> ReportRead:
    now = clock.now()
    start = since or now - timedelta(days=1)
    end = until or now
    if start.tzinfo is None or end.tzinfo is None:
        raise SupportError("since and until need a time zone",
                           message_ja="期間にはタイムゾーンを付けてください",
                           next_step="write them as 2026-12-08T09:00+09:00")
    return ReportRead.model_validate(service.report(session, incident_id=incident_id,
                                                    since=start, until=end, now=now))
