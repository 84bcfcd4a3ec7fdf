"""``haltguard serve``: run the venue's HTTP API on a data directory.

For now this serves the venue alone (orders, market data, admin brakes); incidents, the
status page and notifications join it in later releases. With ``--demo`` it lists the demo
JPY markets, funds demo accounts and keeps a synthetic order flow running; without it,
nothing is invented: markets and funds come through the admin API.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from haltguard.gateway.app import create_venue_app
from haltguard.gateway.demo import DEMO_RATE_PER_S_DEFAULT, DemoFlow, set_up_demo
from haltguard.gateway.runtime import RuntimeLimits, VenueRuntime
from haltguard.journal import JournalError

console = Console(stderr=True)


def serve(
    *,
    demo: Annotated[
        bool, typer.Option("--demo", help="List demo JPY markets and run a synthetic order flow.")
    ] = False,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the journal and snapshots live.")
    ] = Path("data"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8000,
    admin_token: Annotated[
        str,
        typer.Option(
            envvar="HALTGUARD_VENUE_TOKEN", show_default=False,
            help="Secret for the admin API (Authorization: Bearer ...). Generated if not given.",
        ),
    ] = "",
    checkpoint_every: Annotated[
        int, typer.Option(min=1, help="Write a snapshot every this many commands.")
    ] = RuntimeLimits.checkpoint_every,
    queue_depth_max: Annotated[
        int, typer.Option(min=1, help="Commands waiting before new ones get 503 + Retry-After.")
    ] = RuntimeLimits.queue_depth_max,
    demo_rate: Annotated[
        float, typer.Option(min=0.1, max=10_000, help="Demo orders per second (with --demo).")
    ] = DEMO_RATE_PER_S_DEFAULT,
) -> None:
    """Run the venue's HTTP API (venue only for now: orders, market data, admin brakes)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    token = admin_token or secrets.token_urlsafe(24)
    limits = RuntimeLimits(checkpoint_every=checkpoint_every, queue_depth_max=queue_depth_max)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        runtime = VenueRuntime(data_dir, limits=limits).start()
    except (JournalError, RuntimeError) as exc:
        console.print(f"[red]Cannot start the venue on {data_dir}:[/red] {exc}")
        console.print(f"Check it with: haltguard venue verify {data_dir}")
        raise typer.Exit(1) from exc
    flow: DemoFlow | None = None
    try:
        if demo:
            set_up_demo(runtime)
            flow = DemoFlow(runtime, rate_per_s=demo_rate).start()
        _announce(runtime, host, port, token, generated=not admin_token, demo=demo)
        app = create_venue_app(runtime, token)
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
    finally:
        if flow is not None:
            flow.stop()
        runtime.stop()
        console.print(f"Venue stopped at seq {runtime.status().last_seq}; snapshot written.")


def _announce(
    runtime: VenueRuntime, host: str, port: int, token: str, *, generated: bool, demo: bool
) -> None:
    base = f"http://{host}:{port}"
    shown_token = token if generated else "<your token>"
    lines = [
        f"API        {base}/v1/markets",
        f"API docs   {base}/docs",
        f"Data dir   {runtime.data_dir.resolve()}",
        f"Recovery   {runtime.recovery_report.describe()}",
        "Admin      " + (
            f"token {token} (generated; set HALTGUARD_VENUE_TOKEN to choose one)"
            if generated else "token from HALTGUARD_VENUE_TOKEN / --admin-token"
        ),
        "",
        "This serves the venue only (orders, market data, admin brakes).",
        "In another shell:",
        f"  export HALTGUARD_VENUE_URL={base} HALTGUARD_VENUE_TOKEN={shown_token}",
        "  haltguard venue status",
        "  haltguard venue book BTC-JPY",
        "  haltguard venue halt BTC-JPY --reason 'trying the brakes'",
    ]
    if demo:
        lines.insert(0, "Demo: BTC-JPY, ETH-JPY, XRP-JPY open, accounts 1-50 funded, flow on.")
    console.rule("haltguard venue")
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
    console.rule()


def register(app: typer.Typer) -> None:
    """Add ``haltguard serve`` to the main command."""
    app.command("serve")(serve)
