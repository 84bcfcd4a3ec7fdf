"""HTTP routes under ``/api/compensation``. Thin: each calls the service or a flow.

Reading a run needs ``compensation.read`` (support staff answer customers with ``explain``);
proposing ``compensation.propose``; approving ``compensation.approve`` and never by the
proposer; paying and sending statements ``compensation.pay``. A payout runs in the
background (one per run in this process) and ``GET .../payout`` shows its progress.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from haltguard.compensation import flows, service
from haltguard.compensation.errors import CompensationError, ProposalError
from haltguard.compensation.models import (
    Approve,
    Explanation,
    LineRead,
    PayoutRead,
    RunProposal,
    RunRead,
    StatementCounts,
    StatementRead,
    StatementsRequest,
)
from haltguard.compensation.policies import load_policies
from haltguard.compensation.settings import CompensationSettings
from haltguard.db.session import session_scope
from haltguard.notify.settings import NotifySettings
from haltguard.security.dependencies import AuthenticatedOperator, require
from haltguard.security.permissions import Action
from haltguard.web.bounds import DbId, Int64
from haltguard.web.dependencies import ClockDep, ContextDep, SessionDep, VenueDep
from haltguard.web.errors import ERROR_RESPONSES
from haltguard.web.pagination import Page, PageParamsDep, make_page

router = APIRouter(prefix="/api/compensation", tags=["compensation"],
                   responses=ERROR_RESPONSES)

Reader = Annotated[AuthenticatedOperator, Depends(require(Action.COMPENSATION_READ))]
Proposer = Annotated[AuthenticatedOperator, Depends(require(Action.COMPENSATION_PROPOSE))]
Approver = Annotated[AuthenticatedOperator, Depends(require(Action.COMPENSATION_APPROVE))]
Payer = Annotated[AuthenticatedOperator, Depends(require(Action.COMPENSATION_PAY))]


def compensation_settings(operations: ContextDep) -> CompensationSettings:
    """The app's compensation settings (a part of its operations context)."""
    return operations.part(CompensationSettings)


def payout_runner(operations: ContextDep) -> flows.PayoutRunner:
    return operations.part(flows.PayoutRunner)


def notify_settings(operations: ContextDep) -> NotifySettings:
    return operations.part(NotifySettings)


SettingsDep = Annotated[CompensationSettings, Depends(compensation_settings)]
RunnerDep = Annotated[flows.PayoutRunner, Depends(payout_runner)]
NotifySettingsDep = Annotated[NotifySettings, Depends(notify_settings)]


@router.get("/policies")
def list_policies(
    _: Reader, settings: SettingsDep, params: PageParamsDep
) -> Page[dict[str, object]]:
    """The policy files a run may name, each with its kind, version and ja/en description
    (a file that does not load says why instead)."""
    paths = sorted(settings.policies_dir.glob("*.yaml"))
    found: list[dict[str, object]] = []
    for path in paths[params.offset:params.offset + params.limit]:
        try:
            policy_set = load_policies([path])
        except CompensationError as exc:
            found.append({"file": path.name, "error": exc.message})
            continue
        found += [{"file": path.name, **record}
                  for record in flows.policy_records(policy_set, [path.name])]
    return make_page(found, len(paths), params)


@router.post("/runs", status_code=201)
def propose_run(
    body: RunProposal, operator: Proposer, session: SessionDep, clock: ClockDep,
    settings: SettingsDep,
) -> RunRead:
    """Compute a run from the journal and store it; a second operator approves it."""
    run = flows.propose_run(session, body, settings=settings, actor=operator.actor,
                            now=clock.now())
    return service.run_read(session, run)


@router.get("/runs")
def list_runs(
    _: Reader, session: SessionDep, params: PageParamsDep, incident_id: DbId | None = None,
) -> Page[RunRead]:
    runs, total = service.list_runs(session, incident_id=incident_id, offset=params.offset,
                                    limit=params.limit)
    return make_page([service.run_read(session, run) for run in runs], total, params)


@router.get("/runs/{run_id}")
def get_run(run_id: DbId, _: Reader, session: SessionDep) -> RunRead:
    return service.run_read(session, service.get_run(session, run_id))


@router.get("/runs/{run_id}/lines")
def list_lines(
    run_id: DbId, _: Reader, session: SessionDep, params: PageParamsDep
) -> Page[LineRead]:
    lines, total = service.list_lines(session, run_id, offset=params.offset,
                                      limit=params.limit)
    return make_page(lines, total, params)


@router.get("/runs/{run_id}/accounts/{account}")
def explain(run_id: DbId, account: Int64, _: Reader, session: SessionDep) -> Explanation:
    """One account's lines with the inputs that produced them."""
    return service.explain(session, run_id, account)


@router.get("/runs/{run_id}/export.csv", response_class=StreamingResponse)
def export_csv(run_id: DbId, _: Reader, operations: ContextDep) -> StreamingResponse:
    """Every line for accounting, with exact decimal amounts and the run's digest."""
    with session_scope(operations.session_factory) as session:
        service.get_run(session, run_id)  # a missing run is a 404 before streaming starts

    def chunks() -> Iterator[str]:
        with session_scope(operations.session_factory) as reading:
            yield from service.export_csv(reading, run_id)

    return StreamingResponse(
        chunks(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="compensation-run-{run_id}.csv"'},
    )


@router.post("/runs/{run_id}/approve")
def approve(
    run_id: DbId, body: Approve, operator: Approver, session: SessionDep, clock: ClockDep
) -> RunRead:
    """The second pair of eyes: approve exactly the digest reviewed; never the proposer."""
    service.approve(session, run_id, approver=operator.actor, digest=body.digest,
                    note=body.note, now=clock.now())
    return service.run_read(session, service.get_run(session, run_id))


@router.post("/runs/{run_id}/pay", status_code=202)
def pay(
    run_id: DbId, operator: Payer, runner: RunnerDep, venue: VenueDep,
    session: SessionDep,
) -> PayoutRead:
    """Begin (or resume) paying an approved run into the venue; follow ``GET .../payout``."""
    service.get_run(session, run_id)
    session.commit()  # the payout writes in its own transactions
    runner.start(run_id, venue, actor=operator.actor)
    return service.payout_read(session, run_id).model_copy(
        update={"running": runner.running(run_id)})


@router.get("/runs/{run_id}/payout")
def payout(
    run_id: DbId, _: Reader, session: SessionDep, runner: RunnerDep,
    wait_s: Annotated[float, Query(ge=0, le=30)] = 0,
) -> PayoutRead:
    """How far the payout got; ``wait_s`` waits up to that long for it to end first."""
    if wait_s:
        runner.wait(run_id, wait_s)
    return service.payout_read(session, run_id).model_copy(
        update={"running": runner.running(run_id)})


@router.post("/runs/{run_id}/statements")
def statements(
    run_id: DbId, body: StatementsRequest, operator: Payer, session: SessionDep, *,
    clock: ClockDep, settings: SettingsDep, notify: NotifySettingsDep,
) -> StatementCounts:
    """Write every paid account's statement (once), email those whose contact is given,
    and post the public note on the incident (once)."""
    if len(body.contacts) > settings.statements_send_batch_max:
        raise ProposalError(
            f"{len(body.contacts)} contacts in one request; at most "
            f"{settings.statements_send_batch_max}",
            next_step="send the contacts in parts (the CLI does)",
            message_ja=f"1回に送れる連絡先は {settings.statements_send_batch_max} 件までです",
        )
    return flows.statements(session, run_id, body.contacts, actor=operator.actor,
                            notify_settings=notify, now=clock.now())


@router.get("/runs/{run_id}/statements")
def list_statements(
    run_id: DbId, _: Reader, session: SessionDep, params: PageParamsDep,
    account: Int64 | None = None,
) -> Page[StatementRead]:
    items, total = service.list_statements(session, run_id, account=account,
                                           offset=params.offset, limit=params.limit)
    return make_page(items, total, params)
