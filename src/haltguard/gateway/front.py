"""The public port's front door for new orders: plain order requests answered without the
HTTP server's per-request ASGI machinery.

Through ``serve``'s public port an order used to cost the serving process more than the
venue spent on it: a task per request, the ASGI scope, three middlewares and the
forwarder's coroutine, each around a few lines of work. :class:`FrontProtocol` is the
protocol of every connection on the public port. It reads requests itself while they are
plain orders::

    POST /v1/markets/<SYMBOL>/orders HTTP/1.1, token header names, visible values,
    one Content-Length (the body within the order limit, waited for as long as the full
    stack would wait: ``408`` after that), JSON,
    no Transfer-Encoding / Expect / Upgrade / X-Forwarded-For / Connection: close
        -> the same flood limit and fair-share admission (the same :class:`LoadGuard`)
        -> one frame on the request channel to the venue process (the forwarder's channel)
        -> the venue's answer, written back in request order (pipelining keeps its order)

The first request that is anything else, and every request after it on that connection,
goes to the server's own HTTP protocol (uvicorn's, built with the same arguments): the
bytes not yet answered are handed over whole, once every order before them is answered, so
the full stack (body deadlines, ``413``/``408``, the forwarder's ``503`` while the venue
restarts, the operations API, the status page) judges them in its own words. The front only
ever answers what that stack would answer the same way; ``tests/gateway/test_front.py``
sends the same requests down both paths and compares.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol

from haltguard.gateway.channel import ChannelClosedError, ChannelResponse
from haltguard.gateway.limits import account_of, client_key_of_credentials
from haltguard.gateway.shedding import ORDER_BODY_BYTES_MAX, LoadGuard
from haltguard.web.asgi import BODY_RECEIVE_S_MAX_DEFAULT, error_answer

PIPELINED_MAX = 64  # answers owed on one connection before the front stops reading
HEADER_BYTES_MAX = 16_384  # a head longer than this goes to the full server (it refuses it)

_ORDER_TARGET = re.compile(rb"/v1/markets/([A-Za-z0-9][A-Za-z0-9_-]{0,31})/orders")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(rb"[\x20-\x7e\t]*")
_POST = b"POST "
_HEAD_END = b"\r\n\r\n"
_JSON_TYPES = frozenset({b"application/json", b"application/json; charset=utf-8"})
_REFUSED_HEADERS = frozenset({b"transfer-encoding", b"expect", b"upgrade", b"x-forwarded-for",
                              b"forwarded", b"x-forwarded-proto", b"x-forwarded-port"})
_CONNECTION_KEEP = frozenset({b"keep-alive", b""})


class RequestJudge(Protocol):
    """What checks a request before the venue sees it, in front of the shedder (the customer
    gateway's signed-request check in ``keys`` mode): the request to pass on (bound to the
    key's account), or the answer to give instead (anything with ``status``, ``headers``
    and ``body``)."""

    def judge(self, scope: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes] | Any:
        ...


class _NotPlainOrderError(Exception):
    """This request is not a plain order: the full server answers it (and all after it)."""


class PublicFront:
    """What every :class:`FrontProtocol` of one server shares: where orders go, the guard
    that admits them, and how to build the full server's protocol for everything else."""

    def __init__(self, *, channel: Callable[[], Any], down_reason: Callable[[], str],
                 guard: LoadGuard[Any], receive_s_max: float = BODY_RECEIVE_S_MAX_DEFAULT
                 ) -> None:
        self.channel = channel  # () -> ChannelClient, made on the serving loop
        self.down_reason = down_reason
        self.guard = guard
        self.receive_s_max = receive_s_max
        self.judge: RequestJudge | None = None
        self.answered = 0
        self.handed_over = 0
        self._date = b""
        self._date_second = -1

    def date_header(self) -> bytes:
        """``date: ...\\r\\n`` for this second (formatted once a second, not per answer)."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._date

    def protocol_factory(self, full_server: Callable[..., asyncio.Protocol]
                         ) -> Callable[..., asyncio.Protocol]:
        """What uvicorn's ``http`` setting takes: builds a :class:`FrontProtocol` with the
        arguments uvicorn gives its own protocol, kept for the handover."""

        self.guard.start()  # the guard's window thread, as the middleware starts it

        def build(**kwargs: Any) -> asyncio.Protocol:
            return FrontProtocol(self, lambda: full_server(**kwargs),
                                 kwargs["server_state"], kwargs["config"].timeout_keep_alive)

        return build


class _Slot:
    """One answer owed on a connection, in request order."""

    __slots__ = ("data", "started_ns")

    def __init__(self, started_ns: int) -> None:
        self.started_ns = started_ns
        self.data: bytes | None = None


class FrontProtocol(asyncio.Protocol):
    """One public-port connection (see the module docstring)."""

    def __init__(self, front: PublicFront, full_server: Callable[[], asyncio.Protocol],
                 server_state: Any, keep_alive_s: float) -> None:
        self.front = front
        self.full_server = full_server
        self.server_state = server_state
        self.keep_alive_s = keep_alive_s
        self.transport: asyncio.Transport | None = None
        self.client = "unknown"
        self.buffer = bytearray()
        self.owed: deque[_Slot] = deque()
        self.handing_over = False
        self.reading_paused = False
        self.writing_paused = False
        self.closing = False
        self.idle_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else "unknown"
        self.server_state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self.closing = True
        for timer in (self.idle_timer, self.body_timer):
            if timer is not None:
                timer.cancel()

    def pause_writing(self) -> None:
        """The client is not reading its answers: stop reading its requests."""
        self.writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._maybe_resume_reading()
        if self.handing_over:
            self._hand_over_when_clear()

    def data_received(self, data: bytes) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.buffer += data
        if not self.handing_over and not self.closing:
            self._take_requests()

    def shutdown(self) -> None:
        """The server stops: close once what is owed is written (uvicorn calls this)."""
        self.closing = True
        if not self.owed and self.transport is not None:
            self.transport.close()

    # -- requests -------------------------------------------------------------------------

    def _take_requests(self) -> None:
        front = self.front
        while self.buffer and not self.handing_over:
            try:
                taken = self._take_one(front)
            except _NotPlainOrderError:
                self.handing_over = True
                front.handed_over += 1
                self._hand_over_when_clear()
                return
            if not taken:
                return
            if len(self.owed) >= PIPELINED_MAX:
                self._pause_reading()
                return

    def _take_one(self, front: PublicFront) -> bool:
        """Answer the request at the head of the buffer; False while it is incomplete."""
        buffer = self.buffer
        if not buffer.startswith(_POST):
            if len(buffer) < len(_POST) and _POST.startswith(buffer):
                return False
            raise _NotPlainOrderError
        head_end = buffer.find(_HEAD_END)
        if head_end < 0:
            if len(buffer) > HEADER_BYTES_MAX:
                raise _NotPlainOrderError
            return False
        lines = bytes(buffer[:head_end]).split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] != b"HTTP/1.1":
            raise _NotPlainOrderError
        target = parts[1]
        matched = _ORDER_TARGET.fullmatch(target)
        if matched is None or front.down_reason():
            raise _NotPlainOrderError
        headers: list[tuple[bytes, bytes]] = []
        length = -1
        json_body = False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or _TOKEN.fullmatch(name) is None:
                raise _NotPlainOrderError
            value = value.strip(b" \t")
            if _VALUE.fullmatch(value) is None:
                raise _NotPlainOrderError
            name = name.lower()
            if name == b"content-length":
                if length >= 0 or not value.isdigit():
                    raise _NotPlainOrderError
                length = int(value)
            elif name == b"content-type":
                json_body = value.lower() in _JSON_TYPES
            elif name == b"connection":
                if value.lower() not in _CONNECTION_KEEP:
                    raise _NotPlainOrderError
            elif name in _REFUSED_HEADERS:
                raise _NotPlainOrderError
            headers.append((name, value))
        if not json_body or length < 0 or length > ORDER_BODY_BYTES_MAX:
            raise _NotPlainOrderError
        body_start = head_end + len(_HEAD_END)
        if len(buffer) < body_start + length:  # the body comes in pieces: wait, within
            if self.body_timer is None:        # the deadline the full stack gives it
                self.body_timer = self.loop.call_later(front.receive_s_max, self._body_late)
            return False
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        body = bytes(buffer[body_start:body_start + length])
        del buffer[:body_start + length]
        self._place(front, target, headers, body)
        return True

    def _place(self, front: PublicFront, target: bytes, headers: list[tuple[bytes, bytes]],
               body: bytes) -> None:
        started_ns = time.perf_counter_ns()
        slot = _Slot(started_ns)
        self.owed.append(slot)
        path = target.decode("ascii")
        scope: dict[str, Any] = {"type": "http", "method": "POST", "path": path,
                                 "raw_path": target, "query_string": b"", "headers": headers,
                                 "client": (self.client, 0)}
        if front.judge is not None:
            judged = front.judge.judge(scope, body)
            if not isinstance(judged, tuple):  # refused before the venue, as the stack does
                self._settle(slot, judged.status, judged.headers, judged.body)
                return
            scope, body = judged
            headers = scope["headers"]
        guard = front.guard
        admission = guard.check_flood(scope)
        if admission.admitted:
            client = client_key_of_credentials(scope)
            if client is None:
                account = account_of(body)
                client = f"account:{account}" if account else "address:" + self.client
            admission = guard.admit_order(client)
        if not admission.admitted:
            guard.count_shed(admission.code)
            answer_headers, answer = error_answer(admission.code, admission.message,
                                                  admission.retry_after_s)
            self._settle(slot, admission.status, answer_headers, answer)
            return
        channel = front.channel()
        future = channel.send_now("POST", path, target, query=b"", headers=headers, body=body,
                                  client=self.client)
        if future is None:  # no connection to the venue process yet: make one
            future = asyncio.ensure_future(channel.request(
                "POST", path, target, query=b"", headers=headers, body=body,
                client=self.client))
        future.add_done_callback(lambda done: self._answered(slot, done))

    def _answered(self, slot: _Slot, done: asyncio.Future[ChannelResponse]) -> None:
        guard = self.front.guard
        try:
            response = done.result()
        except ChannelClosedError as exc:
            guard.order_abandoned()
            headers, body = error_answer(
                "venue_restarting",
                f"the venue process is not answering ({exc}); it is being restarted from its "
                "journal; retry shortly. An order sent just now may have been taken: retry it "
                "with the same client_order_id", 1)
            self._settle(slot, 503, headers, body)
            return
        except TimeoutError:
            guard.order_abandoned()
            headers, body = error_answer(
                "ack_timeout",
                "the venue did not answer in time; the request may still be applied. Check "
                "the account's orders before retrying (a retry with the same client_order_id "
                "is safe)")
            self._settle(slot, 504, headers, body)
            return
        guard.order_answered(time.perf_counter_ns() - slot.started_ns)
        self._settle(slot, response.status, response.headers, response.body)

    # -- answers, in request order --------------------------------------------------------

    def _settle(self, slot: _Slot, status: int, headers: list[tuple[bytes, bytes]],
                body: bytes) -> None:
        head = [_status_line(status)]
        for name, value in headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(self.front.date_header())
        head.append(b"\r\n")
        head.append(body)
        slot.data = b"".join(head)
        self.front.answered += 1
        self._write_ready()

    def _write_ready(self) -> None:
        owed = self.owed
        if not owed or owed[0].data is None:
            return
        ready = []
        while owed and owed[0].data is not None:
            ready.append(owed.popleft().data)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(b"".join(ready))  # type: ignore[arg-type]  # all set, checked above
        self._maybe_resume_reading()
        if owed:
            return
        if self.closing:
            transport.close()
        elif self.handing_over:
            self._hand_over_when_clear()
        elif not self.buffer:
            self.idle_timer = self.loop.call_later(self.keep_alive_s, self._idle)

    def _body_late(self) -> None:
        """An order body not whole within the deadline: ``408`` as the full stack answers
        it, and the connection closed (what is left of the body cannot be read as a
        request)."""
        self.body_timer = None
        self.closing = True  # nothing more is read from this connection
        self.buffer.clear()
        headers, body = error_answer(
            "request_timeout", f"the request body did not arrive within "
            f"{self.front.receive_s_max:g} s; send the whole request at once and try again")
        slot = _Slot(time.perf_counter_ns())
        self.owed.append(slot)
        self._settle(slot, 408, [*headers, (b"connection", b"close")], body)

    def _idle(self) -> None:
        self.idle_timer = None
        if not self.owed and not self.buffer and self.transport is not None:
            self.transport.close()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (self.reading_paused and not self.writing_paused and len(self.owed) < PIPELINED_MAX
                and self.transport is not None and not self.transport.is_closing()):
            self.reading_paused = False
            self.transport.resume_reading()
            if self.buffer and not self.handing_over and not self.closing:
                self._take_requests()

    # -- the handover to the full server --------------------------------------------------

    def _hand_over_when_clear(self) -> None:
        """Once nothing is owed and the client reads again, the full server's protocol takes
        the connection with the bytes not yet answered."""
        transport = self.transport
        if self.owed or self.writing_paused or transport is None or transport.is_closing():
            return
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.server_state.connections.discard(self)
        successor = self.full_server()
        transport.set_protocol(successor)
        successor.connection_made(transport)
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        pending, self.buffer = bytes(self.buffer), bytearray()
        if pending:
            successor.data_received(pending)
        self.transport = None


_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line
