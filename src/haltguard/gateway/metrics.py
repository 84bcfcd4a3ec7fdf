"""The venue's metrics for its ``/metrics``: the runtime's counters and gauges, read from
:meth:`VenueRuntime.status` at scrape time (a custom collector, so the venue thread does no
extra work per command for them), and what the load shedder and the request-flood limiter
did. The shared plumbing (registry, request counting, the route) is ``web/metrics.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from haltguard.gateway.load_signals import RuntimeStatusLike
from haltguard.web.metrics import HTTP_BUCKETS_S, new_registry


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


def venue_registry(status: Callable[[], RuntimeStatusLike]) -> CollectorRegistry:
    """A registry holding the venue runtime's own metrics, read at scrape time."""
    registry = new_registry()
    registry.register(VenueStatusCollector(status))
    return registry
