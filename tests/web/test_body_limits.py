"""Request bodies are bounded on both APIs: by size per route (small for what anyone may send
without logging in, larger for whole documents) and by the time the whole body may take to
arrive. A refused body never reaches a route; the answer is the APIs' JSON error."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from starlette.types import ASGIApp

from haltguard.app.operations import create_app
from haltguard.app.venue_app import create_venue_app
from haltguard.gateway.app import VENUE_BODY_BYTES_MAX
from haltguard.gateway.runtime import VenueRuntime
from haltguard.security.testing import fast_test_settings
from haltguard.web.asgi import BodyLimits
from haltguard.web.settings import (
    BODY_BYTES_MAX_DEFAULT,
    PUBLIC_BODY_BYTES_MAX_DEFAULT,
    Settings,
)

SLOW_S_MAX = 0.5


def _ops_app(engine: Engine, **limits: Any) -> FastAPI:
    app = create_app(Settings(database_url="unused", migrate_on_start=False, **limits),
                     engine=engine, escalation_interval_s=None,
                     security_settings=fast_test_settings())
    return app


class Served:
    """An ASGI app served by uvicorn on a loopback port, on a thread."""

    def __init__(self, app: ASGIApp) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _partial_request(port: int, path: str, declared: int, sent: bytes,
                     wait_s: float) -> tuple[int, dict[str, Any], float]:
    """Headers claiming ``declared`` bytes, then only ``sent``: the status, the error body and
    how long the answer took, or status 0 if none came within ``wait_s``."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode() + sent
        )
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}}"):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            return 0, {}, time.monotonic() - started
    head, _, content = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, json.loads(content) if content else {}, time.monotonic() - started


@pytest.fixture
def ops_client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(_ops_app(engine), base_url="https://testserver") as client:
        yield client


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_oversized_public_subscription_is_refused_with_413_before_it_is_parsed(
    ops_client: TestClient,
) -> None:
    phrase = "x" * (PUBLIC_BODY_BYTES_MAX_DEFAULT + 1)
    response = ops_client.post("/api/notify/subscriptions/email",
                               json={"email": "a@example.com", "anti_phishing_phrase": phrase})

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert f"larger than {PUBLIC_BODY_BYTES_MAX_DEFAULT} bytes" in error["message"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_chunked_body_without_a_length_is_cut_off_at_the_routes_limit(
    ops_client: TestClient,
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * 1024

    response = ops_client.post("/api/auth/login", content=chunks(),
                               headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_alert_intake_takes_a_batch_larger_than_any_form_route(
    ops_client: TestClient,
) -> None:
    alerts = [{"name": f"Disk{i}", "annotations": {"summary": "s" * 3000}} for i in range(100)]
    body = {"source": "monitor", "alerts": alerts}
    assert len(json.dumps(body)) > BODY_BYTES_MAX_DEFAULT

    response = ops_client.post("/api/detection/alerts/webhook", json=body)

    assert response.status_code != 413  # refused for its token, not its size
    assert response.json()["error"]["code"] != "request_too_large"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_declared_100_mb_body_is_refused_at_once_without_reading_it(engine: Engine) -> None:
    with Served(_ops_app(engine)) as served:
        status, answer, took_s = _partial_request(
            served.port, "/api/notify/subscriptions/webhook", 100_000_000, b'{"url": "', 5.0)

    assert status == 413, answer
    assert answer["error"]["code"] == "request_too_large"
    assert took_s < 2.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_body_that_does_not_arrive_in_time_is_answered_408_and_the_connection_freed(
    engine: Engine,
) -> None:
    with Served(_ops_app(engine, body_receive_s_max=SLOW_S_MAX)) as served:
        status, answer, took_s = _partial_request(served.port, "/api/auth/login", 100,
                                                  b'{"us', 5.0)

    assert status == 408, answer
    assert answer["error"]["code"] == "request_timeout"
    assert f"{SLOW_S_MAX:g} s" in answer["error"]["message"]
    assert took_s < SLOW_S_MAX + 2.0


def test_the_venue_refuses_an_oversized_admin_body_and_a_slow_one(tmp_path: Path) -> None:
    runtime = VenueRuntime(tmp_path / "venue").start()
    try:
        limits = BodyLimits(VENUE_BODY_BYTES_MAX, receive_s_max=SLOW_S_MAX)
        app = create_venue_app(runtime, "venue-admin-token", body_limits=limits)
        with Served(app) as served:
            big = _partial_request(served.port, "/v1/admin/kill-switch", 50_000_000, b"{", 5.0)
            slow = _partial_request(served.port, "/v1/admin/kill-switch", 100, b'{"en', 5.0)
            order = _partial_request(served.port, "/v1/markets/BTC-JPY/orders", 100, b"{", 5.0)
    finally:
        runtime.stop()

    assert big[0] == 413 and big[1]["error"]["code"] == "request_too_large"
    assert slow[0] == 408 and slow[1]["error"]["code"] == "request_timeout"
    assert order[0] == 408 and order[1]["error"]["code"] == "request_timeout"
    assert runtime.status().commands == 0
