"""Prometheus metrics for the venue API and the operations API, served at ``/metrics``.

Names follow the Prometheus conventions: a ``haltguard_`` prefix, base units in the name
(``_seconds``, ``_bytes``), ``_total`` on counters, and labels of bounded cardinality (the
route template, never the raw path; no account numbers or addresses). Each app has its own
registry, so two apps in one process (tests, ``serve`` running both) never collide.

``/metrics`` is not authenticated, like every Prometheus target: it reveals counts and
latencies, never orders, accounts or secrets. Expose it to the monitoring network only.

Venue metrics read :meth:`VenueRuntime.status` at scrape time (a custom collector), so the
venue thread does no extra work per command for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haltguard.detection.monitors import RuntimeStatusLike
from haltguard.detection.signals import Signal

METRICS_PATH = "/metrics"
ROUTE_UNMATCHED = "unmatched"
ROUTE_SCOPE_KEY = "haltguard.route"  # set by middleware that answers before routing

# Request latency buckets, in seconds: from a fast read to the acknowledgement timeout.
HTTP_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                  2.5, 5.0, 10.0)
CHECK_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def new_registry() -> CollectorRegistry:
    """A registry with the standard process, platform and GC collectors."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class HttpMetrics:
    """Requests and their latency, by method, route template and status code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "haltguard_http_requests_total", "HTTP requests answered, by route template",
            ["method", "route", "status"], registry=registry,
        )
        self.duration = Histogram(
            "haltguard_http_request_duration_seconds",
            "Time from receiving a request to the end of its answer",
            ["method", "route"], buckets=HTTP_BUCKETS_S, registry=registry,
        )
        self.in_flight = Gauge(
            "haltguard_http_requests_in_flight", "Requests being served now", registry=registry
        )


class HttpMetricsMiddleware:
    """Counts every HTTP request once it is answered (plain ASGI: no per-request tasks)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers if the app raises before responding

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_counting)
        finally:
            self.metrics.in_flight.dec()
            route = route_of(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.duration.labels(method, route).observe(time.perf_counter() - start)


def route_of(scope: Scope) -> str:
    """The route template that served the request, e.g. ``/v1/markets/{symbol}/orders``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    marked = scope.get(ROUTE_SCOPE_KEY)
    return marked if isinstance(marked, str) else ROUTE_UNMATCHED


class VenueStatusCollector(Collector):
    """The venue runtime's counters and gauges, read from ``status()`` at scrape time."""

    def __init__(self, status: Callable[[], RuntimeStatusLike]) -> None:
        self.status = status

    def collect(self) -> Iterable[Metric]:
        state: Any = self.status()
        yield _gauge("haltguard_venue_up", "1 while the venue takes commands, 0 otherwise",
                     int(bool(state.running) and not state.failure))
        yield _gauge("haltguard_venue_queue_depth", "Commands waiting for the venue thread",
                     state.queue_depth)
        yield _gauge("haltguard_venue_queue_depth_max",
                     "Bound of the input queue; beyond it commands get 503", state.queue_depth_max)
        yield _gauge("haltguard_venue_last_seq", "Sequence number of the last journaled command",
                     state.last_seq)
        yield _gauge("haltguard_venue_batch_size_max", "Largest group-commit batch so far",
                     state.batch_size_max_seen)
        yield _counter("haltguard_venue_commands", "Commands journaled and applied",
                       state.commands)
        yield _counter("haltguard_venue_journal_batches", "Group commits (one fsync each)",
                       state.batches)
        yield _counter("haltguard_venue_overloads",
                       "Commands refused because the input queue was full", state.overloads)
        yield _counter("haltguard_venue_checkpoints", "Snapshots written", state.checkpoints)
        yield _counter("haltguard_venue_checkpoint_failures", "Snapshots that failed",
                       state.checkpoint_failures)
        yield _counter("haltguard_venue_clock_steps_back",
                       "Times the wall clock went back and the sequencer held time",
                       state.clock_steps_back)


def _gauge(name: str, documentation: str, value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


class LoadMetrics:
    """What the load shedder and the request-flood limiter did, for the venue's ``/metrics``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.orders_offered = Counter(
            "haltguard_venue_orders_offered_total", "New orders that reached the load shedder",
            registry=registry,
        )
        self.orders_admitted = Counter(
            "haltguard_venue_orders_admitted_total", "New orders passed on to the venue",
            registry=registry,
        )
        self.requests_shed = Counter(
            "haltguard_venue_requests_shed_total",
            "Requests answered 429 or 503 before reaching the venue, by reason",
            ["reason"], registry=registry,
        )
        self.order_ack = Histogram(
            "haltguard_venue_order_ack_duration_seconds",
            "Time from an admitted order's arrival to its acknowledgement",
            buckets=HTTP_BUCKETS_S, registry=registry,
        )
        self.active_clients = Gauge(
            "haltguard_venue_active_clients", "Clients that sent an order within the window",
            registry=registry,
        )
        self.clients_blocked = Gauge(
            "haltguard_venue_clients_blocked", "Clients blocked for flooding, now",
            registry=registry,
        )


class DetectionMetrics:
    """Signals emitted, health check outcomes and alerts received."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.signals = Counter(
            "haltguard_detection_signals_total", "Signals handed to the policy engine",
            ["source", "name", "resolved"], registry=registry,
        )
        self.check_up = Gauge(
            "haltguard_health_check_up", "1 if the last run of a health check passed",
            ["component", "check"], registry=registry,
        )
        self.check_duration = Histogram(
            "haltguard_health_check_duration_seconds", "How long a health check took",
            ["component", "check"], buckets=CHECK_BUCKETS_S, registry=registry,
        )
        self.alerts = Counter(
            "haltguard_alerts_received_total", "Alerts received by the intake, by status",
            ["source", "status"], registry=registry,
        )
        self.alerts_duplicate = Counter(
            "haltguard_alerts_duplicate_total",
            "Alerts dropped as repeats of one already seen (same fingerprint and start)",
            ["source"], registry=registry,
        )

    def count_signal(self, signal: Signal) -> None:
        source = signal.source.split(":", 1)[0]  # "webhook:<sender>" counts as "webhook"
        self.signals.labels(source, signal.name, str(signal.resolved).lower()).inc()


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Response]:
    def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


def install_metrics(
    app: FastAPI,
    registry: CollectorRegistry | None = None,
    *,
    paths: tuple[str, ...] = (METRICS_PATH,),
) -> CollectorRegistry:
    """Count every request of ``app`` and serve ``registry`` at ``/metrics``.

    The registry is kept on ``app.state.metrics_registry`` so other parts of the app (the
    load shedder, the alert intake) register their metrics in it. Call it after adding
    other middleware so the count includes requests they answer themselves.
    """
    registry = registry or new_registry()
    app.state.metrics_registry = registry
    app.state.http_metrics = HttpMetrics(registry)
    app.add_middleware(HttpMetricsMiddleware, metrics=app.state.http_metrics)
    for path in paths:
        app.add_route(path, metrics_endpoint(registry), methods=["GET"], include_in_schema=False)
    return registry


def venue_registry(status: Callable[[], RuntimeStatusLike]) -> CollectorRegistry:
    """A registry holding the venue runtime's own metrics, read at scrape time."""
    registry = new_registry()
    registry.register(VenueStatusCollector(status))
    return registry


def install_operations_metrics(app: FastAPI) -> None:
    """``/metrics`` on the operations API: HTTP and detection metrics."""
    registry = install_metrics(app)
    app.state.detection_metrics = DetectionMetrics(registry)
