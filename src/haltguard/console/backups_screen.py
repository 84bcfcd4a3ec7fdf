"""The backups' screen in the operator console (``/console/backups``): how old the last good
backup is, and the newest backups and verifies with their results. Read-only, the same data
and permission (``continuity.read``) as ``GET /api/backups``; taking and restoring backups
stay with the ``haltguard backup`` commands and the schedule."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from haltguard.backup import service
from haltguard.console import auth
from haltguard.console.navigation import Screen
from haltguard.console.web import (
    PREFIX,
    ConsoleRoute,
    guard,
    now_of,
    render,
    run_work,
    unit_of_work,
    viewer_for,
)
from haltguard.security.permissions import Action

SCREEN = Screen("/backups", "バックアップ", "Backups", Action.CONTINUITY_READ)
RECORDS_SHOWN = 20

router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)


@router.get("/backups", dependencies=guard(Action.CONTINUITY_READ))
async def backups_screen(request: Request) -> Response:
    """The last good backup's age, then the recent backups and verifies."""
    def work() -> Response:
        operator = auth.authorize(request, Action.CONTINUITY_READ)
        now = now_of(request)
        with unit_of_work(request) as session:
            evidence = service.latest_evidence(session)
            age_s = (None if evidence.last_good_backup_at is None
                     else max(0, int((now - evidence.last_good_backup_at).total_seconds())))
            return render(request, "backups.html", viewer_for(request, operator),
                          evidence=evidence, age_s=age_s,
                          backups=service.list_backups(session, limit=RECORDS_SHOWN),
                          verifications=service.list_verifications(session,
                                                                   limit=RECORDS_SHOWN))

    return await run_work(request, work)
