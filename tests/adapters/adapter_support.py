"""Both venues the adapter tests drive, each on a real local HTTP server: haltguard's own
venue (a runtime with the demo markets, accounts 1-3 funded) and the other venue of
``othervenue.py``, with an adapter file for each."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn
from othervenue import SECRET, OtherVenue, OtherVenueServer

from haltguard.adapters.control import AdapterVenueControl, ReportSink
from haltguard.adapters.spec import AdapterSpec, load_adapter
from haltguard.app.venue_app import create_venue_app
from haltguard.gateway.runtime import VenueRuntime
from haltguard.venue.commands import AddAsset, AddMarket, Command, Deposit
from haltguard.venue.markets import DEMO_ASSETS, demo_markets
from haltguard.venue.types import MarketState

TOKEN = "adapter-test-admin-token"
OURS_FILE = Path(__file__).resolve().parents[2] / "src/haltguard/adapters/haltguard_venue.yaml"
OTHER_FILE = Path(__file__).resolve().parent / "othervenue.yaml"
FUNDING = {"JPY": 1_000_000_000, "BTC": 10, "ETH": 100, "XRP": 1_000_000}


def setup_commands() -> list[Command]:
    commands: list[Command] = [AddAsset(asset) for asset in DEMO_ASSETS]
    commands += [AddMarket(spec, MarketState.OPEN) for spec in demo_markets()]
    for account in (1, 2, 3):
        for asset in DEMO_ASSETS:
            commands.append(Deposit(account, asset.code,
                                    asset.to_minor(str(FUNDING[asset.code]))))
    return commands


class OurVenueServer:
    """haltguard's venue API for ``runtime`` on a free local port (uvicorn on a thread)."""

    def __init__(self, runtime: VenueRuntime) -> None:
        self.app = create_venue_app(runtime, TOKEN)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> OurVenueServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 10 s")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@contextmanager
def our_venue(data_dir: Path) -> Iterator[tuple[VenueRuntime, OurVenueServer]]:
    runtime = VenueRuntime(data_dir).start()
    try:
        for command in setup_commands():
            runtime.submit_and_wait(command)
        with OurVenueServer(runtime) as server:
            yield runtime, server
    finally:
        runtime.stop()


def our_spec(url: str, **overrides: str) -> AdapterSpec:
    return load_adapter(OURS_FILE, {"base_url": url, "admin_token": TOKEN, **overrides})


def other_spec(url: str, **overrides: str) -> AdapterSpec:
    return load_adapter(OTHER_FILE, {"base_url": url, "signing_secret": SECRET, **overrides})


@contextmanager
def other_venue(on_report: ReportSink | None = None, *, request_s: float | None = None,
                **secret: Any) -> Iterator[tuple[OtherVenue, AdapterVenueControl]]:
    """The other venue served, and an adapter to it from its file (``request_s``: a shorter
    time per call than the file's, for tests of timeouts)."""
    with OtherVenueServer() as server:
        spec = other_spec(server.url, **secret)
        if request_s is not None:
            spec = replace(spec, request_s=request_s)
        with AdapterVenueControl(spec, on_report=on_report) as control:
            yield server.venue, control
