"""The support desk's screen in the operator console (``/console/support``): per open
incident the questions linked to it, the backlog and SLA breaches, its latest public update
with a button that answers every linked ticket in bulk (once per update), and the staffing
panel (Erlang C with the calculation); then the chats waiting for an agent and the latest
tickets. Same permissions and services as ``/api/support``; the console's plumbing
(``console/web.py``) renders it and checks the CSRF token of the form."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from haltguard.console import auth
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
    viewer_for,
)
from haltguard.incidents import service as incidents
from haltguard.security.permissions import Action
from haltguard.status.settings import StatusSettings
from haltguard.support import flows, service
from haltguard.support.chat import ChatHub
from haltguard.support.errors import SupportError
from haltguard.support.models import SupportBulkReply, SupportTicket
from haltguard.support.settings import SupportSettings

SCREEN = Screen("/support", "サポート窓口", "Support desk", Action.SUPPORT_READ)
TICKETS_SHOWN = 20

router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)


def _incident_panel(session: Session, incident_id: int, *, settings: SupportSettings,
                    now: Any) -> dict[str, Any]:
    incident = incidents.get(session, incident_id)
    counts = dict(session.execute(
        select(SupportTicket.status, func.count()).where(
            SupportTicket.incident_id == incident_id).group_by(SupportTicket.status)).all())
    breached = session.scalar(select(func.count()).where(
        SupportTicket.incident_id == incident_id, SupportTicket.first_response_at.is_(None),
        SupportTicket.first_response_due_at < now)) or 0
    updates = incidents.public_updates_since(session, None, incident_id=incident_id)
    latest = updates[-1] if updates else None
    answered = latest is not None and session.scalar(select(SupportBulkReply.id).where(
        SupportBulkReply.incident_id == incident_id,
        SupportBulkReply.update_entry_id == latest.id)) is not None
    try:
        staffing = flows.staffing(session, incident_id=incident_id, arrivals_per_hour=None,
                                  handle_s=flows.HANDLE_S_DEFAULT,
                                  answer_within_s=settings.answer_within_s,
                                  service_level=settings.service_level, now=now)
    except SupportError:
        staffing = None
    return {"incident": incident, "tickets": sum(counts.values()),
            "backlog": sum(v for k, v in counts.items() if k not in service.CLOSED_STATUSES),
            "breached": breached, "latest": latest, "answered": answered,
            "staffing": staffing}


@router.get("/support", dependencies=guard(Action.SUPPORT_READ))
async def support_screen(request: Request) -> Response:
    """The desk at a glance: open incidents' questions, bulk reply, staffing, chats."""
    def work() -> Response:
        operator = auth.authorize(request, Action.SUPPORT_READ)
        operations = operations_of(request)
        settings = operations.part(SupportSettings)
        now = now_of(request)
        with unit_of_work(request) as session:
            panels = [_incident_panel(session, item.id, settings=settings, now=now)
                      for item in service.open_incidents(session)]
            tickets, total = service.list_tickets(session, offset=0, limit=TICKETS_SHOWN)
            rows = [service.ticket_read(ticket, now) for ticket in tickets]
            return render(request, "support.html", viewer_for(request, operator),
                          panels=panels, tickets=rows, total=total,
                          chats=operations.part(ChatHub).list_chats())

    return await run_work(request, work)


@router.post("/support/incidents/{incident_id}/bulk-reply",
             dependencies=guard(Action.SUPPORT_REPLY))
async def support_bulk_reply(incident_id: int, request: Request) -> Response:
    """Answer every ticket linked to the incident with its latest public update."""
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.SUPPORT_REPLY)
        operations = operations_of(request)
        now = now_of(request)
        with unit_of_work(request) as session:
            answer = flows.bulk_reply(
                session, incident_id, update_entry_id=None, macro_name="",
                actor=operator.username, settings=operations.part(SupportSettings),
                status_settings=operations.part(StatusSettings), now=now)
            if answer.created:
                service.audit_change(session, actor=operator.actor,
                                     action="support.bulk_reply", target=f"INC-{incident_id}",
                                     details={"update_entry_id": answer.update_entry_id,
                                              "tickets": answer.tickets_answered,
                                              "mails": answer.mails_queued}, now=now)
        return redirect(f"{PREFIX}/support?notice=done_ok")

    return await run_work(request, work)
