"""Our market against the rest of the world: the divergence from reference markets.

A market of ours that moves away from every other exchange's is a signal by itself (a
fat-finger order, a broken feed, a local run on the book): :class:`DivergenceDetector`
keeps the last price of each reference market (other exchanges, read through CCXT by
``haltguard.reference``) and of ours, and measures

    divergence_bps = |ours - median(references)| x 10,000 / median(references)

over the references heard from within ``stale_s`` (at least ``references_min`` of them,
else nothing is measured: too few markets say nothing about "the rest of the world").
The signal ``market.reference_divergence_bps`` carries the *sustained* divergence: the
smallest measured over the last ``hold_s`` seconds, once measurements cover that long. So a
rule ``when: ">= 500"`` reads "more than 5% from the median for ``hold_s`` seconds", and a
single odd print does not halt anything. Time is the data's own (exchange and venue
timestamps), never the wall clock, so recorded data replays exactly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from statistics import median
from typing import Final

from haltguard.common.units import BPS, NS_PER_S
from haltguard.detection.market import market_labels
from haltguard.detection.signals import Signal

SOURCE: Final = "reference"
DIVERGENCE: Final = "market.reference_divergence_bps"
REFERENCES_MAX: Final = 32
SAMPLES_MAX: Final = 10_000


@dataclass
class DivergenceDetector:
    """The sustained divergence of ``market`` from its reference markets' median."""

    market: str
    hold_s: float = 30.0
    stale_s: float = 60.0
    references_min: int = 2
    _references: dict[str, tuple[int, Decimal]] = field(default_factory=dict, init=False)
    _ours: tuple[int, Decimal] | None = field(default=None, init=False)
    _samples: deque[tuple[int, int]] = field(default_factory=deque, init=False)  # (ts, bps)

    def __post_init__(self) -> None:
        if not (self.hold_s > 0 and self.stale_s > 0 and self.references_min >= 1):
            raise ValueError("hold_s and stale_s must be positive, references_min at least 1")

    def on_reference(self, name: str, price: Decimal, ts_ns: int) -> Signal | None:
        """A reference market's last price; the signal it leads to, if any."""
        if price <= 0:
            return None
        if name not in self._references and len(self._references) >= REFERENCES_MAX:
            raise ValueError(f"at most {REFERENCES_MAX} reference markets per market")
        known = self._references.get(name)
        if known is None or ts_ns >= known[0]:
            self._references[name] = (ts_ns, price)
        return self._measure(ts_ns)

    def on_ours(self, price: Decimal, ts_ns: int) -> Signal | None:
        """Our market's last trade price."""
        if price <= 0:
            return None
        self._ours = (ts_ns, price)
        return self._measure(ts_ns)

    def reference_median(self, now_ns: int) -> tuple[Decimal, list[str]] | None:
        fresh = {name: price for name, (ts, price) in self._references.items()
                 if now_ns - ts <= self.stale_s * NS_PER_S}
        if len(fresh) < self.references_min:
            return None
        return Decimal(median(fresh.values())), sorted(fresh)

    def _measure(self, now_ns: int) -> Signal | None:
        if self._ours is None:
            return None
        found = self.reference_median(now_ns)
        if found is None:
            self._samples.clear()  # a gap in the evidence restarts the hold
            return None
        middle, names = found
        ours = self._ours[1]
        divergence = int(abs(ours - middle) * BPS / middle)
        samples = self._samples
        if samples and now_ns < samples[-1][0]:
            return None  # out of order: the data's own time never goes back
        samples.append((now_ns, divergence))
        hold_ns = int(self.hold_s * NS_PER_S)
        while len(samples) > 1 and samples[1][0] <= now_ns - hold_ns:
            samples.popleft()
        while len(samples) > SAMPLES_MAX:
            samples.popleft()
        covered = now_ns - samples[0][0] >= hold_ns
        sustained = min(bps for _, bps in samples) if covered else 0
        return Signal(
            source=SOURCE, name=DIVERGENCE, value=Decimal(sustained), ts_ns=now_ns,
            labels={**market_labels(self.market),
                    "direction": "below" if ours < middle else "above"},
            details={"price": str(ours), "reference_median": str(middle),
                     "divergence_now_bps": str(divergence), "hold_s": f"{self.hold_s:g}",
                     "references": ",".join(names)},
        )
