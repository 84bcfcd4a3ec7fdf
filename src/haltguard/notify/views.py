"""HTTP routes under ``/api/notify``. Thin: each calls the service.

Public, no login, limited per client address: subscribe by email or webhook, and the
confirm and unsubscribe links. A link opened with GET only shows a page with one button
(mail scanners open links); the button, or a mail client's RFC 8058 one-click request
(``POST`` with ``List-Unsubscribe=One-Click``), makes the change. Everything else needs an
operator with ``notify.read`` or ``notify.manage``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session, sessionmaker

from haltguard.notify import service
from haltguard.notify.errors import ConfirmationNotSentError, LinkRefusedError
from haltguard.notify.models import (
    ChannelCreate,
    EmailSubscribe,
    Language,
    NoticeRead,
    OutboxCounts,
    SubscribeAccepted,
    Subscriber,
    SubscriberKind,
    SubscriberRead,
    SubscriberStatus,
    WebhookSubscribe,
)
from haltguard.notify.settings import NotifySettings
from haltguard.notify.texts import button_form, fill, page_html, texts_for
from haltguard.notify.tokens import TokenPurpose
from haltguard.security.dependencies import AuthenticatedOperator, require
from haltguard.security.permissions import Action
from haltguard.web.bounds import DbId
from haltguard.web.context import context
from haltguard.web.dependencies import ClockDep, ContextDep, SessionDep
from haltguard.web.errors import ERROR_RESPONSES, KIND_STATUS
from haltguard.web.pagination import Page, PageParamsDep, make_page
from haltguard.web.ratelimit import limit_links, limit_requests

router = APIRouter(prefix="/api/notify", tags=["notify"], responses=ERROR_RESPONSES)

Reader = Annotated[AuthenticatedOperator, Depends(require(Action.NOTIFY_READ))]
Manager = Annotated[AuthenticatedOperator, Depends(require(Action.NOTIFY_MANAGE))]

FORM_BYTES_MAX = 4_096
ACCEPTED_MESSAGE = (
    "If this address can receive our notices, a confirmation email is on its way. Open its "
    "link to start receiving notices; nothing is sent until you do. No email within a few "
    "minutes? Check the spam folder, then try again in {minutes} minutes."
)


def notify_settings(operations: ContextDep) -> NotifySettings:
    """The app's notify settings (a part of its operations context)."""
    return operations.part(NotifySettings)


SettingsDep = Annotated[NotifySettings, Depends(notify_settings)]


def limit_subscribe(request: Request, settings: SettingsDep) -> None:
    limit_requests(request, "subscribe", settings.subscribe_requests_per_minute)


# --- public: subscribe ------------------------------------------------------------------------


def _accepted(settings: SettingsDep, signing_secret: str | None = None) -> SubscribeAccepted:
    minutes = str(max(1, settings.confirmation_resend_s // 60))
    return SubscribeAccepted(message=fill(ACCEPTED_MESSAGE, minutes=minutes),
                             signing_secret=signing_secret)


def _send_after_commit(
    session: SessionDep, settings: NotifySettings, outcome: service.SubscribeOutcome,
    clock: ClockDep,
) -> None:
    """Commit the subscriber first, so a link that arrives fast finds it; if the mail server
    refuses, let the person try again at once instead of after the resend pause."""
    session.commit()
    confirmation = outcome.confirmation
    if confirmation is None:
        return
    try:
        service.send_confirmation(settings, confirmation, clock.now())
    except ConfirmationNotSentError:
        subscriber = session.get(Subscriber, confirmation.subscriber_id)
        if subscriber is not None:
            subscriber.confirmation_sent_at = None
            session.commit()
        raise


@router.post(
    "/subscriptions/email", status_code=202, dependencies=[Depends(limit_subscribe)]
)
def subscribe_email(
    body: EmailSubscribe, session: SessionDep, settings: SettingsDep, clock: ClockDep
) -> SubscribeAccepted:
    """Subscribe an email address (double opt-in): a confirmation email with a link goes
    out; the address gets nothing else until the link is followed. The answer is the same
    whether or not the address was known."""
    now = clock.now()
    secret = service.link_secret(session, settings, now)
    outcome = service.subscribe_email(session, body, settings=settings, secret=secret,
                                      now=now)
    _send_after_commit(session, settings, outcome, clock)
    return _accepted(settings)


@router.post(
    "/subscriptions/webhook", status_code=202, dependencies=[Depends(limit_subscribe)]
)
def subscribe_webhook(
    body: WebhookSubscribe, session: SessionDep, settings: SettingsDep, clock: ClockDep
) -> SubscribeAccepted:
    """Subscribe a webhook: its owner confirms through ``contact_email``. Each POST carries
    ``X-Haltguard-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>." + body>`` made with
    the ``signing_secret`` answered here once."""
    now = clock.now()
    secret = service.link_secret(session, settings, now)
    outcome = service.subscribe_webhook(session, body, settings=settings, secret=secret,
                                        now=now)
    _send_after_commit(session, settings, outcome, clock)
    return _accepted(settings, outcome.signing_secret)


# --- public: links ----------------------------------------------------------------------------


def _page(language: Language, title: str, paragraphs: list[str], form: str = "",
          status: int = 200) -> HTMLResponse:
    return HTMLResponse(page_html(language, title, paragraphs, form), status_code=status,
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _refused(exc: LinkRefusedError, language: Language = Language.JA) -> HTMLResponse:
    other = Language.EN if language is Language.JA else Language.JA
    title = texts_for(language).pages.link_error
    return _page(language, title, [exc.message, texts_for(other).pages.link_error],
                 status=KIND_STATUS[exc.kind])


def _shown(subscriber: Subscriber) -> str:
    if subscriber.kind == SubscriberKind.EMAIL.value:
        return subscriber.address
    return subscriber.contact_email or ""


async def _posted_token(request: Request, token: str | None) -> str:
    """The token from the query (one-click POST to the List-Unsubscribe URL) or the form."""
    if token:
        return token
    body = await request.body()
    if len(body) > FORM_BYTES_MAX:
        return ""
    values = parse_qs(body.decode("utf-8", "replace"))
    return (values.get("token") or [""])[0]


TokenQuery = Annotated[str | None, Query(max_length=200)]


@router.get("/confirm", response_class=HTMLResponse, dependencies=[Depends(limit_links)])
def confirm_page(
    session: SessionDep, settings: SettingsDep, clock: ClockDep, token: TokenQuery = None
) -> HTMLResponse:
    """The page behind the confirmation link: one button that confirms."""
    now = clock.now()
    secret = service.link_secret(session, settings, now)
    try:
        subscriber = service.subscriber_for_link(
            session, token or "", TokenPurpose.CONFIRM, secret=secret, now=now
        )
    except LinkRefusedError as exc:
        return _refused(exc)
    language = Language(subscriber.language)
    words = texts_for(language).pages
    question = fill(words.confirm_question, service=settings.service_name,
                    address=_shown(subscriber))
    form = button_form("/api/notify/confirm", token or "", words.confirm_button)
    return _page(language, words.confirm_title, [question], form)


def _apply_link(
    factory: sessionmaker[Session], settings: NotifySettings, now: datetime, token: str,
    purpose: TokenPurpose,
) -> HTMLResponse:
    with factory.begin() as session:
        secret = service.link_secret(session, settings, now)
        try:
            if purpose is TokenPurpose.CONFIRM:
                subscriber = service.confirm(session, token, secret=secret, now=now)
            else:
                subscriber = service.unsubscribe(session, token, secret=secret, now=now)
        except LinkRefusedError as exc:
            return _refused(exc)
        language = Language(subscriber.language)
    words = texts_for(language).pages
    if purpose is TokenPurpose.CONFIRM:
        return _page(language, words.confirm_title, [words.confirmed])
    return _page(language, words.unsubscribe_title, [words.unsubscribed])


@router.post("/confirm", response_class=HTMLResponse, dependencies=[Depends(limit_links)])
async def confirm(
    request: Request, settings: SettingsDep, clock: ClockDep, token: TokenQuery = None
) -> HTMLResponse:
    """Confirm a subscription (the button on the confirmation page)."""
    text = await _posted_token(request, token)
    return await run_in_threadpool(
        _apply_link, context(request).session_factory, settings, clock.now(), text,
        TokenPurpose.CONFIRM,
    )


@router.get("/unsubscribe", response_class=HTMLResponse, dependencies=[Depends(limit_links)])
def unsubscribe_page(
    session: SessionDep, settings: SettingsDep, clock: ClockDep, token: TokenQuery = None
) -> HTMLResponse:
    """The page behind the unsubscribe link in every message: one button that unsubscribes."""
    now = clock.now()
    secret = service.link_secret(session, settings, now)
    try:
        subscriber = service.subscriber_for_link(
            session, token or "", TokenPurpose.UNSUBSCRIBE, secret=secret, now=now
        )
    except LinkRefusedError as exc:
        return _refused(exc)
    language = Language(subscriber.language)
    words = texts_for(language).pages
    question = fill(words.unsubscribe_question, service=settings.service_name,
                    address=_shown(subscriber))
    form = button_form("/api/notify/unsubscribe", token or "", words.unsubscribe_button)
    return _page(language, words.unsubscribe_title, [question], form)


@router.post("/unsubscribe", response_class=HTMLResponse, dependencies=[Depends(limit_links)])
async def unsubscribe(
    request: Request, settings: SettingsDep, clock: ClockDep, token: TokenQuery = None
) -> HTMLResponse:
    """Unsubscribe at once: the page's button, or a mail client's one-click request."""
    text = await _posted_token(request, token)
    return await run_in_threadpool(
        _apply_link, context(request).session_factory, settings, clock.now(), text,
        TokenPurpose.UNSUBSCRIBE,
    )


# --- operators --------------------------------------------------------------------------------


@router.get("/subscribers")
def list_subscribers(
    _: Reader,
    session: SessionDep,
    params: PageParamsDep,
    kind: SubscriberKind | None = None,
    status: SubscriberStatus | None = None,
) -> Page[SubscriberRead]:
    items, total = service.list_subscribers(
        session, kind=kind, status=status, offset=params.offset, limit=params.limit
    )
    return make_page(items, total, params)


@router.get("/subscribers/{subscriber_id}")
def get_subscriber(subscriber_id: DbId, _: Reader, session: SessionDep) -> SubscriberRead:
    return service.subscriber_read(session, service.get_subscriber(session, subscriber_id))


@router.delete("/subscribers/{subscriber_id}")
def remove_subscriber(
    subscriber_id: DbId,
    operator: Manager,
    session: SessionDep,
    clock: ClockDep,
    reason: Annotated[str, Query(min_length=1, max_length=500)],
) -> SubscriberRead:
    """Stop all notices to a subscriber; kept as unsubscribed for the delivery history."""
    subscriber = service.remove_subscriber(
        session, subscriber_id, actor=operator.actor, reason=reason, now=clock.now()
    )
    return service.subscriber_read(session, subscriber)


@router.post("/channels", status_code=201)
def add_channel(
    body: ChannelCreate, operator: Manager, session: SessionDep, clock: ClockDep
) -> SubscriberRead:
    """Add a social or chat channel (an apprise URL: X, Mastodon, Slack, Discord, Telegram,
    LINE ...) that posts every notice, or those about its components."""
    subscriber = service.add_channel(session, body, actor=operator.actor, now=clock.now())
    return service.subscriber_read(session, subscriber)


@router.get("/notices")
def list_notices(_: Reader, session: SessionDep, params: PageParamsDep) -> Page[NoticeRead]:
    items, total = service.list_notices(session, offset=params.offset, limit=params.limit)
    return make_page(items, total, params)


@router.post("/notices/{notice_id}/retry-failed")
def retry_failed(
    notice_id: DbId, operator: Manager, session: SessionDep, clock: ClockDep
) -> OutboxCounts:
    """Give the notice's failed deliveries a fresh set of attempts."""
    service.retry_failed(session, notice_id, actor=operator.actor, now=clock.now())
    return service.outbox_counts(session, notice_id)


@router.get("/outbox")
def outbox(_: Reader, session: SessionDep) -> OutboxCounts:
    """How many deliveries are pending, being sent, sent, failed and skipped."""
    return service.outbox_counts(session)
