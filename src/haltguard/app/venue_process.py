"""The venue as a process of its own: ``haltguard venue run`` (and the supervisor's child).

One :class:`VenueRuntime` on a data directory, its HTTP API on one port, with ``--stream-port``
the streaming order entry (:mod:`haltguard.gateway.stream`) on another, and with the demo its
markets, funded accounts and synthetic order flow. It recovers from snapshot + journal at
start, so a process killed at any moment comes back with every acknowledged order. SIGTERM
or SIGINT stops it cleanly: the server stops taking requests, the venue finishes what is
queued and writes a snapshot, and the process exits 0.

Its command line is declared here, once (:func:`run_command`): the supervisor builds it
(:func:`haltguard.app.system.venue_command`), ``python -m haltguard.app.venue_process``
reads it, and the CLI mounts the same command as ``haltguard venue run``.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from rich.console import Console
from starlette.types import ASGIApp

from haltguard.app.listening import bind_listener
from haltguard.app.venue_app import create_venue_app
from haltguard.db.keys import private_directory
from haltguard.gateway.app import venue_body_limits
from haltguard.gateway.channel import ChannelServer
from haltguard.gateway.demo import DemoFlow, set_up_demo
from haltguard.gateway.fastlane import OrderFastLane, with_fast_lane
from haltguard.gateway.limits import SheddingSettings
from haltguard.gateway.runtime import BatchReplicator, RuntimeLimits, VenueRuntime
from haltguard.gateway.stream import StreamServer, StreamStartError
from haltguard.journal import JournalError
from haltguard.venue.commands import SetMarketState
from haltguard.venue.events import CommandRejected
from haltguard.venue.types import MarketState
from haltguard.web.asgi import BODY_RECEIVE_S_MAX_DEFAULT

log = logging.getLogger(__name__)

VENUE_DOCS_PATH = "/venue/docs"
VENUE_OPENAPI_PATH = "/venue/openapi.json"
LOCK_FILE_NAME = "venue.lock"
"""Set by the supervisor: the venue stops cleanly when that process is gone, so a killed
``serve`` never leaves a venue behind writing to the journal."""
CHANNEL_HOST = "127.0.0.1"  # the request channel is for the serving process on this machine
PARENT_CHECK_S = 0.5
READY_POLL_S = 0.02
HALT_ACTOR = "supervisor"
TRADING_STATES = frozenset({MarketState.OPEN, MarketState.LIMIT_ONLY, MarketState.POST_ONLY,
                            MarketState.AUCTION})
READY_LINE_PREFIX = "haltguard venue ready"
"""The first line the process prints once it answers, for whoever watches its output."""


class VenueStartError(RuntimeError):
    """The venue process could not start; the message says what to check."""


@dataclass(frozen=True)
class VenueProcessSettings:
    data_dir: Path
    host: str
    port: int
    admin_token: str
    demo: bool = False
    demo_rate_per_s: float = 20.0
    allow_fault_injection: bool = False
    checkpoint_every: int = 100_000
    queue_depth_max: int = 10_000
    order_capacity_per_s: int = 1_000
    halt_reason: str = ""  # set: halt every trading market before serving (a restart)
    stream_port: int = 0  # the streaming order entry's TCP port; 0: not served
    stream_host: str = ""  # its interface; "": the HTTP API's ``host``
    channel_port: int = 0  # the serving process's request channel (loopback); 0: not served
    stop_with_parent: bool = False  # stop cleanly once the process that started it is gone
    body_receive_s_max: float = BODY_RECEIVE_S_MAX_DEFAULT  # the time a request body may take

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def stream_address(self) -> str:
        """Where the streaming order entry listens ("" when it is off)."""
        host = self.stream_host or self.host
        return f"tcp://{host}:{self.stream_port}" if self.stream_port else ""


def add_venue_docs(venue_app: FastAPI) -> None:
    """Serve the venue's OpenAPI document and browser under ``/venue``, since ``/docs`` and
    ``/openapi.json`` belong to the operations service on the shared public port."""

    @venue_app.get(VENUE_OPENAPI_PATH, include_in_schema=False)
    def venue_openapi() -> JSONResponse:
        return JSONResponse(venue_app.openapi())

    @venue_app.get(VENUE_DOCS_PATH, include_in_schema=False)
    def venue_docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=VENUE_OPENAPI_PATH,
                                   title="haltguard venue - API documentation")


def runtime_limits(settings: VenueProcessSettings) -> RuntimeLimits:
    """The runtime's limits; fault injection (for drills) only when asked for."""
    return RuntimeLimits(checkpoint_every=settings.checkpoint_every,
                         queue_depth_max=settings.queue_depth_max,
                         fault_injection=settings.allow_fault_injection)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the venue starts so a busy port fails first."""
    try:
        return bind_listener(host, port)
    except OSError as exc:
        raise VenueStartError(
            f"cannot listen on {host}:{port} ({exc.strerror}); is another venue running "
            "there? Stop it or choose another --port"
        ) from exc


def lock_data_dir(data_dir: Path) -> int:
    """An exclusive lock on ``data_dir`` for this process's life (the kernel drops it when
    the process dies, however it dies): two venues on one journal would corrupt it."""
    descriptor = os.open(data_dir / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise VenueStartError(
            f"another venue (pid {holder}) is running on {data_dir}; stop it first, or give "
            "this one another --data-dir"
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, str(os.getpid()).encode(), 0)
    return descriptor


def stop_when_parent_exits(parent_pid: int) -> None:
    """Ask this process to stop cleanly (SIGTERM to itself) once ``parent_pid`` is gone."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(PARENT_CHECK_S)
        log.warning("the supervising process %d is gone; stopping the venue", parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def start_runtime(settings: VenueProcessSettings,
                  replicator: BatchReplicator | None = None) -> VenueRuntime:
    try:
        return VenueRuntime(settings.data_dir, limits=runtime_limits(settings),
                            replicator=replicator).start()
    except (JournalError, RuntimeError, OSError, ValueError) as exc:
        if isinstance(exc, VenueStartError):
            raise
        raise VenueStartError(
            f"cannot start the venue on {settings.data_dir}: {exc}. Check the journal with "
            f"`haltguard venue verify {settings.data_dir}`."
        ) from exc


def halt_trading_markets(runtime: VenueRuntime, reason: str) -> list[str]:
    """Halt every market still trading (cancels stay allowed), journaled with ``reason``,
    before any client is served: a venue back from a crash does not reopen by itself;
    resuming is a person's decision. Returns the markets halted."""
    states = runtime.read(lambda venue: venue.market_states())
    halted = []
    for market, state in sorted(states.items()):
        if state not in TRADING_STATES:
            continue
        result = runtime.submit_and_wait(
            SetMarketState(market, MarketState.HALTED, HALT_ACTOR, reason)
        )
        refused = [event for event in result.events if type(event) is CommandRejected]
        if refused:
            log.error("could not halt %s after the restart: %s", market, refused[0].detail)
            continue
        halted.append(market)
    if halted:
        log.warning("halted %s: %s", ", ".join(halted), reason)
    return halted


def run_venue(settings: VenueProcessSettings, *, announce: bool = True,
              replicator: BatchReplicator | None = None,
              stop_when: threading.Event | None = None) -> int:
    """Serve the venue until SIGTERM/SIGINT (or ``stop_when`` is set); returns the last
    journaled seq.

    Prints :data:`READY_LINE_PREFIX` with the URL and pid once the server answers. A
    replicated venue (``haltguard.replication``) passes its ``replicator`` and the event its
    fencing sets.
    """
    private_directory(settings.data_dir)
    lock = lock_data_dir(settings.data_dir)
    try:
        listener = bind(settings.host, settings.port)
    except VenueStartError:
        os.close(lock)
        raise
    try:
        channel_listener = (bind(CHANNEL_HOST, settings.channel_port)
                            if settings.channel_port else None)
    except VenueStartError:
        listener.close()
        os.close(lock)
        raise
    stream: StreamServer | None = None
    try:
        runtime = start_runtime(settings, replicator)
    except VenueStartError:
        listener.close()
        if channel_listener is not None:
            channel_listener.close()
        os.close(lock)
        raise
    demo_flow: DemoFlow | None = None
    try:
        if settings.stream_port:
            try:
                stream = StreamServer(runtime, settings.stream_host or settings.host,
                                      settings.stream_port)
            except StreamStartError as exc:
                raise VenueStartError(str(exc)) from exc
        if settings.halt_reason:
            halt_trading_markets(runtime, settings.halt_reason)
        app = create_venue_app(
            runtime, settings.admin_token,
            load_shedding=SheddingSettings(order_capacity_per_s=settings.order_capacity_per_s),
            body_limits=venue_body_limits(settings.body_receive_s_max),
        )
        add_venue_docs(app)
        served = with_fast_lane(app)
        if settings.demo:
            set_up_demo(runtime)
            demo_flow = DemoFlow(runtime, rate_per_s=settings.demo_rate_per_s).start()
        server = uvicorn.Server(uvicorn.Config(served, log_level="warning", lifespan="off"))

        def ask_to_exit(_signum: int, _frame: FrameType | None) -> None:
            server.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, ask_to_exit)
        if settings.stop_with_parent:
            stop_when_parent_exits(os.getppid())
        if stop_when is not None:
            _exit_when(server, stop_when)
        if stream is not None:
            stream.start()
        if announce:
            _announce_when_started(server, settings, runtime)
        serve_http_and_channel(server, listener, served, channel_listener)
    finally:
        if stream is not None:
            stream.stop()
        if demo_flow is not None:
            demo_flow.stop()
        runtime.stop()
        listener.close()
        if channel_listener is not None:
            channel_listener.close()
        os.close(lock)
    return runtime.status().last_seq


def _exit_when(server: uvicorn.Server, event: threading.Event) -> None:
    def watch() -> None:
        while not server.should_exit:
            if event.wait(READY_POLL_S):
                server.should_exit = True
                return

    threading.Thread(target=watch, name="venue-stop-when", daemon=True).start()


def serve_http_and_channel(server: uvicorn.Server, listener: socket.socket, app: ASGIApp,
                           channel_listener: socket.socket | None) -> None:
    """Run the HTTP server and, if asked for, the request channel of the serving process
    (``gateway/channel.py``) on one event loop, until the server is told to exit."""

    async def serve() -> None:
        channel = None
        if channel_listener is not None:
            lane = app if isinstance(app, OrderFastLane) else None
            channel = ChannelServer(app, channel_listener,
                                    direct=lane.answer_frame if lane is not None else None)
            await channel.start()
        try:
            await server.serve(sockets=[listener])
        finally:
            if channel is not None:
                channel.close()

    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(serve())


def _announce_when_started(
    server: uvicorn.Server, settings: VenueProcessSettings, runtime: VenueRuntime
) -> None:
    """Print the ready line once the server answers (from a thread: the server runs on
    this one), so it is true when printed."""

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            threading.Event().wait(READY_POLL_S)
        report = runtime.recovery_report.describe()
        stream = (f"; streaming order entry on {settings.stream_address}"
                  if settings.stream_port else "")
        print(f"{READY_LINE_PREFIX} on {settings.url} pid {os.getpid()}{stream}; {report}",
              flush=True)

    threading.Thread(target=announce, name="ready-line", daemon=True).start()


def run_command(
    *,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Journal and snapshots.")] = Path(
        "data"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65_535, help="TCP port.")] = 8001,
    token: Annotated[
        str, typer.Option("--token", envvar="HALTGUARD_VENUE_TOKEN", show_default=False,
                          help="The venue's admin token (printed by `haltguard serve`). "
                               "Unsafe as a flag: other users of the machine see it in `ps`; "
                               "set HALTGUARD_VENUE_TOKEN (as `haltguard serve` does).")
    ] = "",
    demo: Annotated[
        bool, typer.Option("--demo", help="Demo markets, funded accounts, synthetic orders.")
    ] = False,
    demo_rate: Annotated[
        float, typer.Option(min=0.1, max=10_000, help="Demo orders per second.")
    ] = 20.0,
    allow_fault_injection: Annotated[
        bool, typer.Option("--allow-fault-injection",
                           help="Accept drill faults on POST /v1/admin/faults.")
    ] = False,
    checkpoint_every: Annotated[
        int, typer.Option(min=1, help="Write a snapshot every this many commands.")
    ] = 100_000,
    queue_depth_max: Annotated[
        int, typer.Option(min=1, help="Commands waiting before new ones get 503.")
    ] = 10_000,
    order_capacity_per_s: Annotated[
        int, typer.Option(min=1, help="New orders a second before load shedding.")
    ] = 1_000,
    stream_port: Annotated[
        int, typer.Option("--stream-port", min=0, max=65_535,
                          help="Serve the streaming order entry (pipelined orders over TCP, "
                               "length-prefixed MessagePack) on this port; 0: off.")
    ] = 0,
    stream_host: Annotated[
        str, typer.Option("--stream-host", show_default=False,
                          help="Interface of the streaming order entry (default: --host).")
    ] = "",
    halt_markets: Annotated[
        str, typer.Option("--halt-markets", metavar="REASON",
                          help="Halt every trading market with this reason before serving "
                               "(the supervisor's restarts after a crash).")
    ] = "",
    body_receive_s_max: Annotated[
        float, typer.Option("--body-receive-s-max", min=0.1, max=600,
                            help="Seconds a request body may take to arrive (408 after).")
    ] = BODY_RECEIVE_S_MAX_DEFAULT,
    channel_port: Annotated[
        int, typer.Option("--channel-port", min=0, max=65_535,
                          help="Answer the serving process's request channel on this "
                               "loopback port (what `haltguard serve` forwards /v1 "
                               "through); 0: off.")
    ] = 0,
    stop_with_parent: Annotated[
        bool, typer.Option("--stop-with-parent",
                           help="Stop cleanly (with a snapshot) once the process that started "
                                "this one is gone, so a killed supervisor leaves no orphan.")
    ] = False,
) -> None:
    """Serve a venue on a data directory until SIGTERM or Ctrl-C (then it writes a snapshot).

    It recovers from snapshot + journal at start and prints a ready line with its URL and pid
    once it answers. Without --token the admin API refuses every call.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = VenueProcessSettings(
        data_dir=data_dir, host=host, port=port, admin_token=token, demo=demo,
        demo_rate_per_s=demo_rate, allow_fault_injection=allow_fault_injection,
        checkpoint_every=checkpoint_every, queue_depth_max=queue_depth_max,
        order_capacity_per_s=order_capacity_per_s, halt_reason=halt_markets,
        stream_port=stream_port, stream_host=stream_host, channel_port=channel_port,
        stop_with_parent=stop_with_parent,
        body_receive_s_max=body_receive_s_max,
    )
    try:
        last_seq = run_venue(settings)
    except VenueStartError as exc:
        errors = Console(stderr=True)
        errors.print(f"[red]Error:[/red] {exc}", soft_wrap=True)
        errors.print("Next: fix what the message names and start it again", soft_wrap=True)
        raise typer.Exit(1) from exc
    Console().print(f"venue stopped at seq {last_seq}; snapshot written", highlight=False)


def main() -> None:
    """``python -m haltguard.app.venue_process [options]``: ``haltguard venue run`` without
    the console script, which is how the supervisor starts its child."""
    command = typer.Typer(add_completion=False)
    command.command("run")(run_command)
    command(sys.argv[1:], prog_name="haltguard venue run")


if __name__ == "__main__":
    main()
