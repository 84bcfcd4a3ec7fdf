"""Load on the venue as its customers make it: over its public HTTP API.

:class:`VenueClient` is the venue's public and admin API as the drills use it;
:class:`OrderLoad` is the background customers whose every acknowledged order a drill later
looks for in the journal; :class:`Background` runs an attack while the drill responds; and
:func:`read_http_answer` serves the raw clients that send faster than an HTTP library can.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any, Generic, TypeVar

import httpx

from haltguard.drill.surface import DrillSurface
from haltguard.drill.waiting import DrillError, wait_for
from haltguard.venue.types import MarketState

T = TypeVar("T")

HTTP_TIMEOUT_S = 10.0
LOAD_WORKERS_DEFAULT = 4
BACKGROUND_SHARE = 0.5
BACKGROUND_RATE_PER_S_MIN = 5.0
LOAD_BACKOFF_S = 0.05  # after a refusal or a failed connection, before the next order
PRICE_OFFSET_TICKS_MAX = 20  # how far from the mid the load places its orders
SHED_STATUSES = frozenset({429, 503})
"""Answers of a gateway shedding load: the order was not queued, send it again later."""
SHED_WAIT_S_MAX = 30.0
SHED_RETRY_S_MAX = 2.0


def background_rate_per_s(surface: DrillSurface) -> float:
    """The pace of a drill's background customers: half of the order capacity the demo flow
    may leave, so the background alone never trips load shedding or the capacity rule."""
    spare = float(surface.order_capacity_per_s) - float(surface.demo_rate_per_s)
    return max(BACKGROUND_RATE_PER_S_MIN, spare * BACKGROUND_SHARE)


def venue_api_url(surface: DrillSurface) -> str:
    """Where the public venue API answers (``{url}/v1/...``)."""
    url = surface.venue_api_url or surface.api_url
    if not url:
        raise DrillError(
            "the system has no venue API address (venue_api_url); the drill needs the "
            "system served over HTTP (haltguard serve, or the drill's own server)"
        )
    return url.rstrip("/")


class VenueClient:
    """The venue's public and admin HTTP API, as the drill uses it."""

    def __init__(self, base_url: str, admin_token: str = "", timeout_s: float = HTTP_TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self._admin = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}

    @classmethod
    def for_system(cls, surface: DrillSurface) -> VenueClient:
        return cls(venue_api_url(surface), surface.venue_admin_token)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> VenueClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def markets(self) -> dict[str, Any]:
        """``GET /v1/markets``: {"seq", "markets": [...]}; raises on any failure."""
        response = self._client.get("/v1/markets")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def market_states(self) -> dict[str, MarketState]:
        return {m["symbol"]: MarketState(m["state"]) for m in self.markets()["markets"]}

    def last_seq(self) -> int:
        return int(self.markets()["seq"])

    def market(self, symbol: str) -> dict[str, Any]:
        response = self._client.get(f"/v1/markets/{symbol}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def healthy(self) -> bool:
        try:
            return self._client.get("/v1/health").status_code == 200
        except httpx.HTTPError:
            return False

    def place(self, symbol: str, body: dict[str, Any]) -> httpx.Response:
        """One order, answered as the venue answers it (the background load counts refusals
        as they come)."""
        return self._client.post(f"/v1/markets/{symbol}/orders", json=body)

    def place_patiently(self, symbol: str, body: dict[str, Any], *,
                        wait_s_max: float = SHED_WAIT_S_MAX) -> httpx.Response:
        """One order from a well-behaved client: a 429 or 503 (load shed, nothing queued) is
        sent again after its ``Retry-After``, for up to ``wait_s_max`` in all. The order's
        client order id makes a repeat harmless; the last answer is returned."""
        deadline = time.monotonic() + wait_s_max
        while True:
            response = self.place(symbol, body)
            if response.status_code not in SHED_STATUSES or time.monotonic() >= deadline:
                return response
            retry_after_s = float(response.headers.get("retry-after", "1") or 1)
            time.sleep(min(retry_after_s, max(0.0, deadline - time.monotonic()),
                           SHED_RETRY_S_MAX))

    def admin_get(self, path: str) -> httpx.Response:
        return self._client.get(f"/v1/admin/{path}", headers=self._admin)

    def admin_post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self._client.post(f"/v1/admin/{path}", json=body, headers=self._admin)

    def admin_delete(self, path: str) -> httpx.Response:
        return self._client.delete(f"/v1/admin/{path}", headers=self._admin)


# --- background order load ------------------------------------------------------------------


@dataclass(frozen=True)
class AcknowledgedOrder:
    """An order the venue answered 201 for: durable at ``seq`` by the venue's own promise."""

    seq: int
    order_id: int
    client_order_id: str
    market: str
    account: int


@dataclass(frozen=True)
class _MarketGrid:
    symbol: str
    tick: Decimal
    qty: str
    mid: Decimal


def _grid(client: VenueClient, spec: dict[str, Any]) -> _MarketGrid:
    symbol = str(spec["symbol"])
    tick = Decimal(str(spec["tick_size"]))
    detail = client.market(symbol)
    bid, ask = detail.get("best_bid"), detail.get("best_ask")
    mid = (Decimal(bid) + Decimal(ask)) / 2 if bid and ask else Decimal(bid or ask or "0")
    if mid <= 0:
        mid = tick * 100_000
    mid = (mid / tick).to_integral_value(rounding=ROUND_DOWN) * tick
    return _MarketGrid(symbol, tick, str(spec["min_qty"]), mid)


class OrderLoad:
    """Customer orders over HTTP in the background, remembering every acknowledged one.

    Workers place small limit orders near each market's mid until ``orders`` were
    acknowledged (or :meth:`stop`). A refusal (halted market, overload) or a dropped
    connection is counted and followed by a short pause, never retried with a new id, so
    the acknowledged list is exactly what the venue promised to keep.
    """

    def __init__(
        self,
        base_url: str,
        *,
        orders: int,
        accounts: int = 50,
        markets: Sequence[str] | None = None,
        workers: int = LOAD_WORKERS_DEFAULT,
        prefix: str = "drill",
        seed: int = 7,
        rate_per_s: float = 0.0,
    ) -> None:
        if orders < 1:
            raise ValueError("the order load needs at least one order")
        if rate_per_s < 0:
            raise ValueError(f"rate_per_s must be 0 (unpaced) or more, got {rate_per_s}")
        self.rate_per_s = rate_per_s
        self._next_send = 0.0
        self.base_url = base_url
        self.orders = orders
        self.accounts = accounts
        self.workers = workers
        self.prefix = f"{prefix}-{int(time.time()) % 100_000}"
        self._wanted_markets = list(markets) if markets else None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._acknowledged: list[AcknowledgedOrder] = []
        self.refused: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._grids: list[_MarketGrid] = []

    # -- control ---------------------------------------------------------------------------

    def start(self) -> OrderLoad:
        with VenueClient(self.base_url) as client:
            specs = [m for m in client.markets()["markets"]
                     if self._wanted_markets is None or m["symbol"] in self._wanted_markets]
            if not specs:
                raise DrillError(f"the venue at {self.base_url} lists no market to load")
            self._grids = [_grid(client, spec) for spec in specs]
        self._threads = [threading.Thread(target=self._work, name=f"drill-load-{index}",
                                          daemon=True) for index in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(HTTP_TIMEOUT_S + 1)

    def wait_done(self, timeout_s: float, progress: Callable[[str], None] | None = None) -> None:
        """Wait until the wanted number of orders were acknowledged; raises DrillError."""
        wait_for(lambda: self.done, timeout_s,
                 f"{self.orders} acknowledged orders from the load", seen=self.describe,
                 progress=progress)

    @property
    def done(self) -> bool:
        return len(self._acknowledged) >= self.orders

    @property
    def acknowledged(self) -> list[AcknowledgedOrder]:
        with self._lock:
            return list(self._acknowledged)

    @property
    def acknowledged_count(self) -> int:
        return len(self._acknowledged)

    def describe(self) -> str:
        refused = ", ".join(f"{code} {n}" for code, n in self.refused.most_common(4))
        failed = ", ".join(f"{code} {n}" for code, n in self.failed.most_common(3))
        return (f"{self.acknowledged_count}/{self.orders} acknowledged"
                + (f"; refused: {refused}" if refused else "")
                + (f"; failed: {failed}" if failed else ""))

    # -- the workers -----------------------------------------------------------------------

    def _next_order(self) -> tuple[str, dict[str, Any]]:
        with self._lock:
            number = next(self._numbers)
            grid = self._rng.choice(self._grids)
            side = self._rng.choice(("buy", "sell"))
            offset = self._rng.randint(-2, PRICE_OFFSET_TICKS_MAX)
            account = self._rng.randint(1, self.accounts)
        sign = -1 if side == "buy" else 1
        price = grid.mid + sign * offset * grid.tick
        if price <= 0:
            price = grid.tick
        return grid.symbol, {
            "account": account, "side": side, "qty": grid.qty, "price": str(price),
            "client_order_id": f"{self.prefix}-{number}",
        }

    def _work(self) -> None:
        with VenueClient(self.base_url) as client:
            while not self._stop.is_set() and not self.done:
                self._wait_for_slot()
                symbol, body = self._next_order()
                started = time.perf_counter()
                try:
                    response = client.place(symbol, body)
                except httpx.HTTPError as exc:
                    self._count(self.failed, type(exc).__name__)
                    self._stop.wait(LOAD_BACKOFF_S)
                    continue
                if response.status_code == 201:
                    self._record(response.json(), symbol, body, started)
                    continue
                self._count(self.refused if response.status_code < 500 else self.failed,
                            _error_code(response))
                self._stop.wait(LOAD_BACKOFF_S)

    def _wait_for_slot(self) -> None:
        """Paced load: the workers share one schedule of ``rate_per_s`` sends a second, so
        the drill's customers stay within the venue's capacity unless a scenario means them
        not to."""
        if not self.rate_per_s:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(self._next_send, now)
            self._next_send = slot + 1.0 / self.rate_per_s
        self._stop.wait(max(0.0, slot - now))

    def _record(self, answer: dict[str, Any], symbol: str, body: dict[str, Any],
                started: float) -> None:
        order = answer.get("order") or {}
        acked = AcknowledgedOrder(
            seq=int(answer["seq"]), order_id=int(order.get("order_id") or 0),
            client_order_id=str(body["client_order_id"]), market=symbol,
            account=int(body["account"]),
        )
        with self._lock:
            if len(self._acknowledged) < self.orders:
                self._acknowledged.append(acked)
            self.latencies_ms.append((time.perf_counter() - started) * 1000)

    def _count(self, counter: Counter[str], key: str) -> None:
        with self._lock:
            counter[key] += 1


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except Exception:
        return f"http_{response.status_code}"


# --- attacks and latency ----------------------------------------------------------------


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(max(1, math.ceil(len(ordered) * share)), len(ordered)) - 1]


class Background(Generic[T]):
    """``work`` on a thread of its own: the attack goes on while the drill responds."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._work = work
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="drill-attack", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except BaseException as exc:  # handed to whoever waits for the result
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def milliseconds(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "n/a"


async def read_http_answer(reader: asyncio.StreamReader,
                           bytes_max: int) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length (every answer of haltguard's APIs has one),
    for the drills' raw clients, which send faster than an HTTP library can; a body over
    ``bytes_max`` is refused rather than read."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if length > bytes_max:
        raise ValueError(f"an answer of {length} bytes is more than the {bytes_max} expected")
    return status, headers, await reader.readexactly(length)
