"""The channel between ``serve``'s public port and the venue process: HTTP requests as frames.

``haltguard serve`` keeps the public port (so a venue restart loses no connection and the
operations pages stay up) and the venue runs in a child process. Forwarding each order as a
second HTTP request cost more than the order; instead the serving process sends the request
it already parsed as one frame on a kept-open connection, many in flight at once, and the
venue process answers each with one frame, in whatever order they finish::

    serving process ── ChannelClient ──[ ChannelRequest frames  ]──► ChannelServer ── venue app
                      (one connection,  [ ChannelResponse frames ]◄──  (on the venue  (fast order
                       pipelined)                                       process's loop)  lane first)

Frames, both ways: a 4-byte big-endian length and that many bytes of MessagePack, a
:class:`ChannelRequest` (id, method, path, query, headers, body, client address) or a
:class:`ChannelResponse` (the same id, status, headers, body). The venue process runs each
request through the same ASGI app its own HTTP port serves, with the address the serving
process saw as the client, so flood limits and load shedding see the real customer.

Trust: the channel listens on loopback only and carries the client address it is given, as
the venue's HTTP port trusts ``X-Forwarded-For`` from loopback; admin routes still need the
admin token (``docs/threat-model.md``).

Bounds: a request frame is at most :data:`REQUEST_FRAME_BYTES_MAX` (bodies are already
limited by the serving process); at most ``in_flight_max`` requests per connection are being
answered at once (the server stops reading beyond that: TCP pushes back). A frame that does
not decode closes the connection: the framing can no longer be trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, cast

import msgspec
from starlette.types import ASGIApp, Message

from haltguard.gateway.frames import FRAME_HEADER, take_frames

log = logging.getLogger(__name__)

REQUEST_FRAME_BYTES_MAX = 1024 * 1024
RESPONSE_FRAME_BYTES_MAX = 256 * 1024 * 1024
IN_FLIGHT_MAX_DEFAULT = 8_192
TIMEOUT_SWEEP_S = 0.5


class ChannelRequest(msgspec.Struct, array_like=True, frozen=True):
    """One HTTP request as the serving process received it."""

    id: int
    method: str
    path: str  # decoded, as the serving process's server gave it
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: str


class ChannelResponse(msgspec.Struct, array_like=True, frozen=True):
    """The venue's whole answer to the request with the same ``id``."""

    id: int
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


_encode = msgspec.msgpack.Encoder().encode
_decode_request = msgspec.msgpack.Decoder(ChannelRequest).decode
_decode_response = msgspec.msgpack.Decoder(ChannelResponse).decode


def frame(message: ChannelRequest | ChannelResponse) -> bytes:
    payload = _encode(message)
    return FRAME_HEADER.pack(len(payload)) + payload


class _Frames:
    """Splits a byte stream into frame payloads of at most ``bytes_max`` each."""

    def __init__(self, bytes_max: int) -> None:
        self.bytes_max = bytes_max
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        payloads, too_long = take_frames(self._buffer, self.bytes_max)
        if too_long is not None:
            raise ValueError(f"a frame of {too_long} bytes is over the {self.bytes_max} "
                             "allowed")
        return payloads


class _Outbox:
    """Frames written in one turn of the event loop leave in one write (one system call for
    many answers, instead of one each)."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not self._transport.is_closing():
            self._transport.write(b"".join(pending))


class _Connection(asyncio.Protocol):
    """What both ends keep of a connection: its frames in, its outbox out."""

    def __init__(self, frame_bytes_max: int) -> None:
        self.frames = _Frames(frame_bytes_max)
        self.transport: asyncio.Transport | None = None
        self.outbox: _Outbox | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.outbox = _Outbox(self.transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --- the venue process's side ----------------------------------------------------------


class _ServerConnection(_Connection):
    def __init__(self, server: ChannelServer) -> None:
        super().__init__(REQUEST_FRAME_BYTES_MAX)
        self.server = server
        self.in_flight = 0
        self.paused = False
        self.closed = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def data_received(self, data: bytes) -> None:
        try:
            payloads = self.frames.feed(data)
            requests = [_decode_request(payload) for payload in payloads]
        except (ValueError, msgspec.DecodeError) as exc:
            log.warning("channel: closing a connection that sent a bad frame: %s", exc)
            assert self.transport is not None
            self.transport.close()
            return
        direct = self.server.direct
        for request in requests:
            self.in_flight += 1
            if direct is not None and direct(request, self._reply):
                continue
            task = asyncio.ensure_future(self._answer(request))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if self.in_flight >= self.server.in_flight_max and not self.paused:
            self.paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    async def _answer(self, request: ChannelRequest) -> None:
        try:
            response = await self.server.answer(request, self.closed)
        except BaseException:
            self.in_flight -= 1
            raise
        self._reply(response)

    def _reply(self, response: ChannelResponse) -> None:
        self.in_flight -= 1
        transport = self.transport
        if transport is None or transport.is_closing() or self.outbox is None:
            return
        self.outbox.write(frame(response))
        if self.paused and self.in_flight < self.server.in_flight_max // 2:
            self.paused = False
            transport.resume_reading()


DirectAnswer = Callable[[ChannelRequest, Callable[[ChannelResponse], None]], bool]
"""Answers a request without the app (calling the reply once, now or later) and says True,
or says False and does nothing: the fast order lane's :meth:`answer_frame`."""


class ChannelServer:
    """Answers channel requests with ``app`` on the running loop (or ``direct`` first, when
    given); :meth:`start` listens."""

    def __init__(self, app: ASGIApp, listener: socket.socket, *,
                 in_flight_max: int = IN_FLIGHT_MAX_DEFAULT,
                 direct: DirectAnswer | None = None) -> None:
        self.app = app
        self.direct = direct
        self.listener = listener
        self.in_flight_max = in_flight_max
        self._server: asyncio.base_events.Server | None = None
        host, port = listener.getsockname()[:2]
        self._server_address = (str(host), int(port))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ServerConnection(self),
                                                sock=self.listener)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def answer(self, request: ChannelRequest, closed: asyncio.Event) -> ChannelResponse:
        """The app's whole answer to ``request``; a 500 in the venue's error shape if the app
        raised without answering (it is logged)."""
        path = request.path
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": request.method, "scheme": "http",
            "path": path, "raw_path": request.raw_path, "query_string": request.query,
            "root_path": "", "headers": request.headers, "client": (request.client, 0),
            "server": self._server_address, "state": {},
        }
        received = False

        async def receive() -> Message:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            await closed.wait()
            return {"type": "http.disconnect"}

        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(bytes(name), bytes(value)) for name, value in message["headers"]]
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("channel: the venue app raised on %s %s", request.method, path)
            body = (b'{"error":{"code":"internal_error","message":"the venue failed to '
                    b'answer this request; it is logged. Retry, and report it if it repeats"}}')
            return ChannelResponse(request.id, 500, [(b"content-type", b"application/json")],
                                   body)
        body = b"".join(chunks)
        if not any(name.lower() == b"content-length" for name, _ in headers):
            headers = [(name, value) for name, value in headers
                       if name.lower() != b"transfer-encoding"]
            headers.append((b"content-length", str(len(body)).encode()))
        return ChannelResponse(request.id, status, headers, body)


# --- the serving process's side --------------------------------------------------------


class ChannelClosedError(ConnectionError):
    """The connection to the venue process ended before the answer came."""


class _ClientConnection(_Connection):
    def __init__(self, client: ChannelClient) -> None:
        super().__init__(RESPONSE_FRAME_BYTES_MAX)
        self.client = client
        self.waiting: dict[int, tuple[asyncio.Future[ChannelResponse], float]] = {}

    def data_received(self, data: bytes) -> None:
        try:
            responses = [_decode_response(p) for p in self.frames.feed(data)]
        except (ValueError, msgspec.DecodeError) as exc:
            log.error("channel: the venue process sent a bad frame (%s); reconnecting", exc)
            assert self.transport is not None
            self.transport.close()
            return
        waiting = self.waiting
        for response in responses:
            entry = waiting.pop(response.id, None)
            if entry is not None and not entry[0].done():
                entry[0].set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(self)
        reason = ChannelClosedError(
            f"the connection to the venue process ended ({exc or 'closed'})")
        for future, _ in self.waiting.values():
            if not future.done():
                future.set_exception(reason)
        self.waiting.clear()


class ChannelClient:
    """Sends requests to a :class:`ChannelServer` on one connection, many in flight; made and
    used on one event loop. A lost connection fails what was waiting on it
    (:class:`ChannelClosedError`) and the next request connects again."""

    def __init__(self, host: str, port: int, *, timeout_s: float,
                 connect_timeout_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.clock = clock
        self._ids = itertools.count(1)
        self._connection: _ClientConnection | None = None
        self._connecting: asyncio.Future[_ClientConnection] | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def request(self, method: str, path: str, raw_path: bytes, *, query: bytes,
                      headers: list[tuple[bytes, bytes]], body: bytes,
                      client: str) -> ChannelResponse:
        """The venue's answer; :class:`ChannelClosedError` if the connection is lost or
        cannot be made, :class:`TimeoutError` after ``timeout_s``."""
        connection = self._connection
        if connection is None:
            connection = await self._connect()
        return await self._send(connection, ChannelRequest(
            next(self._ids), method, path, raw_path, query, headers, body, client))

    def send_now(self, method: str, path: str, raw_path: bytes, *, query: bytes,
                 headers: list[tuple[bytes, bytes]], body: bytes,
                 client: str) -> asyncio.Future[ChannelResponse] | None:
        """The venue's answer as a future, without a coroutine, when connected; None when
        there is no connection yet (then :meth:`request` makes one)."""
        connection = self._connection
        if connection is None:
            return None
        return self._send(connection, ChannelRequest(
            next(self._ids), method, path, raw_path, query, headers, body, client))

    def _send(self, connection: _ClientConnection,
              request: ChannelRequest) -> asyncio.Future[ChannelResponse]:
        future: asyncio.Future[ChannelResponse] = asyncio.get_running_loop().create_future()
        connection.waiting[request.id] = (future, self.clock())
        assert connection.outbox is not None
        connection.outbox.write(frame(request))
        return future

    async def _connect(self) -> _ClientConnection:
        if self._connecting is None:
            loop = asyncio.get_running_loop()
            self._connecting = loop.create_future()
            connecting = self._connecting
            try:
                _, protocol = await asyncio.wait_for(
                    loop.create_connection(lambda: _ClientConnection(self), self.host,
                                           self.port),
                    self.connect_timeout_s)
                self._connection = protocol
                connecting.set_result(protocol)
                self._schedule_sweep()
            except (OSError, TimeoutError) as exc:
                connecting.set_exception(ChannelClosedError(
                    f"cannot connect to the venue process at {self.host}:{self.port} "
                    f"({exc or type(exc).__name__})"))
            finally:
                self._connecting = None
            connecting.exception()  # retrieved here, raised below for every waiter
            return connecting.result()
        return await asyncio.shield(self._connecting)

    def _lost(self, connection: _ClientConnection) -> None:
        if self._connection is connection:
            self._connection = None

    def _schedule_sweep(self) -> None:
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(TIMEOUT_SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        """Fail the requests waiting longer than ``timeout_s`` (one timer for all of them,
        instead of one per request)."""
        self._sweeper = None
        connection = self._connection
        if connection is None:
            return
        oldest_allowed = self.clock() - self.timeout_s
        late = []
        for request_id, (_, sent) in connection.waiting.items():  # oldest first
            if sent >= oldest_allowed:
                break
            late.append(request_id)
        for request_id in late:
            future, _ = connection.waiting.pop(request_id)
            if not future.done():
                future.set_exception(TimeoutError(
                    f"the venue process did not answer within {self.timeout_s:g} s"))
        self._schedule_sweep()

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection.transport.close()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
