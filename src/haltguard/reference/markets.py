"""Reference markets: other exchanges' public market data through CCXT (no keys, no orders).

A :class:`ReferenceMarket` names one market on one exchange (``bitflyer`` ``BTC/JPY``) and
the market of ours it is a reference for (``BTC-JPY``). :class:`CcxtReference` reads its
ticker, its recent trades and its order book with the CCXT exchange class of that name,
honouring CCXT's own rate limit, and turns every price and size into an exact ``Decimal``
from the exchange's own text where it gave one. ``url`` points CCXT somewhere else than the
exchange (a recording served locally, a proxy); without it CCXT uses the exchange's own.

Failures are CCXT's ``NetworkError`` / ``ExchangeError``: :class:`ReferenceUnavailableError`
says which market and why, and :class:`~haltguard.reference.poller.ReferencePoller` backs off.
"""

from __future__ import annotations

import threading
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import ccxt

from haltguard.reference.models import Book, Quote, ReferenceMarket, ReferenceTrade

NS_PER_MS: Final = 1_000_000
TRADES_PER_READ_MAX: Final = 500
LAST_TRADES_READ: Final = 5
BOOK_LEVELS_MAX: Final = 100
TIMEOUT_MS_DEFAULT: Final = 5_000


class ReferenceUnavailableError(RuntimeError):
    """A reference market could not be read now; the message names it and says why."""


def exact(value: Any, what: str) -> Decimal:
    """``value`` as an exact Decimal (via its text, so 0.1 stays 0.1); ValueError if none."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{what} {value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{what} {value!r} is not a finite number")
    return number


class CcxtReference:
    """One reference market read through CCXT; safe to call from one thread at a time
    (a lock makes it so)."""

    def __init__(self, market: ReferenceMarket, *, timeout_ms: int = TIMEOUT_MS_DEFAULT,
                 rate_limit_ms: int | None = None) -> None:
        """``rate_limit_ms``: at least this long between two calls (None: the exchange's
        own limit as CCXT knows it; a local recording may allow less)."""
        if market.exchange not in ccxt.exchanges:
            raise ValueError(f"{market.exchange!r} is not an exchange CCXT knows; see "
                             "ccxt.exchanges for the names")
        self.market = market
        self._lock = threading.Lock()
        self.exchange = getattr(ccxt, market.exchange)(
            {"enableRateLimit": True, "timeout": timeout_ms})
        if rate_limit_ms is not None:
            self.exchange.rateLimit = max(1, rate_limit_ms)
        if market.url:
            api = self.exchange.urls.get("api")
            self.exchange.urls["api"] = (
                dict.fromkeys(api, market.url) if isinstance(api, dict) else market.url)

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return getattr(self.exchange, method)(*args, **kwargs)
            except ccxt.BaseError as exc:
                raise ReferenceUnavailableError(
                    f"{self.market.name} ({self.market.url or 'its own API'}): {what} failed: "
                    f"{type(exc).__name__}: {str(exc)[:200]}") from exc

    def quote(self) -> Quote:
        ticker = self._call("the ticker", "fetch_ticker", self.market.symbol)
        last = ticker.get("last") if isinstance(ticker, dict) else None
        stamp = ticker.get("timestamp") if isinstance(ticker, dict) else None
        if last is None or stamp is None:
            raise ReferenceUnavailableError(f"{self.market.name}: the ticker has no last "
                                            "price or no time")
        return Quote(self.market, exact(last, "the last price"), int(stamp) * NS_PER_MS)

    def last_trade(self) -> Quote:
        """The price and time of the market's last trade (the exchange's own clock, which
        a ticker does not always carry)."""
        trades = self.trades(limit=LAST_TRADES_READ)
        if not trades:
            raise ReferenceUnavailableError(f"{self.market.name}: no recent trade to price from")
        return Quote(self.market, trades[-1].price, trades[-1].ts_ns)

    def trades(self, *, since_ms: int | None = None,
               limit: int = TRADES_PER_READ_MAX) -> list[ReferenceTrade]:
        """Recent trades, oldest first."""
        rows = self._call("the trades", "fetch_trades", self.market.symbol, since_ms,
                          min(limit, TRADES_PER_READ_MAX))
        trades = []
        for row in rows:
            info = row.get("info") or {}
            price = info.get("price", info.get("rate", row["price"]))
            qty = info.get("size", info.get("amount", row["amount"]))
            trades.append(ReferenceTrade(str(row["id"]), int(row["timestamp"]) * NS_PER_MS,
                                         exact(price, "a trade's price"),
                                         exact(qty, "a trade's size")))
        return sorted(trades, key=lambda trade: (trade.ts_ns, trade.trade_id))

    def book(self, levels: int = 20) -> Book:
        data = self._call("the order book", "fetch_order_book", self.market.symbol,
                          min(levels, BOOK_LEVELS_MAX))
        stamp = data.get("timestamp") or 0
        return Book([(exact(p, "a bid"), exact(q, "a bid size")) for p, q, *_ in data["bids"]],
                    [(exact(p, "an ask"), exact(q, "an ask size")) for p, q, *_ in data["asks"]],
                    int(stamp) * NS_PER_MS)
