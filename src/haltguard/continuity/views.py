"""HTTP routes of continuity, thin: the plan's check, the risk register and its heat map,
insurance (and the policies an incident may claim on), training, vulnerability findings and
the software-update log.

Reading needs ``continuity.read`` (responders and above: an incident's responders see the
policy and its claim contacts); changing a record ``continuity.manage`` (commanders).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import HTMLResponse, Response

from haltguard.continuity import flows, service
from haltguard.continuity.assess import overdue_reviews
from haltguard.continuity.bcp import load_register
from haltguard.continuity.heatmap import Rating, render_svg
from haltguard.continuity.models import (
    FindingClose,
    FindingRead,
    FindingStatus,
    ImportSummary,
    IncidentInsurance,
    InsuranceCreate,
    InsuranceRead,
    Severity,
    TrainingComplete,
    TrainingCreate,
    TrainingRead,
    UpdateCreate,
    UpdateRead,
)
from haltguard.continuity.scanners import ScanFormat, parse_scan
from haltguard.continuity.settings import ContinuitySettings
from haltguard.reports.document import render_html
from haltguard.security.dependencies import AuthenticatedOperator, require
from haltguard.security.permissions import Action
from haltguard.web.bounds import DbId
from haltguard.web.dependencies import ClockDep, ContextDep, SessionDep
from haltguard.web.errors import ERROR_RESPONSES
from haltguard.web.pagination import Page, PageParamsDep, make_page

router = APIRouter(prefix="/api", tags=["continuity"], responses=ERROR_RESPONSES)

Reader = Annotated[AuthenticatedOperator, Depends(require(Action.CONTINUITY_READ))]
Manager = Annotated[AuthenticatedOperator, Depends(require(Action.CONTINUITY_MANAGE))]
SCAN_IMPORT_ROUTE = "/api/continuity/findings/import"


def continuity_settings(operations: ContextDep) -> ContinuitySettings:
    """The app's continuity settings (a part of its operations context)."""
    return operations.part(ContinuitySettings)


SettingsDep = Annotated[ContinuitySettings, Depends(continuity_settings)]


def _paged(items: list[Any], params: Any) -> Page[Any]:
    return make_page(items[params.offset:params.offset + params.limit], len(items), params)


# --- the plan and the register -------------------------------------------------------------


@router.get("/continuity/check")
def check(_: Reader, session: SessionDep, clock: ClockDep,
          settings: SettingsDep) -> dict[str, Any]:
    """The plan judged against the evidence now: pass/fail per service, each piece of
    evidence with its date and problems (nothing is written)."""
    outcome = flows.check_plan(session, settings, clock.now(), write=False)
    assessment = outcome.assessment
    return {
        "passed": assessment.passed,
        "checked_at": assessment.at,
        "plan_file": str(settings.plan_file),
        "findings": [{"ja": f.ja, "en": f.en} for f in assessment.findings],
        "services": [{
            "id": verdict.service.id, "passed": verdict.passed,
            "rto_s": verdict.service.rto_s, "rpo_s": verdict.service.rpo_s,
            "evidence": [{
                "kind": row.kind.value, "subject": row.subject.en, "at": row.at,
                "measured": row.measured.en, "target": row.target.en, "passed": row.passed,
                "problems": [{"ja": p.ja, "en": p.en} for p in row.problems],
            } for row in verdict.rows],
        } for verdict in assessment.services],
    }


@router.get("/continuity/check.html", response_class=HTMLResponse)
def check_html(_: Reader, session: SessionDep, clock: ClockDep,
               settings: SettingsDep) -> HTMLResponse:
    """The same check as the HTML report ``haltguard bcp check`` writes (ja/en, heat maps)."""
    outcome = flows.check_plan(session, settings, clock.now(), write=False)
    return HTMLResponse(render_html(outcome.document))


@router.get("/continuity/risks")
def list_risks(_: Reader, clock: ClockDep, settings: SettingsDep,
               params: PageParamsDep) -> Page[dict[str, Any]]:
    """The register's risks with their scores and whether their review is overdue."""
    register = load_register(settings.register_file)
    overdue = {risk.id for risk in overdue_reviews(register, clock.now().date())}
    return _paged([{**risk.model_dump(mode="json"), "score": risk.score,
                    "residual_score": risk.residual_score, "review_overdue": risk.id in overdue}
                   for risk in register.risks], params)


@router.get("/continuity/risks/heatmap.svg", response_class=Response)
def heatmap(_: Reader, settings: SettingsDep,
            rating: Annotated[Rating, Query()] = Rating.INHERENT) -> Response:
    """The register's heat map (SVG) by its inherent or residual rating."""
    return Response(render_svg(load_register(settings.register_file), rating),
                    media_type="image/svg+xml")


# --- insurance -------------------------------------------------------------------------------


@router.get("/continuity/insurance")
def list_insurance(_: Reader, session: SessionDep, clock: ClockDep,
                   params: PageParamsDep) -> Page[InsuranceRead]:
    today = clock.now().date()
    return _paged([service.insurance_read(policy, today)
                   for policy in service.list_insurance(session)], params)


@router.post("/continuity/insurance", status_code=201)
def add_insurance(body: InsuranceCreate, operator: Manager, session: SessionDep,
                  clock: ClockDep) -> InsuranceRead:
    now = clock.now()
    policy = service.add_insurance(session, body, actor=operator.actor, now=now)
    return service.insurance_read(policy, now.date())


@router.get("/incidents/{incident_id}/insurance")
def incident_insurance(incident_id: DbId, _: Reader, session: SessionDep,
                       clock: ClockDep) -> IncidentInsurance:
    """The policies in force that cover the incident's category, with claim contacts."""
    return service.insurance_for_incident(session, incident_id, clock.now().date())


# --- training --------------------------------------------------------------------------------


@router.get("/continuity/training")
def list_training(_: Reader, session: SessionDep, clock: ClockDep, params: PageParamsDep,
                  overdue: bool = False) -> Page[TrainingRead]:
    today = clock.now().date()
    return _paged([service.training_read(record, today) for record in
                   service.list_training(session, today=today, overdue_only=overdue)], params)


@router.post("/continuity/training", status_code=201)
def add_training(body: TrainingCreate, operator: Manager, session: SessionDep,
                 clock: ClockDep) -> TrainingRead:
    now = clock.now()
    return service.training_read(
        service.add_training(session, body, actor=operator.actor, now=now), now.date())


@router.post("/continuity/training/{record_id}/complete")
def complete_training(record_id: DbId, body: TrainingComplete, operator: Manager,
                      session: SessionDep, clock: ClockDep) -> list[TrainingRead]:
    """Mark it done; with ``next_due_on`` the next round is assigned (both are returned)."""
    now = clock.now()
    done, following = service.complete_training(session, record_id, body,
                                                actor=operator.actor, now=now)
    return [service.training_read(record, now.date())
            for record in (done, following) if record is not None]


# --- vulnerability findings ----------------------------------------------------------------


@router.get("/continuity/findings")
def list_findings(_: Reader, session: SessionDep, clock: ClockDep, params: PageParamsDep, *,
                  status: FindingStatus | None = None, severity: Severity | None = None,
                  overdue: bool = False) -> Page[FindingRead]:
    today = clock.now().date()
    return _paged([service.finding_read(finding, today) for finding in service.list_findings(
        session, today=today, status=status, overdue_only=overdue, severity=severity)],
        params)


@router.post(SCAN_IMPORT_ROUTE.removeprefix("/api"), status_code=201)
def import_findings(
    *, operator: Manager, session: SessionDep, clock: ClockDep, settings: SettingsDep,
    scan: Annotated[dict[str, Any], Body(
        description="The scanner's output as it wrote it (pip-audit JSON's "
                    "{\"dependencies\": ...} form, or SARIF 2.1.0).")],
    scan_format: Annotated[ScanFormat, Query(alias="format")],
    owner: Annotated[str, Query(min_length=1, max_length=64)],
) -> ImportSummary:
    """Import a scan: new findings get deadlines by severity, known ones are seen again."""
    parsed = parse_scan(json.dumps(scan), f"{scan_format.value} upload", scan_format,
                        pip_audit_severity=settings.pip_audit_severity)
    return service.import_scan(session, parsed, owner=owner, actor=operator.actor,
                               now=clock.now(), settings=settings)


@router.post("/continuity/findings/{finding_id}/close")
def close_finding(finding_id: DbId, body: FindingClose, operator: Manager,
                  session: SessionDep, clock: ClockDep) -> FindingRead:
    now = clock.now()
    finding = service.close_finding(session, finding_id, body, actor=operator.actor, now=now)
    return service.finding_read(finding, now.date())


# --- the software-update log ---------------------------------------------------------------


@router.get("/continuity/updates")
def list_updates(_: Reader, session: SessionDep, params: PageParamsDep) -> Page[UpdateRead]:
    return _paged([service.update_read(session, update)
                   for update in service.list_updates(session)], params)


@router.post("/continuity/updates", status_code=201)
def log_update(body: UpdateCreate, operator: Manager, session: SessionDep,
               clock: ClockDep) -> UpdateRead:
    """Record an applied update (in a status-page maintenance, closing the findings it
    fixes)."""
    update = service.log_update(session, body, actor=operator.actor, now=clock.now())
    return service.update_read(session, update)
