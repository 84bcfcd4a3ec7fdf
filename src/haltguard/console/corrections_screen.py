"""The trade corrections' screen in the operator console (``/console/corrections``): the
corrections waiting for a second operator, each with its plan (trades, balance changes), its
digest and, for a second operator, Approve and Reject; then the decided ones. The same
permissions (``corrections.read``, ``corrections.approve``) and the same four-eyes flow
(``corrections.flows.approve`` / ``reject``: never the proposer, only the digest shown, a role
the policy names) as ``/api/corrections``; proposing stays with the API and ``haltguard
trades``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from haltguard.console import auth
from haltguard.console.errors import FormValueError
from haltguard.console.navigation import Screen
from haltguard.console.web import (
    PREFIX,
    ConsoleRoute,
    guard,
    now_of,
    operations_of,
    read_form,
    redirect,
    render,
    run_work,
    unit_of_work,
    venue_of,
    viewer_for,
)
from haltguard.corrections import flows, service
from haltguard.corrections.models import REASON_LENGTH_MAX, CorrectionStatus
from haltguard.corrections.settings import CorrectionsSettings
from haltguard.corrections.texts import amount_text
from haltguard.security.permissions import Action

SCREEN = Screen("/corrections", "取引訂正", "Trade corrections", Action.CORRECTIONS_READ)
REQUESTS_SHOWN = 50

router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)


@router.get("/corrections", dependencies=guard(Action.CORRECTIONS_READ))
async def corrections_screen(request: Request) -> Response:
    """Pending corrections first (with the approval forms), then the decided ones."""
    def work() -> Response:
        operator = auth.authorize(request, Action.CORRECTIONS_READ)
        with unit_of_work(request) as session:
            rows, total = service.list_requests(session, incident_id=None, offset=0,
                                                limit=REQUESTS_SHOWN)
            reads = [service.read(session, row) for row in rows]
            return render(request, "corrections.html", viewer_for(request, operator),
                          pending=[r for r in reads if r.status is CorrectionStatus.PROPOSED],
                          decided=[r for r in reads if r.status is not CorrectionStatus.PROPOSED],
                          total=total, me=operator.actor, amount_text=amount_text)

    return await run_work(request, work)


@router.post("/corrections/{request_id}/approve", dependencies=guard(Action.CORRECTIONS_APPROVE))
async def corrections_approve(request_id: int, request: Request) -> Response:
    """A second operator approves exactly the digest shown; the venue applies it (or refuses
    it, which is recorded too)."""
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.CORRECTIONS_APPROVE)
        operations = operations_of(request)
        with unit_of_work(request) as session:
            flows.approve(session, request_id, digest=form.get("digest").strip(),
                          approver=operator.actor, role=operator.role.value,
                          settings=operations.part(CorrectionsSettings),
                          venue=venue_of(request), now=now_of(request))
        return redirect(f"{PREFIX}/corrections?notice=done_ok")

    return await run_work(request, work)


@router.post("/corrections/{request_id}/reject", dependencies=guard(Action.CORRECTIONS_APPROVE))
async def corrections_reject(request_id: int, request: Request) -> Response:
    """A second operator declines the correction, saying why; nothing reaches the venue."""
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.CORRECTIONS_APPROVE)
        reason = form.get("reason").strip()
        if not reason or len(reason) > REASON_LENGTH_MAX:
            raise FormValueError(
                f"say why you reject the correction (1 to {REASON_LENGTH_MAX} characters)",
                message_ja=f"却下する理由を入力してください（1〜{REASON_LENGTH_MAX} 文字）")
        operations = operations_of(request)
        with unit_of_work(request) as session:
            flows.reject(session, request_id, digest=form.get("digest").strip(),
                         rejecter=operator.actor, role=operator.role.value, reason=reason,
                         settings=operations.part(CorrectionsSettings), now=now_of(request))
        return redirect(f"{PREFIX}/corrections?notice=done_ok")

    return await run_work(request, work)
