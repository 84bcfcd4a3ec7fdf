"""Detection's HTTP routes under ``/api/detection``: rules, decisions, dry-run. Thin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from haltguard.detection import flows, records
from haltguard.detection.models import (
    DecisionRead,
    DryRunRead,
    DryRunRequest,
    RuleRead,
    RulesCheckRequest,
    RulesCheckResult,
    RuleSetRead,
    RulesReloadRequest,
)
from haltguard.detection.policies import RuleSet
from haltguard.detection.rulesfile import RulesError
from haltguard.detection.service import DetectionService, installed
from haltguard.security.dependencies import AuthenticatedOperator, require
from haltguard.security.permissions import Action
from haltguard.web.bounds import DbId
from haltguard.web.context import context
from haltguard.web.dependencies import ClockDep, SessionDep
from haltguard.web.errors import ERROR_RESPONSES, ApiError
from haltguard.web.pagination import Page, PageParamsDep, make_page, paginate

router = APIRouter(prefix="/api/detection", tags=["detection"], responses=ERROR_RESPONSES)

Reader = Annotated[AuthenticatedOperator, Depends(require(Action.DETECTION_READ))]
Checker = Annotated[AuthenticatedOperator, Depends(require(Action.DETECTION_RULES_CHECK))]
Reloader = Annotated[AuthenticatedOperator, Depends(require(Action.DETECTION_RULES_RELOAD))]
DryRunner = Annotated[AuthenticatedOperator, Depends(require(Action.DETECTION_DRY_RUN))]


def detection_service(request: Request) -> DetectionService:
    """The service the app was given (a part of its context), else this process's."""
    given = context(request).optional_part(DetectionService)
    if given is not None:
        return given
    return installed()  # DetectionUnavailableError: 503 detection_not_running


ServiceDep = Annotated[DetectionService, Depends(detection_service)]


def _ruleset_read(ruleset: RuleSet, dry_run: bool) -> RuleSetRead:
    return RuleSetRead(
        version=ruleset.version, source=ruleset.source, dry_run=dry_run or ruleset.dry_run,
        rules=[RuleRead(
            id=rule.id, signal=rule.signal, match=dict(rule.match),
            condition=rule.condition_text(), classification=rule.classification.value,
            severity=rule.severity.value,
            actions=[action.kind.value + (f" {action.target_template}"
                                          if action.target_template else "")
                     for action in rule.actions],
            dry_run=rule.dry_run, line=rule.line, description=rule.description,
        ) for rule in ruleset.rules],
    )


@router.get("/rules", summary="The rules in force")
def list_rules(_: Reader, detection: ServiceDep) -> RuleSetRead:
    return _ruleset_read(detection.rules, detection.dry_run)


@router.post("/rules/check", summary="Check a rules file without loading it")
def check_rules(body: RulesCheckRequest, _: Checker) -> RulesCheckResult:
    return flows.check_rules(body.text, body.source)


@router.post("/rules/reload", summary="Put a rules file in force, whole or not at all")
def reload_rules(
    body: RulesReloadRequest, operator: Reloader, detection: ServiceDep, session: SessionDep,
    clock: ClockDep,
) -> RuleSetRead:
    """Without ``text``, reloads the service's rules file. A bad file is refused with every
    problem's line (422 ``rules_refused``) and the running rules stay in force."""
    try:
        ruleset = flows.reload_rules(session, detection, text=body.text, source=body.source,
                                     actor=operator.actor, now=clock.now())
    except RulesError as exc:
        session.commit()  # keep the audit entry of the refusal
        problems = "; ".join(str(problem) for problem in exc.problems[:20])
        raise ApiError(422, "rules_refused",
                       f"the rules were refused and the running rules stay in force: "
                       f"{problems}") from None
    return _ruleset_read(ruleset, detection.dry_run)


@router.get("/decisions", summary="The decisions log, newest first")
def list_decisions(
    _: Reader, session: SessionDep, params: PageParamsDep,
    rule_id: Annotated[str | None, Query(max_length=64)] = None,
    dry_run: bool | None = None,
    incident_id: DbId | None = None,
) -> Page[DecisionRead]:
    rows, total = paginate(
        session, records.decisions_query(rule_id=rule_id, dry_run=dry_run,
                                         incident_id=incident_id), params)
    return make_page([DecisionRead.model_validate(row) for row in rows], total, params)


@router.get("/dry-run", summary="Whether global dry-run is on")
def get_dry_run(_: Reader, detection: ServiceDep) -> DryRunRead:
    return DryRunRead(enabled=detection.dry_run)


@router.put("/dry-run", summary="Switch global dry-run (on: rules record but do nothing)")
def put_dry_run(
    body: DryRunRequest, operator: DryRunner, detection: ServiceDep, session: SessionDep,
    clock: ClockDep,
) -> DryRunRead:
    flows.set_dry_run(session, detection, body.enabled, actor=operator.actor,
                      reason=body.reason, now=clock.now())
    return DryRunRead(enabled=detection.dry_run)


