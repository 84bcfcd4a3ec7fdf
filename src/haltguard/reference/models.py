"""What a reference market is and what it says: plain data, no I/O (the settings and the
detectors use these without loading CCXT, which ``markets.py`` wraps)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class ReferenceMarket:
    """One market of another exchange, as a reference for one of ours."""

    exchange: str  # a CCXT exchange id: bitflyer, coincheck, kraken ...
    symbol: str  # CCXT's unified symbol: BTC/JPY
    our_market: str  # BTC-JPY
    url: str = ""  # "" : the exchange's own API

    @property
    def name(self) -> str:
        """``exchange:symbol``, with ``@url`` when it is read from elsewhere (two copies of
        one exchange's market at two places are two references)."""
        return f"{self.exchange}:{self.symbol}" + (f"@{self.url}" if self.url else "")


@dataclass(frozen=True)
class Quote:
    """The last price a reference market traded at, and when (the exchange's clock)."""

    market: ReferenceMarket
    price: Decimal
    ts_ns: int


@dataclass(frozen=True)
class ReferenceTrade:
    """One trade of a reference market: price in quote per whole base unit, size in whole
    base units, both exact."""

    trade_id: str
    ts_ns: int
    price: Decimal
    qty: Decimal


@dataclass(frozen=True)
class Book:
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    ts_ns: int
