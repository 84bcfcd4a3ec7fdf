"""The forwarder in front of the venue process passes a path on exactly as the client sent
it: the load shedder and the flood limiter in front of it decide on that path (admin routes
pass unlimited), so a path the HTTP client would rewrite on the way (``/v1/admin/../markets/
BTC-JPY/orders`` becomes an order) is refused instead of forwarded."""

from __future__ import annotations

import asyncio
import contextlib
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
from haltguard.app.listening import bind_listener
from haltguard.gateway.channel import ChannelServer


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


class ChannelVenue:
    """``app`` answering the request channel on a loopback port, on a loop of its own thread,
    as the venue process answers it."""

    def __init__(self, app: ASGIApp) -> None:
        self.listener = bind_listener("127.0.0.1", 0)
        self.port: int = self.listener.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.server = ChannelServer(app, self.listener)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.listener.close()


@contextlib.contextmanager
def forwarder_to(venue: ASGIApp, *, receive_s_max: float = 10.0) -> Iterator[int]:
    """``venue`` behind the request channel, and the forwarder to it on an HTTP port (its
    port)."""
    channel = ChannelVenue(venue)
    forwarder = VenueForwarder("127.0.0.1", channel.port, lambda: "",
                               receive_s_max=receive_s_max)
    front_server, front_thread, front_port = _serve(forwarder)
    try:
        yield front_port
    finally:
        front_server.should_exit = True
        front_thread.join(10)
        channel.stop()


@pytest.fixture
def forwarded() -> Iterator[tuple[EchoVenue, int]]:
    """The echo venue behind its channel and the forwarder to it: (venue, forwarder port)."""
    venue = EchoVenue()
    with forwarder_to(venue) as port:
        yield venue, port


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
    with forwarder_to(venue, receive_s_max=0.5) as front_port:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", front_port), timeout=5) as connection:
            connection.sendall(b"POST /v1/markets/BTC-JPY/orders HTTP/1.1\r\nHost: venue\r\n"
                               b"Content-Length: 100\r\n\r\n{\"acc")
            answer = connection.recv(65536)
        took_s = time.monotonic() - started

    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"request_timeout"' in answer
    assert took_s < 2.5
    assert venue.paths == []


class AddressVenue:
    """Answers with the client address and the request as the venue app sees them."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        body = json.dumps({
            "client": scope["client"][0], "path": scope["path"],
            "query": scope["query_string"].decode(), "body": message["body"].decode(),
            "headers": {name.decode(): value.decode() for name, value in scope["headers"]},
        }).encode()
        await send({"type": "http.response.start", "status": 207,
                    "headers": [(b"content-type", b"application/json"), (b"x-venue", b"1")]})
        await send({"type": "http.response.body", "body": body})


def test_the_venue_sees_the_customers_address_path_query_and_body_and_its_answer_comes_back(
) -> None:
    with forwarder_to(AddressVenue()) as port:
        status, answer = _send(port, "POST", "/v1/markets/BTC%2DJPY/orders?x=1", b'{"a": 1}')

    assert status == 207
    assert answer["client"] == "127.0.0.1"
    assert answer["path"] == "/v1/markets/BTC-JPY/orders"  # decoded, as the server gave it
    assert answer["query"] == "x=1"
    assert answer["body"] == '{"a": 1}'
    assert answer["headers"]["content-type"] == "application/json"


def test_a_venue_that_is_not_listening_is_answered_503_naming_the_restart() -> None:
    with bind_listener("127.0.0.1", 0) as probe:
        closed_port = probe.getsockname()[1]  # closed again once the block ends
    forwarder = VenueForwarder("127.0.0.1", closed_port, lambda: "")
    server, thread, port = _serve(forwarder)
    try:
        status, answer = _send(port, "POST", "/v1/markets/BTC-JPY/orders", b'{"account": 1}')
    finally:
        server.should_exit = True
        thread.join(10)

    assert status == 503
    assert answer["error"]["code"] == "venue_restarting"
    assert "same client_order_id" in answer["error"]["message"]
