"""A local server answering in three real exchanges' documented public API formats
(bitFlyer ``/v1/getexecutions``, Coincheck ``/api/trades``, Zaif ``/api/1/trades``), so
CCXT's own exchange classes read from it exactly as they read from the exchange. It
replays a series of trades as of a clock the test moves (``now_ns``): an exchange only
answers the trades that happened by then, newest first, as the real ones do.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Print:
    """One trade of the replayed series."""

    trade_id: int
    ts_ns: int
    price: Decimal
    qty: Decimal
    side: str  # buy / sell


class ExchangeReplay:
    """Serves ``series`` (by exchange format) on a free local port; see the docstring."""

    def __init__(self, series: dict[str, list[Print]]) -> None:
        self.series = series  # "bitflyer" / "coincheck" / "zaif" -> prints, oldest first
        self.now_ns = 0
        self.requests = 0
        self.fail = False  # answer 503 to everything (an exchange down)
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                replay.requests += 1
                status, body = (503, {"error": "maintenance"}) if replay.fail else \
                    replay.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ExchangeReplay:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def _visible(self, exchange: str, limit: int) -> list[Print]:
        prints = [p for p in self.series.get(exchange, []) if p.ts_ns <= self.now_ns]
        return list(reversed(prints[-limit:]))

    def answer(self, path: str) -> tuple[int, Any]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = parts.path
        if route == "/v1/getmarkets":
            return 200, [{"product_code": "BTC_JPY", "market_type": "Spot"}]
        if route in ("/v1/getmarkets/usa", "/v1/getmarkets/eu"):
            return 200, []
        if route == "/v1/getexecutions":
            return 200, [_bitflyer(p) for p in
                         self._visible("bitflyer", int(query.get("count", 100)))]
        if route == "/api/trades":
            data = [_coincheck(p) for p in self._visible("coincheck", int(query.get("limit", 100)))]
            return 200, {"success": True, "pagination": {
                "limit": len(data), "order": "desc", "starting_after": None,
                "ending_before": None}, "data": data}
        if route == "/api/1/currency_pairs/all":
            return 200, [{"currency_pair": "xem_jpy", "name": "XEM/JPY", "title": "XEM/JPY",
                          "item_unit_step": 0.1, "item_unit_min": 0.1, "aux_unit_point": 4,
                          "aux_unit_min": 0.0001, "aux_unit_step": 0.0001, "is_token": False,
                          "event_number": 0, "seq": 0, "id": 9}]
        if route == "/api/1/trades/xem_jpy":
            return 200, [_zaif(p) for p in self._visible("zaif", 100)]
        return 404, {"error": f"no route {route}"}


def _iso(ts_ns: int, *, zone: bool) -> str:
    text = datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    return text + ("Z" if zone else "")


def _bitflyer(p: Print) -> dict[str, Any]:
    return {"id": p.trade_id, "side": p.side.upper(), "price": float(p.price),
            "size": float(p.qty), "exec_date": _iso(p.ts_ns, zone=False),
            "buy_child_order_acceptance_id": f"JRF-B-{p.trade_id}",
            "sell_child_order_acceptance_id": f"JRF-S-{p.trade_id}"}


def _coincheck(p: Print) -> dict[str, Any]:
    return {"id": p.trade_id, "amount": str(p.qty), "rate": str(p.price), "pair": "btc_jpy",
            "order_type": p.side, "created_at": _iso(p.ts_ns, zone=True)}


def _zaif(p: Print) -> dict[str, Any]:
    return {"date": p.ts_ns // 1_000_000_000, "price": float(p.price), "amount": float(p.qty),
            "tid": p.trade_id, "currency_pair": "xem_jpy",
            "trade_type": "bid" if p.side == "buy" else "ask"}
