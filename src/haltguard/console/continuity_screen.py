"""Continuity's screen in the operator console (``/console/continuity``): the plan's check
as ``bcp check`` judges it now (pass or fail per service, each piece of evidence with its
date), the risk heat map the domain renders, risks whose review is overdue, insurance
expiring within the reminder window and open vulnerability findings by severity. Read-only,
the same functions and permission (``continuity.read``) as ``/api/continuity``; nothing is
written (the check runs with ``write=False``, as ``GET /api/continuity/check`` does)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from haltguard.console import auth
from haltguard.console.navigation import Screen
from haltguard.console.web import (
    PREFIX,
    ConsoleRoute,
    guard,
    now_of,
    operations_of,
    render,
    run_work,
    unit_of_work,
    viewer_for,
)
from haltguard.continuity import flows, service
from haltguard.continuity.assess import overdue_reviews
from haltguard.continuity.heatmap import Rating, render_svg
from haltguard.continuity.models import Severity
from haltguard.continuity.settings import ContinuitySettings
from haltguard.security.permissions import Action

SCREEN = Screen("/continuity", "事業継続", "Continuity", Action.CONTINUITY_READ)

router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)


@router.get("/continuity", dependencies=guard(Action.CONTINUITY_READ))
async def continuity_screen(request: Request) -> Response:
    """The plan's check now, the heat map, overdue reviews, insurance, open findings."""
    def work() -> Response:
        operator = auth.authorize(request, Action.CONTINUITY_READ)
        settings = operations_of(request).part(ContinuitySettings)
        now = now_of(request)
        today = now.date()
        with unit_of_work(request) as session:
            outcome = flows.check_plan(session, settings, now, write=False)
            policies = [service.insurance_read(policy, today)
                        for policy in service.list_insurance(session)]
            counts = service.count_findings(session, today=today)
        # the domain's own SVG: self-contained, its texts escaped, no script or style
        heatmaps = {rating: Markup(render_svg(outcome.register, rating))
                    for rating in (Rating.INHERENT, Rating.RESIDUAL)}
        window = settings.insurance_remind_days
        return render(
            request, "continuity.html", viewer_for(request, operator),
            assessment=outcome.assessment, heatmaps=heatmaps,
            overdue=overdue_reviews(outcome.register, today),
            expiring=[p for p in policies if 0 <= p.days_to_expiry <= window],
            in_force=sum(p.in_force for p in policies), window_days=window,
            findings=[(severity.value, counts.get(severity.value, 0)) for severity in Severity],
            findings_overdue=counts.get("overdue", 0))

    return await run_work(request, work)
