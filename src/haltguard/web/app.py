"""``create_app``: the operations service (incidents, operators, on-call) as one FastAPI app.

It opens the database (migrating it to the newest schema unless told not to), puts what the
routes need on ``app.state`` (``session_factory``, ``clock`` and ``now``, ``venue_control``)
and includes every domain's router that is installed. The OpenAPI document is at
``/openapi.json`` (browsable at ``/docs``).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine

from haltguard import __version__
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory
from haltguard.incidents.views import router as incidents_router
from haltguard.venue.control import VenueControl
from haltguard.web.clock import Clock, SystemClock
from haltguard.web.errors import install_error_handlers
from haltguard.web.settings import Settings

# Routers of other domains, included when their module is installed.
OPTIONAL_ROUTERS = ("haltguard.security.views", "haltguard.responders.views")

DESCRIPTION = """\
The operations service of haltguard: incidents and their runbooks, protective actions on the
venue (halt, cancel-only, kill switch, withdrawal freeze, resume with four eyes), operators
and the audit chain, on-call and paging, postmortem and regulator reports.

Authenticate with `Authorization: Bearer <api token>` or the session cookie from
`POST /api/auth/login`. Every error is `{"error": {"code": ..., "message": ...}}`. Every list
is paginated with `limit` (at most 200) and `offset`; the answer says `total` and
`next_offset`.
"""


def _optional_routers() -> list[APIRouter]:
    routers = []
    for name in OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        router: APIRouter = module.router
        routers.append(router)
    return routers


def create_app(
    settings: Settings,
    *,
    venue_control: VenueControl | None = None,
    clock: Clock | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    """The app for ``settings``. ``venue_control`` is the venue the protective actions go
    to (none: those routes answer 503); ``clock`` defaults to the system clock."""
    database = engine or make_engine(settings.database_url)
    if settings.migrate_on_start:
        upgrade(database)
    owns_engine = engine is None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_engine:
            database.dispose()

    app = FastAPI(
        title="haltguard operations",
        summary="Incident command for a crypto-asset exchange's trading interruptions.",
        description=DESCRIPTION,
        version=__version__,
        lifespan=lifespan,
    )
    chosen_clock = clock or SystemClock()
    app.state.settings = settings
    app.state.engine = database
    app.state.session_factory = make_session_factory(database)
    app.state.clock = chosen_clock
    app.state.now = chosen_clock.now  # what the security dependencies read
    app.state.venue_control = venue_control
    install_error_handlers(app)
    app.include_router(incidents_router)
    for router in _optional_routers():
        app.include_router(router)
    return app
