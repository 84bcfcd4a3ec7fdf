"""The status page over HTTP.

Public, without authentication: the page under ``/status/`` (Japanese) and ``/status/en/``
(English) with its JSON API and feeds, and the Statuspage API also at ``/api/v2/``. These
are served from the rendered site in memory (ETag, gzip) and never touch the database on
a request. They are mounts; :class:`StatusPagesMiddleware` answers the same paths before the
app's routing, which is what to install where the app serves the public page under load
(the dedicated server, ``haltguard status serve``, is faster still).

For operators, under ``/api/status``: components and overrides, drafts and publishing,
maintenance and the update cadence, each guarded by one action of the permission table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Query, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from haltguard.common.clock import Clock
from haltguard.responders.settings import ResponderSettings
from haltguard.security.dependencies import AuthenticatedOperator, require
from haltguard.security.permissions import Action
from haltguard.status import flows, service
from haltguard.status.models import (
    CadenceRead,
    ClearOverrideRequest,
    ComponentRead,
    DraftEdit,
    IncidentDraftRequest,
    MaintenanceCreate,
    MaintenanceDraftRequest,
    MaintenanceRead,
    OverrideRequest,
    UpdateRead,
    UpdateState,
)
from haltguard.status.publisher import DirectoryExporter, StatusPublisher
from haltguard.status.settings import StatusSettings
from haltguard.status.site import Site, SiteFile
from haltguard.venue.control import VenueControl
from haltguard.web.bounds import DbId, Key
from haltguard.web.context import context_of
from haltguard.web.dependencies import ClockDep, SessionDep
from haltguard.web.errors import ERROR_RESPONSES
from haltguard.web.pagination import Page, PageParamsDep, make_page, paginate

LOOP_STOP_S_MAX = 10.0
CACHE_CONTROL = "public, max-age=5"

def status_settings_of(app: Any) -> StatusSettings:
    """The app's status settings (a part of its operations context)."""
    return context_of(app).part(StatusSettings)


def new_publisher(
    session_factory: sessionmaker[Session], clock: Clock, settings: StatusSettings,
    venue: VenueControl | None,
) -> StatusPublisher:
    """The one publisher of an operations app: the composition root makes it at build time,
    writing the site to every ``settings.export_dirs`` too."""
    return StatusPublisher(
        session_factory, clock, settings, venue=venue,
        hooks=tuple(DirectoryExporter(path) for path in settings.export_dirs),
    )


def publisher_of(app: Any) -> StatusPublisher:
    """The app's one publisher, made by the composition root (a part of its context)."""
    return context_of(app).part(StatusPublisher)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the status loop with the app when the settings ask for it."""
    settings = status_settings_of(app)
    if settings.loop_interval_s <= 0:
        yield
        return
    thread, stop = flows.start_status_thread(
        publisher_of(app), settings.loop_interval_s,
        responder_settings=context_of(app).optional_part(ResponderSettings),
    )
    try:
        yield
    finally:
        stop.set()
        thread.join(LOOP_STOP_S_MAX)


router = APIRouter(tags=["status"], responses=ERROR_RESPONSES, lifespan=_lifespan)

Reader = Annotated[AuthenticatedOperator, Depends(require(Action.STATUS_READ))]
Drafter = Annotated[AuthenticatedOperator, Depends(require(Action.STATUS_DRAFT))]
Publisher = Annotated[AuthenticatedOperator, Depends(require(Action.STATUS_PUBLISH))]
Overrider = Annotated[AuthenticatedOperator, Depends(require(Action.STATUS_OVERRIDE))]
Scheduler = Annotated[AuthenticatedOperator, Depends(require(Action.STATUS_MAINTENANCE))]


def _up_to_date(request: Request) -> None:
    """Bring components and statuses up to date before an operator's change, so a draft
    names the components that exist and a published update records the statuses shown."""
    publisher_of(request.app).refresh_if_idle()


def _changed(request: Request, tasks: BackgroundTasks) -> None:
    """Refresh the page once this request's transaction is committed."""
    publisher = publisher_of(request.app)
    publisher.invalidate()
    tasks.add_task(publisher.refresh_if_idle)


# --- components ---------------------------------------------------------------------------


@router.get("/api/status/components", summary="Components with their automatic and shown "
            "status and why")
def list_components(
    *, _operator: Reader, session: SessionDep, page: PageParamsDep
) -> Page[ComponentRead]:
    rows, total = paginate(session, service.components_query(), page)
    return make_page([ComponentRead.model_validate(row) for row in rows], total, page)


@router.post("/api/status/components/{component_key}/override",
             summary="Show a status whatever the rules say, until cleared (audited)")
def override_component(
    *, component_key: Key, body: OverrideRequest, operator: Overrider, session: SessionDep,
    clock: ClockDep, request: Request, tasks: BackgroundTasks,
) -> ComponentRead:
    _up_to_date(request)
    component = service.set_override(session, component_key, body.status, body.reason,
                                     actor=operator.username, now=clock.now())
    _changed(request, tasks)
    return ComponentRead.model_validate(component)


@router.post("/api/status/components/{component_key}/clear-override",
             summary="Go back to the status the rules choose (audited)")
def clear_component_override(
    *, component_key: Key, body: ClearOverrideRequest, operator: Overrider,
    session: SessionDep, clock: ClockDep, request: Request, tasks: BackgroundTasks,
) -> ComponentRead:
    component = service.clear_override(session, component_key, body.reason,
                                       actor=operator.username, now=clock.now())
    _changed(request, tasks)
    return ComponentRead.model_validate(component)


# --- updates --------------------------------------------------------------------------------


@router.post("/api/status/incidents/{incident_id}/drafts", status_code=201,
             summary="Draft a public update of an incident from the template")
def draft_incident_update(
    *, incident_id: DbId, body: IncidentDraftRequest, operator: Drafter, session: SessionDep,
    clock: ClockDep, request: Request,
) -> UpdateRead:
    _up_to_date(request)
    update = service.draft_incident_update(
        session, incident_id, body, actor=operator.username, now=clock.now(),
        settings=status_settings_of(request.app),
    )
    return UpdateRead.model_validate(update)


@router.get("/api/status/updates", summary="Public updates, newest first (drafts with "
            "state=draft)")
def list_updates(
    *, _operator: Reader, session: SessionDep, page: PageParamsDep,
    state: Annotated[UpdateState | None, Query()] = None,
    incident_id: Annotated[DbId | None, Query()] = None,
    maintenance_id: Annotated[DbId | None, Query()] = None,
) -> Page[UpdateRead]:
    query = service.updates_query(state=state, incident_id=incident_id,
                                  maintenance_id=maintenance_id)
    rows, total = paginate(session, query, page)
    return make_page([UpdateRead.model_validate(row) for row in rows], total, page)


@router.get("/api/status/updates/{update_id}", summary="One update or draft")
def get_update(*, update_id: DbId, _operator: Reader, session: SessionDep) -> UpdateRead:
    return UpdateRead.model_validate(service.get_update(session, update_id))


@router.patch("/api/status/updates/{update_id}", summary="Edit a draft before publishing")
def edit_update(
    *, update_id: DbId, body: DraftEdit, operator: Drafter, session: SessionDep, clock: ClockDep
) -> UpdateRead:
    update = service.edit_draft(session, update_id, body, actor=operator.username,
                                now=clock.now())
    return UpdateRead.model_validate(update)


@router.post("/api/status/updates/{update_id}/discard", summary="Throw a draft away")
def discard_update(
    *, update_id: DbId, operator: Drafter, session: SessionDep, clock: ClockDep
) -> UpdateRead:
    update = service.discard_draft(session, update_id, actor=operator.username, now=clock.now())
    return UpdateRead.model_validate(update)


@router.post("/api/status/updates/{update_id}/publish",
             summary="Publish a draft: on the page, in the incident timeline, to subscribers")
def publish_update(
    *, update_id: DbId, operator: Publisher, session: SessionDep, clock: ClockDep,
    request: Request, tasks: BackgroundTasks,
) -> UpdateRead:
    _up_to_date(request)
    update = service.publish(session, update_id, actor=operator.username, now=clock.now(),
                             settings=status_settings_of(request.app))
    _changed(request, tasks)
    return UpdateRead.model_validate(update)


# --- maintenance ----------------------------------------------------------------------------


@router.post("/api/status/maintenances", status_code=201,
             summary="Schedule a maintenance; its announcement starts as a draft")
def schedule_maintenance(
    *, body: MaintenanceCreate, operator: Scheduler, session: SessionDep, clock: ClockDep,
    request: Request,
) -> UpdateRead:
    _up_to_date(request)
    _maintenance, draft = service.schedule_maintenance(session, body, actor=operator.username,
                                                       now=clock.now())
    return UpdateRead.model_validate(draft)


@router.get("/api/status/maintenances", summary="Maintenances, latest first")
def list_maintenances(
    *, _operator: Reader, session: SessionDep, page: PageParamsDep
) -> Page[MaintenanceRead]:
    rows, total = paginate(session, service.maintenances_query(), page)
    return make_page([MaintenanceRead.model_validate(row) for row in rows], total, page)


@router.post("/api/status/maintenances/{maintenance_id}/drafts", status_code=201,
             summary="Draft a progress update of a maintenance")
def draft_maintenance_update(
    *, maintenance_id: DbId, body: MaintenanceDraftRequest, operator: Scheduler,
    session: SessionDep, clock: ClockDep,
) -> UpdateRead:
    update = service.draft_maintenance_update(session, maintenance_id, body,
                                              actor=operator.username, now=clock.now())
    return UpdateRead.model_validate(update)


# --- cadence --------------------------------------------------------------------------------


@router.get("/api/status/cadence", summary="When each open incident's next public update "
            "is due")
def list_cadence(
    *, _operator: Reader, session: SessionDep, clock: ClockDep, request: Request,
    page: PageParamsDep,
) -> Page[CadenceRead]:
    rows = service.cadence(session, now=clock.now(), settings=status_settings_of(request.app))
    return make_page(rows[page.offset:page.offset + page.limit], len(rows), page)


# --- the public page --------------------------------------------------------------------------


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return b""


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_file(scope: Scope, send: Send, item: SiteFile) -> None:
    headers = [(b"etag", item.etag.encode()), (b"cache-control", CACHE_CONTROL.encode()),
               (b"vary", b"accept-encoding"), (b"x-content-type-options", b"nosniff")]
    if item.etag.encode() in _header(scope, b"if-none-match"):
        await _send(send, 304, headers)
        return
    body = item.body
    if item.gzipped is not None and b"gzip" in _header(scope, b"accept-encoding"):
        body = item.gzipped
        headers.append((b"content-encoding", b"gzip"))
    headers += [(b"content-type", item.content_type.encode()),
                (b"content-length", str(len(body)).encode())]
    await _send(send, 200, headers, b"" if scope["method"] == "HEAD" else body)


class PublicPages:
    """Serves the rendered site below a mount point; ``base`` is the site path the mount
    maps to (``""`` for ``/status``, ``"api/v2/"`` for ``/api/v2``)."""

    def __init__(self, base: str) -> None:
        self.base = base

    async def _site(self, app: Any) -> Site | None:
        publisher = publisher_of(app)
        if publisher.site is None:
            try:
                return await to_thread.run_sync(publisher.current)
            except Exception:
                return None
        if publisher.needs_refresh() and publisher.queue_refresh():
            loop = asyncio.get_running_loop()
            loop.run_in_executor(None, publisher.run_queued_refresh)
        return publisher.site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        root = scope.get("root_path", "")
        path: str = scope["path"]
        relative = path[len(root):] if path.startswith(root) else path
        if relative == "":
            await _send(send, 308, [(b"location", f"{root}/".encode())])
            return
        if scope["method"] not in {"GET", "HEAD"}:
            await _send(send, 405, [(b"allow", b"GET, HEAD")])
            return
        site = await self._site(scope["app"])
        if site is None:
            await _send(send, 503, [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"retry-after", b"5")],
                        b"the status page is being prepared; try again in a few seconds\n")
            return
        wanted = self.base + relative.lstrip("/")
        item = site.get(wanted)
        if item is None and site.get(wanted + "/") is not None:
            await _send(send, 308, [(b"location", f"{path}/".encode())])
            return
        if item is None:
            await _send(send, 404, [(b"content-type", b"text/plain; charset=utf-8")],
                        b"not found\n")
            return
        await _send_file(scope, send, item)


router.mount("/status", PublicPages(""), name="status-page")
router.mount("/api/v2", PublicPages("api/v2/"), name="statuspage-api")


class StatusPagesMiddleware:
    """Answers the public page's paths before the app's routing: the same responses as the
    mounts above, without walking every operator route first (about ten times the
    requests/s under load). ``app.add_middleware(StatusPagesMiddleware)``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._page = PublicPages("")
        self._api = PublicPages("api/v2/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if path.startswith("/status/"):
                await self._page({**scope, "root_path": root + "/status"}, receive, send)
                return
            if path.startswith("/api/v2/"):
                await self._api({**scope, "root_path": root + "/api/v2"}, receive, send)
                return
        await self.app(scope, receive, send)
