"""HTTP routes under ``/api/corrections``. Thin: each calls a flow or the service.

Reviewing and reading need ``corrections.read``; proposing (and a dry run) needs
``corrections.propose`` and a role the policy's ``may_propose`` names; approving needs
``corrections.approve``, a role in ``may_approve``, and is never done by the proposer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from haltguard.corrections import flows, service
from haltguard.corrections.models import (
    AdjustBody,
    ApproveBody,
    BustBody,
    NoticeRead,
    RejectBody,
    RequestRead,
    ReviewBody,
    RollbackBody,
)
from haltguard.corrections.settings import CorrectionsSettings
from haltguard.security.dependencies import AuthenticatedOperator, require
from haltguard.security.permissions import Action
from haltguard.web.bounds import DbId, Int64
from haltguard.web.dependencies import ClockDep, ContextDep, SessionDep, VenueDep
from haltguard.web.errors import ERROR_RESPONSES
from haltguard.web.pagination import Page, PageParamsDep, make_page

router = APIRouter(prefix="/api/corrections", tags=["corrections"], responses=ERROR_RESPONSES)

Reader = Annotated[AuthenticatedOperator, Depends(require(Action.CORRECTIONS_READ))]
Proposer = Annotated[AuthenticatedOperator, Depends(require(Action.CORRECTIONS_PROPOSE))]
Approver = Annotated[AuthenticatedOperator, Depends(require(Action.CORRECTIONS_APPROVE))]


def corrections_settings(operations: ContextDep) -> CorrectionsSettings:
    return operations.part(CorrectionsSettings)


SettingsDep = Annotated[CorrectionsSettings, Depends(corrections_settings)]


@router.post("/review")
def review(body: ReviewBody, _: Reader, settings: SettingsDep) -> dict[str, Any]:
    """The erroneous trades of a window: both accounts, deviation from the reference, status
    and the effect on balances."""
    return flows.run_review(settings, body)


@router.post("/busts")
def propose_bust(
    body: BustBody, operator: Proposer, session: SessionDep, clock: ClockDep,
    settings: SettingsDep,
) -> RequestRead:
    """Propose busting the window's erroneous trades (or the ones named); ``dry_run`` shows
    the plan and stores nothing."""
    return flows.propose_bust(session, body, settings=settings, actor=operator.actor,
                              role=operator.role.value, now=clock.now())


@router.post("/adjustments")
def propose_adjust(
    body: AdjustBody, operator: Proposer, session: SessionDep, clock: ClockDep,
    settings: SettingsDep,
) -> RequestRead:
    return flows.propose_adjust(session, body, settings=settings, actor=operator.actor,
                                role=operator.role.value, now=clock.now())


@router.post("/rollbacks")
def propose_rollback(
    body: RollbackBody, operator: Proposer, session: SessionDep, clock: ClockDep,
    settings: SettingsDep,
) -> RequestRead:
    """Plan (``dry_run``) or propose rolling the venue back to the state after a seq."""
    return flows.propose_rollback(session, body, settings=settings, actor=operator.actor,
                                  role=operator.role.value, now=clock.now())


@router.get("/requests")
def list_requests(
    _: Reader, session: SessionDep, params: PageParamsDep, incident_id: DbId | None = None,
) -> Page[RequestRead]:
    rows, total = service.list_requests(session, incident_id=incident_id,
                                        offset=params.offset, limit=params.limit)
    return make_page([service.read(session, row) for row in rows], total, params)


@router.get("/requests/{request_id}")
def get_request(request_id: DbId, _: Reader, session: SessionDep) -> RequestRead:
    return service.read(session, service.get(session, request_id))


@router.post("/requests/{request_id}/approve")
def approve(
    request_id: DbId, body: ApproveBody, *, operator: Approver, session: SessionDep,
    clock: ClockDep, settings: SettingsDep, venue: VenueDep,
) -> RequestRead:
    """The second operator's approval of exactly the digest they reviewed: the venue
    journals the correction, or refuses it and nothing changes (``status`` says which)."""
    return flows.approve(session, request_id, digest=body.digest, approver=operator.actor,
                         role=operator.role.value, settings=settings, venue=venue,
                         now=clock.now())


@router.post("/requests/{request_id}/reject")
def reject(
    request_id: DbId, body: RejectBody, *, operator: Approver, session: SessionDep,
    clock: ClockDep, settings: SettingsDep,
) -> RequestRead:
    """The second operator declines exactly the digest they reviewed, saying why: nothing
    goes to the venue (the same checks as an approval)."""
    return flows.reject(session, request_id, digest=body.digest, rejecter=operator.actor,
                        role=operator.role.value, reason=body.reason, settings=settings,
                        now=clock.now())


@router.get("/requests/{request_id}/notices")
def list_notices(
    request_id: DbId, _: Reader, session: SessionDep, params: PageParamsDep,
    account: Int64 | None = None,
) -> Page[NoticeRead]:
    """What each affected account is told (ja/en)."""
    service.get(session, request_id)
    rows, total = service.notices(session, request_id, account=account,
                                  offset=params.offset, limit=params.limit)
    return make_page(rows, total, params)
