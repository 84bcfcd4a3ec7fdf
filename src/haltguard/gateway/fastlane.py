"""The fast order lane: new orders answered without the web framework's per-request work.

Placing an order is the venue's busiest request by far, and the framework's layers around
the route (exception middleware, routing, dependency solving, request models) cost several
times what the order itself does. :class:`OrderFastLane` sits in front of the whole venue
app and answers ``POST /v1/markets/{symbol}/orders`` itself when the request is plain:

    body whole in one piece, JSON, decodes strictly into :class:`OrderBody`, known market,
    decimal text in the grammar
        -> flood limit and fair-share admission (the same :class:`LoadGuard`)
        -> ``views.placed_order`` (the same function the route answers with)
        -> the same request metrics

Anything else (another route, a body in pieces, a field the strict decoder refuses, an
unknown market) goes to the full app untouched, body replayed, and is answered there in the
framework's own words. The lane only ever answers what the route would answer the same way:
``tests/gateway/test_fastlane.py`` sends the same requests down both paths and compares.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from haltguard.common.errors import HaltguardError
from haltguard.gateway.app import VENUE_BODY_BYTES_MAX
from haltguard.gateway.channel import ChannelRequest, ChannelResponse
from haltguard.gateway.context import VenueApiContext, venue_context_of
from haltguard.gateway.limits import Admission, client_key_of_credentials
from haltguard.gateway.models import OrderBody
from haltguard.gateway.runtime import ACK_TIMEOUT_S_DEFAULT, CommandResult, Outcome, VenueRuntime
from haltguard.gateway.shedding import ORDER_ROUTE, refuse
from haltguard.gateway.views import ack_timeout, order_to_place, placed_answer, placed_order
from haltguard.venue.commands import Command
from haltguard.venue.markets import decimal_text_problem
from haltguard.web.asgi import error_answer, replaying
from haltguard.web.errors import KIND_STATUS, error_body

_ORDERS_PREFIX = "/v1/markets/"
_ORDERS_SUFFIX = "/orders"
_JSON_TYPES = frozenset({b"application/json", b"application/json; charset=utf-8"})
_JSON_HEADERS = [(b"content-type", b"application/json")]


_decode_order = msgspec.json.Decoder(OrderBody).decode
_encode = msgspec.json.Encoder().encode


def order_symbol(path: str) -> str | None:
    """``BTC-JPY`` for ``/v1/markets/BTC-JPY/orders``; None for any other path."""
    if not (path.startswith(_ORDERS_PREFIX) and path.endswith(_ORDERS_SUFFIX)):
        return None
    symbol = path[len(_ORDERS_PREFIX):-len(_ORDERS_SUFFIX)]
    return symbol if symbol and "/" not in symbol else None


def _is_json(scope: Scope) -> bool:
    return _is_json_headers(scope["headers"])


def _is_json_headers(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.lower() in _JSON_TYPES
    return False


def _plain_order(body: bytes) -> OrderBody | None:
    """The order, or None when the route should judge the body (it words the refusal)."""
    if len(body) > VENUE_BODY_BYTES_MAX:
        return None
    try:
        order = _decode_order(body)
    except msgspec.DecodeError:  # ValidationError included
        return None
    if decimal_text_problem(order.qty) is not None:
        return None
    if order.price is not None and decimal_text_problem(order.price) is not None:
        return None
    return order


class OrderBatcher:
    """Hands the orders of one turn of the event loop to the venue in one
    :meth:`VenueRuntime.submit_many` instead of one submission (and one lock round) each,
    and times them out with one timer per batch instead of one per order."""

    def __init__(self, runtime: VenueRuntime, timeout_s: float = ACK_TIMEOUT_S_DEFAULT) -> None:
        self.runtime = runtime
        self.timeout_s = timeout_s
        self._pending: list[tuple[Command, asyncio.Future[CommandResult]]] = []
        self.batches = 0

    def submit(self, command: Command) -> asyncio.Future[CommandResult]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CommandResult] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((command, future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self.batches += 1
        try:
            outcome = self.runtime.submit_many([command for command, _ in batch])
        except HaltguardError as refusal:  # overloaded, or the venue is not running
            for _, future in batch:
                if not future.done():
                    future.set_exception(refusal)
            return
        timer = asyncio.get_running_loop().call_later(self.timeout_s, _expire, batch)
        outcome.add_done_callback(lambda done: _settle(done, batch, timer))


def _settle(done: asyncio.Future[list[Outcome]],
            batch: list[tuple[Command, asyncio.Future[CommandResult]]],
            timer: asyncio.TimerHandle) -> None:
    timer.cancel()
    outcomes = done.result()
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _expire(batch: list[tuple[Command, asyncio.Future[CommandResult]]]) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(ack_timeout())


class OrderFastLane:
    """Plain ASGI in front of the venue app (see the module docstring)."""

    def __init__(self, app: ASGIApp, venue: VenueApiContext) -> None:
        self.app = app
        self.venue = venue
        self.batcher = OrderBatcher(venue.runtime)
        metrics = venue.http_metrics
        self._requests = metrics.requests
        self._in_flight = metrics.in_flight
        self._duration = metrics.duration.labels("POST", ORDER_ROUTE)
        self._counted: dict[int, Any] = {}
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or (symbol := order_symbol(scope["path"])) is None or not _is_json(scope)):
            await self.app(scope, receive, send)
            return
        message = await receive()
        body = message.get("body", b"")
        order = None
        if message["type"] == "http.request" and not message.get("more_body", False):
            order = _plain_order(body)
        if order is None or symbol not in self.venue.runtime.units().markets:
            await self.app(scope, replaying(message, receive), send)
            return
        await self._answer(scope, send, symbol, order)

    async def _answer(self, scope: Scope, send: Send, symbol: str, order: OrderBody) -> None:
        started = time.perf_counter()
        self._in_flight.inc()
        status = 500
        try:
            status = await self._place(scope, send, symbol, order)
        finally:
            self._in_flight.dec()
            self._count(status)
            self._duration.observe(time.perf_counter() - started)

    def _admit(self, scope: Scope, order: OrderBody) -> Admission:
        guard = self.venue.load_guard
        guard.start()
        refusal = guard.check_flood(scope)
        if refusal.admitted:
            client = client_key_of_credentials(scope) or f"account:{order.account}"
            refusal = guard.admit_order(client)
        return refusal

    async def _place(self, scope: Scope, send: Send, symbol: str, order: OrderBody) -> int:
        guard = self.venue.load_guard
        refusal = self._admit(scope, order)
        if not refusal.admitted:
            await refuse(guard, send, refusal)
            return refusal.status
        started_ns = time.perf_counter_ns()
        headers: list[tuple[bytes, bytes]] = _JSON_HEADERS
        try:
            status, answer = await placed_order(self.venue.runtime, symbol, order,
                                                self.batcher.submit)
        except HaltguardError as error:
            status, answer = KIND_STATUS[error.kind], error_body(error)
            headers = _error_headers(error)
        except BaseException:
            guard.order_abandoned()
            raise
        guard.order_answered(time.perf_counter_ns() - started_ns)
        payload = _encode(answer)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload, "more_body": False})
        self.answered += 1
        return status

    def answer_frame(self, request: ChannelRequest,
                     reply: Callable[[ChannelResponse], None]) -> bool:
        """Answer a plain order that came over the request channel (``gateway/channel.py``)
        without the ASGI round (no task, no scope, no coroutine): checked, admitted and
        answered exactly as :meth:`__call__` does, through :func:`order_to_place` and
        :func:`placed_answer`. False (nothing done) when it is not a plain order: the app
        answers it then."""
        if request.method != "POST" or request.query:
            return False
        symbol = order_symbol(request.path)
        if symbol is None or not _is_json_headers(request.headers):
            return False
        order = _plain_order(request.body)
        runtime = self.venue.runtime
        if order is None or symbol not in runtime.units().markets:
            return False
        started = time.perf_counter()
        self._in_flight.inc()
        guard = self.venue.load_guard
        scope = {"headers": request.headers, "client": (request.client, 0)}
        refusal = self._admit(scope, order)
        if not refusal.admitted:
            guard.count_shed(refusal.code)
            headers, body = error_answer(refusal.code, refusal.message, refusal.retry_after_s)
            self._finish(request, reply, started, (refusal.status, headers, body))
            return True
        started_ns = time.perf_counter_ns()
        try:
            prepared = order_to_place(runtime, symbol, order)
        except HaltguardError as error:
            guard.order_answered(time.perf_counter_ns() - started_ns)
            self._finish_error(request, reply, started, error)
            return True

        def answered(done: asyncio.Future[CommandResult]) -> None:
            try:
                status, answer = placed_answer(runtime, prepared, done.result())
            except HaltguardError as error:
                guard.order_answered(time.perf_counter_ns() - started_ns)
                self._finish_error(request, reply, started, error)
                return
            except BaseException:
                guard.order_abandoned()
                self._in_flight.dec()
                raise
            guard.order_answered(time.perf_counter_ns() - started_ns)
            self.answered += 1
            self._finish(request, reply, started, (status, _JSON_HEADERS, _encode(answer)))

        self.batcher.submit(prepared.command).add_done_callback(answered)
        return True

    def _finish_error(self, request: ChannelRequest, reply: Callable[[ChannelResponse], None],
                      started: float, error: HaltguardError) -> None:
        self._finish(request, reply, started, (KIND_STATUS[error.kind], _error_headers(error),
                                               _encode(error_body(error))))

    def _finish(self, request: ChannelRequest, reply: Callable[[ChannelResponse], None],
                started: float, answer: tuple[int, list[tuple[bytes, bytes]], bytes]) -> None:
        status, headers, body = answer
        self._in_flight.dec()
        self._count(status)
        self._duration.observe(time.perf_counter() - started)
        reply(ChannelResponse(request.id, status,
                              [*headers, (b"content-length", str(len(body)).encode())], body))

    def _count(self, status: int) -> None:
        counter = self._counted.get(status)
        if counter is None:
            counter = self._counted[status] = self._requests.labels(
                "POST", ORDER_ROUTE, str(status))
        counter.inc()


def _error_headers(error: HaltguardError) -> list[tuple[bytes, bytes]]:
    """The JSON content type, and the headers the error asks for (``Retry-After``)."""
    if not error.headers:
        return _JSON_HEADERS
    return _JSON_HEADERS + [(name.lower().encode("latin-1"), value.encode("latin-1"))
                            for name, value in error.headers.items()]


def with_fast_lane(app: FastAPI) -> OrderFastLane:
    """``app`` (a venue API from ``create_venue_api``) with the fast order lane in front."""
    return OrderFastLane(app, venue_context_of(app))
