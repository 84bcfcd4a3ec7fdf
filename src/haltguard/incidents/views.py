"""The incident API: thin routes over the service and flows, each guarded by one action of
the permission table."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from haltguard.incidents import flows, service
from haltguard.incidents.models import (
    ActionOutcome,
    ApprovalDecision,
    ApprovalRead,
    ApprovalStatus,
    CommanderAssign,
    CommentCreate,
    HaltRequest,
    HandoffRequest,
    HoldRead,
    Incident,
    IncidentCreate,
    IncidentDetail,
    IncidentRead,
    IncidentUpdate,
    KillSwitchRequest,
    MarketStateRequest,
    MetricsRead,
    PeriodMetricsRead,
    PostmortemRead,
    PostmortemWrite,
    ProtectiveHold,
    PublicUpdateCreate,
    ResumeRequest,
    TaskDone,
    TaskRead,
    TimelineEntryRead,
    TransitionRequest,
    VenueEventLink,
    VenueEventLinkCreate,
    VenueEventLinkRead,
    WithdrawalsRequest,
)
from haltguard.incidents.rules import (
    CATEGORIES,
    SEVERITY_DEFINITIONS,
    Category,
    IncidentStatus,
    Severity,
    incident_ref,
)
from haltguard.incidents.runbook import Runbook, all_runbooks
from haltguard.responders.service import ResponderSettings
from haltguard.security.dependencies import AuthenticatedOperator, require
from haltguard.security.permissions import Action
from haltguard.venue.control import VenueControl, VenueControlError
from haltguard.venue.types import MarketState
from haltguard.web.bounds import DbId, Key
from haltguard.web.dependencies import (
    ClockDep,
    ContextDep,
    SessionDep,
    VenueDep,
    get_optional_venue,
)
from haltguard.web.errors import ERROR_RESPONSES, ApiError
from haltguard.web.pagination import Page, PageParamsDep, make_page, paginate

router = APIRouter(prefix="/api", tags=["incidents"], responses=ERROR_RESPONSES)


Reader = Annotated[AuthenticatedOperator, Depends(require(Action.INCIDENT_READ))]
Creator = Annotated[AuthenticatedOperator, Depends(require(Action.INCIDENT_CREATE))]
Updater = Annotated[AuthenticatedOperator, Depends(require(Action.INCIDENT_UPDATE))]
Transitioner = Annotated[AuthenticatedOperator, Depends(require(Action.INCIDENT_TRANSITION))]
Commenter = Annotated[AuthenticatedOperator, Depends(require(Action.INCIDENT_COMMENT))]
CommanderAssigner = Annotated[
    AuthenticatedOperator, Depends(require(Action.INCIDENT_ASSIGN_COMMANDER))
]
TaskUpdater = Annotated[AuthenticatedOperator, Depends(require(Action.TASK_UPDATE))]
Pager = Annotated[AuthenticatedOperator, Depends(require(Action.PAGE_SEND))]
# Telling customers is the status page's permission: support staff may (issue 5).
PublicUpdater = Annotated[AuthenticatedOperator, Depends(require(Action.STATUS_PUBLISH))]
Halter = Annotated[AuthenticatedOperator, Depends(require(Action.MARKET_HALT))]
StateSetter = Annotated[AuthenticatedOperator, Depends(require(Action.MARKET_SET_STATE))]
Resumer = Annotated[AuthenticatedOperator, Depends(require(Action.MARKET_RESUME))]
KillSwitchEngager = Annotated[AuthenticatedOperator, Depends(require(Action.KILL_SWITCH_ENGAGE))]
KillSwitchReleaser = Annotated[AuthenticatedOperator, Depends(require(Action.KILL_SWITCH_RELEASE))]
Freezer = Annotated[AuthenticatedOperator, Depends(require(Action.WITHDRAWALS_FREEZE))]
Unfreezer = Annotated[AuthenticatedOperator, Depends(require(Action.WITHDRAWALS_UNFREEZE))]
Approver = Annotated[AuthenticatedOperator, Depends(require(Action.APPROVAL_GRANT))]
OptionalVenue = Annotated[VenueControl | None, Depends(get_optional_venue)]


def get_responder_settings(operations: ContextDep) -> ResponderSettings | None:
    """The app's paging settings (the composition root gives every app one)."""
    return operations.optional_part(ResponderSettings)


PagingSettings = Annotated[ResponderSettings | None, Depends(get_responder_settings)]


def _detail(incident: Incident, now: datetime) -> IncidentDetail:
    base = IncidentRead.model_validate(incident)
    return IncidentDetail(**base.model_dump(), progress=service.progress(incident, now))


def _task_read(task: object, now: datetime) -> TaskRead:
    read = TaskRead.model_validate(task)
    read.overdue = read.done_at is None and read.due_at < now
    return read


def _outcome(session: Session, outcome: ActionOutcome, response: Response) -> ActionOutcome:
    """202 while waiting for a second operator; 409 (with the refusals kept in the timeline)
    when the venue took none of it."""
    if outcome.approval is not None and outcome.approval.status == ApprovalStatus.PENDING:
        response.status_code = 202
        return outcome
    if outcome.results and not any(result.ok for result in outcome.results):
        session.commit()
        details = "; ".join(f"{result.target}: {result.detail}" for result in outcome.results)
        raise ApiError(409, "venue_refused", f"the venue refused {outcome.action}: {details}")
    return outcome


# --- incidents ----------------------------------------------------------------------------


@router.post("/incidents", status_code=201, summary="Open an incident")
def open_incident(
    *,
    body: IncidentCreate,
    operator: Creator,
    session: SessionDep,
    clock: ClockDep,
    paging: PagingSettings,
) -> IncidentDetail:
    """Opens in ``detected`` with its category's runbook as tasks; SEV1/SEV2 page the
    on-call."""
    incident = flows.open_incident(
        session, body, actor=operator.username, clock=clock, responder_settings=paging
    )
    return _detail(incident, clock.now())


@router.get("/incidents", summary="List incidents, newest first")
def list_incidents(
    *,
    _operator: Reader,
    session: SessionDep,
    page: PageParamsDep,
    status: IncidentStatus | None = None,
    severity: Severity | None = None,
    category: Category | None = None,
    open_only: bool = False,
) -> Page[IncidentRead]:
    query = service.list_query(
        status=status, severity=severity, category=category, open_only=open_only
    )
    rows, total = paginate(session, query, page)
    return make_page([IncidentRead.model_validate(row) for row in rows], total, page)


@router.get("/incidents/{incident_id}", summary="One incident with its task progress")
def get_incident(
    *, incident_id: DbId, _operator: Reader, session: SessionDep, clock: ClockDep
) -> IncidentDetail:
    return _detail(service.get(session, incident_id), clock.now())


@router.patch("/incidents/{incident_id}", summary="Correct an incident's fields")
def update_incident(
    *,
    incident_id: DbId,
    body: IncidentUpdate,
    operator: Updater,
    session: SessionDep,
    clock: ClockDep,
    paging: PagingSettings,
) -> IncidentDetail:
    incident = service.get(session, incident_id)
    flows.update_incident(
        session, incident, body, actor=operator.username, clock=clock, responder_settings=paging
    )
    return _detail(incident, clock.now())


@router.post("/incidents/{incident_id}/transition", summary="Move along the lifecycle")
def transition(
    *,
    incident_id: DbId,
    body: TransitionRequest,
    operator: Transitioner,
    session: SessionDep,
    clock: ClockDep,
    venue: OptionalVenue,
) -> IncidentDetail:
    """Resolving asks the venue whether every market this incident halted is open again."""
    incident = service.get(session, incident_id)
    market_states: dict[str, MarketState] | None = None
    if body.status == IncidentStatus.RESOLVED and venue is not None:
        try:
            market_states = venue.market_states()
        except VenueControlError:
            market_states = None
    service.transition(
        session,
        incident,
        body.status,
        actor=operator.username,
        now=clock.now(),
        note=body.note,
        market_states=market_states,
    )
    return _detail(incident, clock.now())


@router.post("/incidents/{incident_id}/commander", summary="Name the incident commander")
def assign_commander(
    *,
    incident_id: DbId,
    body: CommanderAssign,
    operator: CommanderAssigner,
    session: SessionDep,
    clock: ClockDep,
) -> IncidentDetail:
    incident = service.get(session, incident_id)
    service.assign_commander(
        session, incident, body.username, actor=operator.username, now=clock.now()
    )
    return _detail(incident, clock.now())


@router.post("/incidents/{incident_id}/comments", status_code=201, summary="Comment")
def comment(
    *,
    incident_id: DbId,
    body: CommentCreate,
    operator: Commenter,
    session: SessionDep,
    clock: ClockDep,
) -> TimelineEntryRead:
    incident = service.get(session, incident_id)
    entry = service.comment(session, incident, body.text, actor=operator.username, now=clock.now())
    return TimelineEntryRead.model_validate(entry)


@router.post(
    "/incidents/{incident_id}/public-updates",
    status_code=201,
    summary="Record what customers were told",
)
def public_update(
    *,
    incident_id: DbId,
    body: PublicUpdateCreate,
    operator: PublicUpdater,
    session: SessionDep,
    clock: ClockDep,
) -> TimelineEntryRead:
    incident = service.get(session, incident_id)
    entry = service.post_public_update(
        session, incident, body, actor=operator.username, now=clock.now()
    )
    return TimelineEntryRead.model_validate(entry)


@router.get("/incidents/{incident_id}/timeline", summary="The timeline, oldest first")
def timeline(
    *, incident_id: DbId, _operator: Reader, session: SessionDep, page: PageParamsDep
) -> Page[TimelineEntryRead]:
    service.get(session, incident_id)
    rows, total = paginate(session, service.timeline_query(incident_id), page)
    return make_page([TimelineEntryRead.model_validate(row) for row in rows], total, page)


@router.get("/incidents/{incident_id}/metrics", summary="MTTD, MTTA, MTTM, MTTR of one")
def incident_metrics(*, incident_id: DbId, _operator: Reader, session: SessionDep) -> MetricsRead:
    metrics = service.metrics(service.get(session, incident_id))
    return MetricsRead(**metrics.__dict__)


@router.get("/metrics/incidents", summary="Mean response times over a period")
def period_metrics(
    *, _operator: Reader, session: SessionDep, since: datetime, until: datetime
) -> PeriodMetricsRead:
    """Incidents detected in ``[since, until)``; times need a zone (``...Z`` or ``+09:00``)."""
    return service.period_metrics(session, since, until)


# --- tasks --------------------------------------------------------------------------------


@router.get("/incidents/{incident_id}/tasks", summary="Runbook tasks in order")
def tasks(
    *,
    incident_id: DbId,
    _operator: Reader,
    session: SessionDep,
    page: PageParamsDep,
    clock: ClockDep,
    overdue_only: bool = False,
) -> Page[TaskRead]:
    incident = service.get(session, incident_id)
    now = clock.now()
    chosen = service.overdue_tasks(incident, now) if overdue_only else list(incident.tasks)
    window = chosen[page.offset : page.offset + page.limit]
    return make_page([_task_read(task, now) for task in window], len(chosen), page)


@router.post("/incidents/{incident_id}/tasks/{task_ref}/done", summary="Mark a task done")
def task_done(
    *,
    incident_id: DbId,
    task_ref: Key,
    body: TaskDone,
    operator: TaskUpdater,
    session: SessionDep,
    clock: ClockDep,
) -> TaskRead:
    """``task_ref`` is the task id or its runbook step key (``assess_situation``)."""
    incident = service.get(session, incident_id)
    task = service.complete_task(
        session, incident, task_ref, actor=operator.username, now=clock.now(), note=body.note
    )
    return _task_read(task, clock.now())


class OverduePaged(BaseModel):
    tasks_paged: int


@router.post(
    "/incidents/{incident_id}/tasks/page-overdue", summary="Page the on-call about overdue tasks"
)
def page_overdue(
    *,
    incident_id: DbId,
    operator: Pager,
    session: SessionDep,
    clock: ClockDep,
    paging: PagingSettings,
) -> OverduePaged:
    """Each overdue task is paged about once."""
    incident = service.get(session, incident_id)
    count = flows.page_overdue_tasks(
        session, incident, actor=operator.username, clock=clock, responder_settings=paging
    )
    return OverduePaged(tasks_paged=count)


# --- venue events, holds, handoffs, postmortem ----------------------------------------------


@router.get("/incidents/{incident_id}/venue-events", summary="Linked venue events")
def venue_events(
    *, incident_id: DbId, _operator: Reader, session: SessionDep, page: PageParamsDep
) -> Page[VenueEventLinkRead]:
    service.get(session, incident_id)
    query = (
        select(VenueEventLink)
        .where(VenueEventLink.incident_id == incident_id)
        .order_by(VenueEventLink.id)
    )
    rows, total = paginate(session, query, page)
    return make_page([VenueEventLinkRead.model_validate(row) for row in rows], total, page)


@router.post("/incidents/{incident_id}/venue-events", status_code=201, summary="Link a venue event")
def link_venue_event(
    *,
    incident_id: DbId,
    body: VenueEventLinkCreate,
    operator: Updater,
    session: SessionDep,
    clock: ClockDep,
) -> VenueEventLinkRead:
    incident = service.get(session, incident_id)
    link = service.link_venue_event(
        session, incident, body, actor=operator.username, now=clock.now()
    )
    session.flush()
    return VenueEventLinkRead.model_validate(link)


@router.get("/incidents/{incident_id}/holds", summary="What this incident holds on the venue")
def holds(
    *, incident_id: DbId, _operator: Reader, session: SessionDep, page: PageParamsDep
) -> Page[HoldRead]:
    service.get(session, incident_id)
    query = (
        select(ProtectiveHold)
        .where(ProtectiveHold.incident_id == incident_id)
        .order_by(ProtectiveHold.id)
    )
    rows, total = paginate(session, query, page)
    return make_page([HoldRead.model_validate(row) for row in rows], total, page)


@router.post(
    "/incidents/{incident_id}/handoffs",
    summary="Hand a halted market (or the kill switch) to another incident",
)
def handoff(
    *,
    incident_id: DbId,
    body: HandoffRequest,
    operator: Updater,
    session: SessionDep,
    clock: ClockDep,
) -> IncidentDetail:
    incident = service.get(session, incident_id)
    target = service.get(session, body.to_incident_id)
    service.hand_off(
        session,
        incident,
        body.market,
        target,
        actor=operator.username,
        now=clock.now(),
        note=body.note,
    )
    return _detail(incident, clock.now())


@router.put("/incidents/{incident_id}/postmortem", summary="Write the postmortem")
def write_postmortem(
    *,
    incident_id: DbId,
    body: PostmortemWrite,
    operator: Updater,
    session: SessionDep,
    clock: ClockDep,
) -> PostmortemRead:
    incident = service.get(session, incident_id)
    document = service.write_postmortem(
        session, incident, body, actor=operator.username, now=clock.now()
    )
    return PostmortemRead.model_validate(document)


@router.get("/incidents/{incident_id}/postmortem", summary="The postmortem as written")
def read_postmortem(*, incident_id: DbId, _operator: Reader, session: SessionDep) -> PostmortemRead:
    service.get(session, incident_id)
    document = service.postmortem(session, incident_id)
    if document is None:
        raise ApiError(
            404,
            "postmortem_not_found",
            f"{incident_ref(incident_id)} has no postmortem yet; write it with PUT",
        )
    return PostmortemRead.model_validate(document)


# --- protective actions ---------------------------------------------------------------------


@router.post("/incidents/{incident_id}/actions/halt", summary="Halt markets")
def halt(
    *,
    incident_id: DbId,
    body: HaltRequest,
    operator: Halter,
    session: SessionDep,
    clock: ClockDep,
    venue: VenueDep,
    response: Response,
) -> ActionOutcome:
    incident = service.get(session, incident_id)
    outcome = flows.halt_markets(
        session, venue, incident, body, actor=operator.username, now=clock.now()
    )
    return _outcome(session, outcome, response)


@router.post(
    "/incidents/{incident_id}/actions/market-state",
    summary="Set markets to cancel-only, post-only, limit-only or auction",
)
def market_state(
    *,
    incident_id: DbId,
    body: MarketStateRequest,
    operator: StateSetter,
    session: SessionDep,
    clock: ClockDep,
    venue: VenueDep,
    response: Response,
) -> ActionOutcome:
    incident = service.get(session, incident_id)
    outcome = flows.set_market_state(
        session, venue, incident, body, actor=operator.username, now=clock.now()
    )
    return _outcome(session, outcome, response)


@router.post("/incidents/{incident_id}/actions/resume", summary="Resume trading")
def resume(
    *,
    incident_id: DbId,
    body: ResumeRequest,
    operator: Resumer,
    session: SessionDep,
    clock: ClockDep,
    venue: VenueDep,
    response: Response,
) -> ActionOutcome:
    """After a SEV1 this answers 202 with a pending approval for a second operator."""
    incident = service.get(session, incident_id)
    outcome = flows.resume_markets(
        session, venue, incident, body, actor=operator.username, now=clock.now()
    )
    return _outcome(session, outcome, response)


@router.post(
    "/incidents/{incident_id}/actions/kill-switch", summary="Engage the global kill switch"
)
def kill_switch(
    *,
    incident_id: DbId,
    body: KillSwitchRequest,
    operator: KillSwitchEngager,
    session: SessionDep,
    clock: ClockDep,
    venue: VenueDep,
    response: Response,
) -> ActionOutcome:
    incident = service.get(session, incident_id)
    outcome = flows.engage_kill_switch(
        session, venue, incident, body, actor=operator.username, now=clock.now()
    )
    return _outcome(session, outcome, response)


@router.post(
    "/incidents/{incident_id}/actions/kill-switch/release",
    status_code=202,
    summary="Ask to release the kill switch (needs a second operator)",
)
def kill_switch_release(
    *,
    incident_id: DbId,
    body: KillSwitchRequest,
    operator: KillSwitchReleaser,
    session: SessionDep,
    clock: ClockDep,
    response: Response,
) -> ActionOutcome:
    incident = service.get(session, incident_id)
    outcome = flows.release_kill_switch(
        session, incident, body, actor=operator.username, now=clock.now()
    )
    return _outcome(session, outcome, response)


@router.post(
    "/incidents/{incident_id}/actions/withdrawals/freeze", summary="Freeze withdrawals of an asset"
)
def freeze(
    *,
    incident_id: DbId,
    body: WithdrawalsRequest,
    operator: Freezer,
    session: SessionDep,
    clock: ClockDep,
    venue: VenueDep,
    response: Response,
) -> ActionOutcome:
    incident = service.get(session, incident_id)
    outcome = flows.freeze_withdrawals(
        session, venue, incident, body, actor=operator.username, now=clock.now()
    )
    return _outcome(session, outcome, response)


@router.post(
    "/incidents/{incident_id}/actions/withdrawals/unfreeze",
    summary="Unfreeze withdrawals of an asset",
)
def unfreeze(
    *,
    incident_id: DbId,
    body: WithdrawalsRequest,
    operator: Unfreezer,
    session: SessionDep,
    clock: ClockDep,
    venue: VenueDep,
    response: Response,
) -> ActionOutcome:
    incident = service.get(session, incident_id)
    outcome = flows.freeze_withdrawals(
        session, venue, incident, body, actor=operator.username, now=clock.now(), frozen=False
    )
    return _outcome(session, outcome, response)


# --- approvals ------------------------------------------------------------------------------


@router.get("/approvals", summary="Four-eyes requests, newest first")
def list_approvals(
    *,
    _operator: Reader,
    session: SessionDep,
    page: PageParamsDep,
    status: ApprovalStatus | None = None,
    incident_id: DbId | None = None,
) -> Page[ApprovalRead]:
    rows, total = paginate(session, flows.approvals_query(incident_id, status), page)
    return make_page([ApprovalRead.model_validate(row) for row in rows], total, page)


@router.get("/approvals/{approval_id}", summary="One four-eyes request")
def get_approval(*, approval_id: DbId, _operator: Reader, session: SessionDep) -> ApprovalRead:
    return ApprovalRead.model_validate(flows.get_approval(session, approval_id))


@router.post(
    "/approvals/{approval_id}/approve",
    summary="Approve as the second operator; the action runs at once",
)
def approve(
    *,
    approval_id: DbId,
    body: ApprovalDecision,
    operator: Approver,
    session: SessionDep,
    clock: ClockDep,
    venue: VenueDep,
    response: Response,
) -> ActionOutcome:
    approval = flows.get_approval(session, approval_id)
    outcome = flows.approve(
        session, venue, approval, approver=operator.username, now=clock.now(), note=body.note
    )
    return _outcome(session, outcome, response)


@router.post("/approvals/{approval_id}/reject", summary="Reject a four-eyes request")
def reject(
    *,
    approval_id: DbId,
    body: ApprovalDecision,
    operator: Approver,
    session: SessionDep,
    clock: ClockDep,
) -> ApprovalRead:
    approval = flows.get_approval(session, approval_id)
    flows.reject(session, approval, approver=operator.username, now=clock.now(), note=body.note)
    return ApprovalRead.model_validate(approval)


# --- reference ------------------------------------------------------------------------------


class CategoryRead(BaseModel):
    name: Category
    group: str
    label_ja: str
    label_en: str


class SeverityRead(BaseModel):
    name: Severity
    definition_ja: str
    definition_en: str
    pages_on_open: bool


class TaxonomyRead(BaseModel):
    categories: list[CategoryRead]
    severities: list[SeverityRead]


@router.get("/incident-taxonomy", summary="Categories (manual chapter 1) and severities")
def taxonomy(*, _operator: Reader) -> TaxonomyRead:
    return TaxonomyRead(
        categories=[
            CategoryRead(
                name=name, group=info.group, label_ja=info.label_ja, label_en=info.label_en
            )
            for name, info in CATEGORIES.items()
        ],
        severities=[
            SeverityRead(
                name=name,
                definition_ja=info.ja,
                definition_en=info.en,
                pages_on_open=info.pages_on_open,
            )
            for name, info in SEVERITY_DEFINITIONS.items()
        ],
    )


class RunbookStepRead(BaseModel):
    phase: str
    key: str
    owner_role: str
    due_minutes: int
    ja: str
    en: str


class RunbookRead(BaseModel):
    name: str
    version: int
    title_ja: str
    title_en: str
    digest: str
    steps: list[RunbookStepRead]


def _runbook_read(runbook: Runbook) -> RunbookRead:
    return RunbookRead(
        name=runbook.name,
        version=runbook.version,
        title_ja=runbook.title_ja,
        title_en=runbook.title_en,
        digest=runbook.digest,
        steps=[
            RunbookStepRead(
                phase=phase.key,
                key=step.key,
                owner_role=step.owner_role.value,
                due_minutes=step.due_minutes,
                ja=step.ja,
                en=step.en,
            )
            for phase, step in runbook.steps()
        ],
    )


@router.get("/runbooks", summary="Every runbook, merged with the general one")
def runbooks(*, _operator: Reader, page: PageParamsDep) -> Page[RunbookRead]:
    every = all_runbooks()
    window = every[page.offset : page.offset + page.limit]
    return make_page([_runbook_read(runbook) for runbook in window], len(every), page)


@router.get("/runbooks/{name}", summary="One runbook")
def runbook(*, name: Key, _operator: Reader) -> RunbookRead:
    for candidate in all_runbooks():
        if candidate.name == name:
            return _runbook_read(candidate)
    names = ", ".join(candidate.name for candidate in all_runbooks())
    raise ApiError(404, "runbook_not_found", f"no runbook {name}; there are: {names}")
