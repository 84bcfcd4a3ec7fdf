"""The assembled system: both APIs on one port, the escalation loop running with the app, the
demo only when asked, a venue elsewhere driven over HTTP, and failed starts leaving nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from haltguard.app.config import ConfigError, ServeConfig, load_config
from haltguard.app.system import StartError, System, served_paths, start_system
from haltguard.common.clock import utc_now
from haltguard.security.totp import code_at
from haltguard.venue.types import MarketState

SERVER_START_S_MAX = 10.0


def config_for(data_dir: Path, **overrides: str | int | bool) -> ServeConfig:
    """The venue on a thread (quick to start); tests/app/test_app_supervised.py runs it as
    a supervised process."""
    return load_config(None, environ={}, overrides={"data_dir": str(data_dir),
                                                      "venue.process": False, **overrides})


def thread_names() -> set[str]:
    return {thread.name for thread in threading.enumerate()}


@pytest.fixture
def demo_system(tmp_path: Path) -> Iterator[System]:
    system = start_system(config_for(tmp_path / "a", **{"venue.admin_token": "a" * 24}),
                          demo=True)
    yield system
    system.stop()


def log_in(client: TestClient, system: System) -> None:
    admin = system.first_admin
    assert admin is not None
    response = client.post("/api/auth/login", json={
        "username": admin.username, "password": admin.password,
        "totp_code": code_at(admin.enrolment.secret, utc_now()),
    })
    assert response.status_code == 200, response.text


def test_one_port_serves_the_venue_under_v1_and_operations_under_api(
    demo_system: System,
) -> None:
    with TestClient(demo_system.asgi_app(), base_url="https://testserver") as client:
        assert "haltguard-escalation" in thread_names()
        markets = client.get("/v1/markets").json()["markets"]
        assert {market["symbol"] for market in markets} == {"BTC-JPY", "ETH-JPY", "XRP-JPY"}
        refused = client.get("/api/incidents")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "not_authenticated"
        operations = set(client.get("/openapi.json").json()["paths"])
        venue = set(client.get("/venue/openapi.json").json()["paths"])
        assert "/api/incidents" in operations and "/api/oncall/people" in operations
        assert not any(path.startswith("/v1") for path in operations)
        assert "/v1/markets/{symbol}/depth" in venue
        assert "/venue/openapi.json" in client.get("/venue/docs").text
        assert client.get("/docs").status_code == 200
    assert {"/api/incidents", "/api/pages/{page_id}/ack", "/docs"} <= served_paths(
        demo_system.operations)
    assert "haltguard-escalation" not in thread_names()


def test_a_halt_through_the_operations_api_stops_the_venue_on_the_same_port(
    demo_system: System,
) -> None:
    with TestClient(demo_system.asgi_app(), base_url="https://testserver") as client:
        log_in(client, demo_system)
        incident = client.post("/api/incidents", json={
            "title": "ETH-JPY prices frozen", "category": "software_bug", "severity": "SEV3",
            "affected_markets": ["ETH-JPY"]}).json()
        halted = client.post(f"/api/incidents/{incident['id']}/actions/halt",
                             json={"markets": ["ETH-JPY"], "reason": "prices frozen"})
        assert halted.status_code == 200, halted.text
        states = {m["symbol"]: m["state"] for m in client.get("/v1/markets").json()["markets"]}
    assert states == {"BTC-JPY": "open", "ETH-JPY": "halted", "XRP-JPY": "open"}


def test_without_the_demo_nothing_is_invented(tmp_path: Path) -> None:
    system = start_system(config_for(tmp_path), demo=False)
    try:
        assert system.demo_flow is None
        with TestClient(system.asgi_app()) as client:
            assert client.get("/v1/markets").json()["markets"] == []
    finally:
        system.stop()


def serve_in_thread(system: System) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(system.asgi_app(), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S_MAX
    while not server.started:
        assert time.monotonic() < deadline, "the venue's server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(SERVER_START_S_MAX)


@pytest.fixture
def venue_url(demo_system: System) -> Iterator[str]:
    yield from serve_in_thread(demo_system)


def test_with_a_venue_elsewhere_the_protective_actions_go_to_it_over_http(
    demo_system: System, venue_url: str, tmp_path: Path
) -> None:
    config = config_for(tmp_path / "b", **{"venue.admin_token": "a" * 24})
    remote = start_system(replace(config, venue_url=venue_url), demo=False)
    try:
        assert remote.runtime is None and remote.remote_venue_problem == ""
        with TestClient(remote.asgi_app(), base_url="https://testserver") as client:
            assert client.get("/v1/markets").status_code == 404  # no venue runs here
            log_in(client, remote)
            incident = client.post("/api/incidents", json={
                "title": "XRP-JPY deposits delayed", "category": "network",
                "severity": "SEV3", "affected_markets": ["XRP-JPY"]}).json()
            halted = client.post(f"/api/incidents/{incident['id']}/actions/halt",
                                 json={"markets": ["XRP-JPY"], "reason": "node lagging"})
            assert halted.status_code == 200, halted.text
    finally:
        remote.stop()
    assert demo_system.venue_control.market_states()["XRP-JPY"] is MarketState.HALTED


def test_the_demo_with_a_venue_elsewhere_is_refused(tmp_path: Path) -> None:
    config = replace(config_for(tmp_path), venue_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="--demo needs the venue on this machine"):
        start_system(config, demo=True)


def test_an_unreachable_database_stops_the_start_and_the_venue(tmp_path: Path) -> None:
    config = replace(config_for(tmp_path),
                     database_url="postgresql://haltguard:pw@127.0.0.1:9/haltguard")
    with pytest.raises(StartError) as refused:
        start_system(config, demo=True)
    message = str(refused.value)
    assert "cannot open the operations database postgresql://haltguard:***@127.0.0.1:9" in message
    assert "Check database.url (or HALTGUARD_DATABASE_URL)" in message
    assert "pw@" not in message
    assert "venue" not in thread_names()


def test_the_system_runs_on_the_database_the_configuration_names(
    tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "data"
    system = start_system(replace(config_for(data_dir), database_url=database_url), demo=False)
    try:
        assert not (data_dir / "haltguard.sqlite3").exists()  # not the default database
        with TestClient(system.asgi_app(), base_url="https://testserver") as client:
            log_in(client, system)
            me = client.get("/api/auth/me").json()
        assert me["username"] == "admin" and me["role"] == "admin"
    finally:
        system.stop()
