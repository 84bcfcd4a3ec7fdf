"""Helpers and fixtures for the gateway tests: a real runtime on a temporary data directory,
its HTTP app, and a real uvicorn server for clients that need a socket. No mocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from haltguard.app.venue_app import create_venue_app
from haltguard.gateway.runtime import RuntimeLimits, VenueRuntime
from haltguard.venue.commands import AddAsset, AddMarket, Command, Deposit
from haltguard.venue.markets import DEMO_ASSETS, demo_markets
from haltguard.venue.types import MarketState

TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
FUNDED_ACCOUNTS = (1, 2, 3)
# Whole units per funded account: 1e9 JPY, 10 BTC, 100 ETH, 1e6 XRP.
FUNDING = {"JPY": 1_000_000_000, "BTC": 10, "ETH": 100, "XRP": 1_000_000}


def setup_commands() -> list[Command]:
    """The demo assets, the three JPY markets open, accounts 1-3 funded."""
    commands: list[Command] = [AddAsset(asset) for asset in DEMO_ASSETS]
    commands += [AddMarket(spec, MarketState.OPEN) for spec in demo_markets()]
    for account in FUNDED_ACCOUNTS:
        for asset in DEMO_ASSETS:
            commands.append(Deposit(account, asset.code, asset.to_minor(str(FUNDING[asset.code]))))
    return commands


def start_runtime(data_dir: Path, *, set_up: bool = True, **limits: Any) -> VenueRuntime:
    runtime = VenueRuntime(data_dir, limits=RuntimeLimits(**limits)).start()
    if set_up:
        for command in setup_commands():
            runtime.submit_and_wait(command)
    return runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[VenueRuntime]:
    runtime = start_runtime(tmp_path / "venue")
    yield runtime
    runtime.stop()


@pytest.fixture
def client(runtime: VenueRuntime) -> Iterator[TestClient]:
    with TestClient(create_venue_app(runtime, TOKEN)) as test_client:
        yield test_client


class LiveServer:
    """uvicorn serving the venue app on a free local port, in a background thread."""

    def __init__(self, runtime: VenueRuntime) -> None:
        config = uvicorn.Config(
            create_venue_app(runtime, TOKEN), host="127.0.0.1", port=0, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
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


@pytest.fixture
def live_server(runtime: VenueRuntime) -> Iterator[LiveServer]:
    with LiveServer(runtime) as server:
        yield server
