"""HTTP routes for on-call set-up, pages and acknowledgements. Thin: each calls the service.

Every route needs an operator with the named permission, except the signed ack link
(``GET /api/pages/{id}/ack?token=...``), which a responder opens from a phone without
logging in; its token is the credential. Opening it only shows a page with one button (mail
scanners open links nobody read); the button posts the token to ``/api/pages/{id}/ack-link``,
which acknowledges. Both answer a bad link the same way whether the page exists or not, and
are limited per client address by the public links' limiter (``web.ratelimit.limit_links``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from haltguard.responders import contacts as contact_rules
from haltguard.responders import directory, paging
from haltguard.responders.ack_links import TOKEN_LENGTH_MAX
from haltguard.responders.errors import (
    AckRefusedError,
    InvalidInputError,
    RespondersError,
)
from haltguard.responders.models import (
    AckIn,
    CancelIn,
    CategoryContactsIn,
    ContactTreeIn,
    OncallConfig,
    OverrideIn,
    OverrideOut,
    PageEventOut,
    PageIn,
    PageOut,
    PageStatus,
    PersonIn,
    PersonOut,
    PersonPageIn,
    PolicyIn,
    PolicyOut,
    RouteOut,
    RoutesIn,
    ScheduleIn,
    ScheduleOut,
    ShiftOut,
)
from haltguard.responders.settings import ResponderSettings
from haltguard.responders.texts import AckOutcome, ack_page_html
from haltguard.security.dependencies import AuthenticatedOperator, require
from haltguard.security.permissions import Action
from haltguard.web.bounds import DbId, Key
from haltguard.web.dependencies import ClockDep, ContextDep, SessionDep
from haltguard.web.errors import ERROR_RESPONSES
from haltguard.web.pagination import Page, PageParamsDep, make_page
from haltguard.web.ratelimit import limit_links

router = APIRouter(prefix="/api", tags=["responders"], responses=ERROR_RESPONSES)

Reader = Annotated[AuthenticatedOperator, Depends(require(Action.ONCALL_READ))]
Manager = Annotated[AuthenticatedOperator, Depends(require(Action.ONCALL_MANAGE))]
Sender = Annotated[AuthenticatedOperator, Depends(require(Action.PAGE_SEND))]
Acker = Annotated[AuthenticatedOperator, Depends(require(Action.PAGE_ACK))]

ItemT = TypeVar("ItemT")
SHIFT_WINDOW_DAYS_MAX = 366
ACK_FORM_BYTES_MAX = 4_096


def responder_settings(operations: ContextDep) -> ResponderSettings:
    """The app's paging settings (a part of its operations context)."""
    return operations.part(ResponderSettings)


SettingsDep = Annotated[ResponderSettings, Depends(responder_settings)]


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInputError(
            f"{name} must carry a time zone, e.g. 2026-03-02T09:00:00+09:00")
    return moment


def _slice(items: list[ItemT], params: Any) -> Page[ItemT]:
    return make_page(items[params.offset : params.offset + params.limit], len(items), params)


# --- people ----------------------------------------------------------------------------------


@router.get("/oncall/people")
def list_people(_: Reader, session: SessionDep, params: PageParamsDep) -> Page[PersonOut]:
    people, total = directory.list_people(session, offset=params.offset, limit=params.limit)
    return make_page([directory.person_out(p) for p in people], total, params)


@router.get("/oncall/people/{handle}")
def get_person(handle: Key, _: Reader, session: SessionDep) -> PersonOut:
    return directory.person_out(directory.get_person(session, handle))


@router.put("/oncall/people/{handle}")
def put_person(
    handle: Key, body: PersonIn, operator: Manager, session: SessionDep, clock: ClockDep
) -> PersonOut:
    if body.handle != handle:
        raise InvalidInputError(
            f"the body's handle {body.handle!r} differs from the URL's {handle!r}")
    person = directory.put_person(session, body, actor=operator.actor, clock=clock)
    return directory.person_out(person)


@router.delete("/oncall/people/{handle}", status_code=204)
def delete_person(handle: Key, operator: Manager, session: SessionDep, clock: ClockDep) -> Response:
    directory.delete_person(session, handle, actor=operator.actor, clock=clock)
    return Response(status_code=204)


# --- schedules -------------------------------------------------------------------------------


@router.get("/oncall/schedules")
def list_schedules(_: Reader, session: SessionDep, params: PageParamsDep) -> Page[ScheduleOut]:
    found, total = directory.list_schedules(session, offset=params.offset,
                                            limit=params.limit)
    return make_page([directory.schedule_out(s) for s in found], total, params)


@router.get("/oncall/schedules/{name}")
def get_schedule(name: Key, _: Reader, session: SessionDep) -> ScheduleOut:
    return directory.schedule_out(directory.get_schedule(session, name))


@router.put("/oncall/schedules/{name}")
def put_schedule(
    name: Key, body: ScheduleIn, operator: Manager, session: SessionDep, clock: ClockDep
) -> ScheduleOut:
    if body.name != name:
        raise InvalidInputError(
            f"the body's name {body.name!r} differs from the URL's {name!r}")
    schedule = directory.put_schedule(session, body, actor=operator.actor, clock=clock)
    return directory.schedule_out(schedule)


@router.delete("/oncall/schedules/{name}", status_code=204)
def delete_schedule(name: Key, operator: Manager, session: SessionDep, clock: ClockDep) -> Response:
    directory.delete_schedule(session, name, actor=operator.actor, clock=clock)
    return Response(status_code=204)


@router.get("/oncall/schedules/{name}/on-call")
def who_is_on_call(
    name: Key, _: Reader, session: SessionDep, clock: ClockDep,
    at: Annotated[datetime | None, Query(description="When (ISO 8601 with zone); now if absent")]
    = None,
) -> ShiftOut:
    return directory.on_call(session, name, _aware(at, "at") if at else clock.now())


@router.get("/oncall/schedules/{name}/shifts")
def list_shifts(
    name: Key, *, _: Reader, session: SessionDep, clock: ClockDep, params: PageParamsDep,
    start: Annotated[datetime | None, Query(description="Window start; now if absent")] = None,
    days: Annotated[int, Query(ge=1, le=SHIFT_WINDOW_DAYS_MAX)] = 14,
) -> Page[ShiftOut]:
    begin = _aware(start, "start") if start else clock.now()
    shifts = directory.upcoming_shifts(session, name, begin, begin + timedelta(days=days))
    return _slice(shifts, params)


@router.post("/oncall/schedules/{name}/overrides", status_code=201)
def add_override(
    name: Key, body: OverrideIn, operator: Manager, session: SessionDep, clock: ClockDep
) -> OverrideOut:
    _aware(body.start, "start")
    _aware(body.end, "end")
    override = directory.add_override(session, name, body, actor=operator.actor, clock=clock)
    return OverrideOut(id=override.id, person=body.person, start=override.starts_at,
                       end=override.ends_at, reason=override.reason,
                       created_by=override.created_by)


@router.delete("/oncall/schedules/{name}/overrides/{override_id}", status_code=204)
def remove_override(
    name: Key, override_id: DbId, operator: Manager, session: SessionDep, clock: ClockDep
) -> Response:
    directory.remove_override(session, name, override_id, actor=operator.actor, clock=clock)
    return Response(status_code=204)


# --- policies, routes, contact tree, whole config --------------------------------------------


@router.get("/oncall/policies")
def list_policies(_: Reader, session: SessionDep, params: PageParamsDep) -> Page[PolicyOut]:
    found, total = directory.list_policies(session, offset=params.offset,
                                           limit=params.limit)
    return make_page([directory.policy_out(p) for p in found], total, params)


@router.get("/oncall/policies/{name}")
def get_policy(name: Key, _: Reader, session: SessionDep) -> PolicyOut:
    return directory.policy_out(directory.get_policy(session, name))


@router.put("/oncall/policies/{name}")
def put_policy(
    name: Key, body: PolicyIn, operator: Manager, session: SessionDep, clock: ClockDep
) -> PolicyOut:
    if body.name != name:
        raise InvalidInputError(
            f"the body's name {body.name!r} differs from the URL's {name!r}")
    policy = directory.put_policy(session, body, actor=operator.actor, clock=clock)
    return directory.policy_out(policy)


@router.delete("/oncall/policies/{name}", status_code=204)
def delete_policy(name: Key, operator: Manager, session: SessionDep, clock: ClockDep) -> Response:
    directory.delete_policy(session, name, actor=operator.actor, clock=clock)
    return Response(status_code=204)


@router.get("/oncall/routes")
def list_routes(_: Reader, session: SessionDep, params: PageParamsDep) -> Page[RouteOut]:
    return _slice(directory.list_routes(session), params)


@router.put("/oncall/routes")
def set_routes(
    body: RoutesIn, operator: Manager, session: SessionDep, clock: ClockDep
) -> list[RouteOut]:
    directory.set_routes(session, body, actor=operator.actor, clock=clock)
    return directory.list_routes(session)


def _tree_answer(tree: contact_rules.ContactTree) -> dict[str, object]:
    return {"contact_tree": contact_rules.contact_tree_to_data(tree),
            "categories_without_contacts": tree.gaps()}


@router.get("/oncall/contact-tree")
def get_contact_tree(_: Reader, session: SessionDep) -> dict[str, object]:
    return _tree_answer(directory.contact_tree(session))


@router.put("/oncall/contact-tree")
def replace_contact_tree(
    body: ContactTreeIn, operator: Manager, session: SessionDep, clock: ClockDep
) -> dict[str, object]:
    try:
        tree = contact_rules.contact_tree_from_data(
            {category: [c.model_dump() for c in items] for category, items in body.items()}
        )
    except contact_rules.ContactTreeError as exc:
        raise InvalidInputError(str(exc)) from exc
    directory.replace_contact_tree(session, tree, actor=operator.actor, clock=clock)
    return _tree_answer(directory.contact_tree(session))


@router.put("/oncall/contact-tree/{category}")
def set_category_contacts(
    category: Key, body: CategoryContactsIn, operator: Manager, session: SessionDep,
    clock: ClockDep,
) -> dict[str, object]:
    directory.set_category_contacts(session, category, body, actor=operator.actor,
                                    clock=clock)
    return _tree_answer(directory.contact_tree(session))


@router.post("/oncall/config")
def apply_config(
    body: OncallConfig, operator: Manager, session: SessionDep, clock: ClockDep
) -> dict[str, object]:
    """Apply a whole on-call set-up (the YAML file's content as JSON), all or nothing."""
    return directory.apply_config(session, body, actor=operator.actor, clock=clock)


# --- pages -----------------------------------------------------------------------------------


@router.post("/pages", status_code=201)
def send_page(
    body: PageIn, operator: Sender, session: SessionDep, clock: ClockDep, settings: SettingsDep
) -> PageOut:
    sent = paging.page(session, incident_id=body.incident_id, summary=body.summary,
                       category=body.category, severity=body.severity, clock=clock,
                       actor=operator.actor, settings=settings)
    return paging.page_out(sent)


@router.post("/oncall/people/{handle}/page", status_code=201)
def page_person(
    *, handle: Key, body: PersonPageIn, operator: Sender, session: SessionDep, clock: ClockDep,
    settings: SettingsDep,
) -> PageOut:
    """Page this person directly; unanswered, the page escalates by the routed policy."""
    sent = paging.page_person(session, person=handle, incident_id=body.incident_id,
                              summary=body.summary, category=body.category,
                              severity=body.severity, reason=body.reason, clock=clock,
                              actor=operator.actor, ack_timeout_s=body.ack_timeout_s,
                              settings=settings)
    return paging.page_out(sent)


@router.get("/pages")
def list_pages(
    _: Reader, session: SessionDep, params: PageParamsDep,
    incident_id: Annotated[Key | None, Query()] = None,
    status: Annotated[Key | None, Query(description="triggered, acknowledged, exhausted, "
                                                    "cancelled")] = None,
) -> Page[PageOut]:
    found, total = paging.list_pages(session, incident_id=incident_id, status=status,
                                     offset=params.offset, limit=params.limit)
    return make_page([paging.page_out(p) for p in found], total, params)


@router.get("/pages/{page_id}")
def get_page(page_id: DbId, _: Reader, session: SessionDep) -> PageOut:
    return paging.page_out(paging.get_page(session, page_id))


@router.get("/pages/{page_id}/events")
def list_page_events(
    page_id: DbId, _: Reader, session: SessionDep, params: PageParamsDep
) -> Page[PageEventOut]:
    paging.get_page(session, page_id)
    events, total = paging.list_page_events(session, page_id=page_id, offset=params.offset,
                                            limit=params.limit)
    return make_page(events, total, params)


@router.post("/pages/{page_id}/ack")
def acknowledge(
    page_id: DbId, operator: Acker, session: SessionDep, clock: ClockDep,
    body: AckIn | None = None,
) -> PageOut:
    acked = paging.acknowledge(session, page_id=page_id, actor=operator.actor, via="api",
                               clock=clock, note=body.note if body else "")
    return paging.page_out(acked)


@router.post("/pages/{page_id}/cancel")
def cancel(
    page_id: DbId, body: CancelIn, operator: Sender, session: SessionDep, clock: ClockDep
) -> PageOut:
    cancelled = paging.cancel_page(session, page_id=page_id, actor=operator.actor,
                                   reason=body.reason, clock=clock)
    return paging.page_out(cancelled)


AckToken = Annotated[str, Query(max_length=TOKEN_LENGTH_MAX,
                                 description="from the page's ack link")]


async def posted_ack_token(request: Request) -> str:
    """The ``token`` field of the confirmation page's form (url-encoded; "" if absent)."""
    body = await request.body()
    if len(body) > ACK_FORM_BYTES_MAX:
        return ""
    values = parse_qs(body.decode("utf-8", "replace"))
    return (values.get("token") or [""])[0][:TOKEN_LENGTH_MAX]


@router.get("/pages/{page_id}/ack", response_class=HTMLResponse,
            dependencies=[Depends(limit_links)])
def confirm_ack_by_link(
    page_id: DbId, session: SessionDep, clock: ClockDep, settings: SettingsDep, token: AckToken,
) -> HTMLResponse:
    """No login: the signed token proves the link came from a page sent to this responder.
    Opening it only asks (mail scanners open links nobody read); the page's button posts the
    token to ``/ack-link``, which acknowledges."""
    try:
        page = paging.page_for_ack_link(session, page_id=page_id, token=token, clock=clock,
                                        settings=settings)
    except AckRefusedError as exc:
        return _refused_link(page_id, exc)
    if page.status not in (PageStatus.TRIGGERED, PageStatus.EXHAUSTED):
        return HTMLResponse(ack_page_html("already", page_id=page_id,
                                          actor=page.acknowledged_by or "-", status=page.status))
    return HTMLResponse(ack_page_html("confirm", page_id=page_id, incident_id=page.incident_id,
                                      form_action=f"/api/pages/{page_id}/ack-link", token=token))


@router.post("/pages/{page_id}/ack-link", response_class=HTMLResponse,
             dependencies=[Depends(limit_links)])
def acknowledge_by_link(
    page_id: DbId, session: SessionDep, clock: ClockDep, settings: SettingsDep,
    token: Annotated[str, Depends(posted_ack_token)],
) -> HTMLResponse:
    """The confirmation page's button: acknowledge with the signed token in the form body."""
    try:
        before = paging.page_for_ack_link(session, page_id=page_id, token=token, clock=clock,
                                          settings=settings)
        already = before.status not in (PageStatus.TRIGGERED, PageStatus.EXHAUSTED)
        acked = paging.acknowledge_with_token(session, page_id=page_id, token=token,
                                              clock=clock, settings=settings)
    except AckRefusedError as exc:
        return _refused_link(page_id, exc)
    except RespondersError as exc:
        return HTMLResponse(ack_page_html("already", page_id=page_id, actor="-",
                                          status=exc.message), status_code=409)
    outcome: AckOutcome = "already" if already else "acknowledged"
    return HTMLResponse(ack_page_html(outcome, page_id=page_id, incident_id=acked.incident_id,
                                      actor=acked.acknowledged_by or "-", status=acked.status))


def _refused_link(page_id: int, error: AckRefusedError) -> HTMLResponse:
    """One answer for every bad link, whether the page exists or not."""
    return HTMLResponse(ack_page_html("refused", page_id=page_id, reason=error.message),
                        status_code=403)
