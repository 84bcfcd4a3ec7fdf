"""``haltguard serve``: run the whole system on one port.

The venue (matching engine, ledger, journal in the data directory) runs as its own process,
restarted by a supervisor from its snapshot and journal whenever it exits unasked; its HTTP
API is forwarded under ``/v1`` (load shedding in front). The operations service (incidents
and runbooks, protective actions, operators and the audit chain, on-call and paging,
reports) is under ``/api``, on SQLite in the data directory unless the configuration names
PostgreSQL. The first start on an empty database creates an admin and shows the password
and TOTP secret once. With ``--demo`` the venue lists demo JPY markets, funds demo accounts
and keeps a synthetic order flow running; without it, nothing is invented. The status page
is under ``/status/``, Prometheus metrics at ``/metrics``; the banner says where each thing
is, and ``data_dir/serve.json`` says it to programs (``haltguard drill``) while it runs.

Settings come from the command line, the environment, the ``--config`` file (TOML or YAML)
and the defaults, in that order; ``docs/configuration.md`` lists them all. A setting that
cannot work stops the start with exit code 2 and a message saying what to change.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn

import segno
import typer
import uvicorn
from rich.console import Console
from rich.markup import escape

from haltguard.app.config import CONFIG_FILE_ENV, SQLITE_FILE_NAME, ConfigError, load_config
from haltguard.app.first_admin import FirstAdmin
from haltguard.app.listening import bind_listener
from haltguard.app.replicas import ReplicaSet
from haltguard.app.system import (
    StartError,
    System,
    served_paths,
    shown_database_url,
    start_system,
)
from haltguard.app.venue_process import VENUE_DOCS_PATH
from haltguard.cli.client import UNSAFE_FLAG, secret_from
from haltguard.customers.flows import DEMO_KEYS_FILE_NAME, CustomerProtection
from haltguard.customers.settings import AuthMode
from haltguard.db.session import DEFAULT_DATA_DIR
from haltguard.web.context import context_of

STATUS_PAGE_PATH = "/status"
METRICS_PATH = "/metrics"
SERVE_FILE_POLL_S = 0.05
CONFIG_ERROR_EXIT_CODE = 2
START_ERROR_EXIT_CODE = 1

console = Console(highlight=False, soft_wrap=True)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)


def serve(
    *,
    demo: Annotated[
        bool, typer.Option("--demo", help="List demo JPY markets and run a synthetic order flow.")
    ] = False,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", envvar=CONFIG_FILE_ENV, show_default=False,
                     help="A TOML or YAML configuration file (see docs/configuration.md)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", show_default=False,
                     help="Journal, snapshots and SQLite database (default: ./data)."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(show_default=False, help="Interface to listen on (default: 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(show_default=False, help="TCP port of both APIs (default: 8000).")
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(show_default=False,
                     help="Secret for the venue's admin API (Authorization: Bearer ...); "
                          f"generated if not given. {UNSAFE_FLAG} Prefer "
                          "HALTGUARD_VENUE_TOKEN or --admin-token-file."),
    ] = None,
    admin_token_file: Annotated[
        Path | None,
        typer.Option("--admin-token-file", show_default=False,
                     help="Read the venue's admin token from this file ('-': standard "
                          "input)."),
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(show_default=False, help="Write a venue snapshot every this many commands."),
    ] = None,
    queue_depth_max: Annotated[
        int | None,
        typer.Option(show_default=False,
                     help="Commands waiting before new ones get 503 + Retry-After."),
    ] = None,
    demo_rate: Annotated[
        float | None,
        typer.Option(show_default=False, help="Demo orders per second (with --demo)."),
    ] = None,
) -> None:
    """Run the whole system: the venue and its API (/v1), the operations service (/api)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call to the venue
    try:
        config = load_config(config_file, overrides={
            "data_dir": None if data_dir is None else str(data_dir),
            "server.host": host,
            "server.port": port,
            "venue.admin_token": secret_from(admin_token, admin_token_file,
                                             "venue admin token"),
            "venue.checkpoint_every": checkpoint_every,
            "venue.queue_depth_max": queue_depth_max,
            "demo.rate_per_s": demo_rate,
        })
        listener = listen(config.host, config.port)
    except (ConfigError, StartError) as exc:
        refuse(exc)
    try:
        system = start_system(config, demo=demo)
    except (ConfigError, StartError) as exc:
        listener.close()
        refuse(exc)
    try:
        if system.first_admin is not None:
            show_first_admin(system.first_admin)
        announce(system, demo=demo)
        run_server(system, listener)
    finally:
        system.stop()
        console.print(stopped_line(system))


def stopped_line(system: System) -> str:
    """What the venue did on the way out."""
    if system.runtime is not None:
        return f"Stopped. Venue at seq {system.runtime.status().last_seq}; snapshot written."
    supervisor = system.supervisor
    if supervisor is None:
        return "Stopped."
    if supervisor.stopped_returncode == 0:
        return f"Stopped. The venue process wrote its snapshot (see {supervisor.log_path})."
    return (f"Stopped. The venue process ended with {supervisor.stopped_returncode}; its next "
            f"start replays the journal (see {supervisor.log_path}).")


def refuse(exc: ConfigError | StartError) -> NoReturn:
    """Say why the start stopped; exit 2 for configuration, 1 for anything else."""
    if isinstance(exc, ConfigError):
        error_console.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(CONFIG_ERROR_EXIT_CODE) from exc
    error_console.print(f"[red]cannot start:[/red] {escape(str(exc))}")
    raise typer.Exit(START_ERROR_EXIT_CODE) from exc


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything starts: a busy port then stops the start
    before a first admin is created and shown on a screen that is about to say it failed."""
    try:
        return bind_listener(host, port)
    except OSError as exc:
        raise StartError(
            f"cannot listen on {host}:{port} ({exc.strerror}); is another haltguard running "
            "there? Stop it, or choose another port with --port or server.port"
        ) from exc


def run_server(system: System, listener: socket.socket) -> None:
    """Serve until SIGINT or SIGTERM, then return so the caller stops the venue cleanly.

    uvicorn shuts down gracefully on those signals and then raises the signal again for
    whatever handler was there before it; the handler installed here only asks the server
    to exit, so the process ends normally, after the venue's snapshot, with code 0.
    """
    config = system.config
    server = uvicorn.Server(
        uvicorn.Config(system.asgi_app(), host=config.host, port=config.port,
                       log_level="warning", lifespan="on", **system.server_options())
    )

    def ask_to_exit(_signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, ask_to_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
    threading.Thread(target=_write_serve_file_once_serving, args=(system, server),
                     name="serve-file", daemon=True).start()
    try:
        server.run(sockets=[listener])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_serve_file_once_serving(system: System, server: uvicorn.Server) -> None:
    """``data_dir/serve.json`` once the server answers (for ``haltguard drill``)."""
    while not server.started:
        if server.should_exit:
            return
        time.sleep(SERVE_FILE_POLL_S)
    path = system.write_serve_file()
    # Everything built to start (the apps, their routes, the rules, the caches) lives as
    # long as the process: out of the collector's way, so a full collection of it never
    # stalls the journal follower between a crash trade and its halt.
    gc.freeze()
    logging.getLogger(__name__).info("serving; addresses and drill token in %s", path)


def show_first_admin(admin: FirstAdmin) -> None:
    """The new admin's credentials, once: as text and as a QR code of the otpauth URI."""
    console.rule("first admin created: shown once, write it down now")
    for label, value in (
        ("username", admin.username),
        ("password", admin.password),
        ("TOTP secret", admin.enrolment.secret),
        ("TOTP URI", admin.enrolment.otpauth_uri),
    ):
        console.print(f"{label:<12} {escape(value)}")
    console.print(
        "Scan the code below (or type the TOTP secret) into an authenticator app. Neither "
        "the password nor the secret is shown again; if lost, an admin can reset them "
        "(haltguard operator reset-totp)."
    )
    sys.stdout.flush()
    segno.make(admin.enrolment.otpauth_uri, error="m").terminal(out=sys.stdout, compact=True)
    sys.stdout.flush()


def announce(system: System, *, demo: bool) -> None:
    """Where each part is and how to start using it."""
    config = system.config
    base = config.base_url
    lines = []
    if demo:
        lines.append(
            f"Demo         BTC-JPY, ETH-JPY, XRP-JPY open, accounts 1-50 funded, "
            f"{config.demo_rate_per_s:g} synthetic orders/s"
        )
    lines += [
        f"API          {base}/api  (incidents, operators, on-call, audit)",
        f"  API docs   {base}/docs",
        f"Console      {base}/console  (operators in a browser: password + TOTP)",
        f"Login        haltguard incident login --username {_login_name(system)}  "
        f"(HALTGUARD_URL={base})",
        *_extra_lines(system),
        *_venue_lines(system),
        f"Data dir     {config.data_dir.resolve()}  (serve.json there while running)",
        f"Database     {shown_database_url(config.database_url)}",
        f"Config       {config.source}",
        f"Paging       SMTP {config.paging.smtp.host}:{config.paging.smtp.port}, "
        f"ack links on {config.paging.public_url}",
        f"On-call      {_oncall(system)}",
        f"Detection    {_detection(system)}",
        f"Customers    {_customers(system)}",
        "",
        "In another shell:",
        f"  export HALTGUARD_URL={base}",
        f"  haltguard incident login --username {_login_name(system)}",
        "  haltguard incident open 'BTC-JPY matching stalled' --category software_bug "
        "--severity SEV2 --market BTC-JPY",
        "  haltguard incident halt 1 BTC-JPY --reason 'matching stalled'",
    ]
    if config.database_url != _local_cli_database_url():
        lines.append(f"  export HALTGUARD_DATABASE_URL={config.database_url}  "
                     "# for haltguard operator / oncall / audit")
    console.rule("haltguard")
    for line in lines:
        console.print(escape(line))
    console.rule()
    sys.stdout.flush()


def _customers(system: System) -> str:
    """Which mode the public /v1 API runs in (signed keys or open) and why."""
    protection = context_of(system.operations).part(CustomerProtection)
    demo_keys = system.config.data_dir / DEMO_KEYS_FILE_NAME
    keys_note = f"; demo customers' keys in {demo_keys}" if demo_keys.exists() else ""
    if protection.mode is AuthMode.KEYS:
        return (f"/v1 takes signed requests only (API keys), {len(protection.keys)} keys "
                f"loaded ({protection.mode_reason}); security centre at "
                f"{system.config.base_url}/security{keys_note}")
    return (f"/v1 is OPEN: the account field is taken as sent ({protection.mode_reason}); "
            f"set customers.auth = \"keys\" for customers{keys_note}")


def _detection(system: System) -> str:
    """What detection runs on: its rules, its monitors, and whether alerts are taken in."""
    config = system.config
    rules = len(system.detection.rules.rules) if system.detection is not None else 0
    monitors = len(system.monitors.monitors) if system.monitors is not None else 0
    intake = (f"alert intake on ({len(config.intake_tokens)} tokens)" if config.intake_tokens
              else "alert intake off (set detection.intake_tokens)")
    source = config.detection_rules_file or "the shipped rules"
    return f"{rules} rules from {source}, {monitors} monitors, {intake}"


def _extra_lines(system: System) -> list[str]:
    """The parts served only when their domain is installed, and the loops behind them."""
    paths = served_paths(system.operations)
    base = system.config.base_url
    lines = []
    if STATUS_PAGE_PATH in paths:
        loop = (f"refreshed every {system.status_loop.interval_s:g} s"
                if system.status_loop is not None else "status loop off")
        lines.append(f"Status page  {base}{STATUS_PAGE_PATH}/  (public, Japanese and English; "
                     f"{loop}; public address {system.status_url})")
    if METRICS_PATH in paths:
        lines.append(f"Metrics      {base}{METRICS_PATH}  (Prometheus)")
    if system.outbox_worker is not None:
        lines.append(f"Notices      outbox delivering with {system.outbox_worker.settings.senders} "
                     "senders (email, webhooks, social)")
    else:
        lines.append("Notices      outbox off here (run haltguard notify worker)")
    if system.support_loop is not None:
        intake = system.support_loop.intake
        mail = (f"support mail taken on smtp://{system.config.support_settings().smtp_host}:"
                f"{intake.port}" if intake is not None else "no mail receiver")
        lines.append(f"Support      {base}/help/  (help centre, contact form, chat; {mail})")
    if system.drills_enabled:
        lines.append("Drills       enabled (haltguard drill SCENARIO)")
    if system.reminder_loop is not None:
        lines.append(f"Continuity   reminders every {system.reminder_loop.interval_s:g} s "
                     "(risk reviews, insurance, training, findings); haltguard bcp check")
    return lines


def _venue_lines(system: System) -> list[str]:
    config = system.config
    if system.runtime is None and system.supervisor is None and system.replicas is None:
        reachable = (f"  (not reachable now: {system.remote_venue_problem})"
                     if system.remote_venue_problem else "")
        return [f"Venue        {config.venue_url}  (running elsewhere){reachable}"]
    token = (
        f"token {system.venue_admin_token} (generated for this run; set venue.admin_token "
        "or HALTGUARD_VENUE_TOKEN to keep one)"
        if system.venue_token_generated
        else f"token from {config.origins['venue.admin_token']}"
    )
    lines = [
        f"Venue API    {system.venue_api_url}/v1/markets  (orders, market data, admin brakes)",
        f"  API docs   {system.venue_api_url}{VENUE_DOCS_PATH}",
        f"  Admin      {token}",
    ]
    if system.supervisor is not None:
        supervisor = system.supervisor
        lines += [
            f"  Process    pid {supervisor.pid} on {supervisor.url}, supervised (restarted "
            f"from its journal if it exits; at most "
            f"{supervisor.settings.restarts_per_minute_max} restarts a minute)",
            f"  Log        {supervisor.log_path}",
        ]
        if config.stream_port:
            lines.append(f"  Streaming  tcp://{config.host}:{config.stream_port}  (pipelined "
                         "orders, length-prefixed MessagePack; docs/architecture.md)")
    elif system.replicas is not None:
        lines += _replica_lines(system.replicas)
    elif system.runtime is not None:
        lines += [
            "  Process    on a thread of this process (venue.process = false)"
            + ("; no streaming order entry (venue.stream_port needs venue.process = true)"
               if config.stream_port else ""),
            f"  Recovery   {system.runtime.recovery_report.describe()}",
        ]
    return lines


def _replica_lines(replicas: ReplicaSet) -> list[str]:
    """Where NATS and each venue node is (continuity.replication = "jetstream")."""
    primary = replicas.primary()
    local = (f"local nats-server pid {replicas.nats.pid}, files in {replicas.nats.store_dir}"
             if replicas.nats is not None else "continuity.nats_url")
    lines = [f"  Journal    replicated on NATS JetStream at {replicas.nats_url} ({local}), "
             f"stream {replicas.settings.stream}, {replicas.settings.replicas} replica(s)"]
    for node in replicas.nodes:
        role = "primary" if node is primary else "standby"
        lines.append(f"  Node {node.name}     {role}: pid {node.pid} on {node.url} (/metrics: its "
                     f"lag as standby), journal {node.data_dir}, log {node.log_file()}")
    lines.append(f"  Failover   a standby takes over {replicas.settings.lease_ttl_ms} ms after "
                 "the primary stops renewing its lease; /v1 follows it")
    return lines


def _oncall(system: System) -> str:
    if system.oncall_people:
        count = system.oncall_people
        return f"{count} {'person' if count == 1 else 'people'} (haltguard oncall person list)"
    return ("nobody yet, so pages reach no one: edit a copy of "
            "src/haltguard/responders/oncall.example.yaml and load it with "
            "haltguard oncall load FILE")


def _login_name(system: System) -> str:
    if system.first_admin is not None:
        return system.first_admin.username
    return "<your username>"


def _local_cli_database_url() -> str:
    """What ``haltguard operator``, ``oncall`` and ``audit`` open when nothing is set."""
    return f"sqlite:///{(DEFAULT_DATA_DIR / SQLITE_FILE_NAME).resolve()}"


def register(app: typer.Typer) -> None:
    """Add ``haltguard serve`` to the main command."""
    app.command("serve")(serve)
