"""Reference markets watched by ``serve``: other exchanges' prices (CCXT, through
``haltguard.reference``) against ours, into the divergence detector and on to detection.

Our prices come from the venue contract's event feed (``read_events``: the last ``trade``
of each watched market), so the watch works the same for our venue and for one reached
through an adapter. Both sides are timed by this process's clock on arrival: a reference
market counts while it was *heard from* within ``stale_s``. A reference market that cannot
be read raises ``reference.market_unavailable`` once per outage (the poller backs off).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Final

from haltguard.detection.divergence import DivergenceDetector
from haltguard.detection.signals import Signal
from haltguard.reference.markets import CcxtReference
from haltguard.reference.models import Quote
from haltguard.reference.poller import ReferencePoller
from haltguard.reference.settings import ReferenceSettings
from haltguard.venue.control import VenueControlError, VenueObservation

log = logging.getLogger(__name__)

UNAVAILABLE_SIGNAL: Final = "reference.market_unavailable"
FEED_PAGE_EVENTS: Final = 5_000


class ReferenceWatch:
    """Polls the reference markets and follows our trades; signals go to ``sink``."""

    def __init__(self, settings: ReferenceSettings, venue: VenueObservation,
                 sink: Callable[[Signal], object], *,
                 sources: list[CcxtReference] | None = None) -> None:
        self.settings = settings
        self.venue = venue
        self.sink = sink
        self.sources = sources if sources is not None else [
            CcxtReference(market) for market in settings.markets]
        self.detectors = {market.our_market: DivergenceDetector(
            market.our_market, hold_s=settings.hold_s, stale_s=settings.stale_s,
            references_min=settings.markets_min) for market in settings.markets}
        self._lock = threading.Lock()  # the detectors are fed from two threads
        self.poller = ReferencePoller(self.sources, self._on_quote,
                                      interval_s=settings.poll_interval_s,
                                      on_problem=self._on_problem)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="reference-ours",
                                        daemon=True)

    def start(self) -> ReferenceWatch:
        self.poller.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.poller.stop()
        self._thread.join(10)

    def _send(self, signal: Signal | None) -> None:
        if signal is None:
            return
        try:
            self.sink(signal)
        except Exception:  # detection's trouble must not stop the watch
            log.exception("could not deliver %s", signal.name)

    def _on_quote(self, quote: Quote) -> None:
        detector = self.detectors.get(quote.market.our_market)
        if detector is not None:
            with self._lock:
                signal = detector.on_reference(quote.market.name, quote.price, time.time_ns())
            self._send(signal)

    def _on_problem(self, name: str, why: str) -> None:
        self._send(Signal(source="reference", name=UNAVAILABLE_SIGNAL, value=Decimal(1),
                          ts_ns=time.time_ns(), labels={"reference": name},
                          details={"detail": why[:500]}))

    def _follow(self) -> None:
        cursor = -1
        while not self._stop.is_set():
            try:
                if cursor < 0:  # start at the end: only trades from now on
                    cursor = max(0, self.venue.health().last_seq)
                page = self.venue.read_events(cursor, FEED_PAGE_EVENTS)
            except VenueControlError as exc:
                log.warning("reference watch: cannot read the venue's events: %s", exc)
                self._stop.wait(self.settings.poll_interval_s)
                continue
            last: dict[str, Decimal] = {}
            for event in page.events:
                if event.kind == "trade" and event.market in self.detectors:
                    try:
                        last[event.market] = Decimal(str(event.data["price"]))
                    except (KeyError, InvalidOperation):
                        continue
            for market, price in last.items():
                with self._lock:
                    signal = self.detectors[market].on_ours(price, time.time_ns())
                self._send(signal)
            cursor = max(cursor, page.cursor)
            if not page.events:
                self._stop.wait(min(1.0, self.settings.poll_interval_s))
