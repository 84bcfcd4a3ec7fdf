"""The composition root of the operations service: ``create_app`` builds it as one FastAPI
app (incidents, reports, operators, on-call, detection, the status page, notices, impact,
compensation).

It opens the database (migrating it to the newest schema unless told not to), takes each
domain's settings as plain objects (``app/config.py`` built and checked them), builds the one
:class:`~haltguard.web.context.OperationsContext` the routes read (the database, the clock,
the venue control and each domain's parts: its settings, the login throttle, the notices'
rate limiter, the status publisher, the alert intake), includes every domain's router by
name, and subscribes the incident timeline to page events. Every route lives under ``/api``
(and the status page under ``/status``). While the app runs, the responders' escalation loop
pages the next level of every unacknowledged page. Every request body is read whole, within
the size of its route and the receive deadline of ``settings``, before a route sees it
(``413`` / ``408`` otherwise). The OpenAPI document is at ``/openapi.json`` (browsable at
``/docs``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine

from haltguard import __version__
from haltguard.backup import views as backup_views
from haltguard.common.clock import Clock, SystemClock
from haltguard.common.network import IPNetwork
from haltguard.compensation import views as compensation_views
from haltguard.compensation.flows import PayoutRunner
from haltguard.compensation.settings import CompensationSettings
from haltguard.console import backups_screen as backup_console
from haltguard.console import continuity_screen as continuity_console
from haltguard.console import corrections_screen as correction_console
from haltguard.console import failover_screen as failover_console
from haltguard.console import views as console_views
from haltguard.console.navigation import ScreenRegistry
from haltguard.console.settings import ConsoleSettings
from haltguard.continuity import views as continuity_views
from haltguard.continuity.settings import ContinuitySettings
from haltguard.corrections import views as correction_views
from haltguard.corrections.settings import CorrectionsSettings
from haltguard.customers import views as customer_views
from haltguard.customers.flows import CustomerProtection
from haltguard.customers.settings import CustomerSettings
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory
from haltguard.detection import intake_views
from haltguard.detection import views as detection_views
from haltguard.detection.intake import IntakeSettings
from haltguard.detection.metrics import DetectionMetrics
from haltguard.detection.monitors import SignalSink, service_sink
from haltguard.detection.service import DetectionService
from haltguard.impact import views as impact_views
from haltguard.impact.settings import ImpactSettings
from haltguard.incidents import paging as incident_paging
from haltguard.incidents import views as incident_views
from haltguard.notify import views as notify_views
from haltguard.notify.settings import NotifySettings
from haltguard.reports import views as report_views
from haltguard.responders import views as responder_views
from haltguard.responders.service import start_escalation_thread
from haltguard.responders.settings import ResponderSettings
from haltguard.security import views as security_views
from haltguard.security.config import SecuritySettings
from haltguard.security.throttle import LoginThrottle
from haltguard.status import views as status_views
from haltguard.status.settings import StatusSettings
from haltguard.support import console as support_console
from haltguard.support import pages as support_pages
from haltguard.support import views as support_views
from haltguard.support.chat import ChatHub
from haltguard.support.intake import TicketWriter
from haltguard.support.search import AnswerCache
from haltguard.support.settings import SupportSettings
from haltguard.venue.control import VenueControl
from haltguard.web.asgi import BodyLimitMiddleware, BodyLimits
from haltguard.web.context import OperationsContext, attach, context_of, parts_of
from haltguard.web.errors import install_error_handlers
from haltguard.web.metrics import install_metrics
from haltguard.web.ratelimit import PublicLinkLimits, RateLimiter
from haltguard.web.settings import Settings

PUBLIC_BODY_ROUTES = (
    "/api/auth/login",
    "/api/notify/subscriptions/email",
    "/api/notify/subscriptions/webhook",
    "/api/notify/confirm",
    "/api/notify/unsubscribe",
)
"""Routes anyone may post to without logging in: ``Settings.public_body_bytes_max``."""
DOCUMENT_BODY_ROUTES = (
    "/api/detection/alerts/alertmanager",
    "/api/detection/alerts/webhook",
    "/api/detection/rules/check",
    "/api/detection/rules/reload",
    "/api/oncall/config",
    "/api/oncall/contact-tree",
    "/api/incidents/{incident_id}/postmortem",
    continuity_views.SCAN_IMPORT_ROUTE,
)
"""Routes that take a whole document: ``Settings.document_body_bytes_max``. Every other
route takes ``Settings.body_bytes_max``."""

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


def body_limits(settings: Settings) -> BodyLimits:
    """The body limits of every operations route, from ``settings``."""
    return BodyLimits(
        bytes_max=settings.body_bytes_max,
        receive_s_max=settings.body_receive_s_max,
        routes=tuple((route, settings.public_body_bytes_max) for route in PUBLIC_BODY_ROUTES)
        + tuple((route, settings.document_body_bytes_max) for route in DOCUMENT_BODY_ROUTES),
    )


def _include_routers(app: FastAPI) -> None:
    """Every domain's routes, each router named here (the order is the OpenAPI document's)."""
    app.include_router(incident_views.router)
    app.include_router(report_views.router)
    app.include_router(security_views.router)
    app.include_router(responder_views.router)
    app.include_router(detection_views.router)
    app.include_router(status_views.router)
    app.include_router(notify_views.router)
    app.include_router(intake_views.router)
    app.include_router(compensation_views.router)
    app.include_router(impact_views.router)
    app.include_router(backup_views.router)
    app.include_router(correction_views.router)
    app.include_router(support_views.router)
    app.include_router(support_pages.pages_router)  # the help centre, public, at /help
    app.include_router(support_console.router)  # the desk's console screen, /console/support
    app.include_router(backup_console.router)  # /console/backups
    app.include_router(correction_console.router)  # /console/corrections
    app.include_router(continuity_console.router)  # /console/continuity
    app.include_router(failover_console.router)  # /console/failover
    app.include_router(customer_views.router)
    app.include_router(customer_views.pages)  # the security centre, public, at /security
    app.include_router(continuity_views.router)
    app.include_router(console_views.router)  # the operator console, at /console


def create_app(
    settings: Settings,
    *,
    venue_control: VenueControl | None = None,
    clock: Clock | None = None,
    engine: Engine | None = None,
    security_settings: SecuritySettings | None = None,
    responder_settings: ResponderSettings | None = None,
    notify_settings: NotifySettings | None = None,
    status_settings: StatusSettings | None = None,
    intake_settings: IntakeSettings | None = None,
    operator_networks: tuple[IPNetwork, ...] = (),
    escalation_interval_s: float | None = ESCALATION_INTERVAL_S_DEFAULT,
    signal_sink: SignalSink = service_sink,
    detection_service: DetectionService | None = None,
    compensation_settings: CompensationSettings | None = None,
    console_settings: ConsoleSettings | None = None,
    corrections_settings: CorrectionsSettings | None = None,
    support_settings: SupportSettings | None = None,
    customer_settings: CustomerSettings | None = None,
    continuity_settings: ContinuitySettings | None = None,
) -> FastAPI:
    """The app for ``settings``. ``venue_control`` is the venue the protective actions go
    to (none: those routes answer 503); ``clock`` defaults to the system clock.

    Each domain's settings not given are that domain's defaults; the environment is never
    read here (``app/config.py`` builds the settings from the file and the environment).
    ``operator_networks`` is the detection allow-list (empty: no watch on where operators
    act from). ``escalation_interval_s`` of ``None`` leaves escalation to another process
    (``haltguard oncall run-loop``). Alerts taken in and operator-network signals go to
    ``signal_sink`` (this process's detection service unless told otherwise); the detection
    routes use ``detection_service`` where given, else this process's.
    """
    database = engine or make_engine(settings.database_url)
    if settings.migrate_on_start:
        upgrade(database)
    owns_engine = engine is None
    incident_paging.subscribe()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        escalation = None
        if escalation_interval_s is not None:
            operations = context_of(app)
            escalation = start_escalation_thread(
                operations.session_factory, operations.clock, escalation_interval_s,
                settings=operations.part(ResponderSettings),
            )
        try:
            yield
        finally:
            if escalation is not None:
                thread, stop = escalation
                stop.set()
                thread.join(ESCALATION_STOP_S_MAX)
            console_views.stop(app)
            if owns_engine:
                database.dispose()

    app = FastAPI(
        title="haltguard operations",
        summary="Incident command for a crypto-asset exchange's trading interruptions.",
        description=DESCRIPTION,
        version=__version__,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limits=body_limits(settings))
    _include_routers(app)
    intake_views.watch_operator_networks(app, operator_networks, signal_sink)
    registry = install_metrics(app)  # /metrics: HTTP and detection metrics

    chosen_clock = clock or SystemClock()
    chosen_security = security_settings or SecuritySettings()
    chosen_status = status_settings or StatusSettings()
    chosen_notify = notify_settings or NotifySettings()
    session_factory = make_session_factory(database)
    parts = [
        chosen_security,
        LoginThrottle(chosen_security),
        responder_settings or ResponderSettings(),
        chosen_notify,
        RateLimiter(),
        PublicLinkLimits(chosen_notify.link_requests_per_minute),
        chosen_status,
        status_views.new_publisher(session_factory, chosen_clock, chosen_status,
                                   venue_control),
        intake_views.intake_parts(intake_settings, signal_sink),
        DetectionMetrics(registry),
        registry,
        ImpactSettings(data_dir=settings.data_dir),
        corrections_settings or CorrectionsSettings(journal_dir=settings.data_dir),
    ]
    chosen_compensation = compensation_settings or CompensationSettings(
        journal_dir=settings.data_dir, reference_dir=settings.data_dir / "compensation")
    parts += [chosen_compensation,
              PayoutRunner(session_factory, chosen_compensation, chosen_clock)]
    parts.append(failover_console.FailoverBoard())  # serve hands it the replica set
    parts.append(continuity_settings or ContinuitySettings(
        drill_report_dirs=(settings.data_dir / "drills",),
        report_dir=settings.data_dir / "continuity" / "reports"))
    parts.append(CustomerProtection(customer_settings or CustomerSettings(), session_factory,
                                    chosen_clock, signal_sink))
    chosen_support = support_settings or SupportSettings()
    parts += [chosen_support, ChatHub(session_factory, chosen_support, chosen_clock),
              TicketWriter(session_factory, chosen_support, chosen_clock), AnswerCache()]
    if detection_service is not None:
        parts.append(detection_service)
    parts += console_views.console_parts(settings.data_dir, session_factory, venue_control,
                                         console_settings)
    attach(app, OperationsContext(
        settings=settings, engine=database, session_factory=session_factory,
        clock=chosen_clock, venue_control=venue_control, parts=parts_of(*parts),
    ))
    context_of(app).part(ScreenRegistry).register(support_console.SCREEN)  # /console/support
    context_of(app).part(ScreenRegistry).register(backup_console.SCREEN)  # /console/backups
    context_of(app).part(ScreenRegistry).register(correction_console.SCREEN)  # /console/corrections
    context_of(app).part(ScreenRegistry).register(continuity_console.SCREEN)  # /console/continuity
    context_of(app).part(ScreenRegistry).register(failover_console.SCREEN)  # /console/failover
    return app
