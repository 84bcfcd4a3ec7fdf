"""The console's other screens: audit (with its verify button), the status page's admin,
on-call, detection rules and compensation. Each route declares the permission the API's route
for the same data or change demands, and calls the same service."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from haltguard.compensation import service as compensation
from haltguard.compensation.flows import PayoutRunner, propose_run
from haltguard.compensation.models import RunProposal
from haltguard.compensation.settings import CompensationSettings
from haltguard.console import auth, previews
from haltguard.console.errors import FormValueError
from haltguard.console.settings import AUDIT_PAGE_ROWS_MAX
from haltguard.console.web import (
    PREFIX,
    SECURITY_HEADERS,
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
from haltguard.detection.records import decisions_query, rule_sets
from haltguard.responders import directory
from haltguard.responders.models import OverrideIn, ScheduleIn
from haltguard.security import audit
from haltguard.security.permissions import Action
from haltguard.status import service as status
from haltguard.status.models import (
    ClearOverrideRequest,
    DraftEdit,
    MaintenanceCreate,
    OverrideRequest,
    UpdateState,
)
from haltguard.status.rules import ComponentStatus
from haltguard.status.settings import StatusSettings
from haltguard.status.views import publisher_of

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)
CHOICES_SHOWN_MAX = 200


# --- the other screens -----------------------------------------------------------------------


@router.get("/audit", dependencies=guard(Action.AUDIT_READ))
async def audit_page(request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.AUDIT_READ)
        actor = request.query_params.get("actor", "").strip()[:200] or None
        action = request.query_params.get("action", "").strip()[:200] or None
        with unit_of_work(request) as session:
            entries, total = audit.list_entries(session, offset=0, limit=AUDIT_PAGE_ROWS_MAX,
                                                actor=actor, action=action)
            return render(request, "audit.html", viewer_for(request, operator), entries=entries,
                          total=total, actor=actor or "", action=action or "",
                          details=audit.entry_details, verification=None)

    return await run_work(request, work)


@router.post("/audit/verify", dependencies=guard(Action.AUDIT_VERIFY))
async def audit_verify(request: Request) -> Response:
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.AUDIT_VERIFY)
        with unit_of_work(request) as session:
            verification = audit.verify(session)
            entries, total = audit.list_entries(session, offset=0, limit=AUDIT_PAGE_ROWS_MAX)
            return render(request, "audit.html", viewer_for(request, operator), entries=entries,
                          total=total, actor="", action="", details=audit.entry_details,
                          verification=verification)

    return await run_work(request, work)


@router.get("/status-admin", dependencies=guard(Action.STATUS_READ))
async def status_admin(request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.STATUS_READ)
        with unit_of_work(request) as session:
            components = list(session.scalars(status.components_query()))
            maintenances = list(session.scalars(status.maintenances_query().limit(50)))
            published = list(session.scalars(
                status.updates_query(state=UpdateState.PUBLISHED).limit(50)))
            drafts = [draft for draft in session.scalars(
                status.updates_query(state=UpdateState.DRAFT).limit(50))
                if draft.maintenance_id is not None]
            return render(request, "status_admin.html", viewer_for(request, operator),
                          components=components, maintenances=maintenances,
                          published=published, component_statuses=list(ComponentStatus),
                          maintenance_drafts=drafts)

    return await run_work(request, work)


@router.get("/oncall", dependencies=guard(Action.ONCALL_READ))
async def oncall_page(request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.ONCALL_READ)
        now = now_of(request)
        with unit_of_work(request) as session:
            schedules, _ = directory.list_schedules(session, offset=0, limit=50)
            rows = [(directory.schedule_out(schedule),
                     directory.on_call(session, schedule.name, now)) for schedule in schedules]
            people, _ = directory.list_people(session, offset=0, limit=200)
            return render(request, "oncall.html", viewer_for(request, operator), rows=rows,
                          people=[person.handle for person in people])

    return await run_work(request, work)


@router.get("/rules", dependencies=guard(Action.DETECTION_READ))
async def rules_page(request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.DETECTION_READ)
        with unit_of_work(request) as session:
            decisions = list(session.scalars(decisions_query().limit(100)))
            sets = rule_sets(session, limit=10)
            return render(request, "rules.html", viewer_for(request, operator),
                          decisions=decisions, sets=sets)

    return await run_work(request, work)



# --- compensation ----------------------------------------------------------------------------


def money_text(amount_minor: int, scale: int) -> str:
    """Minor units as the decimal a person reads (the integers stay integers until here)."""
    return f"{Decimal(amount_minor).scaleb(-scale):,f}"


@router.get("/compensation", dependencies=guard(Action.COMPENSATION_READ))
async def compensation_list(request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.COMPENSATION_READ)
        with unit_of_work(request) as session:
            runs, total = compensation.list_runs(session, offset=0, limit=50)
            reads = [compensation.run_read(session, run) for run in runs]
            policies, references = proposal_choices(
                operations_of(request).part(CompensationSettings))
            return render(request, "compensation.html", viewer_for(request, operator), runs=reads,
                          total=total, run=None, money=money_text, policies=policies,
                          references=references)

    return await run_work(request, work)


@router.get("/compensation/{run_id}", dependencies=guard(Action.COMPENSATION_READ))
async def compensation_run(run_id: int, request: Request) -> Response:
    def work() -> Response:
        operator = auth.authorize(request, Action.COMPENSATION_READ)
        runner = operations_of(request).part(PayoutRunner)
        with unit_of_work(request) as session:
            run = compensation.run_read(session, compensation.get_run(session, run_id))
            payout = (compensation.payout_read(session, run_id)  # none before it is paid
                      if compensation.payout_of(session, run_id) is not None else None)
            return render(request, "compensation.html", viewer_for(request, operator), runs=[],
                          total=0, run=run, payout=payout, paying=runner.running(run_id),
                          money=money_text)

    return await run_work(request, work)


@router.post("/compensation/{run_id}/{decision}", dependencies=guard(Action.COMPENSATION_READ))
async def compensation_decide(run_id: int, decision: str, request: Request) -> Response:
    """Approve exactly the digest reviewed (never the proposer), or start the payout."""
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        if decision not in ("approve", "pay"):
            raise FormValueError("approve or pay", message_ja="承認か支払いを選んでください")
        operations = operations_of(request)
        if decision == "approve":
            operator = auth.authorize(request, Action.COMPENSATION_APPROVE)
            with unit_of_work(request) as session:
                compensation.approve(session, run_id, approver=operator.actor,
                                     digest=form.get("digest"), note=form.get("note"),
                                     now=now_of(request))
        else:
            operator = auth.authorize(request, Action.COMPENSATION_PAY)
            with unit_of_work(request) as session:
                compensation.get_run(session, run_id)
            operations.part(PayoutRunner).start(run_id, venue_of(request), actor=operator.actor)
        return redirect(f"{PREFIX}/compensation/{run_id}?notice=done_ok")

    return await run_work(request, work)


# --- status page admin -----------------------------------------------------------------------


def _status_change(request: Request, change: Callable[[Session], object]) -> Response:
    """A change customers can see: the page brought up to date first and refreshed after, as
    the status routes do."""
    publisher = publisher_of(request.app)
    publisher.refresh_if_idle()
    with unit_of_work(request) as session:
        change(session)
    publisher.invalidate()
    publisher.refresh_if_idle()
    return redirect(f"{PREFIX}/status-admin?notice=done_ok")


@router.post("/status-admin/components/{component_key}/{decision}",
             dependencies=guard(Action.STATUS_OVERRIDE))
async def component_override(component_key: str, decision: str, request: Request) -> Response:
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.STATUS_OVERRIDE)
        now = now_of(request)
        if decision == "override":
            wanted = OverrideRequest(status=form.choice("status", ComponentStatus),
                                     reason=form.get("reason"))
            return _status_change(request, lambda session: status.set_override(
                session, component_key, wanted.status, wanted.reason, actor=operator.username,
                now=now))
        if decision == "clear":
            cleared = ClearOverrideRequest(reason=form.get("reason"))
            return _status_change(request, lambda session: status.clear_override(
                session, component_key, cleared.reason, actor=operator.username, now=now))
        raise FormValueError("override or clear", message_ja="手動設定か解除を選んでください")

    return await run_work(request, work)


@router.post("/status-admin/maintenances", dependencies=guard(Action.STATUS_MAINTENANCE))
async def maintenance_schedule(request: Request) -> Response:
    """Schedule a maintenance; its announcement starts as a draft (published from the API or
    the CLI after review)."""
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.STATUS_MAINTENANCE)
        wanted = MaintenanceCreate.model_validate({
            "scheduled_for": form.get("scheduled_for"),
            "scheduled_until": form.get("scheduled_until"),
            "components": form.all("components"), "name_ja": form.get("name_ja") or None,
            "name_en": form.get("name_en") or None})
        return _status_change(request, lambda session: status.schedule_maintenance(
            session, wanted, actor=operator.username, now=now_of(request)))

    return await run_work(request, work)



# --- compensation: propose a run -------------------------------------------------------------


def _optional_time(form_value: str) -> str | None:
    return form_value.strip() or None


@router.post("/compensation", dependencies=guard(Action.COMPENSATION_PROPOSE))
async def compensation_propose(request: Request) -> Response:
    """Compute a run from the journal and store it, as ``POST /api/compensation/runs`` does;
    a second operator approves it on the run's page."""
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.COMPENSATION_PROPOSE)
        cutoff = form.get("cutoff").strip()
        fields: dict[str, object] = {
            "incident_id": form.integer("incident_id"), "policies": form.all("policies"),
            "from_time": _optional_time(form.get("from_time")),
            "to_time": _optional_time(form.get("to_time")), "note": form.get("note").strip()}
        fields["cutoff_seq" if cutoff.isdigit() else "cutoff_time"] = cutoff or None
        reference_name = form.get("reference_name").strip()
        if reference_name:
            source = form.get("reference_source").strip()
            fields["references"] = [{
                "name": reference_name,
                "csv" if source.lower().endswith(".csv") else "market": source or None,
                "from_time": _optional_time(form.get("reference_from")),
                "to_time": _optional_time(form.get("reference_to"))}]
        proposal = RunProposal.model_validate(fields)
        operations = operations_of(request)
        with unit_of_work(request) as session:
            run = propose_run(session, proposal,
                              settings=operations.part(CompensationSettings),
                              actor=operator.actor, now=now_of(request))
            run_id = run.id
        return redirect(f"{PREFIX}/compensation/{run_id}?notice=done_ok")

    return await run_work(request, work)


def proposal_choices(settings: CompensationSettings) -> tuple[list[str], list[str]]:
    """The policy files and reference CSVs a proposal may name (names only, as the API)."""
    policies = sorted(path.name for path in settings.policies_dir.glob("*.yaml"))
    references = (sorted(path.name for path in settings.reference_dir.glob("*.csv"))
                  if settings.reference_dir.is_dir() else [])
    return policies[:CHOICES_SHOWN_MAX], references[:CHOICES_SHOWN_MAX]


# --- on-call: schedules and overrides --------------------------------------------------------


@router.post("/oncall/schedules", dependencies=guard(Action.ONCALL_MANAGE))
async def schedule_put(request: Request) -> Response:
    """Create or replace a schedule's rotation (its overrides are kept), as ``PUT
    /api/oncall/schedules/{name}``."""
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.ONCALL_MANAGE)
        members = [member.strip() for member in form.get("members").replace("\n", ",")
                   .split(",") if member.strip()]
        wanted = ScheduleIn.model_validate({
            "name": form.get("name").strip(), "description": form.get("description").strip(),
            "timezone": form.get("timezone").strip() or "Asia/Tokyo",
            "start_date": form.get("start_date").strip(),
            "handoff": form.get("handoff").strip() or "09:00",
            "rotation_days": form.integer("rotation_days", 7), "members": members})
        with unit_of_work(request) as session:
            directory.put_schedule(session, wanted, actor=operator.actor,
                                   clock=operations_of(request).clock)
        return redirect(f"{PREFIX}/oncall?notice=done_ok")

    return await run_work(request, work)


@router.post("/oncall/schedules/{name}/overrides", dependencies=guard(Action.ONCALL_MANAGE))
async def override_add(name: str, request: Request) -> Response:
    """Someone covers the schedule for a while, as ``POST .../overrides``."""
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.ONCALL_MANAGE)
        wanted = OverrideIn.model_validate({
            "person": form.get("person").strip(), "start": form.get("start").strip(),
            "end": form.get("end").strip(), "reason": form.get("reason").strip()})
        for moment in (wanted.start, wanted.end):
            if moment.tzinfo is None:
                raise FormValueError(
                    "give the times with their zone, e.g. 2025-01-06T18:00:00+09:00",
                    message_ja="時刻はタイムゾーン付きで入力してください"
                               "(例: 2025-01-06T18:00:00+09:00)")
        with unit_of_work(request) as session:
            directory.add_override(session, name, wanted, actor=operator.actor,
                                   clock=operations_of(request).clock)
        return redirect(f"{PREFIX}/oncall?notice=done_ok")

    return await run_work(request, work)


@router.post("/oncall/schedules/{name}/overrides/{override_id}/remove",
             dependencies=guard(Action.ONCALL_MANAGE))
async def override_remove(name: str, override_id: int, request: Request) -> Response:
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.ONCALL_MANAGE)
        with unit_of_work(request) as session:
            directory.remove_override(session, name, override_id, actor=operator.actor,
                                      clock=operations_of(request).clock)
        return redirect(f"{PREFIX}/oncall?notice=done_ok")

    return await run_work(request, work)


# --- status page: preview a draft before publishing ------------------------------------------


@router.post("/previews/{update_id}", dependencies=guard(Action.STATUS_DRAFT))
async def preview_draft(update_id: int, request: Request) -> Response:
    """The public page and the subscribers' notice as publishing the draft (with the texts
    as edited in the form) would make them; nothing is saved."""
    form = await read_form(request)

    def work() -> Response:
        auth.check_csrf(request, form.single())
        operator = auth.authorize(request, Action.STATUS_DRAFT)
        operations = operations_of(request)
        edit = DraftEdit(body_ja=form.get("body_ja") or None,
                         body_en=form.get("body_en") or None)
        shown = previews.preview_update(
            operations.session_factory, update_id, edit, actor=operator.username,
            now=now_of(request), settings=operations.part(StatusSettings))
        token = operations.part(previews.PreviewStore).keep(shown.pages)
        return render(request, "preview.html", viewer_for(request, operator), preview=shown,
                      token=token, body_ja=edit.body_ja or shown.body_ja,
                      body_en=edit.body_en or shown.body_en)

    return await run_work(request, work)


@router.get("/previews/{token}/{language}", dependencies=guard(Action.STATUS_DRAFT))
async def preview_page(token: str, language: str, request: Request) -> Response:
    """One language of a preview's public page, shown in the preview screen's frame."""

    def work() -> Response:
        auth.authorize(request, Action.STATUS_DRAFT)
        page = operations_of(request).part(previews.PreviewStore).page(token[:64], language)
        if page is None:
            raise FormValueError(
                "this preview has expired; preview the draft again",
                message_ja="このプレビューは期限切れです。もう一度プレビューしてください")
        response = HTMLResponse(page)
        response.headers.update({**SECURITY_HEADERS, "X-Frame-Options": "SAMEORIGIN",
                                 "Content-Security-Policy":
                                 previews.PREVIEW_CONTENT_SECURITY_POLICY})
        return response

    return await run_work(request, work)
