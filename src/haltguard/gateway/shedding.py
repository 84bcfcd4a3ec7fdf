"""Load shedding: the venue keeps answering through the surge that stops exchanges, and no
acknowledged order is ever lost to it.

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
any request is the request-flood limiter's job (a :class:`FloodLimiting`, detection's
``RequestFloodDetector``).

The buckets and settings are ``limits.py``. Every ``window_ms`` the guard closes a
:class:`LoadWindow` (offered and admitted rate, queue depth, acknowledgement latency, requests
shed) and hands it to the load detector it was given, whose signals go, off the event loop,
to the queue it was given: ``load_signals.py`` is the whole contract with detection.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic

from starlette.types import ASGIApp, Receive, Scope, Send

from haltguard.common.clock import NsClock
from haltguard.common.units import BPS, NS_PER_MS, NS_PER_S
from haltguard.gateway.limits import (
    ADMITTED,
    Admission,
    RateLimit,
    SheddingSettings,
    account_of,
    address_of,
    client_key,
    client_key_of_credentials,
    gcra_charge,
    gcra_wait_ns,
    retry_after_s,
)
from haltguard.gateway.load_signals import (
    BLOCK_CLIENT,
    LATENCY_BOUNDS_MS,
    LATENCY_SAMPLES_MIN,
    RATE_LIMIT_CLIENT,
    ClientAction,
    ClientActions,
    ClientDecision,
    FloodLimiting,
    LoadDetecting,
    LoadSignals,
    LoadWindow,
    RuntimeStatusLike,
    S,
    SignalQueue,
    latency_bucket,
)
from haltguard.gateway.metrics import LoadMetrics, venue_registry
from haltguard.web.asgi import answer_error, read_body, replay
from haltguard.web.metrics import ROUTE_SCOPE_KEY, HttpMetrics, install_metrics

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

ORDER_BODY_BYTES_MAX = 16_384
ORDER_ROUTE = "/v1/markets/{symbol}/orders"
_ORDER_PATH = re.compile(r"^/v1/markets/[^/]+/orders$")
METRICS_PATHS = ("/metrics", "/venue/metrics")  # the second where one port serves both APIs
UNGUARDED_PATHS = frozenset({"/v1/health", *METRICS_PATHS})
ADMIN_PREFIX = "/v1/admin/"  # brakes must get through any flood; the admin token guards it


IDLE_WINDOWS_MAX = 10  # quiet windows before the window thread stops until the next request


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


QueueDepth = Callable[[], tuple[int, int]]


class LoadGuard(Generic[S]):
    """The shedder, the detector and the request-flood limiter of one venue app, with the
    lock that lets the event loop and the window thread share them.

    Without a ``detector`` windows are still closed (the in-flight bound adapts) but raise
    nothing; without ``flood`` requests are not limited per client; without ``outbox``
    signals are only counted. ``S`` is the detector's signal type, opaque here."""

    def __init__(
        self,
        settings: SheddingSettings,
        queue_depth: QueueDepth,
        *,
        detector: LoadDetecting[S] | None = None,
        flood: FloodLimiting[S] | None = None,
        outbox: SignalQueue[S] | None = None,
        metrics: LoadMetrics | None = None,
        clock: NsClock = time.time_ns,
    ) -> None:
        self.settings = settings
        self.queue_depth = queue_depth
        self.flood = flood
        self.outbox = outbox
        self.metrics = metrics
        self.clock = clock
        self.shedder = FairShareShedder(settings)
        self.detector = detector
        self.in_flight = InFlightBound(settings)
        self.orders_in_flight = 0
        self._ack_latency_counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)  # since the start
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
            quiet = offered == 0 and not (
                self.detector is not None and self.detector.raised
            ) and not (
                self.flood is not None and self.flood.limiter.blocks
            )
            idle_windows = idle_windows + 1 if quiet else 0
            with self.lock:
                if idle_windows >= IDLE_WINDOWS_MAX:
                    self._ticker = None
                    return

    def close_window(self) -> list[S]:
        """Evaluate the current window, start the next, emit what changed."""
        depth, depth_max = self.queue_depth()
        now = self.clock()
        with self.lock:
            window, self.window = self.window, LoadWindow(now)
            signals = ([] if self.detector is None
                       else self.detector.evaluate(window, now, depth, depth_max))
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

    def _emit(self, signals: list[S]) -> None:
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
            self._ack_latency_counts[latency_bucket(latency_ns)] += 1
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

    def enforce(self, decision: ClientDecision, action: ClientAction) -> None:
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
            if action.kind == BLOCK_CLIENT:
                self.flood.limiter.block(client, now + duration_s * NS_PER_S, reason)
            elif action.kind == RATE_LIMIT_CLIENT:
                limit_per_s = int(action.params.get("limit_per_s", "0"))
                self.flood.limiter.set_limit(client, RateLimit(limit_per_s, limit_per_s),
                                             now + duration_s * NS_PER_S)
            else:
                raise ValueError(f"{action.kind} is not a client action")
        log.warning("%s %s for %d s: %s", action.kind, client, duration_s, reason)

    def attach(self, service: ClientActions) -> None:
        """Register this gateway as the enforcer of the service's client actions."""
        service.add_client_enforcer(self.enforce)


class LoadSheddingMiddleware:
    """Plain ASGI middleware in front of the venue app: flood limits on every request
    (except health and metrics), fair-share shedding on new orders."""

    def __init__(self, app: ASGIApp, guard: LoadGuard[Any]) -> None:
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
            await self.app(scope, replay(body, receive), send)
        except BaseException:
            guard.order_abandoned()
            raise
        guard.order_answered(time.perf_counter_ns() - start_ns)

    async def _refuse(self, send: Send, refusal: Admission) -> None:
        await refuse(self.guard, send, refusal)


async def refuse(guard: LoadGuard[Any], send: Send, refusal: Admission) -> None:
    """Answer a request the guard did not admit, and count it as shed."""
    guard.count_shed(refusal.code)
    await answer_error(send, refusal.status, refusal.code, refusal.message,
                       refusal.retry_after_s)


def install_load_shedding(
    app: FastAPI,
    status: Callable[[], RuntimeStatusLike],
    settings: SheddingSettings | None = None,
    *,
    signals: LoadSignals[S] | None = None,
    clock: NsClock = time.time_ns,
    queue_depth: Callable[[], tuple[int, int]] | None = None,
) -> tuple[LoadGuard[S], HttpMetrics]:
    """Put the load guard and ``/metrics`` in front of a venue app.

    ``signals`` is what detection plugs in: the load detector, the request-flood limiter
    and the outbox (None: shedding only, see :class:`LoadGuard`). The guard is returned
    (its ``flood.limiter`` enforces policy blocks) with the app's request metrics.
    ``queue_depth`` reads the queue cheaply (default: from ``status``). Health,
    metrics and admin routes are never limited.
    """
    settings = settings or SheddingSettings()
    registry = venue_registry(status)
    metrics = LoadMetrics(registry)

    def queue_depth_from_status() -> tuple[int, int]:
        state = status()
        return state.queue_depth, state.queue_depth_max

    guard: LoadGuard[S] = LoadGuard(
        settings, queue_depth or queue_depth_from_status,
        detector=signals.detector if signals is not None else None,
        flood=signals.flood if signals is not None else None,
        outbox=signals.outbox if signals is not None else None,
        metrics=metrics,
        clock=clock,
    )
    app.add_middleware(LoadSheddingMiddleware, guard=guard)
    http_metrics = HttpMetrics(registry)
    install_metrics(app, registry, paths=METRICS_PATHS, metrics=http_metrics)
    return guard, http_metrics
