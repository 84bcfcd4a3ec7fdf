"""Detectors of attacks on customers' accounts (manual chapter 1.2), feeding the security
rules (``detection/rules.example.yaml``) like the other security detectors:

* ``security.customer_signature_failures`` (labels ``account``): refused signatures of one
  account's keys within a minute above a threshold: someone holds a key id and guesses,
  or holds an old secret. Per account, so the rule freezes that account's withdrawals.
* ``security.customer_impossible_travel`` (labels ``account``): two uses of one account's
  keys from places farther apart than anyone travels in the time between them.
* ``security.customer_key_burst`` / ``security.customer_address_burst``: new API keys (or
  withdrawal addresses) added by many accounts within ten minutes: accounts taken over in
  bulk being prepared to be emptied.

Pure: time is passed in; nothing reads a clock or a database.
"""

from __future__ import annotations

import math
from decimal import Decimal

from haltguard.common.units import NS_PER_S
from haltguard.customers.settings import (
    BURST_WINDOW_S,
    SIGNATURE_FAILURES_WINDOW_S,
    CustomerSettings,
)
from haltguard.detection.security_detectors import SlidingWindow
from haltguard.detection.signals import Signal

EARTH_RADIUS_KM = 6_371
ACCOUNTS_REMEMBERED_MAX = 100_000
SIGNAL_SOURCE = "customers"


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (latitude, longitude) points in degrees."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


class CustomerDetectors:
    """Every customer detector; each method returns the signals an observation raises."""

    def __init__(self, settings: CustomerSettings) -> None:
        self.settings = settings
        self._failures = SlidingWindow(SIGNATURE_FAILURES_WINDOW_S * NS_PER_S,
                                       events_max=settings.signature_failures_max + 1,
                                       keys_max=ACCOUNTS_REMEMBERED_MAX)
        self._failures_raised: set[int] = set()
        self._keys = SlidingWindow(BURST_WINDOW_S * NS_PER_S, events_max=10_000, keys_max=2)
        self._addresses = SlidingWindow(BURST_WINDOW_S * NS_PER_S, events_max=10_000,
                                        keys_max=2)
        self._burst_raised: set[str] = set()
        self._last_place: dict[int, tuple[int, float, float]] = {}

    def signature_refused(self, account: int, reason: str, now_ns: int) -> list[Signal]:
        events = self._failures.add(str(account), now_ns, reason)
        limit = self.settings.signature_failures_max
        if len(events) <= limit:
            self._failures_raised.discard(account)
            return []
        if account in self._failures_raised:
            return []
        self._failures_raised.add(account)
        return [Signal(
            source=SIGNAL_SOURCE, name="security.customer_signature_failures",
            value=Decimal(len(events)), ts_ns=now_ns, labels={"account": str(account)},
            details={"threshold": f"> {limit} refused signatures within "
                                  f"{SIGNATURE_FAILURES_WINDOW_S} s",
                     "reasons": ",".join(sorted({r for _, r in events}))})]

    def seen_at(self, account: int, latitude: float, longitude: float,
                now_ns: int) -> list[Signal]:
        """A use of ``account`` from a place; an impossible journey since the last one
        raises a signal."""
        last = self._last_place.get(account)
        self._last_place[account] = (now_ns, latitude, longitude)
        if len(self._last_place) > ACCOUNTS_REMEMBERED_MAX:
            self._last_place.pop(next(iter(self._last_place)))
        if last is None:
            return []
        then_ns, lat0, lon0 = last
        km = distance_km((lat0, lon0), (latitude, longitude))
        hours = max(now_ns - then_ns, 1) / (3_600 * NS_PER_S)
        speed_kmh = km / hours
        if km < 1 or speed_kmh <= self.settings.travel_speed_kmh_max:
            return []
        return [Signal(
            source=SIGNAL_SOURCE, name="security.customer_impossible_travel",
            value=Decimal(int(speed_kmh)), ts_ns=now_ns, labels={"account": str(account)},
            details={"distance_km": str(int(km)),
                     "seconds_between": str((now_ns - then_ns) // NS_PER_S),
                     "threshold": f"> {self.settings.travel_speed_kmh_max} km/h"})]

    def key_created(self, account: int, now_ns: int) -> list[Signal]:
        return self._burst(self._keys, "security.customer_key_burst", account, now_ns)

    def address_added(self, account: int, now_ns: int) -> list[Signal]:
        return self._burst(self._addresses, "security.customer_address_burst", account, now_ns)

    def _burst(self, window: SlidingWindow, name: str, account: int,
               now_ns: int) -> list[Signal]:
        events = window.add("all", now_ns, str(account))
        accounts = len({item for _, item in events})
        if accounts < self.settings.burst_accounts_min:
            self._burst_raised.discard(name)
            return []
        if name in self._burst_raised:
            return []
        self._burst_raised.add(name)
        return [Signal(
            source=SIGNAL_SOURCE, name=name, value=Decimal(accounts), ts_ns=now_ns,
            details={"threshold": f">= {self.settings.burst_accounts_min} accounts within "
                                  f"{BURST_WINDOW_S} s"})]
