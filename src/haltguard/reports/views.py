"""The report routes: an incident's postmortem (Markdown or HTML) and its system-failure
report for the regulator, each generation noted in the incident's timeline.

They live with the reports rather than the incident routes so the incident domain does not
import the reports built from it; the composition root includes this router beside theirs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy.orm import Session

from haltguard.impact import service as impact
from haltguard.impact.models import ImpactFigures
from haltguard.impact.settings import ImpactSettings
from haltguard.incidents import service
from haltguard.incidents.models import Incident
from haltguard.reports import postmortem as postmortem_report
from haltguard.reports import regulatory as regulatory_report
from haltguard.security.dependencies import AuthenticatedOperator, require
from haltguard.security.permissions import Action
from haltguard.web.bounds import DbId
from haltguard.web.context import OperationsContext
from haltguard.web.dependencies import ClockDep, ContextDep, SessionDep
from haltguard.web.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api", tags=["incidents"], responses=ERROR_RESPONSES)

Reporter = Annotated[AuthenticatedOperator, Depends(require(Action.REPORT_GENERATE))]


def _figures(
    session: Session, incident: Incident, operations: OperationsContext
) -> ImpactFigures | None:
    """The affected customers and refused orders counted from the venue's journal, where
    this service can read it (else the report leaves them to the estimate)."""
    settings = operations.optional_part(ImpactSettings)
    return None if settings is None else impact.figures_for_incident(
        session, settings.data_dir, incident)


@router.get(
    "/incidents/{incident_id}/reports/postmortem",
    summary="The postmortem report, Markdown or HTML",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/markdown": {}, "text/html": {}}}},
)
def postmortem(
    *,
    incident_id: DbId,
    operator: Reporter,
    session: SessionDep,
    clock: ClockDep,
    operations: ContextDep,
    output: Annotated[Literal["markdown", "html"], Query(alias="format")] = "markdown",
) -> Response:
    incident = service.get(session, incident_id)
    document = postmortem_report.build(session, incident, _figures(session, incident, operations))
    service.record_report(
        session,
        incident,
        report="postmortem",
        output=output,
        actor=operator.username,
        now=clock.now(),
    )
    if output == "html":
        return HTMLResponse(postmortem_report.render_html(document))
    return PlainTextResponse(
        postmortem_report.render_markdown(document), media_type="text/markdown; charset=utf-8"
    )


@router.get(
    "/incidents/{incident_id}/reports/regulatory",
    summary="The system-failure report (Japanese) for the regulator, for review",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/markdown": {}}}},
)
def regulatory(
    *, incident_id: DbId, operator: Reporter, session: SessionDep, clock: ClockDep,
    operations: ContextDep,
) -> Response:
    incident = service.get(session, incident_id)
    document = regulatory_report.build(session, incident, _figures(session, incident, operations))
    service.record_report(
        session,
        incident,
        report="regulatory",
        output="markdown",
        actor=operator.username,
        now=clock.now(),
    )
    return PlainTextResponse(
        regulatory_report.render_markdown(document), media_type="text/markdown; charset=utf-8"
    )
