"""HTTP routes of impact analysis, thin: an incident's impact and any window's, as JSON (each
list cut to ``limit`` items, the counts are totals) or one list whole as CSV. Everything
needs ``impact.read``. Analysis reads the journal on disk: a long window takes seconds, run
off the event loop (these are plain ``def`` routes)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse

from haltguard.impact import service
from haltguard.impact.analysis import analyse
from haltguard.impact.errors import InvalidWindowError
from haltguard.impact.models import ImpactReport, ImpactWindow, to_ns
from haltguard.impact.settings import LIST_ITEMS_MAX, ImpactSettings
from haltguard.security.dependencies import AuthenticatedOperator, require
from haltguard.security.permissions import Action
from haltguard.web.bounds import AssetCode, Count, DbId, MarketSymbol
from haltguard.web.dependencies import ContextDep, SessionDep
from haltguard.web.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api", tags=["impact"], responses=ERROR_RESPONSES)

Reader = Annotated[AuthenticatedOperator, Depends(require(Action.IMPACT_READ))]
ListName = Literal[
    "accounts", "refused_orders", "uncancellable_orders", "refused_withdrawals", "caught_orders"
]
Markets = Annotated[list[MarketSymbol], Query(alias="market", max_length=100,
                                                description="Only these markets (repeat).")]
Assets = Annotated[list[AssetCode], Query(alias="asset", max_length=100,
                                           description="Only withdrawals of these assets.")]
Limit = Annotated[int, Query(ge=0, le=LIST_ITEMS_MAX)]


def impact_settings(operations: ContextDep) -> ImpactSettings:
    """Where the journal is (a part of the operations context)."""
    return operations.part(ImpactSettings)


SettingsDep = Annotated[ImpactSettings, Depends(impact_settings)]


def _csv(report: ImpactReport, list_name: str) -> PlainTextResponse:
    return PlainTextResponse(service.csv_text(report, list_name),
                             media_type="text/csv; charset=utf-8")


@router.get("/incidents/{incident_id}/impact", summary="Who the incident affected and why")
def incident_impact(
    *, incident_id: DbId, operator: Reader, session: SessionDep, settings: SettingsDep,
    markets: Markets = [], limit: Limit = LIST_ITEMS_MAX,  # noqa: B006 - FastAPI copies it
) -> ImpactReport:
    report = service.analyse_incident(session, settings.data_dir, incident_id,
                                      frozenset(markets))
    return service.shortened(report, limit)


@router.get(
    "/incidents/{incident_id}/impact.csv",
    summary="One list of the incident's impact, whole, as CSV",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
def incident_impact_csv(
    *, incident_id: DbId, operator: Reader, session: SessionDep, settings: SettingsDep,
    list_name: Annotated[ListName, Query(alias="list")] = "accounts",
    markets: Markets = [],  # noqa: B006 - FastAPI copies it
) -> PlainTextResponse:
    report = service.analyse_incident(session, settings.data_dir, incident_id,
                                      frozenset(markets))
    return _csv(report, list_name)


def window_query(
    *,
    from_seq: Count | None = None,
    to_seq: Count | None = None,
    from_time: Annotated[datetime | None, Query(alias="from")] = None,
    to_time: Annotated[datetime | None, Query(alias="to")] = None,
    markets: Markets = [],  # noqa: B006 - FastAPI copies it
    assets: Assets = [],  # noqa: B006 - FastAPI copies it
) -> ImpactWindow:
    """A window from the query: ``from_seq``/``to_seq`` or ``from``/``to`` (ISO 8601 with a
    zone), ``market`` and ``asset`` repeated."""
    for name, moment in (("from", from_time), ("to", to_time)):
        if moment is not None and moment.utcoffset() is None:
            raise InvalidWindowError(
                f"{name} must carry a time zone, e.g. 2026-03-02T09:00:00+09:00",
                message_ja=f"{name} にはタイムゾーンを付けてください",
            )
    return ImpactWindow(
        from_seq=from_seq, to_seq=to_seq,
        from_ts_ns=None if from_time is None else to_ns(from_time),
        to_ts_ns=None if to_time is None else to_ns(to_time),
        markets=frozenset(markets), assets=frozenset(assets),
    )


WindowDep = Annotated[ImpactWindow, Depends(window_query)]


@router.get("/impact", summary="Who a window of the journal affected and why")
def window_impact(
    *, window: WindowDep, operator: Reader, settings: SettingsDep,
    limit: Limit = LIST_ITEMS_MAX,
) -> ImpactReport:
    return service.shortened(analyse(settings.data_dir, window), limit)


@router.get(
    "/impact.csv",
    summary="One list of a window's impact, whole, as CSV",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
def window_impact_csv(
    *, window: WindowDep, operator: Reader, settings: SettingsDep,
    list_name: Annotated[ListName, Query(alias="list")] = "accounts",
) -> PlainTextResponse:
    return _csv(analyse(settings.data_dir, window), list_name)
