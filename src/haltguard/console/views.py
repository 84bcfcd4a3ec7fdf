"""The console's routes under ``/console``: login, the overview, incidents and their forms,
live updates (the other screens are ``screens.py``; the plumbing ``web.py``).

Thin, like every domain's views: each route declares the permission the API's route for the
same data or change demands (``guard``), a form checks the session's CSRF token and, where it
names a further action (halt, publish, approve), that action too; then the same service or
flow function the API calls runs in one unit of work and the route renders a page or
redirects back. A refusal (permission, a bad value, the venue) is a page in the operator's
language saying what to do next, with nothing half-applied: the unit of work is rolled back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from haltguard.common.errors import ErrorKind, HaltguardError
from haltguard.console import auth, drill_screen, flows, pages, screens
from haltguard.console.errors import ConsoleError, CsrfRefusedError, FormValueError
from haltguard.console.forms import Form
from haltguard.console.live import ChangeFeed, event_stream
from haltguard.console.navigation import Screen, ScreenRegistry
from haltguard.console.previews import PreviewStore
from haltguard.console.settings import ConsoleSettings
from haltguard.console.texts import LANGUAGES, jst_utc
from haltguard.console.venue_watch import VenueWatch
from haltguard.console.web import (
    PREFIX,
    STATIC_FILES,
    ConsoleRoute,
    Viewer,
    error_page,
    guard,
    language_of,
    live,
    now_of,
    operations_of,
    read_form,
    redirect,
    render,
    run_work,
    secure,
    static_bytes,
    unit_of_work,
    venue_of,
    viewer_for,
)
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import (
    ApprovalStatus,
    IncidentCreate,
)
from haltguard.incidents.rules import CATEGORIES, Category, IncidentStatus, Severity
from haltguard.responders import directory, paging
from haltguard.responders.models import PersonPageIn
from haltguard.responders.service import ResponderSettings
from haltguard.security import flows as security_flows
from haltguard.security.config import SESSION_COOKIE_NAME, SecuritySettings
from haltguard.security.dependencies import (
    AuthenticatedOperator,
    client_address,
    enforce_network,
    login_throttle_of,
)
from haltguard.security.permissions import Action
from haltguard.status import service as status
from haltguard.status.models import (
    DraftEdit,
    IncidentDraftRequest,
)
from haltguard.status.rules import UpdateStatus
from haltguard.status.settings import StatusSettings
from haltguard.status.views import publisher_of
from haltguard.venue.control import VenueControl, VenueControlError
from haltguard.web.context import context, context_of
from haltguard.web.errors import KIND_STATUS

router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)
PEOPLE_SHOWN_MAX = 200


# --- wiring --------------------------------------------------------------------------------


def default_screens() -> ScreenRegistry:
    """The console's own screens, in menu order; the root may register more."""
    registry = ScreenRegistry()
    for path, ja, en, permission in (
        ("/overview", "概要", "Overview", Action.INCIDENT_READ),
        ("/incidents", "インシデント", "Incidents", Action.INCIDENT_READ),
        ("/status-admin", "ステータスページ", "Status page", Action.STATUS_READ),
        ("/oncall", "オンコール", "On-call", Action.ONCALL_READ),
        ("/audit", "監査ログ", "Audit", Action.AUDIT_READ),
        ("/rules", "検知ルール", "Detection rules", Action.DETECTION_READ),
        ("/compensation", "補償", "Compensation", Action.COMPENSATION_READ),
        ("/drills", "訓練", "Drills", Action.DRILL_READ),
    ):
        registry.register(Screen(path, ja, en, permission))
    return registry


def console_parts(data_dir: Path, session_factory: sessionmaker[Session],
                  venue_control: VenueControl | None,
                  settings: ConsoleSettings | None = None) -> list[object]:
    """The parts the console needs in the app's context (the root adds them): its settings,
    the idle tracker, the journal follower of the venue in ``data_dir``, the live-update
    watcher and the menu."""
    chosen = settings or ConsoleSettings()
    watch = VenueWatch(data_dir, venue_control)
    return [chosen, auth.IdleTracker(chosen.idle_minutes), watch,
            ChangeFeed(session_factory, watch, chosen), default_screens(), PreviewStore()]


def stop(app: FastAPI) -> None:
    """Stop the console's journal follower (the app is shutting down)."""
    watch = context_of(app).optional_part(VenueWatch)
    if watch is not None:
        watch.stop()


# --- static, language, login -----------------------------------------------------------------


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    media = STATIC_FILES.get(name)
    if media is None:
        return secure(Response(status_code=404))
    response = Response(static_bytes(name), media_type=media)
    secure(response)
    response.headers["Cache-Control"] = "no-cache"
    return response


@router.get("/language/{language}")
def choose_language(language: str, request: Request) -> Response:
    """Remember the operator's language in a cookie and go back to where they were."""
    back = request.query_params.get("back", f"{PREFIX}/overview")
    if not back.startswith(PREFIX + "/") or any(part in back for part in ("//", "..", "\\")):
        back = f"{PREFIX}/overview"
    response = redirect(back)
    if language in LANGUAGES:
        response.set_cookie(auth.LANGUAGE_COOKIE_NAME, language, max_age=400 * 24 * 3600,
                            httponly=True, samesite="strict", path=PREFIX,
                            secure=request.url.scheme == "https")
    return response


@router.get("")
@router.get("/")
def root() -> Response:
    return redirect(f"{PREFIX}/overview")


@router.get("/login")
def login_page(request: Request) -> Response:
    token = auth.new_login_token()
    viewer = Viewer(None, language_of(request), token, [])
    response = render(request, "login.html", viewer)
    response.set_cookie(auth.LOGIN_CSRF_COOKIE_NAME, token, max_age=3600, httponly=True,
                        samesite="strict", path=PREFIX, secure=request.url.scheme == "https")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)

    def work() -> Response:
        auth.check_login_csrf(request, form.single())
        enforce_network(request, "auth.login")
        operations = operations_of(request)
        settings = operations.part(SecuritySettings)
        with unit_of_work(request) as session:
            outcome = security_flows.login(
                session, username=form.get("username"), password=form.get("password"),
                totp_code=form.get("totp_code").strip(), client_address=client_address(request),
                settings=settings, now=now_of(request), throttle=login_throttle_of(request.app))
        if outcome.refusal is not None:
            raise outcome.refusal
        assert outcome.login is not None
        operations.part(auth.IdleTracker).touch(outcome.login.id, now_of(request))
        response = redirect(f"{PREFIX}/overview")
        response.set_cookie(SESSION_COOKIE_NAME, outcome.session_secret,
                            max_age=int(settings.session_duration.total_seconds()),
                            httponly=True, secure=request.url.scheme == "https",
                            samesite="strict", path="/")
        response.delete_cookie(auth.LOGIN_CSRF_COOKIE_NAME, path=PREFIX)
        return response

    try:
        return await run_in_threadpool(work)
    except (HaltguardError, pydantic.ValidationError) as error:
        if isinstance(error, CsrfRefusedError):
            return error_page(request, error)
        token = auth.new_login_token()
        viewer = Viewer(None, language_of(request), token, [])
        message = (error.message_ja if isinstance(error, HaltguardError) and error.message_ja
                   and viewer.language == "ja" else str(error))
        status_code = KIND_STATUS.get(error.kind, 401) if isinstance(error, HaltguardError) else 422
        response = render(request, "login.html", viewer, status_code=status_code,
                          error=message)
        response.set_cookie(auth.LOGIN_CSRF_COOKIE_NAME, token, max_age=3600, httponly=True,
                            samesite="strict", path=PREFIX, secure=request.url.scheme == "https")
        return response


@router.post("/logout", dependencies=guard(Action.SESSION_MANAGE_OWN))
async def logout(request: Request) -> Response:
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.SESSION_MANAGE_OWN)
        auth.end_session(request, operator, now_of(request))
        response = redirect(f"{PREFIX}/login")
        response.delete_cookie(SESSION_COOKIE_NAME, path="/")
        return response

    return await run_work(request, work)


# --- live updates ----------------------------------------------------------------------------


@router.get("/events", dependencies=live(Action.INCIDENT_READ))
async def events(request: Request) -> Response:
    """The live-update stream, for a browser's session: versions only; the page fetches what
    changed itself. The session is checked again at every quiet interval."""
    operator = auth.authorize(request, Action.INCIDENT_READ, activity=False)
    if operator.session_id is None:
        raise ConsoleError(
            "live updates are for a browser's session; a script reads the API instead",
            kind=ErrorKind.FORBIDDEN, code="browser_only",
            message_ja="自動更新はブラウザのセッション用です。スクリプトは API を読んでください。")
    feed = context(request).part(ChangeFeed)
    cookie = request.cookies.get(SESSION_COOKIE_NAME)

    async def still_allowed() -> bool:
        try:
            await run_in_threadpool(auth.ConsoleRequirement(Action.INCIDENT_READ,
                                                            activity=False),
                                    request, None, cookie)
        except HaltguardError:
            return False
        return True

    response = StreamingResponse(event_stream(feed, still_allowed),
                                 media_type="text/event-stream")
    secure(response)
    response.headers["X-Accel-Buffering"] = "no"
    return response


# --- overview --------------------------------------------------------------------------------


def _overview_values(request: Request) -> dict[str, Any]:
    watch = context(request).part(VenueWatch)
    with unit_of_work(request) as session:
        data = pages.overview(session, now=now_of(request), venue=watch.summary(),
                              round_trip_ms=watch.round_trip_ms(),
                              queue_depth=watch.queue_depth())
        return {"o": data, "ns_time": ns_time}


def ns_time(ns: int) -> str:
    if ns <= 0:
        return "-"
    return jst_utc(datetime.fromtimestamp(ns / 1e9, tz=UTC))


@router.get("/overview", dependencies=guard(Action.INCIDENT_READ))
async def overview(request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.INCIDENT_READ)
        return render(request, "overview.html", viewer_for(request, operator),
                      **_overview_values(request))

    return await run_work(request, work)


@router.get("/live/overview", dependencies=live(Action.INCIDENT_READ))
async def overview_live(request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.INCIDENT_READ, activity=False)
        return render(request, "overview_live.html", viewer_for(request, operator),
                      **_overview_values(request))

    return await run_work(request, work)


# --- incidents -------------------------------------------------------------------------------


@router.get("/incidents", dependencies=guard(Action.INCIDENT_READ))
async def incident_list(request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.INCIDENT_READ)
        with unit_of_work(request) as session:
            found = list(session.scalars(incidents.list_query().limit(100)))
            return render(request, "incidents.html", viewer_for(request, operator),
                          incidents=found, categories=CATEGORIES, severities=list(Severity))

    return await run_work(request, work)


@router.post("/incidents", dependencies=guard(Action.INCIDENT_CREATE))
async def incident_open(request: Request) -> Response:
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.INCIDENT_CREATE)
        data = IncidentCreate(
            title=form.get("title"), summary=form.get("summary"),
            category=form.choice("category", Category), severity=form.choice("severity", Severity),
            affected_markets=form.all("affected_markets"),
        )
        operations = operations_of(request)
        with unit_of_work(request) as session:
            incident = incident_flows.open_incident(
                session, data, actor=operator.username, clock=operations.clock,
                responder_settings=operations.optional_part(ResponderSettings))
            incident_id = incident.id
        return redirect(f"{PREFIX}/incidents/{incident_id}")

    return await run_work(request, work)


def _incident_values(request: Request, incident_id: int) -> dict[str, Any]:
    operations = operations_of(request)
    with unit_of_work(request) as session:
        data = pages.incident_page(
            session, incident_id, now=now_of(request),
            venue=operations.part(VenueWatch).summary(),
            status_settings=operations.part(StatusSettings))
        people, _ = directory.list_people(session, offset=0, limit=PEOPLE_SHOWN_MAX)
        return {"p": data, "statuses": list(IncidentStatus), "update_statuses": list(UpdateStatus),
                "ns_time": ns_time, "ApprovalStatus": ApprovalStatus,
                "people": [(person.handle, person.display_name) for person in people]}


@router.get("/incidents/{incident_id}", dependencies=guard(Action.INCIDENT_READ))
async def incident_page(incident_id: int, request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.INCIDENT_READ)
        return render(request, "incident.html", viewer_for(request, operator),
                      **_incident_values(request, incident_id))

    return await run_work(request, work)


@router.get("/live/incidents/{incident_id}", dependencies=live(Action.INCIDENT_READ))
async def incident_live(incident_id: int, request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.INCIDENT_READ, activity=False)
        return render(request, "incident_live.html", viewer_for(request, operator),
                      **_incident_values(request, incident_id))

    return await run_work(request, work)


def _back_to(incident_id: int, notice: str = "done_ok") -> Response:
    return redirect(f"{PREFIX}/incidents/{incident_id}?notice={notice}")


def _incident_form(request: Request, form: Form, action: Action,
                   change: Callable[[Session, AuthenticatedOperator], str | None],
                   incident_id: int) -> Response:
    auth.check_csrf(request, form.single())
    operator = auth.authorize(request, action)
    with unit_of_work(request) as session:
        notice = change(session, operator) or "done_ok"
    return _back_to(incident_id, notice)


@router.post("/incidents/{incident_id}/comment", dependencies=guard(Action.INCIDENT_COMMENT))
async def incident_comment(incident_id: int, request: Request) -> Response:
    form = await read_form(request)

    def change(session: Session, operator: AuthenticatedOperator) -> None:
        incident = incidents.get(session, incident_id)
        body = form.get("text").strip()
        if not body:
            raise FormValueError("write a comment first", message_ja="コメントを入力してください")
        incidents.comment(session, incident, body, actor=operator.username, now=now_of(request))

    return await run_work(request, lambda: _incident_form(request, form, Action.INCIDENT_COMMENT,
                                                      change, incident_id))


@router.post("/incidents/{incident_id}/tasks/{task_id}/done",
             dependencies=guard(Action.TASK_UPDATE))
async def task_done(incident_id: int, task_id: int, request: Request) -> Response:
    form = await read_form(request)

    def change(session: Session, operator: AuthenticatedOperator) -> None:
        incident = incidents.get(session, incident_id)
        incidents.complete_task(session, incident, str(task_id), actor=operator.username,
                                now=now_of(request), note=form.get("note"))

    return await run_work(request, lambda: _incident_form(request, form, Action.TASK_UPDATE,
                                                      change, incident_id))


@router.post("/incidents/{incident_id}/transition", dependencies=guard(Action.INCIDENT_TRANSITION))
async def incident_transition(incident_id: int, request: Request) -> Response:
    form = await read_form(request)

    def change(session: Session, operator: AuthenticatedOperator) -> None:
        incident = incidents.get(session, incident_id)
        target = form.choice("status", IncidentStatus)
        market_states = None
        venue = operations_of(request).venue_control
        if target == IncidentStatus.RESOLVED and venue is not None:
            try:
                market_states = venue.market_states()
            except VenueControlError:
                market_states = None
        incidents.transition(session, incident, target, actor=operator.username,
                             now=now_of(request), note=form.get("note"),
                             market_states=market_states)

    return await run_work(request, lambda: _incident_form(request, form, Action.INCIDENT_TRANSITION,
                                                      change, incident_id))


@router.post("/incidents/{incident_id}/page-overdue", dependencies=guard(Action.PAGE_SEND))
async def incident_page_overdue(incident_id: int, request: Request) -> Response:
    form = await read_form(request)

    def change(session: Session, operator: AuthenticatedOperator) -> None:
        operations = operations_of(request)
        incident = incidents.get(session, incident_id)
        incident_flows.page_overdue_tasks(
            session, incident, actor=operator.username, clock=operations.clock,
            responder_settings=operations.optional_part(ResponderSettings))

    return await run_work(request, lambda: _incident_form(request, form, Action.PAGE_SEND,
                                                      change, incident_id))


@router.post("/incidents/{incident_id}/page-person", dependencies=guard(Action.PAGE_SEND))
async def incident_page_person(incident_id: int, request: Request) -> Response:
    """Page one named responder about this incident, as ``POST /api/oncall/people/{handle}/
    page``; unanswered, the page escalates by the routed policy."""
    form = await read_form(request)

    def change(session: Session, operator: AuthenticatedOperator) -> None:
        operations = operations_of(request)
        incident = incidents.get(session, incident_id)
        reason = form.get("reason").strip()
        if not reason:
            raise FormValueError("say why this person is paged (kept in the audit chain)",
                                 message_ja="呼び出す理由を入力してください(監査ログに記録されます)")
        wanted = PersonPageIn(incident_id=incident.ref,
                              summary=form.get("summary").strip() or incident.title,
                              category=str(incident.category), severity=str(incident.severity),
                              reason=reason)
        paging.page_person(session, person=form.get("person").strip(),
                           incident_id=wanted.incident_id, summary=wanted.summary,
                           category=wanted.category, severity=wanted.severity,
                           reason=wanted.reason, clock=operations.clock, actor=operator.actor,
                           settings=operations.optional_part(ResponderSettings))

    return await run_work(request, lambda: _incident_form(request, form, Action.PAGE_SEND,
                                                      change, incident_id))


@router.post("/incidents/{incident_id}/handoff", dependencies=guard(Action.INCIDENT_UPDATE))
async def incident_handoff(incident_id: int, request: Request) -> Response:
    form = await read_form(request)

    def change(session: Session, operator: AuthenticatedOperator) -> None:
        incident = incidents.get(session, incident_id)
        target = incidents.get(session, form.integer("to_incident_id"))
        incidents.hand_off(session, incident, form.get("market"), target,
                           actor=operator.username, now=now_of(request), note=form.get("note"))

    return await run_work(request, lambda: _incident_form(request, form, Action.INCIDENT_UPDATE,
                                                      change, incident_id))


# --- protective actions: review, then confirm -------------------------------------------------


@router.post("/incidents/{incident_id}/review", dependencies=guard(Action.INCIDENT_READ))
async def action_review(incident_id: int, request: Request) -> Response:
    """The confirmation page: the effect named with the venue's own numbers; nothing is done."""
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        wanted = flows.ActionRequest.from_form(form)
        operator = auth.authorize(request, wanted.action.permission)
        viewer = viewer_for(request, operator)
        lines = flows.effects(wanted, operations_of(request).part(VenueWatch).summary(), viewer.t)
        with unit_of_work(request) as session:
            incident = incidents.get(session, incident_id)
            return render(request, "confirm.html", viewer, incident=incident, wanted=wanted,
                          effects=lines)

    return await run_work(request, work)


@router.post("/incidents/{incident_id}/act", dependencies=guard(Action.INCIDENT_READ))
async def action_confirm(incident_id: int, request: Request) -> Response:
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        wanted = flows.ActionRequest.from_form(form)
        operator = auth.authorize(request, wanted.action.permission)
        with unit_of_work(request) as session:
            outcome = flows.run(session, operations_of(request).venue_control, wanted,
                                incident_id=incident_id, actor=operator.username,
                                now=now_of(request))
            try:
                notice = flows.outcome_notice(outcome)
            except flows.VenueRefusedError:
                session.commit()  # the refusals stay in the timeline
                raise
        return _back_to(incident_id, notice)

    return await run_work(request, work)


# --- four eyes -------------------------------------------------------------------------------


@router.post("/approvals/{approval_id}/{decision}", dependencies=guard(Action.APPROVAL_GRANT))
async def approval_decide(approval_id: int, decision: str, request: Request) -> Response:
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        if decision not in ("approve", "reject"):
            raise FormValueError("decide approve or reject",
                                 message_ja="承認か却下を選んでください")
        operator = auth.authorize(request, Action.APPROVAL_GRANT)
        with unit_of_work(request) as session:
            approval = incident_flows.get_approval(session, approval_id)
            incident_id = approval.incident_id
            if decision == "reject":
                incident_flows.reject(session, approval, approver=operator.username,
                                      now=now_of(request), note=form.get("note"))
                notice = "done_ok"
            else:
                outcome = incident_flows.approve(session, venue_of(request), approval,
                                                 approver=operator.username, now=now_of(request),
                                                 note=form.get("note"))
                notice = flows.outcome_notice(outcome)
        return _back_to(incident_id, notice)

    return await run_work(request, work)


# --- public updates --------------------------------------------------------------------------


@router.post("/incidents/{incident_id}/drafts", dependencies=guard(Action.STATUS_DRAFT))
async def draft_update(incident_id: int, request: Request) -> Response:
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.STATUS_DRAFT)
        publisher_of(request.app).refresh_if_idle()
        draft = IncidentDraftRequest(
            status=form.choice("status", UpdateStatus),
            cause_ja=form.get("cause_ja").strip() or None,
            cause_en=form.get("cause_en").strip() or None)
        with unit_of_work(request) as session:
            status.draft_incident_update(session, incident_id, draft, actor=operator.username,
                                         now=now_of(request),
                                         settings=operations_of(request).part(StatusSettings))
        return _back_to(incident_id)

    return await run_work(request, work)


@router.post("/updates/{update_id}/{decision}", dependencies=guard(Action.STATUS_DRAFT))
async def decide_update(update_id: int, decision: str, request: Request) -> Response:
    """Publish a draft (with the operator's edits of both texts) or discard it."""
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        if decision not in ("publish", "discard"):
            raise FormValueError("publish or discard", message_ja="公開か破棄を選んでください")
        operator = auth.authorize(request, Action.STATUS_PUBLISH if decision == "publish"
                                  else Action.STATUS_DRAFT)
        publisher = publisher_of(request.app)
        publisher.refresh_if_idle()
        now = now_of(request)
        with unit_of_work(request) as session:
            update = status.get_update(session, update_id)
            incident_id = update.incident_id
            if decision == "discard":
                status.discard_draft(session, update_id, actor=operator.username, now=now)
            else:
                edit = DraftEdit(body_ja=form.get("body_ja") or None,
                                 body_en=form.get("body_en") or None)
                if (edit.body_ja, edit.body_en) != (update.body_ja, update.body_en):
                    status.edit_draft(session, update_id, edit, actor=operator.username, now=now)
                status.publish(session, update_id, actor=operator.username, now=now,
                               settings=operations_of(request).part(StatusSettings))
        publisher.invalidate()
        publisher.refresh_if_idle()
        return (_back_to(incident_id) if incident_id is not None
                else redirect(f"{PREFIX}/status-admin?notice=done_ok"))

    return await run_work(request, work)




router.include_router(screens.router)
router.include_router(drill_screen.router)
