"""A second, independent small venue for the adapter tests, with a deliberately different
admin API from haltguard's: other words for the states (``TRADING``, ``SUSPENDED``,
``CALL_AUCTION``), symbols without a dash (``BTCJPY``), a dictionary of instruments, status
changes answered ``202 Accepted`` and applied afterwards, HMAC-signed operator calls, an
emergency stop instead of a kill switch, a reopen call with the auction in milliseconds,
idempotency by ``X-Request-Id``, and its events as Server-Sent Events numbered one by one.

It has its own tiny matching (price-time, integer prices and quantities; an auction
uncrosses at the price with the most volume) and its own halting. ``Faults`` lets a test make
it answer 500, stall, apply a status change late or never, and cut its event stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SECRET = "other-venue-test-secret"
INSTRUMENTS = ("BTCJPY", "ETHJPY")
TRADING, SUSPENDED, CALL_AUCTION = "TRADING", "SUSPENDED", "CALL_AUCTION"
ORDER_STATES = {TRADING, "POST_ONLY", "LIMIT_ONLY", CALL_AUCTION}
CANCEL_STATES = ORDER_STATES | {SUSPENDED, "CANCEL_ONLY"}
ALL_STATES = CANCEL_STATES | {"CLOSED"}
SIGNATURE_AGE_MS_MAX = 30_000
STREAM_POLL_S = 0.002


@dataclass
class Faults:
    """What a test makes the venue do wrong; each field is read on every request."""

    fail_next: int = 0  # this many operator calls answer 500 first
    delay_s: float = 0.0  # operator calls stall this long before answering
    apply_status_after_s: float = 0.0  # a status change shows this much later
    ignore_status_changes: bool = False  # status changes are answered 202 and never applied
    drop_stream_after: int = 0  # each stream connection is cut after this many events
    orders_ignore_status: bool = False  # a defect: orders are taken whatever the status
    stream_loses_every: int = 0  # a defect: the stream leaves out every n-th event
    status_changes_applied: int = 0  # counted, for the test to see


@dataclass
class Order:
    order_id: str
    instrument: str
    account: int
    side: str
    price: int
    quantity: int


@dataclass
class OtherVenue:
    """The venue's state; every change appends events under ``lock``."""

    faults: Faults = field(default_factory=Faults)
    status: dict[str, str] = field(default_factory=lambda: dict.fromkeys(INSTRUMENTS, TRADING))
    books: dict[str, list[Order]] = field(default_factory=lambda: {i: [] for i in INSTRUMENTS})
    withdrawals_enabled: dict[str, bool] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    seen_requests: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    emergency_stop: bool = False
    next_order: int = 1
    lock: threading.RLock = field(default_factory=threading.RLock)

    def emit(self, kind: str, instrument: str, **data: Any) -> None:
        self.events.append({"eventId": len(self.events) + 1, "type": kind,
                            "instrument": instrument, **data})

    def set_status(self, instrument: str, status: str, actor: str) -> None:
        with self.lock:
            self.status[instrument] = status
            self.faults.status_changes_applied += 1
            self.emit("STATUS", instrument, status=status, operator=actor)

    def place(self, instrument: str, account: int, side: str, *, price: int, quantity: int,
              client_ref: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            status = self.status.get(instrument)
            if status is None:
                return 404, {"rejectCode": "UNKNOWN_INSTRUMENT"}
            taking = status in ORDER_STATES and not self.emergency_stop
            if not taking and not self.faults.orders_ignore_status:
                self.emit("ORDER_REJECT", instrument, clientRef=client_ref, reason=status)
                return 403, {"rejectCode": f"INSTRUMENT_{status}"}
            order = Order(f"O-{self.next_order}", instrument, account, side, price, quantity)
            self.next_order += 1
            if status == "POST_ONLY" and self._crosses(order):
                self.emit("ORDER_REJECT", instrument, clientRef=client_ref, reason="WOULD_TAKE")
                return 403, {"rejectCode": "WOULD_TAKE"}
            self.emit("ORDER_NEW", instrument, orderId=order.order_id, side=side, price=price,
                      quantity=quantity, clientRef=client_ref)
            if status != CALL_AUCTION:
                self._match(order, None)
            if order.quantity:
                self.books[instrument].append(order)
            return 200, {"accepted": True, "orderId": order.order_id}

    def _crosses(self, order: Order) -> bool:
        return any(self._cross(order, other) for other in self.books[order.instrument])

    @staticmethod
    def _cross(order: Order, other: Order) -> bool:
        if order.side == other.side:
            return False
        buy, sell = (order, other) if order.side == "BUY" else (other, order)
        return buy.price >= sell.price

    def _match(self, order: Order, price: int | None) -> None:
        book = self.books[order.instrument]
        for other in [o for o in book if self._cross(order, o)]:
            if not order.quantity:
                break
            quantity = min(order.quantity, other.quantity)
            order.quantity -= quantity
            other.quantity -= quantity
            self.emit("FILL", order.instrument, taker=order.order_id, maker=other.order_id,
                      price=price or other.price, quantity=quantity)
            if not other.quantity:
                book.remove(other)

    def cancel(self, order_id: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            for instrument, book in self.books.items():
                for order in book:
                    if order.order_id == order_id:
                        if self.status[instrument] not in CANCEL_STATES:
                            return 403, {"rejectCode": f"INSTRUMENT_{self.status[instrument]}"}
                        book.remove(order)
                        self.emit("ORDER_CANCEL", instrument, orderId=order_id)
                        return 200, {"cancelled": order_id}
            return 404, {"rejectCode": "UNKNOWN_ORDER"}

    def mass_cancel(self, instrument: str, account: int) -> int:
        with self.lock:
            count = 0
            for name, book in self.books.items():
                if instrument and name != instrument:
                    continue
                for order in [o for o in book if not account or o.account == account]:
                    book.remove(order)
                    self.emit("ORDER_CANCEL", name, orderId=order.order_id)
                    count += 1
            return count

    def uncross(self, instrument: str) -> None:
        """End the auction: every crossing order trades at one price, then trading."""
        with self.lock:
            book = self.books[instrument]
            buys = [o for o in book if o.side == "BUY"]
            sells = [o for o in book if o.side == "SELL"]
            if buys and sells and max(b.price for b in buys) >= min(s.price for s in sells):
                price = (max(b.price for b in buys) + min(s.price for s in sells)) // 2
                for order in sorted(buys, key=lambda o: -o.price):
                    if order in book:
                        self._match(order, price)
                        if not order.quantity:
                            book.remove(order)
            if self.status[instrument] == CALL_AUCTION:
                self.status[instrument] = TRADING
                self.emit("STATUS", instrument, status=TRADING, operator="auction")


def _signed(request: Request, body: bytes) -> bool:
    stamp = request.headers.get("X-OV-Timestamp", "")
    given = request.headers.get("X-OV-Signature", "")
    if not stamp.isdigit() or abs(time.time() * 1000 - int(stamp)) > SIGNATURE_AGE_MS_MAX:
        return False
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    payload = f"{stamp}\n{request.method}\n{path}\n{body.decode()}"
    expected = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


def build_app(venue: OtherVenue) -> Starlette:
    """The venue's HTTP API: ``/api`` for customers, ``/ops`` (signed) for operators."""

    async def ops(request: Request) -> Response:
        body = await request.body()
        if not _signed(request, body):
            return JSONResponse({"fault": "BAD_SIGNATURE"}, 401)
        faults = venue.faults
        if faults.delay_s:
            await asyncio.sleep(faults.delay_s)
        if faults.fail_next > 0:
            faults.fail_next -= 1
            return JSONResponse({"fault": "INTERNAL"}, 500)
        request_id = request.headers.get("X-Request-Id", "")
        if request_id and request_id in venue.seen_requests:
            status, answer = venue.seen_requests[request_id]
            return JSONResponse({**answer, "replayed": True}, status)
        data = json.loads(body) if body else {}
        status, answer = _operate(venue, request, data)
        if request_id and request.method != "GET":
            venue.seen_requests[request_id] = (status, answer)
        return JSONResponse(answer, status)

    async def place(request: Request) -> Response:
        data = await request.json()
        status, answer = venue.place(str(data["instrument"]), int(data["account"]),
                                     str(data["side"]).upper(), price=int(data["limitPrice"]),
                                     quantity=int(data["quantity"]),
                                     client_ref=str(data.get("clientRef", "")))
        return JSONResponse(answer, status)

    async def cancel(request: Request) -> Response:
        status, answer = venue.cancel(request.path_params["order_id"])
        return JSONResponse(answer, status)

    async def stream(request: Request) -> Response:
        if not _signed(request, b""):
            return JSONResponse({"fault": "BAD_SIGNATURE"}, 401)
        since = int(request.query_params.get("since", "0"))
        return StreamingResponse(_events(venue, since, request), media_type="text/event-stream")

    return Starlette(routes=[
        Route("/api/orders", place, methods=["POST"]),
        Route("/api/orders/{order_id}", cancel, methods=["DELETE"]),
        Route("/ops/stream", stream, methods=["GET"]),
        Route("/ops/{rest:path}", ops, methods=["GET", "PUT", "POST"]),
    ])


def _operate(venue: OtherVenue, request: Request, data: dict[str, Any]
             ) -> tuple[int, dict[str, Any]]:
    parts = request.url.path.strip("/").split("/")[1:]
    method = request.method
    if parts == ["ping"]:
        return 200, {"ok": True, "lastEventId": len(venue.events)}
    if parts == ["instruments"]:
        with venue.lock:
            return 200, {"instruments": {k: {"status": v} for k, v in venue.status.items()}}
    if len(parts) == 3 and parts[0] == "instruments" and parts[2] == "status" and method == "PUT":
        return _change_status(venue, parts[1], str(data.get("status")), str(data.get("operator")))
    if len(parts) == 3 and parts[0] == "instruments" and parts[2] == "reopen":
        return _reopen(venue, parts[1], int(data.get("auctionMillis", 0)))
    if parts == ["emergency-stop"] and method == "PUT":
        with venue.lock:
            venue.emergency_stop = bool(data.get("active"))
            if venue.emergency_stop:
                for instrument in venue.status:
                    venue.set_status(instrument, SUSPENDED, str(data.get("operator")))
        return 200, {"active": venue.emergency_stop}
    if len(parts) == 3 and parts[0] == "wallets" and parts[2] == "withdrawals":
        venue.withdrawals_enabled[parts[1]] = bool(data.get("enabled"))
        return 200, {"asset": parts[1], "enabled": venue.withdrawals_enabled[parts[1]]}
    if parts == ["mass-cancel"]:
        count = venue.mass_cancel(str(data.get("instrument", "")), int(data.get("account", 0)))
        return 200, {"cancelled": count}
    return 404, {"fault": "NO_SUCH_OPERATION"}


def _change_status(venue: OtherVenue, instrument: str, status: str, actor: str
                   ) -> tuple[int, dict[str, Any]]:
    if instrument not in venue.status:
        return 404, {"fault": "UNKNOWN_INSTRUMENT"}
    if status not in ALL_STATES:
        return 400, {"fault": "UNKNOWN_STATUS"}
    faults = venue.faults
    if faults.ignore_status_changes:
        return 202, {"accepted": True}
    if faults.apply_status_after_s:
        timer = threading.Timer(faults.apply_status_after_s, venue.set_status,
                                (instrument, status, actor))
        timer.daemon = True
        timer.start()
        return 202, {"accepted": True}
    venue.set_status(instrument, status, actor)
    return 202, {"accepted": True}


def _reopen(venue: OtherVenue, instrument: str, auction_ms: int) -> tuple[int, dict[str, Any]]:
    with venue.lock:
        if venue.emergency_stop:
            return 409, {"fault": "EMERGENCY_STOP_ACTIVE"}
        venue.set_status(instrument, CALL_AUCTION, "reopen")
    timer = threading.Timer(auction_ms / 1000, venue.uncross, (instrument,))
    timer.daemon = True
    timer.start()
    return 202, {"accepted": True, "auctionMillis": auction_ms}


async def _events(venue: OtherVenue, since: int, request: Request) -> AsyncIterator[bytes]:
    position, sent = since, 0
    limit = venue.faults.drop_stream_after
    while not getattr(request.app.state, "closing", False):
        with venue.lock:
            fresh = venue.events[position:]
        if limit:
            fresh = fresh[:limit - sent]
        if fresh:
            every = venue.faults.stream_loses_every
            chunk = "".join(f"id: {e['eventId']}\ndata: {json.dumps(e)}\n\n" for e in fresh
                            if not every or e["eventId"] % every)
            position += len(fresh)
            sent += len(fresh)
            yield chunk.encode()
            if limit and sent >= limit:
                return  # the venue cuts the connection
        else:
            await asyncio.sleep(STREAM_POLL_S)


class OtherVenueServer:
    """The other venue on a free local port, served by uvicorn on a thread."""

    def __init__(self, venue: OtherVenue | None = None) -> None:
        self.venue = venue or OtherVenue()
        self.app = build_app(self.venue)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> OtherVenueServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the other venue did not start within 10 s")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc_info: object) -> None:
        self.app.state.closing = True
        self.server.should_exit = True
        self.thread.join(10)
