"""Assemble everything ``haltguard serve`` runs from one :class:`ServeConfig`.

    one port ──► SystemApp ──► /v1/..., /venue/... ──► load shedding, flood limits
                           │                           └─► VenueForwarder ─► venue process
                           │                                                 (VenueSupervisor
                           │                                                  restarts it)
                           └─► everything else ─────► the operations service (/api, /status,
                                (incidents, operators,  /metrics)
                                 on-call, audit)  ──── HttpVenueControl ─► venue process
                  detection ◄── the venue's journal (followed on a thread) ◄─ journal in data_dir

By default (``venue.process``) the venue is a child process (``haltguard venue run``) that a
:class:`~haltguard.app.supervisor.VenueSupervisor` restarts after any exit it did not ask
for; it recovers from snapshot + journal, so nothing acknowledged is lost, and every such
exit raises the detection signal ``venue.process_exited``. This process keeps the one public
port and forwards ``/v1`` to it. With ``venue.process = false`` the venue runs on a thread
of this process (quicker to start, for tests); with ``venue.url`` it runs elsewhere.

The operations service opens its database (SQLite in ``data_dir`` or PostgreSQL), brings the
schema up to date and, on a database with no operator, creates the first admin. Detection
runs here: the rules engine (its actions on its own worker), the market detectors (following
the journal, or on the venue's thread when it runs here), the health monitors and security
feeds on a scheduler, the alert intake on the operations API, and load shedding in front of
the venue. The status loop keeps the public page current and the notice outbox delivers
what is published.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastapi.routing
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from haltguard.adapters.control import AdapterVenueControl
from haltguard.app.config import ConfigError, ServeConfig, venue_process_environment
from haltguard.app.first_admin import FirstAdmin, create_first_admin
from haltguard.app.forwarding import ChildStatus, VenueForwarder
from haltguard.app.operations import create_app
from haltguard.app.replicas import (
    PRIMARY_URL,
    FollowingForwarder,
    ReplicaSet,
    start_replica_set,
)
from haltguard.app.supervisor import ProcessExit, SupervisorSettings, VenueSupervisor
from haltguard.app.venue_adapter import check_adapter_file, open_adapter
from haltguard.app.venue_app import create_venue_app
from haltguard.app.venue_process import add_venue_docs
from haltguard.backup.schedule import BackupMetrics, BackupScheduler
from haltguard.common.clock import Clock, utc_now
from haltguard.console.failover_screen import FailoverBoard, ReplicaSetReader
from haltguard.continuity.flows import ReminderLoop
from haltguard.customers.flows import customer_front
from haltguard.customers.gateway import CustomerGateway
from haltguard.customers.mail import NoticeMailLoop
from haltguard.db.keys import Keyring, KeyringError, private_directory
from haltguard.db.session import make_engine, session_scope
from haltguard.detection import service as detection
from haltguard.detection.actions import ActionExecutor
from haltguard.detection.feed import (
    VenueFeed,
    follow_journal,
    protect_in_process,
)
from haltguard.detection.load import venue_load_signals
from haltguard.detection.metrics import DetectionMetrics
from haltguard.detection.monitors import (
    MonitorScheduler,
    ProcessCheck,
    add_venue_monitors,
    database_probe,
    deliver,
    service_sink,
)
from haltguard.detection.rulesfile import DEFAULT_RULES_PATH, RulesError
from haltguard.detection.security_detectors import (
    LoginBlockEnforcer,
    add_security_feeds,
)
from haltguard.detection.signals import Signal
from haltguard.drill import service as drills
from haltguard.drill.scenario import Targets
from haltguard.gateway.app import venue_body_limits
from haltguard.gateway.context import venue_context_of
from haltguard.gateway.control import HttpVenueControl, InProcessVenueControl
from haltguard.gateway.demo import DemoFlow, set_up_demo
from haltguard.gateway.fastlane import with_fast_lane
from haltguard.gateway.front import PublicFront
from haltguard.gateway.limits import SheddingSettings
from haltguard.gateway.metrics import LoadMetrics
from haltguard.gateway.runtime import RuntimeLimits, VenueRuntime
from haltguard.gateway.shedding import LoadGuard, LoadSheddingMiddleware
from haltguard.journal import JournalError
from haltguard.notify import service as notify
from haltguard.notify.outbox import OutboxWorker
from haltguard.notify.settings import NotifySettings
from haltguard.replication.errors import ReplicationError
from haltguard.replication.failover import FailoverRecorder
from haltguard.replication.models import Replication
from haltguard.replication.processes import PrimaryChange
from haltguard.responders import service as responders
from haltguard.responders.settings import ResponderSettings
from haltguard.security.dependencies import login_throttle_of
from haltguard.security.errors import SecurityError
from haltguard.security.throttle import LoginThrottle
from haltguard.status import flows as status_flows
from haltguard.status.settings import StatusSettings
from haltguard.status.views import StatusPagesMiddleware, publisher_of
from haltguard.support.fastlane import with_contact_form_lane
from haltguard.support.loop import SupportLoop
from haltguard.support.settings import SupportSettings
from haltguard.venue.control import VenueControl, VenueControlError, VenueObservation
from haltguard.venue.engine import Venue
from haltguard.web.asgi import BodyLimitMiddleware
from haltguard.web.context import context_of

if TYPE_CHECKING:
    from haltguard.app.reference_watch import ReferenceWatch

log = logging.getLogger(__name__)

VENUE_PATH_PREFIXES = ("/v1/", "/venue/")
"""Requests under these go to the venue's API; everything else to the operations service."""
GENERATED_TOKEN_BYTES = 24
SERVE_FILE_NAME = "serve.json"
VENUE_LOG_FILE_NAME = "venue-process.log"
VENUE_PROCESS_HOST = "127.0.0.1"
PROCESS_EXITED_SIGNAL = "venue.process_exited"
JOURNAL_RETRY_S = 0.5
THREAD_STOP_S_MAX = 10.0


class StartError(RuntimeError):
    """The system could not start; the message says what failed and what to check."""


class SystemApp:
    """Both APIs on one port: the venue's under ``/v1`` (its documentation under
    ``/venue``), the operations service's under ``/api`` (documentation at ``/docs``).

    Lifespan events go to the operations service, which runs the escalation loop.
    """

    def __init__(self, operations: FastAPI, venue: ASGIApp | None) -> None:
        self.operations = operations
        self.venue = venue
        self.operations_front = with_contact_form_lane(operations)  # support/fastlane.py

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.venue is not None
            and scope["type"] in {"http", "websocket"}
            and str(scope["path"]).startswith(VENUE_PATH_PREFIXES)
        ):
            await self.venue(scope, receive, send)
        else:
            await self.operations_front(scope, receive, send)


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


class JournalFeed(VenueFeed):
    """The market detectors fed from the journal, remembering the last command fed."""

    def __init__(self, service: detection.DetectionService, *, last_seq: int) -> None:
        super().__init__(service)
        self.last_seq = last_seq

    def on_batch(self, venue: Venue, applied: Any) -> None:
        super().on_batch(venue, applied)
        if applied:
            self.last_seq = int(applied[-1].seq)


class JournalFollower:
    """:class:`JournalFeed` on its own thread, following the venue's journal.

    The venue is another process that may die and come back; whatever the reader meets (a
    torn tail the restarted venue cuts off, a segment rotated away) it starts again after
    the last command it fed, so no command is fed twice or skipped.
    """

    def __init__(self, data_dir: Path, feed: JournalFeed) -> None:
        self.data_dir = data_dir
        self.feed = feed
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="journal-follower",
                                        daemon=True)

    def start(self) -> JournalFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(THREAD_STOP_S_MAX)

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                follow_journal(self.data_dir, self.feed, from_seq=self.feed.last_seq + 1,
                               stop=self._stop)
            except Exception as exc:
                self.restarts += 1
                log.warning("following the journal stopped after seq %d (%s); following "
                            "again", self.feed.last_seq, exc)
                self._stop.wait(JOURNAL_RETRY_S)


@dataclass
class System:
    """The running parts; :meth:`stop` shuts them down in reverse order of starting.

    It is what the drills run on: it implements
    :class:`~haltguard.drill.surface.DrillSurface` (structurally), the properties below the
    fields giving the drills what they may read of the configuration and the operations
    service."""

    config: ServeConfig
    operations: FastAPI
    venue_control: VenueControl
    venue_admin_token: str
    venue_token_generated: bool
    runtime: VenueRuntime | None = None  # the venue on a thread of this process
    supervisor: VenueSupervisor | None = None  # the venue as a supervised child process
    replicas: ReplicaSet | None = None  # the venue as primary + standby on replicated journal
    detection: detection.DetectionService | None = None
    monitors: MonitorScheduler | None = None
    market_feed: VenueFeed | None = None  # the market detectors
    journal_follower: JournalFollower | None = None  # feeds them when the venue is a child
    child_status: ChildStatus | None = None
    venue_app: FastAPI | None = None
    venue_front: ASGIApp | None = None  # what answers /v1: the fast lane, or the forwarder
    public_front: PublicFront | None = None  # plain orders on the public port, before ASGI
    load_guard: LoadGuard[Signal] | None = None
    login_throttle: LoginThrottle | None = None
    demo_flow: DemoFlow | None = None
    first_admin: FirstAdmin | None = None
    remote_venue_problem: str = ""
    oncall_people: int = 0
    outbox_worker: OutboxWorker | None = None
    support_loop: SupportLoop | None = None  # the support mail receiver, replies, SLA alerts
    notice_mail_loop: NoticeMailLoop | None = None  # customers' notices by email
    backup_scheduler: BackupScheduler | None = None  # with backup.target_url set
    status_loop: status_flows.StatusLoop | None = None
    reminder_loop: ReminderLoop | None = None  # continuity reminders, when configured
    reference_watch: ReferenceWatch | None = None  # with reference.markets set
    drills_enabled: bool = False
    drill_token: str = field(default_factory=lambda: secrets.token_urlsafe(GENERATED_TOKEN_BYTES))
    api_url: str = ""  # the operations service, once serving
    venue_api_url: str = ""  # where `{venue_api_url}/v1/...` answers
    started_at: datetime = field(default_factory=utc_now)
    _serve_file: Path | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def drill_targets(self) -> Targets:
        """The drills' pass/fail limits, from the configuration's ``[drill]`` section."""
        return self.config.drill_targets

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def remote_venue_url(self) -> str:
        """``venue.url``: the venue runs elsewhere ("" when it runs on :attr:`data_dir`)."""
        return self.config.venue_url

    @property
    def order_capacity_per_s(self) -> int:
        return self.config.order_capacity_per_s

    @property
    def demo_rate_per_s(self) -> float:
        return self.config.demo_rate_per_s

    @property
    def responder_settings(self) -> ResponderSettings:
        return self.config.paging

    @property
    def session_factory(self) -> sessionmaker[Session]:
        """Sessions on the operations database (the operations service's own factory)."""
        return context_of(self.operations).session_factory

    @property
    def clock(self) -> Clock:
        return context_of(self.operations).clock

    @property
    def database_engine(self) -> Engine:
        return context_of(self.operations).engine

    @property
    def status_settings(self) -> StatusSettings:
        """The status page's settings, as :func:`_start_status` gave them to the service."""
        return context_of(self.operations).part(StatusSettings)

    @property
    def status_url(self) -> str:
        return self.config.status_public_url

    def asgi_app(self) -> SystemApp:
        return SystemApp(self.operations, self.venue_front or self.venue_app)

    def server_options(self) -> dict[str, Any]:
        """The uvicorn options of every server answering :meth:`asgi_app`: the public front
        door for plain orders (``gateway/front.py``) when the venue is a process of its own."""
        if self.public_front is None:
            return {}
        return {"http": self.public_front.protocol_factory(HttpToolsProtocol)}

    def write_serve_file(self) -> Path:
        """``data_dir/serve.json`` (mode 0600): where this running system answers (and its
        venue process, when supervised) and the drill token, for ``haltguard drill`` on the
        same machine. Removed by :meth:`stop`."""
        path = self.config.data_dir / SERVE_FILE_NAME
        document = {
            "pid": os.getpid(),
            "api_url": self.api_url,
            "venue_api_url": self.venue_api_url,
            "status_url": self.status_url,
            "venue_process_url": self.supervisor.url if self.supervisor is not None else "",
            "drill_token": self.drill_token,
            "data_dir": str(self.config.data_dir.resolve()),
            "started_at": self.started_at.isoformat(),
        }
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
        self._serve_file = path
        return path

    def stop(self) -> None:
        """Stop the loops and monitors, the demo flow, then the venue (it finishes what is
        queued and writes a snapshot; a child is sent SIGTERM and waited for), then
        detection (it finishes the decisions queued), then close the database. Safe to call
        twice."""
        if self._stopped:
            return
        self._stopped = True
        if self._serve_file is not None:
            self._serve_file.unlink(missing_ok=True)
        if self.backup_scheduler is not None:
            self.backup_scheduler.stop(THREAD_STOP_S_MAX)
        if self.status_loop is not None:
            self.status_loop.stop(THREAD_STOP_S_MAX)
        if self.reference_watch is not None:
            self.reference_watch.stop()
        if self.reminder_loop is not None:
            self.reminder_loop.stop(THREAD_STOP_S_MAX)
        if self.outbox_worker is not None:
            self.outbox_worker.stop(THREAD_STOP_S_MAX)
        if self.support_loop is not None:
            self.support_loop.stop(THREAD_STOP_S_MAX)
        if self.notice_mail_loop is not None:
            self.notice_mail_loop.stop(THREAD_STOP_S_MAX)
        if self.monitors is not None:
            self.monitors.stop()
        if self.load_guard is not None:
            self.load_guard.stop()
        if self.demo_flow is not None:
            self.demo_flow.stop()
        if self.runtime is not None:
            self.runtime.stop()
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.replicas is not None:
            self.replicas.stop()
        if self.child_status is not None:
            self.child_status.stop()
        if self.journal_follower is not None:
            self.journal_follower.stop()
        if self.detection is not None:
            self.detection.stop()
            detection.uninstall()
        if isinstance(self.venue_control, HttpVenueControl | AdapterVenueControl):
            self.venue_control.close()
        context_of(self.operations).engine.dispose()


def _start_venue(config: ServeConfig) -> VenueRuntime:
    limits = RuntimeLimits(
        checkpoint_every=config.checkpoint_every, queue_depth_max=config.queue_depth_max
    )
    try:
        return VenueRuntime(config.data_dir, limits=limits).start()
    except (JournalError, RuntimeError, OSError) as exc:
        raise StartError(
            f"cannot start the venue on {config.data_dir}: {exc}. Check the journal with "
            f"`haltguard venue verify {config.data_dir}`."
        ) from exc


def _open_operations(config: ServeConfig, venue_control: VenueControl) -> FastAPI:
    """The operations app on an engine carrying the configured keys (the audit key, the
    secrets key, the anchor file); :meth:`System.stop` disposes of the engine."""
    intake = config.intake_settings()  # reads the mapping file: a bad one stops the start
    engine = make_engine(config.database_url, keyring=Keyring(config.keys))
    try:
        return create_app(
            config.web_settings(),
            venue_control=venue_control,
            engine=engine,
            security_settings=config.security,
            responder_settings=config.paging,
            notify_settings=config.notify_settings(),
            status_settings=config.status_settings(),
            compensation_settings=config.compensation_settings(),
            console_settings=config.console,
            support_settings=config.support_settings(),
            corrections_settings=config.corrections_settings(),
            customer_settings=config.customer_settings(),
            continuity_settings=config.continuity_settings(),
            intake_settings=intake,
            operator_networks=config.detection_allowed_networks,
        )
    except KeyringError as exc:
        engine.dispose()
        raise StartError(f"cannot use the keys of {config.data_dir}: {exc}") from exc
    except SQLAlchemyError as exc:
        engine.dispose()
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
    if isinstance(system.runtime, VenueRuntime):
        system.market_feed = protect_in_process(
            system.runtime, service, session_factory=system.session_factory,
            clock=system.clock, responder_settings=config.paging,
        )
    else:
        market_states = None
        if (system.supervisor or system.replicas) is not None and system.child_status is not None:
            feed = JournalFeed(service, last_seq=system.child_status().last_seq)
            feed.detectors.market_states.update(system.venue_control.market_states())
            system.market_feed = feed
            market_states = feed.market_states
        service.set_executor(ActionExecutor(
            session_factory=system.session_factory, venue=system.venue_control,
            clock=system.clock, responder_settings=config.paging,
            market_states=market_states,
        ))
    system.login_throttle = login_throttle_of(operations)
    LoginBlockEnforcer(system.login_throttle).attach(service)
    system.detection = service.start()
    detection.install(service)
    if isinstance(system.market_feed, JournalFeed):
        system.journal_follower = JournalFollower(config.data_dir, system.market_feed).start()


def _start_monitors(system: System) -> MonitorScheduler:
    """The health monitors (venue, journal disk, database) and the security feeds (audit
    log, withdrawals), on one scheduler whose results ``/metrics`` shows."""
    operations, runtime, child = system.operations, system.runtime, system.child_status
    scheduler = MonitorScheduler(metrics=context_of(operations).part(DetectionMetrics))
    scheduler.add("database", "operations", ProcessCheck(database_probe(system.database_engine)))
    venue_last_seq: int | None = None
    if runtime is not None:
        add_venue_monitors(scheduler, runtime.status, system.config.data_dir)
        venue_last_seq = runtime.status().last_seq
    elif child is not None:
        add_venue_monitors(scheduler, child, system.config.data_dir)
        venue_last_seq = child().last_seq
    add_security_feeds(
        scheduler, service_sink, session_factory=system.session_factory,
        venue_data_dir=system.config.data_dir if venue_last_seq is not None else None,
        venue_last_seq=venue_last_seq or 0,
        operator_networks=system.config.detection_allowed_networks,
    )
    return scheduler.start()


def _first_admin(config: ServeConfig, operations: FastAPI, now: datetime) -> FirstAdmin | None:
    try:
        return create_first_admin(
            context_of(operations).session_factory,
            username=config.first_admin_username,
            email=config.first_admin_email,
            settings=config.security,
            now=now,
        )
    except SecurityError as exc:
        raise ConfigError(f"first_admin: {exc.message}") from exc


def start_system(config: ServeConfig, *, demo: bool) -> System:
    """Start the venue (a supervised child process, a thread here, or nothing when it runs
    elsewhere), open the operations service, create the first admin if nobody can log in
    yet, start detection, the status loop and the notice outbox, and with ``demo`` set up
    the demo venue.

    Raises :class:`ConfigError` for settings that cannot work together and
    :class:`StartError` for anything else that stops the start; nothing is left running.
    """
    if demo and config.venue_url:
        raise ConfigError(
            f"--demo needs the venue on this machine, but venue.url is {config.venue_url} "
            f"(from {config.origins['venue.url']}); leave out --demo or venue.url"
        )
    try:
        private_directory(config.data_dir)
    except OSError as exc:
        raise StartError(f"cannot create the data directory {config.data_dir}: {exc}") from exc
    token = config.venue_admin_token or secrets.token_urlsafe(GENERATED_TOKEN_BYTES)
    drills = config.drills_allowed(demo=demo)
    runtime: VenueRuntime | None = None
    supervisor: VenueSupervisor | None = None
    replicas: ReplicaSet | None = None  # continuity.replication = "jetstream"
    venue_control: VenueControl
    if config.venue_adapter_file is not None:
        check_adapter_file(config, replicated=_replicated(config))
    if config.venue_url:
        venue_control = HttpVenueControl(config.venue_url, config.venue_admin_token)
    elif config.venue_process and _replicated(config):
        replicas = _start_replicas(config, token, demo=demo, drills=drills)
        venue_control = HttpVenueControl(PRIMARY_URL, token, transport=replicas.transport())
    elif config.venue_process:
        supervisor = _start_supervisor(config, token, demo=demo, drills=drills)
        venue_control = HttpVenueControl(supervisor.url, token)
    else:
        runtime = _start_venue(config)
        venue_control = InProcessVenueControl(runtime)
    try:
        if config.venue_adapter_file is not None:  # brakes and reads through the adapter file
            assert isinstance(venue_control, HttpVenueControl)
            venue_control.close()
            venue_control = open_adapter(config.venue_adapter_file, venue_control.base_url,
                                         config.venue_admin_token if config.venue_url else token)
        operations = _open_operations(config, venue_control)
        if replicas is not None and replicas.watch is not None:  # the console's failover screen
            context_of(operations).part(FailoverBoard).follow(
                ReplicaSetReader(replicas.watch, replicas.settings, replicas.nats_url))
        system = System(
            config=config,
            operations=operations,
            venue_control=venue_control,
            venue_admin_token=token,
            venue_token_generated=not config.venue_admin_token,
            runtime=runtime,
            supervisor=supervisor,
            replicas=replicas,
            drills_enabled=drills,
            api_url=config.base_url,
            venue_api_url=config.venue_url or config.base_url,
        )
    except BaseException:
        if runtime is not None:
            runtime.stop()
        if supervisor is not None:
            supervisor.stop()
        if replicas is not None:
            replicas.stop()
        raise
    try:
        system.first_admin = _first_admin(config, operations, utc_now())
        with session_scope(system.session_factory) as session:
            system.oncall_people = responders.list_people(session, limit=1)[1]
        if supervisor is not None:
            system.child_status = ChildStatus(
                supervisor.url, token, config.queue_depth_max, supervisor.down_reason
            ).start()
        if replicas is not None:
            system.child_status = _follow_replicas_status(replicas, token, config)
        _start_detection(system)
        assert system.detection is not None
        if runtime is not None:
            _serve_venue_here(system, demo=demo)
        elif supervisor is not None:
            _front_the_child(system)
        elif replicas is not None:
            _front_the_replicas(system)
        else:
            system.remote_venue_problem = _reach(venue_control)
        guarded = customer_front(system.venue_front, system.operations, host=config.host,
                                 demo=demo, receive_s_max=config.body_limits[3])
        if isinstance(guarded, CustomerGateway) and system.public_front is not None:
            system.public_front.judge = guarded  # keys mode: the front checks orders with it
        system.venue_front = guarded
        _start_reference_watch(system)
        _start_status(system)
        _start_outbox(system)
        _start_support(system)
        _start_notice_mail(system)
        _start_backups(system)
        _start_reminders(system)
        system.monitors = _start_monitors(system)
        _install_drills(system)
    except BaseException:
        system.stop()
        raise
    return system


def _serve_venue_here(system: System, *, demo: bool) -> None:
    """The venue's API on this process's venue thread, with the demo if asked."""
    runtime, config = system.runtime, system.config
    assert runtime is not None and system.detection is not None
    system.venue_app = create_venue_app(
        runtime, system.venue_admin_token,
        load_shedding=SheddingSettings(order_capacity_per_s=config.order_capacity_per_s),
        body_limits=venue_body_limits(config.body_limits[3]),
    )
    system.load_guard = venue_context_of(system.venue_app).load_guard
    system.load_guard.attach(system.detection)
    add_venue_docs(system.venue_app)
    system.venue_front = with_fast_lane(system.venue_app)
    if demo:
        set_up_demo(runtime)
        system.demo_flow = DemoFlow(runtime, rate_per_s=config.demo_rate_per_s).start()


def free_port(host: str = VENUE_PROCESS_HOST) -> int:
    """A TCP port nothing listens on now, for the venue child (kept across its restarts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def venue_command(config: ServeConfig, port: int, *, demo: bool, drills: bool,
                  channel_port: int = 0) -> list[str]:
    """How the supervisor starts the venue: ``haltguard venue run`` with this config's
    settings (the admin token goes through the environment, not the process list)."""
    command = [
        sys.executable, "-m", "haltguard.app.venue_process",
        "--data-dir", str(config.data_dir), "--host", VENUE_PROCESS_HOST, "--port", str(port),
        "--checkpoint-every", str(config.checkpoint_every),
        "--queue-depth-max", str(config.queue_depth_max),
        "--order-capacity-per-s", str(config.order_capacity_per_s), "--stop-with-parent",
        "--body-receive-s-max", repr(config.body_limits[3]),
    ]
    if config.stream_port:
        command += ["--stream-port", str(config.stream_port), "--stream-host", config.host]
    if channel_port:
        command += ["--channel-port", str(channel_port)]
    if demo:
        command += ["--demo", "--demo-rate", repr(config.demo_rate_per_s)]
    if drills:
        command.append("--allow-fault-injection")
    return command


def _start_supervisor(config: ServeConfig, token: str, *, demo: bool, drills: bool
                      ) -> VenueSupervisor:
    port = free_port()
    channel_port = free_port()
    while channel_port == port:
        channel_port = free_port()
    supervisor = VenueSupervisor(
        venue_command(config, port, demo=demo, drills=drills, channel_port=channel_port),
        f"http://{VENUE_PROCESS_HOST}:{port}",
        settings=SupervisorSettings(
            restarts_per_minute_max=config.venue_restarts_per_minute_max),
        log_path=config.data_dir / VENUE_LOG_FILE_NAME,
        env=venue_process_environment(token),
        restart_arguments=halt_after,
        channel_port=channel_port,
    )
    try:
        return supervisor.start()
    except TimeoutError as exc:
        raise StartError(
            f"the venue process did not start: {exc}. Check the journal with "
            f"`haltguard venue verify {config.data_dir}`."
        ) from exc


def halt_after(gone: ProcessExit) -> list[str]:
    """A restarted venue halts its trading markets before serving anyone: after a crash,
    balances and orders are checked first, and resuming is a person's decision."""
    return ["--halt-markets",
            f"the venue process ended ({gone.describe()}) and was restarted from its journal "
            f"(restart {gone.restarts + 1}); check balances and orders, then resume"]


def _front(system: System, forwarder: ASGIApp, channel: Callable[[], Any],
           down_reason: Callable[[], str]) -> None:
    """What answers ``/v1`` in front of a venue in another process: the load guard (shedding
    and the flood limiter, attached to detection), body limits, the forwarder, and the
    public port's front door for plain orders, on ``channel``."""
    child, config = system.child_status, system.config
    assert child is not None and system.detection is not None
    settings = SheddingSettings(order_capacity_per_s=config.order_capacity_per_s)
    signals = venue_load_signals(settings)
    guard: LoadGuard[Signal] = LoadGuard(
        settings, child.queue_depth, detector=signals.detector, flood=signals.flood,
        outbox=signals.outbox,
        metrics=LoadMetrics(context_of(system.operations).part(CollectorRegistry)),
    )
    guard.attach(system.detection)
    system.load_guard = guard
    # bodies whole and within their deadline before the shedder reads an order's account
    system.venue_front = BodyLimitMiddleware(LoadSheddingMiddleware(forwarder, guard),
                                             limits=venue_body_limits(config.body_limits[3]))
    system.public_front = PublicFront(channel=channel, down_reason=down_reason, guard=guard,
                                      receive_s_max=config.body_limits[3])


def _front_the_child(system: System) -> None:
    """Load shedding and the flood limiter in front of a forwarder to the child venue, and
    every unasked exit of the child reported to detection."""
    supervisor, config = system.supervisor, system.config
    assert supervisor is not None
    forwarder = VenueForwarder(VENUE_PROCESS_HOST, supervisor.channel_port,
                               supervisor.down_reason, receive_s_max=config.body_limits[3])
    _front(system, forwarder, forwarder.channel, supervisor.down_reason)
    supervisor.on_exit = report_process_exit


def _replicated(config: ServeConfig) -> bool:
    return (config.replication is not None
            and config.replication.replication is Replication.JETSTREAM)


def _start_replicas(config: ServeConfig, token: str, *, demo: bool, drills: bool
                    ) -> ReplicaSet:
    """NATS (local unless continuity.nats_url), a primary and a standby venue process."""
    assert config.replication is not None
    try:
        return start_replica_set(
            config.replication, config.data_dir, token,
            demo_rate_per_s=config.demo_rate_per_s if demo else 0.0, drills=drills,
            checkpoint_every=config.checkpoint_every)
    except ReplicationError as exc:
        raise ConfigError(f"continuity.replication = \"jetstream\": {exc}; "
                          f"{exc.next_step}") from exc
    except (TimeoutError, RuntimeError) as exc:
        raise StartError(f"the replicated venue did not start: {exc}") from exc


def _follow_replicas_status(replicas: ReplicaSet, token: str, config: ServeConfig
                            ) -> ChildStatus:
    """The primary's runtime status, polled wherever the primary is now."""
    status = ChildStatus(replicas.url, token, config.queue_depth_max, replicas.down_reason)

    def follow(_change: PrimaryChange) -> None:
        status.base_url = replicas.url

    replicas.on_change.append(follow)
    return status.start()


def _front_the_replicas(system: System) -> None:
    """As :func:`_front_the_child`, through the channel of whichever node serves; each
    change of primary (a failover) and each unasked exit of a node reported to detection."""
    replicas, config = system.replicas, system.config
    assert replicas is not None
    forwarder = FollowingForwarder(replicas, receive_s_max=config.body_limits[3])
    _front(system, forwarder, forwarder.channel, replicas.down_reason)
    operations = context_of(system.operations)  # each failover: an incident and a page update
    replicas.on_change.append(FailoverRecorder(
        system.session_factory, operations.part(StatusSettings), operations.clock.now))
    for node in replicas.nodes:
        node.on_exit = lambda gone, code: report_process_exit(
            ProcessExit(gone.process.pid if gone.process else 0, code, len(gone.exits) - 1, 0.0))


def report_process_exit(gone: ProcessExit) -> None:
    """What the supervisor calls on each exit it did not ask for: the detection signal
    ``venue.process_exited`` (value 1 per exit), which the rules turn into an incident."""
    deliver(service_sink, Signal(
        source="supervisor", name=PROCESS_EXITED_SIGNAL, value=Decimal(1),
        ts_ns=time.time_ns(),
        labels={"component": "venue"},
        details={"exit": gone.describe(), "exit_code": str(gone.returncode),
                 "pid": str(gone.pid), "restarts": str(gone.restarts),
                 "uptime_s": f"{gone.uptime_s:.3f}",
                 "on_restart": "the supervisor restarts it from its journal and it halts "
                               "every trading market (actor 'supervisor') until a person "
                               "resumes them"},
    ))


def _start_status(system: System) -> None:
    """The public page on ``/status`` (answered before routing) and the status loop."""
    config, operations = system.config, system.operations
    # create_app has the configured settings, with the page's own loop off: this one runs
    operations.add_middleware(StatusPagesMiddleware)
    interval_s = config.status_loop_interval_s
    if interval_s > 0:
        system.status_loop = status_flows.StatusLoop(
            publisher_of(operations), interval_s, responder_settings=config.paging
        )
        system.status_loop.start()


def _start_outbox(system: System) -> None:
    """Notices to subscribers, delivered from this process by the outbox's senders."""
    config, operations = system.config, system.operations
    settings = context_of(operations).part(NotifySettings)  # from the configuration
    if not config.notify_worker:
        return
    with session_scope(system.session_factory) as session:
        secret = notify.link_secret(session, settings, utc_now())
    system.outbox_worker = OutboxWorker(system.database_engine, settings, secret)
    system.outbox_worker.start()


def _start_support(system: System) -> None:
    """The support desk's mail receiver (``support.smtp_port``), its replies and SLA alerts."""
    operations = context_of(system.operations)
    system.support_loop = SupportLoop(
        system.session_factory, operations.clock, operations.part(SupportSettings),
        operations.part(NotifySettings), send_mail=system.config.notify_worker,
        status_settings=operations.part(StatusSettings),
    ).start()



def _start_notice_mail(system: System) -> None:
    """Customers' notices by email (with ``notify_worker``, as the other mail senders)."""
    if not system.config.notify_worker:
        return
    operations = context_of(system.operations)
    system.notice_mail_loop = NoticeMailLoop(
        system.session_factory, operations.clock, operations.part(NotifySettings)).start()


def _start_backups(system: System) -> None:
    """With ``backup.target_url`` set: the backup schedule, retention, the backup gauges on
    ``/metrics`` and the ``backup.*`` signals (``haltguard.backup.schedule``)."""
    config = system.config
    if config.backup is None or not config.backup.target_url:
        return
    operations = context_of(system.operations)
    metrics = BackupMetrics(operations.part(CollectorRegistry), system.clock)
    try:
        scheduler = BackupScheduler(config.backup, config.backup_sources(),
                                    system.session_factory, system.clock, service_sink, metrics)
    except ValueError as exc:
        raise ConfigError(f"backup.target_url: {exc}") from exc
    system.backup_scheduler = scheduler.start()


def _start_reminders(system: System) -> None:
    """The continuity reminders (``continuity.remind_interval_s``; 0: not here)."""
    settings = system.config.continuity_settings()
    if settings.remind_interval_s > 0:
        system.reminder_loop = ReminderLoop(
            system.session_factory, settings, system.clock, settings.remind_interval_s,
            paging=system.config.paging).start()


def _start_reference_watch(system: System) -> None:
    """With ``reference.markets`` set: other exchanges' prices against ours, into
    detection (``app/reference_watch.py``)."""
    settings = system.config.reference
    if settings is None or not settings.markets:
        return
    # CCXT takes most of a second to import: only a system that watches markets loads it.
    from haltguard.app.reference_watch import ReferenceWatch  # noqa: PLC0415

    venue = system.venue_control
    assert isinstance(venue, VenueObservation), "the venue control must read events"
    system.reference_watch = ReferenceWatch(
        settings, venue, lambda signal: deliver(service_sink, signal)).start()


def _install_drills(system: System) -> None:
    """With drills allowed, the drill domain mounts its API (``/api/drills``, guarded by
    ``system.drill_token``) and runs its drills on this system."""
    if not system.drills_enabled:
        return
    drills.install(system.operations, system)


def _reach(venue_control: VenueControl) -> str:
    """Why the remote venue cannot be reached now ("" when it can); the service still
    starts, and protective actions report the same until the venue is back."""
    try:
        venue_control.market_states()
    except VenueControlError as exc:
        log.warning("the venue is not reachable: %s", exc)
        return str(exc)
    return ""
