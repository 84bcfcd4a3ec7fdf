"""Load detection and shedding: the venue keeps answering through the surge that stops
exchanges, and no acknowledged order is ever lost to it.

The venue can take ``order_capacity_per_s`` new orders a second (measured, configured).
Every new order passes the shedder before it reaches the venue's queue:

* queue near full (``queue_shed_bps`` of its bound): ``503`` with ``Retry-After``, before the
  runtime's own hard bound is reached and long before the engine saturates;
* venue at capacity and the client over its fair share (``capacity / active clients``):
  ``429`` with ``Retry-After``; a client within its share is still admitted, so one greedy
  client cannot crowd out the others (per-client token buckets keyed by API key, else
  account, else address);
* more admitted orders awaiting their acknowledgement than the venue answers within the
  latency bound (:class:`InFlightBound`, adapted each window): ``503`` with ``Retry-After``,
  so a venue slower than its configured capacity still answers admitted orders promptly;
* otherwise admitted.

Shed requests are answered by the middleware itself and never reach the venue, so nothing
is half-done: an order is either refused before it was queued or acknowledged only once
durable (the runtime's rule). Cancels, reads and ``/v1/health`` are never shed; a flood of
any request is the request-flood limiter's job (``security_detectors``).

Token buckets are kept in GCRA form (one "theoretical arrival time" per client, integer
nanoseconds): the same arithmetic as a bucket, one number to store, no floats.

Every ``window_ms`` the :class:`LoadDetector` turns the window's numbers (offered and
admitted rate, queue depth, acknowledgement latency p99, requests shed) into ``load.*``
signals with hysteresis, delivered off the event loop by a :class:`SignalOutbox`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haltguard.detection.decisions import ActionKind
from haltguard.detection.metrics import (
    ROUTE_SCOPE_KEY,
    LoadMetrics,
    install_metrics,
    venue_registry,
)
from haltguard.detection.monitors import (
    Hysteresis,
    RuntimeStatusLike,
    SignalOutbox,
    SignalSink,
    Transition,
    service_sink,
)
from haltguard.detection.signals import Signal
from haltguard.security.config import IPNetwork
from haltguard.web.asgi import answer_error, read_body

if TYPE_CHECKING:
    from fastapi import FastAPI

    from haltguard.detection.decisions import Decision, PlannedAction
    from haltguard.detection.security_detectors import RequestFloodDetector
    from haltguard.detection.service import DetectionService

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
BPS = 10_000  # basis points in a whole

ORDER_BODY_BYTES_MAX = 16_384
ORDER_ROUTE = "/v1/markets/{symbol}/orders"
_ORDER_PATH = re.compile(r"^/v1/markets/[^/]+/orders$")
METRICS_PATHS = ("/metrics", "/venue/metrics")  # the second where one port serves both APIs
UNGUARDED_PATHS = frozenset({"/v1/health", *METRICS_PATHS})
ADMIN_PREFIX = "/v1/admin/"  # brakes must get through any flood; the admin token guards it


# --- token buckets (GCRA) -------------------------------------------------------------


def gcra_wait_ns(tat_ns: int, now_ns: int, tolerance_ns: int) -> int:
    """0 if a request arriving at ``now_ns`` conforms, else how long until one would.

    ``tat_ns`` is the bucket's theoretical arrival time; ``tolerance_ns`` is how far ahead
    of its steady rate the bucket may run (``(burst - 1) * interval``).
    """
    return max(0, tat_ns - tolerance_ns - now_ns)


def gcra_charge(tat_ns: int, now_ns: int, interval_ns: int, debt_ns_max: int) -> int:
    """The new arrival time after one admitted request, at most ``debt_ns_max`` ahead."""
    return min(max(tat_ns, now_ns) + interval_ns, now_ns + debt_ns_max)


@dataclass(frozen=True)
class RateLimit:
    """``rate_per_s`` requests a second on average, ``burst`` at once."""

    rate_per_s: int
    burst: int

    def __post_init__(self) -> None:
        if not 1 <= self.rate_per_s <= 10_000_000:
            raise ValueError(f"rate_per_s must be 1..10000000, got {self.rate_per_s}")
        if not 1 <= self.burst <= 1_000_000:
            raise ValueError(f"burst must be 1..1000000, got {self.burst}")

    @property
    def interval_ns(self) -> int:
        return max(1, NS_PER_S // self.rate_per_s)

    @property
    def tolerance_ns(self) -> int:
        """How far ahead of now the arrival time may run: ``burst`` requests at once."""
        return self.interval_ns * (self.burst - 1)


def retry_after_s(wait_ns: int, retry_after_s_max: int) -> int:
    """``Retry-After`` in whole seconds: at least 1, rounded up, at most the bound."""
    return max(1, min(retry_after_s_max, -(-wait_ns // NS_PER_S)))


@dataclass(frozen=True)
class Block:
    until_ns: int
    reason: str


class ClientLimiter:
    """Per-client token buckets plus blocks with an expiry; bounded in clients kept.

    The least recently seen client's bucket is forgotten when ``clients_max`` is reached
    (it starts again with a full bucket); blocks are kept apart, at most ``blocks_max``,
    the one expiring soonest giving way first. A per-client limit (a policy's
    ``rate_limit_client``) replaces the default until it expires.
    """

    def __init__(
        self, limit: RateLimit, *, clients_max: int = 100_000, blocks_max: int = 10_000
    ) -> None:
        self.limit = limit
        self.clients_max = clients_max
        self.blocks_max = blocks_max
        self._tat: OrderedDict[str, int] = OrderedDict()
        self._blocks: dict[str, Block] = {}
        self._limits: dict[str, tuple[RateLimit, int]] = {}

    def take(self, client: str, now_ns: int) -> int:
        """Charge one request: 0 if admitted, else nanoseconds until one would be."""
        limit = self._limit_of(client, now_ns)
        tat = self._tat.get(client, 0)
        wait = gcra_wait_ns(tat, now_ns, limit.tolerance_ns)
        if wait:
            return wait
        self._tat[client] = gcra_charge(tat, now_ns, limit.interval_ns, limit.tolerance_ns
                                        + limit.interval_ns)
        self._tat.move_to_end(client)
        if len(self._tat) > self.clients_max:
            self._tat.popitem(last=False)
        return 0

    def _limit_of(self, client: str, now_ns: int) -> RateLimit:
        override = self._limits.get(client)
        if override is None:
            return self.limit
        if override[1] <= now_ns:
            del self._limits[client]
            return self.limit
        return override[0]

    def set_limit(self, client: str, limit: RateLimit, until_ns: int) -> None:
        """A stricter limit for one client until ``until_ns`` (a policy's rate limit)."""
        if len(self._limits) >= self.blocks_max and client not in self._limits:
            soonest = min(self._limits, key=lambda key: self._limits[key][1])
            del self._limits[soonest]
        self._limits[client] = (limit, until_ns)

    def block(self, client: str, until_ns: int, reason: str) -> None:
        """Refuse every request of ``client`` until ``until_ns`` (a later block wins)."""
        current = self._blocks.get(client)
        if current is not None and current.until_ns >= until_ns:
            return
        if len(self._blocks) >= self.blocks_max and client not in self._blocks:
            soonest = min(self._blocks, key=lambda key: self._blocks[key].until_ns)
            del self._blocks[soonest]
        self._blocks[client] = Block(until_ns, reason)

    def unblock(self, client: str) -> bool:
        """Lift a block now (a person's decision); whether there was one."""
        return self._blocks.pop(client, None) is not None

    def blocked(self, client: str, now_ns: int) -> Block | None:
        block = self._blocks.get(client)
        if block is None or block.until_ns > now_ns:
            return block
        return None

    def expire_blocks(self, now_ns: int) -> list[tuple[str, Block]]:
        """Remove and return the blocks that ran out."""
        expired = [(key, b) for key, b in self._blocks.items() if b.until_ns <= now_ns]
        for key, _ in expired:
            del self._blocks[key]
        return expired

    @property
    def blocks(self) -> dict[str, Block]:
        return dict(self._blocks)


# --- settings ------------------------------------------------------------------------

PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr) for cidr in (
        "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7",
    )
)


@dataclass(frozen=True)
class FloodSettings:
    """Per client (API key, else address): a token bucket, then a block for repeat offenders.

    Requests without an API key from ``exempt_networks`` are not limited by address: by
    default loopback and the private ranges, where the exchange's own gateway and the
    monitoring hosts live (every customer behind the gateway shares its address). Requests
    with an API key are limited per key wherever they come from.

    The defaults sit where exchanges put their public per-address limits (tens of requests
    a second) and, above all, below what one gateway can serve: a single address must be
    refused, cheaply, before it can saturate the front (a forwarding gateway on a small
    host serves a few hundred requests a second; the ``ddos`` drill measures it).
    """

    rate_per_s: int = 50
    burst: int = 100
    refusals_to_block: int = 100  # refused requests within window_s that earn a block
    window_s: int = 10
    block_s: int = 300
    retry_after_s_max: int = 3_600
    exempt_networks: tuple[IPNetwork, ...] = PRIVATE_NETWORKS
    clients_max: int = 100_000

    def __post_init__(self) -> None:
        for name in ("refusals_to_block", "window_s", "block_s", "retry_after_s_max",
                     "clients_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"FloodSettings.{name} must be at least 1")
        RateLimit(self.rate_per_s, self.burst)


@dataclass(frozen=True)
class SheddingSettings:
    """The knobs of load shedding and load detection; fractions are basis points."""

    order_capacity_per_s: int = 1_000  # new orders a second the venue is provisioned for
    # How far ahead of capacity a burst may run. Admitted at once, a burst waits in front of
    # the venue, so it must drain well within ack_p99_ms_max: with 500 ms the surge drill
    # saw the onset's p99 at 0.7 s through the forwarded path, with 100 ms under 0.4 s.
    capacity_burst_ms: int = 100
    client_burst: int = 10  # orders a client may send at once within its share
    active_window_ms: int = 2_000  # a client is "active" if it sent an order within this
    queue_shed_bps: int = 8_000  # from this share of the queue bound: 503 for new orders
    retry_after_s_max: int = 30
    clients_max: int = 100_000
    window_ms: int = 1_000  # the load detector's evaluation window
    rate_alert_bps: int = 9_000  # offered >= 90% of capacity: load.order_rate fires
    queue_alert_bps: int = 5_000  # queue >= 50% of its bound: load.queue_depth fires
    ack_p99_ms_max: int = 500  # acknowledgement p99 above this: load.order_ack_p99_ms fires
    windows_to_clear: int = 3  # quiet windows before a load signal resolves
    orders_in_flight_min: int = 32  # the in-flight bound never goes below this
    flood: FloodSettings = field(default_factory=FloodSettings)  # per-client request limits

    def __post_init__(self) -> None:
        if not 1 <= self.order_capacity_per_s <= 10_000_000:
            raise ValueError("order_capacity_per_s must be 1..10000000")
        for name in ("queue_shed_bps", "rate_alert_bps", "queue_alert_bps"):
            if not 1 <= getattr(self, name) <= BPS:
                raise ValueError(f"{name} must be 1..{BPS} basis points")
        for name in ("capacity_burst_ms", "client_burst", "active_window_ms",
                     "retry_after_s_max", "clients_max", "window_ms", "ack_p99_ms_max",
                     "windows_to_clear", "orders_in_flight_min"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclass(frozen=True)
class Admission:
    """The shedder's answer: admitted (``status == 0``) or refused with an HTTP status."""

    status: int = 0
    code: str = ""
    message: str = ""
    retry_after_s: int = 0

    @property
    def admitted(self) -> bool:
        return self.status == 0


ADMITTED = Admission()


class FairShareShedder:
    """Decides, per new order, admit / 429 / 503. Pure: the caller passes time and depth.

    Fairness: each active client has a bucket refilled at ``capacity / active clients``.
    A client within its bucket is admitted; one beyond it is admitted only while the venue
    as a whole has room (a global bucket at ``capacity``), so spare capacity is never
    wasted and a surge is cut from the clients sending most.
    """

    def __init__(self, settings: SheddingSettings) -> None:
        self.settings = settings
        self._global_interval_ns = max(1, NS_PER_S // settings.order_capacity_per_s)
        self._global_tolerance_ns = settings.capacity_burst_ms * NS_PER_MS
        self._global_tat = 0
        self._client_tat: dict[str, int] = {}
        self._last_seen: OrderedDict[str, int] = OrderedDict()

    @property
    def active_clients(self) -> int:
        return len(self._last_seen)

    def admit_order(
        self, client: str, now_ns: int, queue_depth: int, queue_depth_max: int
    ) -> Admission:
        settings = self.settings
        if queue_depth * BPS >= queue_depth_max * settings.queue_shed_bps:
            wait_s = retry_after_s(
                queue_depth * NS_PER_S // settings.order_capacity_per_s,
                settings.retry_after_s_max,
            )
            return Admission(
                503, "overloaded",
                f"the venue's queue is nearly full ({queue_depth} of {queue_depth_max}); "
                f"nothing was queued, retry in {wait_s} s with the same client_order_id",
                wait_s,
            )
        active = self._touch(client, now_ns)
        share_interval = max(1, active * NS_PER_S // settings.order_capacity_per_s)
        share_tolerance = share_interval * (settings.client_burst - 1)
        client_tat = self._client_tat.get(client, 0)
        client_wait = gcra_wait_ns(client_tat, now_ns, share_tolerance)
        global_wait = gcra_wait_ns(self._global_tat, now_ns, self._global_tolerance_ns)
        if client_wait and global_wait:
            wait_s = retry_after_s(client_wait, settings.retry_after_s_max)
            share = settings.order_capacity_per_s // active
            return Admission(
                429, "over_fair_share",
                f"the venue is at capacity ({settings.order_capacity_per_s} orders/s shared "
                f"by {active} clients) and this client sent more than its share (about "
                f"{share}/s); nothing was queued, retry in {wait_s} s",
                wait_s,
            )
        self._client_tat[client] = gcra_charge(
            client_tat, now_ns, share_interval, share_tolerance + share_interval
        )
        # Orders admitted within a share count in full against capacity (up to a second of
        # debt), so that while they use it all, nobody borrows beyond their share.
        self._global_tat = gcra_charge(
            self._global_tat, now_ns, self._global_interval_ns,
            self._global_tolerance_ns + NS_PER_S,
        )
        return ADMITTED

    def _touch(self, client: str, now_ns: int) -> int:
        """Mark ``client`` active now; forget clients idle past the window; count active."""
        seen = self._last_seen
        seen[client] = now_ns
        seen.move_to_end(client)
        horizon = now_ns - self.settings.active_window_ms * NS_PER_MS
        while seen:
            oldest, last = next(iter(seen.items()))
            if last >= horizon and len(seen) <= self.settings.clients_max:
                break
            del seen[oldest]
            self._client_tat.pop(oldest, None)
        return max(1, len(seen))


class InFlightBound:
    """How many admitted orders may await their acknowledgement at once, adapted each
    window so that waiting stays near ``ack_p99_ms_max`` whatever the venue really manages.

    ``order_capacity_per_s`` is what the venue was provisioned for; when it manages less (a
    slow disk, a busy host, a forwarded hop), admitted orders would queue in front of it
    where neither the shedder's rate nor the runtime's queue depth sees them, and wait for
    seconds. By Little's law, in-flight = rate x latency: after a window whose p99 was over
    the bound, or that ended with more orders in flight than the venue answers within half
    the bound, the limit becomes what was answered in the window times half the bound (a
    limit of the full bound would hold the average wait at the bound, and the p99 above it,
    for as long as the venue stays slow); after a fast window that hit the limit, it doubles,
    up to capacity x the bound. Pure.
    """

    def __init__(self, settings: SheddingSettings) -> None:
        self.floor = settings.orders_in_flight_min
        self.target_ms = settings.ack_p99_ms_max
        self.queue_ms = max(1, settings.ack_p99_ms_max // 2)  # the wait a cut limit allows
        self.ceiling = max(self.floor,
                           settings.order_capacity_per_s * settings.ack_p99_ms_max // 1_000)
        self.limit = self.ceiling

    def adapt(self, answered: int, span_ns: int, p99_ms: int | None, hit_limit: bool,
              in_flight: int = 0) -> int:
        """Adjust after one window (``answered`` acknowledgements over ``span_ns``, and
        ``in_flight`` orders still awaiting theirs as it closed)."""
        done_in_target = answered * self.queue_ms * NS_PER_MS // max(1, span_ns)
        if (p99_ms is not None and p99_ms > self.target_ms) or in_flight > max(
                done_in_target, self.floor):
            self.limit = max(self.floor, min(self.limit, done_in_target))
        elif hit_limit and (p99_ms is None or p99_ms * 2 <= self.target_ms):
            self.limit = min(self.ceiling, self.limit * 2)
        return self.limit


# --- load detection ------------------------------------------------------------------

# Upper bounds (ms) of the latency buckets the detector's p99 is read from.
_LATENCY_BOUNDS_MS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
                      1_000, 1_500, 2_000, 3_000, 5_000, 10_000)


def _latency_bucket(latency_ns: int) -> int:
    latency_ms = latency_ns // NS_PER_MS
    for index, bound in enumerate(_LATENCY_BOUNDS_MS):
        if latency_ms < bound:
            return index
    return len(_LATENCY_BOUNDS_MS)


@dataclass
class LoadWindow:
    """What happened to new orders during one window."""

    start_ns: int
    offered: int = 0
    admitted: int = 0
    shed_429: int = 0
    shed_503: int = 0
    in_flight_refused: int = 0  # of shed_503: refused because the in-flight bound was reached
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(_LATENCY_BOUNDS_MS)
                                                                     + 1))

    def observe_latency(self, latency_ns: int) -> None:
        self.latency_counts[_latency_bucket(latency_ns)] += 1

    def latency_p99_ms(self) -> int | None:
        """The bucket bound holding the 99th percentile (an upper bound), or None if empty."""
        return latency_percentile_ms(self.latency_counts, 99)


def latency_percentile_ms(counts: list[int], percent: int) -> int | None:
    """The bucket bound (ms) holding the ``percent``-th percentile of latency bucket
    ``counts`` (an upper bound; 60 000 past the last bucket), or None for no sample."""
    total = sum(counts)
    if total == 0:
        return None
    rank = -(-total * percent // 100)
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return _LATENCY_BOUNDS_MS[index] if index < len(_LATENCY_BOUNDS_MS) else 60_000
    return None


LATENCY_SAMPLES_MIN = 20  # fewer acknowledgements in a window say nothing about p99
IDLE_WINDOWS_MAX = 10  # quiet windows before the window thread stops until the next request


class LoadDetector:
    """Turns each closed window into ``load.*`` signals, raised and cleared with hysteresis."""

    def __init__(self, settings: SheddingSettings) -> None:
        self.settings = settings
        clear = settings.windows_to_clear
        self._states = {
            name: Hysteresis(1, clear)
            for name in ("load.order_rate", "load.queue_depth", "load.order_ack_p99_ms",
                         "load.shedding")
        }

    @property
    def raised(self) -> bool:
        return any(state.raised for state in self._states.values())

    def evaluate(
        self, window: LoadWindow, end_ns: int, queue_depth: int, queue_depth_max: int
    ) -> list[Signal]:
        settings = self.settings
        span_ns = max(1, end_ns - window.start_ns)
        capacity = settings.order_capacity_per_s
        offered_per_s = window.offered * NS_PER_S // span_ns
        admitted_per_s = window.admitted * NS_PER_S // span_ns
        depth_bps = queue_depth * BPS // max(1, queue_depth_max)
        p99 = window.latency_p99_ms() if sum(window.latency_counts) >= LATENCY_SAMPLES_MIN else None
        shed = window.shed_429 + window.shed_503
        common = {
            "window_ms": str(span_ns // NS_PER_MS),
            "capacity_per_s": str(capacity),
            "offered_per_s": str(offered_per_s),
            "admitted_per_s": str(admitted_per_s),
            "shed_429": str(window.shed_429),
            "shed_503": str(window.shed_503),
            "queue_depth": f"{queue_depth} of {queue_depth_max}",
        }
        rate_threshold = capacity * settings.rate_alert_bps // BPS
        checks = [
            ("load.order_rate", offered_per_s >= rate_threshold, offered_per_s,
             f">= {rate_threshold} orders/s ({settings.rate_alert_bps} bps of capacity)"),
            ("load.queue_depth", depth_bps >= settings.queue_alert_bps, depth_bps,
             f">= {settings.queue_alert_bps} bps of the queue bound"),
            ("load.order_ack_p99_ms", p99 is not None and p99 > settings.ack_p99_ms_max,
             p99 or 0, f"> {settings.ack_p99_ms_max} ms"),
            ("load.shedding", shed > 0, shed, "> 0 requests shed in a window"),
        ]
        signals = []
        for name, bad, value, threshold in checks:
            transition = self._states[name].observe(bad)
            if transition is None:
                continue
            signals.append(Signal(
                source="load", name=name, value=Decimal(value), ts_ns=end_ns,
                labels={"component": "venue"},
                details={**common, "threshold": threshold},
                resolved=transition is Transition.CLEARED,
            ))
        return signals


# --- the middleware ------------------------------------------------------------------


def client_key_of_credentials(scope: Scope) -> str | None:
    """``api_key:<hash>`` for a request carrying an API key (never the key itself)."""
    for name, value in scope.get("headers", ()):
        if name == b"x-api-key" and value:
            return "api_key:" + hashlib.sha256(value).hexdigest()[:16]
        if name == b"authorization" and value[:7].lower() == b"bearer " and value[7:]:
            return "api_key:" + hashlib.sha256(value[7:]).hexdigest()[:16]
    return None


def address_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def account_of(body: bytes) -> int | None:
    """The order's account, or None for a body the route will refuse anyway."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    account = data.get("account") if isinstance(data, dict) else None
    return account if isinstance(account, int) and account > 0 else None


QueueDepth = Callable[[], tuple[int, int]]
Clock = Callable[[], int]


class LoadGuard:
    """The shedder, the detector and the request-flood limiter of one venue app, with the
    lock that lets the event loop and the window thread share them."""

    def __init__(
        self,
        settings: SheddingSettings,
        queue_depth: QueueDepth,
        *,
        flood: RequestFloodDetector | None = None,
        outbox: SignalOutbox | None = None,
        metrics: LoadMetrics | None = None,
        clock: Clock = time.time_ns,
    ) -> None:
        self.settings = settings
        self.queue_depth = queue_depth
        self.flood = flood
        self.outbox = outbox
        self.metrics = metrics
        self.clock = clock
        self.shedder = FairShareShedder(settings)
        self.detector = LoadDetector(settings)
        self.in_flight = InFlightBound(settings)
        self.orders_in_flight = 0
        self._ack_latency_counts = [0] * (len(_LATENCY_BOUNDS_MS) + 1)  # since the start
        self.lock = threading.Lock()
        self.window = LoadWindow(clock())
        self.signals_emitted = 0
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Start the window thread (idempotent): it closes a window every ``window_ms``."""
        with self.lock:
            if self._ticker is not None:
                return
            self._ticker = threading.Thread(target=self._tick_forever, name="load-window",
                                            daemon=True)
            self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(5)

    def _tick_forever(self) -> None:
        """Close windows until stopped, or until the venue has been quiet for
        ``IDLE_WINDOWS_MAX`` windows with nothing raised (the next request restarts it)."""
        interval_s = self.settings.window_ms / 1000
        idle_windows = 0
        while not self._stop.wait(interval_s):
            try:
                offered = self.window.offered
                self.close_window()
            except Exception:
                log.exception("closing a load window failed; the next window tries again")
                continue
            quiet = offered == 0 and not self.detector.raised and not (
                self.flood is not None and self.flood.limiter.blocks
            )
            idle_windows = idle_windows + 1 if quiet else 0
            with self.lock:
                if idle_windows >= IDLE_WINDOWS_MAX:
                    self._ticker = None
                    return

    def close_window(self) -> list[Signal]:
        """Evaluate the current window, start the next, emit what changed."""
        depth, depth_max = self.queue_depth()
        now = self.clock()
        with self.lock:
            window, self.window = self.window, LoadWindow(now)
            signals = self.detector.evaluate(window, now, depth, depth_max)
            answered = sum(window.latency_counts)
            self.in_flight.adapt(
                answered, now - window.start_ns,
                window.latency_p99_ms() if answered >= LATENCY_SAMPLES_MIN else None,
                hit_limit=window.in_flight_refused > 0, in_flight=self.orders_in_flight,
            )
            if self.flood is not None:
                signals += self.flood.expire(now)
                if self.metrics is not None:
                    self.metrics.clients_blocked.set(len(self.flood.limiter.blocks))
            if self.metrics is not None:
                self.metrics.active_clients.set(self.shedder.active_clients)
        self._emit(signals)
        return signals

    def _emit(self, signals: list[Signal]) -> None:
        self.signals_emitted += len(signals)
        if self.outbox is not None:
            for signal in signals:
                self.outbox.put(signal)

    def check_flood(self, scope: Scope) -> Admission:
        if self.flood is None:
            return ADMITTED
        key = client_key_of_credentials(scope) or "address:" + address_of(scope)
        now = self.clock()
        with self.lock:
            verdict = self.flood.check(key, address_of(scope), now)
        if verdict.signal is not None:
            self._emit([verdict.signal])
        return verdict.admission

    def admit_order(self, client: str) -> Admission:
        depth, depth_max = self.queue_depth()
        now = self.clock()
        with self.lock:
            self.window.offered += 1
            if self.orders_in_flight >= self.in_flight.limit:
                self.window.in_flight_refused += 1
                admission = Admission(
                    503, "overloaded",
                    f"the venue is answering slower than it should ({self.orders_in_flight} "
                    f"orders awaiting acknowledgement, the most allowed now); nothing was "
                    "queued, retry in 1 s with the same client_order_id", 1,
                )
            else:
                admission = self.shedder.admit_order(client, now, depth, depth_max)
            if admission.admitted:
                self.window.admitted += 1
                self.orders_in_flight += 1
            elif admission.status == 429:
                self.window.shed_429 += 1
            else:
                self.window.shed_503 += 1
        if self.metrics is not None:
            self.metrics.orders_offered.inc()
            if admission.admitted:
                self.metrics.orders_admitted.inc()
        return admission

    def order_answered(self, latency_ns: int) -> None:
        with self.lock:
            self.window.observe_latency(latency_ns)
            self._ack_latency_counts[_latency_bucket(latency_ns)] += 1
            self.orders_in_flight = max(0, self.orders_in_flight - 1)
        if self.metrics is not None:
            self.metrics.order_ack.observe(latency_ns / NS_PER_S)

    def ack_latency_counts(self) -> list[int]:
        """Admitted orders answered since the start, per latency bucket: what the gateway
        itself measured, from the order's arrival to its answer (a drill takes two readings
        and compares them with :func:`latency_percentile_ms`)."""
        with self.lock:
            return list(self._ack_latency_counts)

    def order_abandoned(self) -> None:
        """An admitted order whose request ended without an answer (the app raised)."""
        with self.lock:
            self.orders_in_flight = max(0, self.orders_in_flight - 1)

    def count_shed(self, code: str) -> None:
        if self.metrics is not None:
            self.metrics.requests_shed.labels(code).inc()

    # -- a policy's client actions ---------------------------------------------------------

    def enforce(self, decision: Decision, action: PlannedAction) -> None:
        """Enforce a rule's ``block_client`` or ``rate_limit_client`` on this gateway.

        The target is ``api_key:<id>`` or ``address:<ip>`` (as the ``client`` label of the
        security signals says), or a bare IP address. Lifting a block early is a person's
        decision (``flood.limiter.unblock``); otherwise it ends when it expires.
        """
        if self.flood is None:
            raise ValueError("this gateway has no request limiter to enforce client actions")
        client = client_key(action.target)
        duration_s = int(action.params.get("duration_s", "0"))
        if not 1 <= duration_s <= 30 * 86_400:
            raise ValueError(f"duration_s must be 1 s to 30 days, got {duration_s}")
        reason = f"rule {decision.rule_id} ({decision.signal.name} = {decision.observed})"
        now = self.clock()
        with self.lock:
            if action.kind is ActionKind.BLOCK_CLIENT:
                self.flood.limiter.block(client, now + duration_s * NS_PER_S, reason)
            elif action.kind is ActionKind.RATE_LIMIT_CLIENT:
                limit_per_s = int(action.params.get("limit_per_s", "0"))
                self.flood.limiter.set_limit(client, RateLimit(limit_per_s, limit_per_s),
                                             now + duration_s * NS_PER_S)
            else:
                raise ValueError(f"{action.kind} is not a client action")
        log.warning("%s %s for %d s: %s", action.kind.value, client, duration_s, reason)

    def attach(self, service: DetectionService) -> None:
        """Register this gateway as the enforcer of the service's client actions."""
        service.add_enforcer(ActionKind.BLOCK_CLIENT, self.enforce)
        service.add_enforcer(ActionKind.RATE_LIMIT_CLIENT, self.enforce)


def client_key(target: str) -> str:
    """The limiter's key for a client action's target, or a ValueError saying what is wrong."""
    if target.startswith(("api_key:", "address:")) and len(target.split(":", 1)[1]) > 0:
        return target
    try:
        return "address:" + str(ipaddress.ip_address(target))
    except ValueError:
        raise ValueError(
            f"cannot limit client {target!r}: name it 'api_key:<id>' or 'address:<ip>' (the "
            "'client' label of the security signals) or give an IP address"
        ) from None


class LoadSheddingMiddleware:
    """Plain ASGI middleware in front of the venue app: flood limits on every request
    (except health and metrics), fair-share shedding on new orders."""

    def __init__(self, app: ASGIApp, guard: LoadGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if not path or path in UNGUARDED_PATHS or path.startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        guard = self.guard
        guard.start()
        refusal = guard.check_flood(scope)
        if not refusal.admitted:
            await self._refuse(send, refusal)
            return
        if scope["method"] != "POST" or not _ORDER_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        start_ns = time.perf_counter_ns()
        scope[ROUTE_SCOPE_KEY] = ORDER_ROUTE  # for metrics, when answered before routing
        body = await read_body(receive, ORDER_BODY_BYTES_MAX)
        if body is None:
            await answer_error(send, 413, "request_too_large",
                               f"an order body is at most {ORDER_BODY_BYTES_MAX} bytes")
            return
        client = client_key_of_credentials(scope)
        if client is None:
            account = account_of(body)
            client = f"account:{account}" if account else "address:" + address_of(scope)
        admission = guard.admit_order(client)
        if not admission.admitted:
            await self._refuse(send, admission)
            return
        try:
            await self.app(scope, _replay(body, receive), send)
        except BaseException:
            guard.order_abandoned()
            raise
        guard.order_answered(time.perf_counter_ns() - start_ns)

    async def _refuse(self, send: Send, refusal: Admission) -> None:
        self.guard.count_shed(refusal.code)
        await answer_error(send, refusal.status, refusal.code, refusal.message,
                           refusal.retry_after_s)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def install_load_shedding(
    app: FastAPI,
    status: Callable[[], RuntimeStatusLike],
    settings: SheddingSettings | None = None,
    *,
    flood: RequestFloodDetector | None = None,
    sink: SignalSink | None = service_sink,
    clock: Clock = time.time_ns,
) -> LoadGuard:
    """Put the load guard and ``/metrics`` in front of a venue app.

    ``flood`` defaults to a :class:`RequestFloodDetector` with ``settings.flood``; signals
    go to ``sink`` through an outbox (None: counted in metrics only). The guard is kept on
    ``app.state.load_guard`` (its ``flood.limiter`` enforces policy blocks). Health,
    metrics and admin routes are never limited.
    """
    from haltguard.detection.security_detectors import RequestFloodDetector

    settings = settings or SheddingSettings()
    registry = venue_registry(status)
    metrics = LoadMetrics(registry)

    def queue_depth() -> tuple[int, int]:
        state = status()
        return state.queue_depth, state.queue_depth_max

    guard = LoadGuard(
        settings, queue_depth,
        flood=flood if flood is not None else RequestFloodDetector(settings.flood),
        outbox=SignalOutbox(sink) if sink is not None else None,
        metrics=metrics,
        clock=clock,
    )
    app.state.load_guard = guard
    app.add_middleware(LoadSheddingMiddleware, guard=guard)
    install_metrics(app, registry, paths=METRICS_PATHS)
    return guard
