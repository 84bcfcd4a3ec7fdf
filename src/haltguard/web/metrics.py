"""Prometheus plumbing shared by the venue API and the operations API: a registry per app,
request counting, and ``/metrics``.

Names follow the Prometheus conventions: a ``haltguard_`` prefix, base units in the name
(``_seconds``, ``_bytes``), ``_total`` on counters, and labels of bounded cardinality (the
route template, never the raw path; no account numbers or addresses). Each app has its own
registry, so two apps in one process (tests, ``serve`` running both) never collide.

``/metrics`` is not authenticated, like every Prometheus target: it reveals counts and
latencies, never orders, accounts or secrets. Expose it to the monitoring network only.
The venue's own metrics are in ``gateway/metrics.py``, detection's in
``detection/metrics.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METRICS_PATH = "/metrics"
ROUTE_UNMATCHED = "unmatched"
ROUTE_SCOPE_KEY = "haltguard.route"  # set by middleware that answers before routing

# Request latency buckets, in seconds: from a fast read to the acknowledgement timeout.
HTTP_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                  2.5, 5.0, 10.0)


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


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Response]:
    def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


def install_metrics(
    app: FastAPI,
    registry: CollectorRegistry | None = None,
    *,
    paths: tuple[str, ...] = (METRICS_PATH,),
    metrics: HttpMetrics | None = None,
) -> CollectorRegistry:
    """Count every request of ``app`` and serve ``registry`` at ``/metrics``.

    The registry is returned so other parts of the app (the load shedder, the alert
    intake) register their metrics in it. Call it after adding other middleware so the
    count includes requests they answer themselves.
    """
    registry = registry or new_registry()
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics or HttpMetrics(registry))
    for path in paths:
        app.add_route(path, metrics_endpoint(registry), methods=["GET"], include_in_schema=False)
    return registry
