"""Load detection: what the gateway's load shedding saw, as ``load.*`` signals.

The gateway (``gateway/shedding.py``) sheds load and closes a :class:`LoadWindow` every
``window_ms``; the :class:`LoadDetector` turns each window's numbers (offered and admitted
rate, queue depth, acknowledgement latency p99, requests shed) into ``load.*`` signals with
hysteresis, delivered off the event loop by a :class:`SignalOutbox`. The two meet only
through ``gateway/load_signals.py``; :func:`venue_load_signals` is what the app plugs into a
venue's load guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from haltguard.common.units import BPS, NS_PER_MS, NS_PER_S
from haltguard.detection.monitors import (
    Hysteresis,
    SignalOutbox,
    SignalSink,
    Transition,
    service_sink,
)
from haltguard.detection.security_detectors import RequestFloodDetector
from haltguard.detection.signals import Signal
from haltguard.gateway.limits import SheddingSettings
from haltguard.gateway.load_signals import LATENCY_SAMPLES_MIN, LoadWindow


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


@dataclass(frozen=True)
class VenueLoadSignals:
    """What detection plugs into a venue's load guard (``install_load_shedding``)."""

    detector: LoadDetector
    flood: RequestFloodDetector
    outbox: SignalOutbox | None


def venue_load_signals(
    settings: SheddingSettings, sink: SignalSink | None = service_sink
) -> VenueLoadSignals:
    """The load detector, the request-flood limiter (``settings.flood``) and an outbox to
    ``sink`` (None: signals are counted in the venue's metrics only)."""
    return VenueLoadSignals(
        detector=LoadDetector(settings),
        flood=RequestFloodDetector(settings.flood),
        outbox=SignalOutbox(sink) if sink is not None else None,
    )
