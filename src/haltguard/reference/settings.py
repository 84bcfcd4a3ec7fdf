"""The ``reference.*`` settings: which other exchanges' markets ``serve`` watches, and how.

A market is written ``EXCHANGE:BASE/QUOTE=OUR-MARKET``, optionally followed by ``@URL`` (a
base URL other than the exchange's own: a proxy, or a recording served locally), e.g.
``bitflyer:BTC/JPY=BTC-JPY``. ``app/config.py`` reads them; this module only parses and
checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from haltguard.reference.models import ReferenceMarket

_MARKET: Final = re.compile(
    r"^(?P<exchange>[a-z0-9_]+):(?P<symbol>[A-Z0-9]+/[A-Z0-9]+)=(?P<ours>[A-Z0-9]+-[A-Z0-9]+)"
    r"(@(?P<url>https?://\S+))?$")
MARKETS_MAX: Final = 64


@dataclass(frozen=True)
class ReferenceSettings:
    """Reference markets and the divergence detector's parameters (off with no markets)."""

    markets: tuple[ReferenceMarket, ...] = ()
    poll_interval_s: float = 5.0
    hold_s: float = 30.0
    stale_s: float = 60.0
    markets_min: int = 2

    def __post_init__(self) -> None:
        if len(self.markets) > MARKETS_MAX:
            raise ValueError(f"reference.markets: at most {MARKETS_MAX} markets")
        if not (self.poll_interval_s > 0 and self.hold_s > 0 and self.stale_s > 0):
            raise ValueError("reference.poll_interval_s, hold_s and stale_s must be positive")
        if self.markets_min < 1:
            raise ValueError("reference.markets_min must be at least 1")


def parse_reference_market(text: str) -> ReferenceMarket:
    """``EXCHANGE:BASE/QUOTE=OUR-MARKET[@URL]`` as a :class:`ReferenceMarket`; ValueError
    saying the expected form otherwise."""
    found = _MARKET.match(text.strip())
    if found is None:
        raise ValueError(
            f"reference.markets: {text!r} is not EXCHANGE:BASE/QUOTE=OUR-MARKET[@URL], e.g. "
            "bitflyer:BTC/JPY=BTC-JPY (the exchange as CCXT names it)")
    return ReferenceMarket(found["exchange"], found["symbol"], found["ours"],
                           found["url"] or "")
