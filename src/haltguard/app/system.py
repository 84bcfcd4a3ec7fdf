"""Assemble everything ``haltguard serve`` runs from one :class:`ServeConfig`.

    one port ──► SystemApp ──► /v1/..., /venue/docs ──► the venue's HTTP API ─┐
                           └─► everything else ─────► the operations service   │
                                (incidents, operators, on-call, audit; /api)   │
                                      │ VenueControl (in process or HTTP)      ▼
                                      └────────────────────────────────► VenueRuntime
                                                                          (journal in data_dir)

The venue runs in this process on ``data_dir`` unless ``venue.url`` names one elsewhere; the
operations service opens its database (SQLite in ``data_dir`` or PostgreSQL), brings the
schema up to date and, on a database with no operator, creates the first admin. With the
demo, the venue gets its JPY markets, funded accounts and a synthetic order flow.

Detection runs in the same process: the rules engine (its actions on its own worker), the
market detectors on the venue's thread, the health monitors and security feeds on a
scheduler, the alert intake on the operations API, and load shedding in front of the venue.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Receive, Scope, Send

from haltguard.app.config import ConfigError, ServeConfig
from haltguard.app.first_admin import FirstAdmin, create_first_admin
from haltguard.db.session import session_scope
from haltguard.detection import service as detection
from haltguard.detection.actions import ActionExecutor
from haltguard.detection.feed import GuardedVenueRuntime, VenueFeed, protect_in_process
from haltguard.detection.intake import MAPPING_ENV, TOKENS_ENV, IntakeSettings
from haltguard.detection.load import SheddingSettings
from haltguard.detection.monitors import (
    MonitorScheduler,
    ProcessCheck,
    SignalOutbox,
    add_venue_monitors,
    database_probe,
    service_sink,
)
from haltguard.detection.rulesfile import DEFAULT_RULES_PATH, RulesError
from haltguard.detection.security_detectors import (
    OperatorNetworkDetector,
    OperatorNetworkMiddleware,
    add_security_feeds,
    operator_networks_from_env,
    parse_networks,
)
from haltguard.gateway.app import create_venue_app
from haltguard.gateway.control import HttpVenueControl, InProcessVenueControl
from haltguard.gateway.demo import DemoFlow, set_up_demo
from haltguard.gateway.runtime import RuntimeLimits, VenueRuntime
from haltguard.journal import JournalError
from haltguard.responders import service as responders
from haltguard.security.config import utc_now
from haltguard.security.errors import SecurityError
from haltguard.venue.control import VenueControl, VenueControlError
from haltguard.web.app import create_app
from haltguard.web.settings import Settings

log = logging.getLogger(__name__)

VENUE_PATH_PREFIXES = ("/v1/", "/venue/")
"""Requests under these go to the venue's API; everything else to the operations service."""
VENUE_DOCS_PATH = "/venue/docs"
VENUE_OPENAPI_PATH = "/venue/openapi.json"
GENERATED_TOKEN_BYTES = 24


class StartError(RuntimeError):
    """The system could not start; the message says what failed and what to check."""


class SystemApp:
    """Both APIs on one port: the venue's under ``/v1`` (its documentation under
    ``/venue``), the operations service's under ``/api`` (documentation at ``/docs``).

    Lifespan events go to the operations service, which runs the escalation loop.
    """

    def __init__(self, operations: FastAPI, venue: FastAPI | None) -> None:
        self.operations = operations
        self.venue = venue

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.venue is not None
            and scope["type"] in {"http", "websocket"}
            and str(scope["path"]).startswith(VENUE_PATH_PREFIXES)
        ):
            await self.venue(scope, receive, send)
        else:
            await self.operations(scope, receive, send)


def add_venue_docs(venue_app: FastAPI) -> None:
    """Serve the venue's OpenAPI document and browser under ``/venue``, since ``/docs`` and
    ``/openapi.json`` belong to the operations service on the shared port."""

    @venue_app.get(VENUE_OPENAPI_PATH, include_in_schema=False)
    def venue_openapi() -> JSONResponse:
        return JSONResponse(venue_app.openapi())

    @venue_app.get(VENUE_DOCS_PATH, include_in_schema=False)
    def venue_docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=VENUE_OPENAPI_PATH,
                                   title="haltguard venue - API documentation")


def served_paths(app: FastAPI) -> set[str]:
    """Every path ``app`` answers on, routers included (newer FastAPI includes them lazily
    and lists them through ``iter_route_contexts``)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: Iterable[Any] = iterate(app.routes) if iterate is not None else app.routes
    return {str(route.path) for route in routes if hasattr(route, "path")}


def shown_database_url(url: str) -> str:
    """The database URL with any password hidden, for banners and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by whoever opens it
        return url


@dataclass
class System:
    """The running parts; :meth:`stop` shuts them down in reverse order of starting."""

    config: ServeConfig
    operations: FastAPI
    venue_control: VenueControl
    venue_admin_token: str
    venue_token_generated: bool
    runtime: VenueRuntime | None = None
    detection: detection.DetectionService | None = None
    monitors: MonitorScheduler | None = None
    market_feed: VenueFeed | None = None  # the market detectors on the venue's thread
    venue_app: FastAPI | None = None
    demo_flow: DemoFlow | None = None
    first_admin: FirstAdmin | None = None
    remote_venue_problem: str = ""
    oncall_people: int = 0
    _stopped: bool = field(default=False, repr=False)

    def asgi_app(self) -> SystemApp:
        return SystemApp(self.operations, self.venue_app)

    def stop(self) -> None:
        """Stop the monitors and the demo flow, then the venue (it finishes what is queued
        and writes a snapshot), then detection (it finishes the decisions queued), then close
        the database. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self.monitors is not None:
            self.monitors.stop()
        if self.demo_flow is not None:
            self.demo_flow.stop()
        if self.runtime is not None:
            self.runtime.stop()
        if self.detection is not None:
            self.detection.stop()
            detection.uninstall()
        if isinstance(self.venue_control, HttpVenueControl):
            self.venue_control.close()
        self.operations.state.engine.dispose()


def _start_venue(config: ServeConfig) -> VenueRuntime:
    limits = RuntimeLimits(
        checkpoint_every=config.checkpoint_every, queue_depth_max=config.queue_depth_max
    )
    try:
        return GuardedVenueRuntime(config.data_dir, limits=limits).start()
    except (JournalError, RuntimeError, OSError) as exc:
        raise StartError(
            f"cannot start the venue on {config.data_dir}: {exc}. Check the journal with "
            f"`haltguard venue verify {config.data_dir}`."
        ) from exc


def _open_operations(config: ServeConfig, venue_control: VenueControl) -> FastAPI:
    settings = Settings(database_url=config.database_url, data_dir=config.data_dir)
    try:
        return create_app(
            settings,
            venue_control=venue_control,
            security_settings=config.security,
            responder_settings=config.paging,
        )
    except SQLAlchemyError as exc:
        raise StartError(
            f"cannot open the operations database {shown_database_url(config.database_url)}: "
            f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}. Check database.url (or "
            f"HALTGUARD_DATABASE_URL) and that the server is running."
        ) from exc


def _start_detection(system: System) -> None:
    """Load the rules, wire their actions to the venue and the database, install the service
    as this process's detection door and start it; refused rules stop the start."""
    config, operations = system.config, system.operations
    rules_path = config.detection_rules_file or DEFAULT_RULES_PATH
    try:
        service = detection.DetectionService(rules_path=rules_path)
    except (RulesError, OSError) as exc:
        raise ConfigError(
            f"detection.rules_file {rules_path} (from "
            f"{config.origins['detection.rules_file']}) cannot be used: {exc}"
        ) from exc
    if isinstance(system.runtime, GuardedVenueRuntime):
        system.market_feed = protect_in_process(
            system.runtime, service, session_factory=operations.state.session_factory,
            clock=operations.state.clock, responder_settings=config.paging,
        )
    else:
        service.set_executor(ActionExecutor(
            session_factory=operations.state.session_factory, venue=system.venue_control,
            clock=operations.state.clock, responder_settings=config.paging,
        ))
    system.detection = service.start()
    detection.install(service)


def _configure_intake(config: ServeConfig, operations: FastAPI) -> None:
    """Give the alert intake the configured tokens and mapping, and watch where operators act
    from when the allow-list came from the file (from the environment it already is)."""
    try:
        operations.state.intake_settings = IntakeSettings.from_env({
            TOKENS_ENV: ",".join(config.intake_tokens),
            MAPPING_ENV: str(config.intake_mapping or ""),
        })
    except ValueError as exc:
        raise ConfigError(f"detection.intake_mapping: {exc}") from exc
    if config.detection_networks and not operator_networks_from_env():
        operations.add_middleware(
            OperatorNetworkMiddleware,
            detector=OperatorNetworkDetector(parse_networks(",".join(config.detection_networks))),
            outbox=SignalOutbox(service_sink),
        )


def _start_monitors(system: System) -> MonitorScheduler:
    """The health monitors (venue, journal disk, database) and the security feeds (audit
    log, withdrawals), on one scheduler whose results ``/metrics`` shows."""
    operations, runtime = system.operations, system.runtime
    scheduler = MonitorScheduler(metrics=operations.state.detection_metrics)
    scheduler.add("database", "operations", ProcessCheck(database_probe(operations.state.engine)))
    if runtime is not None:
        add_venue_monitors(scheduler, runtime.status, system.config.data_dir)
    add_security_feeds(
        scheduler, service_sink, session_factory=operations.state.session_factory,
        venue_data_dir=system.config.data_dir if runtime is not None else None,
        venue_last_seq=runtime.status().last_seq if runtime is not None else 0,
    )
    return scheduler.start()


def _first_admin(config: ServeConfig, operations: FastAPI, now: datetime) -> FirstAdmin | None:
    try:
        return create_first_admin(
            operations.state.session_factory,
            username=config.first_admin_username,
            email=config.first_admin_email,
            settings=config.security,
            now=now,
        )
    except SecurityError as exc:
        raise ConfigError(f"first_admin: {exc.message}") from exc


def start_system(config: ServeConfig, *, demo: bool) -> System:
    """Start the venue (unless it runs elsewhere), open the operations service, create the
    first admin if nobody can log in yet, and with ``demo`` set up the demo venue.

    Raises :class:`ConfigError` for settings that cannot work together and
    :class:`StartError` for anything else that stops the start; nothing is left running.
    """
    if demo and config.venue_url:
        raise ConfigError(
            f"--demo needs the venue in this process, but venue.url is {config.venue_url} "
            f"(from {config.origins['venue.url']}); leave out --demo or venue.url"
        )
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartError(f"cannot create the data directory {config.data_dir}: {exc}") from exc
    token = config.venue_admin_token or secrets.token_urlsafe(GENERATED_TOKEN_BYTES)
    runtime: VenueRuntime | None = None
    venue_control: VenueControl
    if config.venue_url:
        venue_control = HttpVenueControl(config.venue_url, config.venue_admin_token)
    else:
        runtime = _start_venue(config)
        venue_control = InProcessVenueControl(runtime)
    try:
        operations = _open_operations(config, venue_control)
        system = System(
            config=config,
            operations=operations,
            venue_control=venue_control,
            venue_admin_token=token,
            venue_token_generated=not config.venue_admin_token,
            runtime=runtime,
        )
    except BaseException:
        if runtime is not None:
            runtime.stop()
        raise
    try:
        system.first_admin = _first_admin(config, operations, utc_now())
        with session_scope(operations.state.session_factory) as session:
            system.oncall_people = responders.list_people(session, limit=1)[1]
        _configure_intake(config, operations)
        _start_detection(system)
        assert system.detection is not None
        if runtime is not None:
            system.venue_app = create_venue_app(
                runtime, token,
                load_shedding=SheddingSettings(order_capacity_per_s=config.order_capacity_per_s),
            )
            system.venue_app.state.load_guard.attach(system.detection)
            add_venue_docs(system.venue_app)
            if demo:
                set_up_demo(runtime)
                system.demo_flow = DemoFlow(runtime, rate_per_s=config.demo_rate_per_s).start()
        else:
            system.remote_venue_problem = _reach(venue_control)
        system.monitors = _start_monitors(system)
    except BaseException:
        system.stop()
        raise
    return system


def _reach(venue_control: VenueControl) -> str:
    """Why the remote venue cannot be reached now ("" when it can); the service still
    starts, and protective actions report the same until the venue is back."""
    try:
        venue_control.market_states()
    except VenueControlError as exc:
        log.warning("the venue is not reachable: %s", exc)
        return str(exc)
    return ""
