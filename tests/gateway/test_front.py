"""The public port's front door answers plain orders exactly as the full server stack would
(shedding, forwarder, request channel, venue) and hands everything else, in order, to that
stack, on the same connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from gateway_support import TOKEN, start_runtime
from test_fastlane import REQUESTS
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from haltguard.app.forwarding import VenueForwarder
from haltguard.app.listening import bind_listener
from haltguard.app.venue_app import create_venue_app
from haltguard.gateway.app import venue_body_limits
from haltguard.gateway.channel import ChannelServer
from haltguard.gateway.fastlane import OrderFastLane, with_fast_lane
from haltguard.gateway.front import PublicFront
from haltguard.gateway.limits import SheddingSettings
from haltguard.gateway.runtime import VenueRuntime
from haltguard.gateway.shedding import LoadGuard, LoadSheddingMiddleware
from haltguard.web.asgi import BodyLimitMiddleware

ORDERS = "/v1/markets/BTC-JPY/orders"
_TS = re.compile(rb'"ts":\d+')


class ChannelVenue:
    """A venue app (with its fast lane) answering the request channel on a thread's loop, as
    the venue process does, direct order answers included."""

    def __init__(self, lane: OrderFastLane, *, direct: bool) -> None:
        self.listener = bind_listener("127.0.0.1", 0)
        self.port: int = self.listener.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.server = ChannelServer(lane, self.listener,
                                    direct=lane.answer_frame if direct else None)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.listener.close()


@dataclass
class PublicPort:
    port: int
    front: PublicFront | None
    lane: OrderFastLane
    runtime: VenueRuntime


@contextlib.contextmanager
def public_port(data_dir: Path, *, with_front: bool = True, receive_s_max: float = 10.0,
                down: Callable[[], str] = lambda: "",
                settings: SheddingSettings | None = None) -> Iterator[PublicPort]:
    """A venue behind its channel, and serve's public stack in front of it on a port: load
    shedding and the forwarder, with the front door and the venue's direct channel answers
    (or, for comparison, neither: every order through the ASGI apps)."""
    runtime = start_runtime(data_dir)
    lane = with_fast_lane(create_venue_app(runtime, TOKEN))
    venue = ChannelVenue(lane, direct=with_front)
    forwarder = VenueForwarder("127.0.0.1", venue.port, down, receive_s_max=receive_s_max)
    guard: LoadGuard[Any] = LoadGuard(
        settings or SheddingSettings(order_capacity_per_s=1_000_000), lambda: (0, 10_000))
    app = BodyLimitMiddleware(LoadSheddingMiddleware(forwarder, guard),
                              limits=venue_body_limits(receive_s_max))
    front = PublicFront(channel=forwarder.channel, down_reason=down, guard=guard,
                        receive_s_max=receive_s_max)
    options: dict[str, Any] = {}
    if with_front:
        options["http"] = front.protocol_factory(HttpToolsProtocol)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield PublicPort(server.servers[0].sockets[0].getsockname()[1],
                         front if with_front else None, lane, runtime)
    finally:
        server.should_exit = True
        thread.join(10)
        venue.stop()
        runtime.stop()


def order_request(body: Any, path: str = ORDERS, *, headers: str = "",
                  content_type: str = "application/json") -> bytes:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: exchange\r\nContent-Type: {content_type}\r\n"
            f"{headers}Content-Length: {len(content)}\r\n\r\n").encode() + content


def exchange(port: int, data: bytes, answers: int, *,
             then: bytes = b"") -> list[tuple[int, dict[str, str], bytes]]:
    """Write ``data`` (and ``then`` after the first answer) on one connection; read
    ``answers`` answers: (status, headers, body with its ``ts`` zeroed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(data)
        buffer = b""
        read: list[tuple[int, dict[str, str], bytes]] = []
        while len(read) < answers:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buffer[:head_end].decode("latin-1").split("\r\n")
                headers = {}
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                if len(buffer) >= head_end + 4 + length:
                    body = buffer[head_end + 4:head_end + 4 + length]
                    buffer = buffer[head_end + 4 + length:]
                    read.append((int(head[0].split(" ")[1]), headers, _TS.sub(b'"ts":0', body)))
                    if len(read) == 1 and then:
                        connection.sendall(then)
                    continue
            chunk = connection.recv(65536)
            assert chunk, f"the connection closed after {len(read)} answers"
            buffer += chunk
    return read


def test_every_order_is_answered_by_the_fast_paths_byte_for_byte_as_the_full_stack_answers(
    tmp_path: Path,
) -> None:
    with public_port(tmp_path / "front") as fast, \
            public_port(tmp_path / "full", with_front=False) as full:
        for path, body in REQUESTS:
            ours = exchange(fast.port, order_request(body, path), 1)[0]
            theirs = exchange(full.port, order_request(body, path), 1)[0]
            assert (ours[0], ours[2]) == (theirs[0], theirs[2]), (path, body)
            assert ours[1]["content-type"] == theirs[1]["content-type"]
        assert fast.front is not None
        assert fast.front.answered >= 20  # the plain orders took the front
        assert fast.lane.answered >= 5  # accepted orders, answered by the venue without ASGI


def test_pipelined_orders_are_answered_in_request_order(tmp_path: Path) -> None:
    orders = [{"account": 1 + n % 3, "side": "buy", "qty": "0.01", "price": "4000000",
               "client_order_id": f"pipe-{n}"} for n in range(40)]
    with public_port(tmp_path / "venue") as port:
        answers = exchange(port.port, b"".join(order_request(o) for o in orders), 40)

    assert [status for status, _, _ in answers] == [201] * 40
    assert [json.loads(body)["order"]["client_order_id"] for _, _, body in answers] == [
        f"pipe-{n}" for n in range(40)]


def test_a_request_that_is_not_a_plain_order_goes_to_the_full_server_in_order(
    tmp_path: Path,
) -> None:
    order = {"account": 1, "side": "buy", "qty": "0.01", "price": "4000000"}
    data = (order_request(order) + b"GET /v1/health HTTP/1.1\r\nHost: exchange\r\n\r\n"
            + order_request(order))
    with public_port(tmp_path / "venue") as port:
        answers = exchange(port.port, data, 3)
        assert port.front is not None
        handed_over = port.front.handed_over

    assert [status for status, _, _ in answers] == [200 if n == 1 else 201 for n in range(3)]
    assert json.loads(answers[0][2])["order"]["status"] == "resting"
    assert "server" in answers[1][1]  # the full server's answer
    assert handed_over == 1


def test_an_unreadable_order_body_is_worded_by_the_venues_route(tmp_path: Path) -> None:
    with public_port(tmp_path / "venue") as port:
        status, _, body = exchange(port.port, order_request(b'{"account": 1, "side": '), 1)[0]

    assert status == 422
    assert json.loads(body)["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(("request_bytes", "status"), [
    (order_request({"account": 1, "side": "buy", "qty": "0.1", "price": "1"},
                   content_type="text/plain"), 422),
    (order_request(b"{" + b" " * 20_000 + b"}"), 413),  # over the order body limit
    (b"POST /v1/markets/BTC-JPY/orders HTTP/1.1\r\nHost: e\r\nContent-Type: application/json"
     b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n", 422),
    (b"POST /v1/markets/BTC-JPY/orders HTTP/1.1\r\nHost: e\r\nContent-Type: application/json"
     b"\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),  # two lengths
])
def test_a_body_the_front_is_not_sure_of_is_judged_by_the_full_server(
    tmp_path: Path, request_bytes: bytes, status: int,
) -> None:
    with public_port(tmp_path / "venue") as port:
        answer = exchange(port.port, request_bytes, 1)[0]
        assert port.front is not None
        answered = port.front.answered

    assert answer[0] == status, answer
    assert answered == 0


def test_an_order_body_in_pieces_is_awaited_and_placed(tmp_path: Path) -> None:
    request = order_request({"account": 1, "side": "buy", "qty": "0.01", "price": "4000000"})
    head, body = request.split(b"\r\n\r\n")
    with public_port(tmp_path / "venue") as port, \
            socket.create_connection(("127.0.0.1", port.port), timeout=5) as connection:
        connection.sendall(head + b"\r\n\r\n" + body[:10])
        time.sleep(0.2)
        connection.sendall(body[10:])
        answer = connection.recv(65536)
        assert port.front is not None
        front_answered = port.front.answered

    assert answer.startswith(b"HTTP/1.1 201"), answer
    assert front_answered == 1


@pytest.mark.parametrize("with_front", [True, False])
def test_an_order_body_not_whole_in_time_is_answered_408_and_the_connection_closed(
    tmp_path: Path, with_front: bool,
) -> None:
    with public_port(tmp_path / "venue", receive_s_max=0.5, with_front=with_front) as port, \
            socket.create_connection(("127.0.0.1", port.port), timeout=5) as connection:
        started = time.monotonic()
        connection.sendall(b"POST /v1/markets/BTC-JPY/orders HTTP/1.1\r\nHost: e\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        answer = connection.recv(65536)
        took_s = time.monotonic() - started
        after = connection.recv(65536) if with_front else b""

    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"request_timeout"' in answer
    assert took_s < 2.5
    assert after == b""  # the front closes: the rest of that body is not a request


def test_while_the_venue_restarts_an_order_is_answered_503_by_the_forwarder(
    tmp_path: Path,
) -> None:
    with public_port(tmp_path / "venue", down=lambda: "the venue process is restarting") as p:
        status, _, body = exchange(p.port, order_request(
            {"account": 1, "side": "buy", "qty": "0.01", "price": "4000000"}), 1)[0]

    assert status == 503
    assert json.loads(body)["error"]["code"] == "venue_restarting"


def test_the_front_sheds_orders_over_capacity_as_the_shedder_does(tmp_path: Path) -> None:
    order = {"account": 1, "side": "buy", "qty": "0.01", "price": "4000000"}
    settings = SheddingSettings(order_capacity_per_s=1, client_burst=1, capacity_burst_ms=1)
    with public_port(tmp_path / "venue", settings=settings) as port:
        answers = exchange(port.port, order_request(order) * 3, 3)

    statuses = [status for status, _, _ in answers]
    assert statuses[0] == 201
    assert set(statuses[1:]) <= {429, 503}
    refused = json.loads(answers[-1][2])["error"]
    assert refused["code"] in {"overloaded", "over_fair_share"}
    assert answers[-1][1].get("retry-after")


def test_an_idle_connection_is_closed_after_the_keep_alive_time(tmp_path: Path) -> None:
    order = {"account": 1, "side": "buy", "qty": "0.01", "price": "4000000"}
    with public_port(tmp_path / "venue") as port, \
            socket.create_connection(("127.0.0.1", port.port), timeout=15) as connection:
        connection.sendall(order_request(order))
        first = connection.recv(65536)
        started = time.monotonic()
        rest = connection.recv(65536)  # b"" once the server closes
        idle_s = time.monotonic() - started

    assert first.startswith(b"HTTP/1.1 201")
    assert rest == b""
    assert 3 <= idle_s <= 10  # uvicorn's keep-alive time (5 s) for both paths


def test_a_client_that_never_reads_its_answers_holds_up_no_one_else(tmp_path: Path) -> None:
    order = {"account": 1, "side": "buy", "qty": "0.01", "price": "4000000"}
    flood = order_request(order) * 20_000  # answers far beyond what socket buffers hold
    with public_port(tmp_path / "venue") as port, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stuck:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the handshake
        stuck.connect(("127.0.0.1", port.port))
        stuck.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 8
        while sent < len(flood) and time.monotonic() < deadline:
            try:
                sent += stuck.send(flood[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.05)  # the front stopped reading: TCP pushes back
        started = time.monotonic()
        other = exchange(port.port, order_request(order), 1)[0]
        took_s = time.monotonic() - started
        placed = port.runtime.status().commands

    assert other[0] == 201
    assert took_s < 2
    assert placed < 20_000, placed  # the front stopped taking its orders
