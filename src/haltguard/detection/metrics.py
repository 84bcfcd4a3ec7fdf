"""Detection's metrics on the operations API's ``/metrics``: signals emitted, health check
outcomes and alerts received. The shared plumbing is ``web/metrics.py``; the venue's own
metrics are ``gateway/metrics.py``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from haltguard.detection.signals import Signal

CHECK_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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

