"""The forwarder in front of the venue process passes a path on exactly as the client sent
it: the load shedder and the flood limiter in front of it decide on that path (admin routes
pass unlimited), so a path the HTTP client would rewrite on the way (``/v1/admin/../markets/
BTC-JPY/orders`` becomes an order) is refused instead of forwarded."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from haltguard.app.forwarding import VenueForwarder


class EchoVenue:
    """A stand-in HTTP server for the venue process that records each path it is asked for."""

    def __init__(self) -> None:
        self.paths: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.paths.append(scope["raw_path"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})


def _serve(app: ASGIApp) -> tuple[uvicorn.Server, threading.Thread, int]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


@pytest.fixture
def forwarded() -> Iterator[tuple[EchoVenue, int]]:
    """The echo venue on one port and the forwarder to it on another: (venue, its port)."""
    venue = EchoVenue()
    echo_server, echo_thread, echo_port = _serve(venue)
    forwarder = VenueForwarder(f"http://127.0.0.1:{echo_port}", lambda: "")
    front_server, front_thread, front_port = _serve(forwarder)
    try:
        yield venue, front_port
    finally:
        for server, thread in ((front_server, front_thread), (echo_server, echo_thread)):
            server.should_exit = True
            thread.join(10)


def _send(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """One request written byte for byte (an HTTP client library would rewrite the path)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: venue\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        )
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, content = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(content) if content else {}


@pytest.mark.parametrize("path", [
    "/v1/admin/../markets/BTC-JPY/orders",
    "/v1/admin/./../markets/BTC-JPY/orders",
    "/v1/markets/BTC-JPY/orders/..",
    "/v1/./health",
])
def test_a_path_with_dot_segments_is_refused_and_never_reaches_the_venue(
    forwarded: tuple[EchoVenue, int], path: str
) -> None:
    venue, port = forwarded
    status, answer = _send(port, "POST", path, b'{"account": 1}')

    assert status == 400
    assert answer["error"]["code"] == "invalid_path"
    assert "'.' or '..'" in answer["error"]["message"]
    assert venue.paths == []


def test_a_path_reaches_the_venue_exactly_as_sent(forwarded: tuple[EchoVenue, int]) -> None:
    venue, port = forwarded
    status, _ = _send(port, "GET", "/v1/markets/BTC-JPY/orders/a%2Fb%3F..?account=1")

    assert status == 200
    assert venue.paths == [b"/v1/markets/BTC-JPY/orders/a%2Fb%3F.."]


def test_a_slow_body_is_answered_408_without_holding_a_connection_to_the_venue() -> None:
    venue = EchoVenue()
    echo_server, echo_thread, echo_port = _serve(venue)
    forwarder = VenueForwarder(f"http://127.0.0.1:{echo_port}", lambda: "", receive_s_max=0.5)
    front_server, front_thread, front_port = _serve(forwarder)
    try:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", front_port), timeout=5) as connection:
            connection.sendall(b"POST /v1/markets/BTC-JPY/orders HTTP/1.1\r\nHost: venue\r\n"
                               b"Content-Length: 100\r\n\r\n{\"acc")
            answer = connection.recv(65536)
        took_s = time.monotonic() - started
    finally:
        for server, thread in ((front_server, front_thread), (echo_server, echo_thread)):
            server.should_exit = True
            thread.join(10)

    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"request_timeout"' in answer
    assert took_s < 2.5
    assert venue.paths == []
