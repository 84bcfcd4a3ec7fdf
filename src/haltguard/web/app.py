"""``create_app``: the operations service (incidents, operators, on-call) as one FastAPI app.

It opens the database (migrating it to the newest schema unless told not to), reads the
security and paging settings (so a bad setting stops the service at start, not at the first
login or page), puts what the routes need on ``app.state`` (``session_factory``, ``clock`` and
``now``, ``venue_control``, ``security_settings``, ``responder_settings``) and includes every
domain's router that is installed; every route lives under ``/api``. While the app runs, the
responders' escalation loop pages the next level of every unacknowledged page. The OpenAPI
document is at ``/openapi.json`` (browsable at ``/docs``).
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
from haltguard.detection.intake_views import install_operations_detection
from haltguard.incidents.views import router as incidents_router
from haltguard.responders.service import (
    ResponderSettings,
    settings_from_env,
    start_escalation_thread,
)
from haltguard.security.config import SecuritySettings
from haltguard.venue.control import VenueControl
from haltguard.web.clock import Clock, SystemClock
from haltguard.web.errors import install_error_handlers
from haltguard.web.settings import Settings

# Routers of other domains, included when their module is installed.
OPTIONAL_ROUTERS = ("haltguard.security.views", "haltguard.responders.views",
                    "haltguard.detection.views", "haltguard.status.views",
                    "haltguard.notify.views")

ESCALATION_INTERVAL_S_DEFAULT = 5.0
"""How often the escalation loop looks for pages whose acknowledgement timed out."""
ESCALATION_STOP_S_MAX = 10.0
"""How long shutdown waits for a tick in progress (a page being delivered) to finish."""

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
    security_settings: SecuritySettings | None = None,
    responder_settings: ResponderSettings | None = None,
    escalation_interval_s: float | None = ESCALATION_INTERVAL_S_DEFAULT,
) -> FastAPI:
    """The app for ``settings``. ``venue_control`` is the venue the protective actions go
    to (none: those routes answer 503); ``clock`` defaults to the system clock.

    Security and paging settings not given are read from the environment now, so a bad
    value fails here with a message naming the variable. ``escalation_interval_s`` of
    ``None`` leaves escalation to another process (``haltguard oncall run-loop``).
    """
    chosen_security = security_settings or SecuritySettings.from_env()
    chosen_paging = responder_settings or settings_from_env()
    database = engine or make_engine(settings.database_url)
    if settings.migrate_on_start:
        upgrade(database)
    owns_engine = engine is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        escalation = None
        if escalation_interval_s is not None:
            # Read at start, not at creation: tests and the system replace the settings.
            escalation = start_escalation_thread(
                app.state.session_factory, app.state.clock, escalation_interval_s,
                settings=app.state.responder_settings,
            )
        try:
            yield
        finally:
            if escalation is not None:
                thread, stop = escalation
                stop.set()
                thread.join(ESCALATION_STOP_S_MAX)
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
    app.state.security_settings = chosen_security
    app.state.responder_settings = chosen_paging
    install_error_handlers(app)
    app.include_router(incidents_router)
    for router in _optional_routers():
        app.include_router(router)
    install_operations_detection(app)  # alert intake, /metrics, operator-network watch
    return app
