"""Streaming order entry: pipelined orders on one TCP connection, acknowledged in order.

For market makers and brokers, for whom one HTTP request per order costs more than the
order. The venue process serves it on its own port (``haltguard venue run --stream-port``,
``venue.stream_port`` under ``serve``).

Wire format, both ways: frames of a 4-byte big-endian length and that many bytes of
MessagePack. A client sends order frames without waiting; every frame gets exactly one
answer frame, in the order sent::

    -> {"market": "BTC-JPY", "account": 1, "side": "buy", "qty": "0.01", "price": "5000000",
        "client_order_id": "mm-1"}          (the REST body of POST /v1/markets/{m}/orders,
                                             plus "market"; the same grammar and defaults)
    <- {"seq": 42, "ts": ..., "repeated": false, "order": {...}, "trades": [...]}
    <- {"error": {"code": "invalid_quantity", "message": "...", "seq": 43}}

An answer is sent only once its order is journaled and fsynced and applied, exactly as the
REST route answers; the error codes are the REST route's. A valid order takes the fast path
of :mod:`haltguard.gateway.stream_codec` (a msgspec struct with the REST model's types, grids
that remember converted text, answers rendered as structs), which takes exactly what the REST
route takes and renders the REST route's ``order`` and ``trades`` byte for byte (the
stream leaves out the route's full ``events`` list); anything else is judged and answered by
the REST route's own model and conversions (:class:`PlaceOrderRequest`,
:func:`order_command`), so every error is the REST route's.
There is no authentication step, as on the REST order route: whatever sits in front of the
venue checks that a caller owns the accounts it names.

Bounds (:class:`StreamLimits`), per connection: at most ``unacked_max`` orders read and not
yet answered (the server stops reading: TCP pushes back on the client); a frame longer
than ``frame_bytes_max`` gets a ``frame_too_large`` error frame and the connection is closed
(the framing can no longer be trusted); answers waiting in the write buffer beyond
``write_buffer_bytes_max`` for longer than ``write_stall_s_max`` (a client that does not read)
drop the connection. A full venue queue answers the orders it refused with ``overloaded``
and ``retry_after_s``. Whatever happens to a connection, an order read from it was either
refused before the venue saw it or is journaled: nothing acknowledged is lost, and a
client that disconnects mid-batch leaves the rest of the venue untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec
from pydantic import ValidationError

from haltguard.gateway.frames import FRAME_HEADER, take_frames
from haltguard.gateway.models import PlaceOrderRequest, Units
from haltguard.gateway.runtime import (
    CommandQuarantinedError,
    CommandRefusedError,
    CommandResult,
    Outcome,
    OverloadedError,
    VenueRuntime,
    VenueUnavailableError,
)
from haltguard.gateway.stream_codec import StreamCodec
from haltguard.gateway.views import (
    order_command,
    order_outcome,
    raise_if_rejected,
    render_open_order,
    spec_of,
)
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.events import OrderRepeated, Trade
from haltguard.web.errors import ApiError, error_body

log = logging.getLogger(__name__)

READ_BYTES_MAX = 256 * 1024  # read from the socket at most this much at a time
LINGER_S = 2.0  # after the last answer of a closed connection, input is discarded this long


@dataclass(frozen=True)
class StreamLimits:
    """Every bound of the streaming order entry; checked at construction."""

    frame_bytes_max: int = 4_096  # one order frame, header excluded
    unacked_max: int = 8_192  # orders read from one connection and not yet answered
    write_buffer_bytes_max: int = 4 * 1024 * 1024  # answers waiting for a slow reader
    write_stall_s_max: float = 10.0  # ... this long at most, then the connection is dropped
    connections_max: int = 256  # open connections; the next ones are refused

    def __post_init__(self) -> None:
        for name in ("frame_bytes_max", "unacked_max", "write_buffer_bytes_max",
                     "connections_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"StreamLimits.{name} must be at least 1")
        if not self.write_stall_s_max > 0:
            raise ValueError("StreamLimits.write_stall_s_max must be more than 0")


class StreamStartError(RuntimeError):
    """The streaming port could not be opened; the message says what to check."""


def encode_frame(message: object) -> bytes:
    """One frame: the length header and the MessagePack body."""
    body = msgspec.msgpack.encode(message)
    return FRAME_HEADER.pack(len(body)) + body


def _error(code: str, message: str, message_ja: str = "", **details: object) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, **details}
    if message_ja:
        error["message_ja"] = message_ja
    return {"error": error}


def _invalid_request(exc: ValidationError) -> dict[str, Any]:
    named = [f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
             for problem in exc.errors(include_url=False)]
    return _error(
        "invalid_request",
        "the order is not valid: " + "; ".join(named) + ". Fix these fields and send it "
        "again (the body of POST /v1/markets/{market}/orders, plus 'market').",
        "注文の内容が正しくありません。指摘された項目を直して再送してください。",
    )


_NOT_A_MAP = _error(
    "invalid_frame",
    "the frame is not a MessagePack map; send one order per frame as a map of the REST "
    "order fields plus 'market'",
    "フレームが MessagePack のマップではありません。1 フレームに 1 注文をマップで送ってください。",
)


class _Connection:
    """One client: a reader that parses and submits, a writer that answers in order."""

    def __init__(self, runtime: VenueRuntime, limits: StreamLimits, codec: StreamCodec,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.runtime = runtime
        self.limits = limits
        self.codec = codec
        self.reader = reader
        self.writer = writer
        # Each entry: the answers fixed at parse time (None where the venue decides) and
        # the venue's outcome for the others.
        self._batches: deque[tuple[list[Any], list[PlaceOrder], asyncio.Future[Any] | None]]
        self._batches = deque()
        self._unacked = 0
        self._room = asyncio.Event()
        self._work = asyncio.Event()
        self._closing = False

    async def serve(self) -> None:
        transport = self.writer.transport
        transport.set_write_buffer_limits(high=self.limits.write_buffer_bytes_max)
        writing = asyncio.ensure_future(self._write_answers())
        try:
            await self._read_orders()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._closing = True
            self._work.set()
            with contextlib.suppress(Exception):
                await writing
            with contextlib.suppress(Exception):
                await self._close_gently()

    async def _close_gently(self) -> None:
        """Close after the last answer: send FIN, then discard what the client still sends
        for a moment. Closing with unread input would send a reset, and a reset can make the
        client's system drop the last answer (the error saying why) before it is read."""
        writer = self.writer
        if not writer.is_closing() and writer.can_write_eof():
            writer.write_eof()
            deadline = asyncio.get_running_loop().time() + LINGER_S
            with contextlib.suppress(TimeoutError, ConnectionError):
                while chunk := await asyncio.wait_for(
                    self.reader.read(READ_BYTES_MAX),
                    max(0.0, deadline - asyncio.get_running_loop().time()),
                ):
                    del chunk
        writer.close()

    async def _read_orders(self) -> None:
        buffer = bytearray()
        frame_max = self.limits.frame_bytes_max
        # One submit_many takes at most the venue's whole queue.
        batch_max = min(self.limits.unacked_max, self.runtime.limits.queue_depth_max)
        while not self._closing:
            room = min(self.limits.unacked_max - self._unacked, batch_max)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            frames, too_long = take_frames(buffer, frame_max, room)
            if too_long is not None:
                if frames:  # the frames before it are answered first, in order
                    self._submit(frames)
                self._queue_fatal(_error(
                    "frame_too_large",
                    f"a frame of {too_long} bytes is over the limit of {frame_max}; the "
                    "connection is closed. Send one order per frame",
                    f"フレームが {frame_max} バイトの上限を超えています ({too_long} バイト)。"
                    "接続を閉じます。1 フレームに 1 注文を送ってください。",
                ))
                return
            if frames:
                self._submit(frames)
                continue
            chunk = await self.reader.read(READ_BYTES_MAX)
            if not chunk:
                return
            buffer += chunk

    def _submit(self, frames: list[bytes]) -> None:
        """Parse ``frames`` into orders, submit them in one go and queue their answers."""
        units = self.runtime.units()
        answers: list[Any] = []
        commands: list[PlaceOrder] = []
        fast_order = self.codec.order
        for frame in frames:
            command = fast_order(frame, units)
            if command is not None:
                commands.append(command)
                answers.append(None)
                continue
            try:
                data = msgspec.msgpack.decode(frame)
            except msgspec.DecodeError as exc:
                answers.append(_error(
                    "invalid_frame", f"the frame is not MessagePack ({exc}); send one order "
                    "per frame as a map", "フレームが MessagePack として読めません。"))
                continue
            answer = _order_of(data, units)
            if isinstance(answer, PlaceOrder):
                commands.append(answer)
                answers.append(None)
            else:
                answers.append(answer)
        outcome: asyncio.Future[Any] | None = None
        if commands:
            try:
                outcome = self.runtime.submit_many(commands)
            except OverloadedError as exc:
                refusal = _error("overloaded", str(exc), "取引所の受付が混み合っています。"
                                 f"{exc.retry_after_s} 秒後に同じ client_order_id で再送して"
                                 "ください。", retry_after_s=exc.retry_after_s)
                answers = [refusal if answer is None else answer for answer in answers]
                commands = []
            except VenueUnavailableError as exc:
                refusal = _error("venue_unavailable", str(exc), "取引所が停止しています。")
                answers = [refusal if answer is None else answer for answer in answers]
                commands = []
                self._closing = True
        self._batches.append((answers, commands, outcome))
        self._unacked += len(answers)
        self._work.set()

    def _queue_fatal(self, answer: dict[str, Any]) -> None:
        self._batches.append(([answer], [], None))
        self._unacked += 1
        self._closing = True
        self._work.set()

    async def _write_answers(self) -> None:
        writer = self.writer
        stall_s = self.limits.write_stall_s_max
        while True:
            if not self._batches:
                if self._closing:
                    return
                self._work.clear()
                await self._work.wait()
                continue
            answers, commands, outcome = self._batches.popleft()
            outcomes: list[Outcome] = await outcome if outcome is not None else []
            frames = self._render(answers, commands, outcomes)
            if not writer.is_closing():
                writer.write(frames)
            self._unacked -= len(answers)
            self._room.set()
            try:
                await asyncio.wait_for(writer.drain(), stall_s)
            except TimeoutError:
                log.warning("a stream client read none of its answers for %.1f s (%d bytes "
                            "waiting); dropping it", stall_s,
                            writer.transport.get_write_buffer_size())
                self._drop()
                return
            except ConnectionError:
                self._drop()
                return

    def _drop(self) -> None:
        """Close now; the orders still queued are journaled regardless, unanswered."""
        self._closing = True
        self._room.set()
        self.writer.transport.abort()

    def _render(self, answers: list[Any], commands: list[PlaceOrder],
                outcomes: list[Outcome]) -> bytearray:
        units = self.runtime.units()
        fast_answer = self.codec.answer
        encode_into = self.codec.encode_into
        pack_header = FRAME_HEADER.pack_into
        header_size = FRAME_HEADER.size
        placeholder = bytes(header_size)
        frames = bytearray()
        venue_answers = iter(outcomes)
        for fixed in answers:
            answer = fixed
            if answer is None:
                outcome = next(venue_answers)
                if type(outcome) is CommandResult:
                    answer = fast_answer(outcome, units)
                if answer is None:
                    answer = _answer_of(self.runtime, outcome, units)
            start = len(frames)
            frames += placeholder
            encode_into(answer, frames, -1)
            pack_header(frames, start, len(frames) - start - header_size)
        return frames


def _order_of(data: object, units: Units) -> PlaceOrder | dict[str, Any]:
    """The venue command for one decoded frame, or the error answer saying what is wrong."""
    if not isinstance(data, dict):
        return _NOT_A_MAP
    fields = dict(data)
    market = fields.pop("market", None)
    if not isinstance(market, str):
        return _error("invalid_request", "the order names no market: add 'market' (a string, "
                      "e.g. 'BTC-JPY')", "注文に 'market' (例: 'BTC-JPY') を指定してください。")
    try:
        body = PlaceOrderRequest.model_validate(fields)
        return order_command(market, body, spec_of(units, market))
    except ValidationError as exc:
        return _invalid_request(exc)
    except ApiError as exc:
        return error_body(exc)


def _answer_of(runtime: VenueRuntime, outcome: Outcome, units: Units) -> dict[str, Any]:
    """What the REST route answers for this outcome, as one frame's map."""
    if isinstance(outcome, BaseException):
        return _refusal_of(outcome)
    result: CommandResult = outcome
    command = result.command
    assert type(command) is PlaceOrder, "the stream submits only orders"
    spec = units.spec(command.market)
    try:
        raise_if_rejected(result, command.market)
    except ApiError as exc:
        return error_body(exc)
    repeated = next((e for e in result.events if type(e) is OrderRepeated), None)
    if repeated is None:
        return {"seq": result.seq, "ts": result.ts, "repeated": False,
                "order": order_outcome(command, result.events, spec),
                "trades": [units.render_event(e) for e in result.events if type(e) is Trade]}
    answer: dict[str, Any] = {"seq": result.seq, "ts": result.ts, "repeated": True}
    original = result.original
    if original is not None and type(original.command) is PlaceOrder:
        answer["original_seq"] = original.seq
        answer["order"] = order_outcome(original.command, original.events, spec)
        return answer
    view = runtime.read(lambda venue: venue.order(repeated.market, repeated.order_id))
    answer["order"] = render_open_order(view, spec) if view is not None else {
        "market": repeated.market, "order_id": repeated.order_id,
        "client_order_id": repeated.client_order_id, "account": repeated.account,
        "status": "done",
    }
    return answer


def _refusal_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, CommandRefusedError):
        return _error("invalid_command", f"{exc}. Fix the order and send it again.",
                      "注文を受け付けられません。内容を直して再送してください。")
    if isinstance(exc, CommandQuarantinedError):
        return _error("command_quarantined", str(exc),
                      "この注文は処理できず隔離されました。再送しないでください。")
    return _error("venue_unavailable", str(exc), "取引所が停止しています。")


class StreamServer:
    """The streaming order entry on its own thread and event loop, beside the HTTP API.

    The port is bound in the constructor, so a busy port fails before anything starts;
    :meth:`start` serves, :meth:`stop` closes every connection (orders already read stay
    journaled) and joins the thread.
    """

    def __init__(self, runtime: VenueRuntime, host: str, port: int,
                 limits: StreamLimits | None = None) -> None:
        self.runtime = runtime
        self.limits = limits or StreamLimits()
        try:
            self._socket = socket.create_server((host, port), reuse_port=False)
        except OSError as exc:
            raise StreamStartError(
                f"cannot listen for streaming order entry on {host}:{port} ({exc.strerror}); "
                "choose another --stream-port or stop what uses it"
            ) from exc
        self._socket.setblocking(False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._codec = StreamCodec()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def connection_count(self) -> int:
        """Connections being served now."""
        return len(self._connections)

    def start(self) -> StreamServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="venue-stream",
                                        daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._socket.close()

    def _run(self, ready: threading.Event) -> None:
        asyncio.run(self._serve(ready))

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._accept, sock=self._socket)
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.limits.connections_max:
            writer.write(encode_frame(_error(
                "too_many_connections",
                f"the venue serves at most {self.limits.connections_max} stream connections; "
                "close one or retry later", "ストリーム接続数が上限に達しています。")))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await _Connection(self.runtime, self.limits, self._codec, reader, writer).serve()
        except Exception:
            log.exception("a stream connection failed; the others carry on")
        finally:
            self._connections.discard(task)

