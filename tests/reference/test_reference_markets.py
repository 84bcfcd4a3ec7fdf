"""Reference markets through CCXT's own exchange classes, pointed at a local server that
answers in each exchange's documented public API format: exact prices, backoff when an
exchange is down, and the compensation reference price from another venue's trades."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from exchange_replay import ExchangeReplay, Print
from reference_support import NS, T0_NS, venue_series, world_path

from haltguard.compensation.reference import load_trades_csv, vwap, vwap_of_reference_market
from haltguard.reference.markets import CcxtReference
from haltguard.reference.models import Quote, ReferenceMarket
from haltguard.reference.poller import ReferencePoller

XEM_CSV = Path(__file__).resolve().parents[1] / "compensation" / "data" / "xem_jpy_trades_2018.csv"


def test_ccxt_reads_bitflyer_and_coincheck_formats_as_exact_prices_oldest_first() -> None:
    path = world_path()
    series = {"bitflyer": venue_series(path, 1), "coincheck": venue_series(path, 2)}
    with ExchangeReplay(series) as replay:
        replay.now_ns = T0_NS + 20 * NS
        bitflyer = CcxtReference(ReferenceMarket("bitflyer", "BTC/JPY", "BTC-JPY", replay.url),
                                 rate_limit_ms=1)
        coincheck = CcxtReference(
            ReferenceMarket("coincheck", "BTC/JPY", "BTC-JPY", f"{replay.url}/api"),
            rate_limit_ms=1)
        trades = bitflyer.trades(limit=5)
        last = coincheck.last_trade()
    expected = [p for p in series["bitflyer"] if p.ts_ns <= T0_NS + 20 * NS][-5:]
    assert [(t.ts_ns, t.price, t.qty) for t in trades] == [
        (p.ts_ns, p.price, p.qty) for p in expected]
    latest = [p for p in series["coincheck"] if p.ts_ns <= T0_NS + 20 * NS][-1]
    assert (last.price, last.ts_ns) == (latest.price, latest.ts_ns)
    assert isinstance(last.price, Decimal)


def test_an_exchange_that_is_down_is_backed_off_reported_once_and_picked_up_again() -> None:
    series = {"bitflyer": venue_series(world_path(), 1)}
    quotes: list[Quote] = []
    problems: list[tuple[str, str]] = []
    now = [0.0]
    with ExchangeReplay(series) as replay:
        replay.now_ns = T0_NS + 10 * NS
        source = CcxtReference(ReferenceMarket("bitflyer", "BTC/JPY", "BTC-JPY", replay.url),
                                 rate_limit_ms=1)
        poller = ReferencePoller([source], quotes.append, interval_s=1.0,
                                 on_problem=lambda *p: problems.append(p), clock=lambda: now[0])
        replay.fail = True
        for second in range(8):
            now[0] = float(second)
            poller.poll_due()
        tries_while_down = replay.requests
        replay.fail = False
        now[0] = 20.0
        poller.poll_due()
    assert len(problems) == 1 and problems[0][0] == f"bitflyer:BTC/JPY@{replay.url}"
    assert "503" in problems[0][1] or "maintenance" in problems[0][1]
    assert tries_while_down < 8, "a failing exchange must be asked less often, not every second"
    assert len(quotes) == 1 and poller.failing() == {}


def _csv_prints() -> list[Print]:
    points = load_trades_csv(XEM_CSV, gap_ns_max=10**18)
    return [Print(number, point.ts_ns, point.price, point.qty, "buy")
            for number, point in enumerate(points, 1)]


def test_the_2018_reference_price_from_another_venue_through_ccxt_matches_the_csv() -> None:
    prints = _csv_prints()
    with ExchangeReplay({"zaif": prints}) as replay:
        replay.now_ns = prints[-1].ts_ns
        source = CcxtReference(ReferenceMarket("zaif", "XEM/JPY", "XEM-JPY", replay.url),
                               rate_limit_ms=1)
        trades = source.trades()
    halt_ns, announced_ns = prints[1].ts_ns, prints[-1].ts_ns  # a window inside the series
    through_ccxt = vwap_of_reference_market(trades, halt_ns, announced_ns)
    from_csv = vwap(load_trades_csv(XEM_CSV, gap_ns_max=10**18), halt_ns, announced_ns)
    assert through_ccxt == from_csv
    assert through_ccxt.trades_used == len(prints) - 2


def test_an_unknown_exchange_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="not an exchange CCXT knows"):
        CcxtReference(ReferenceMarket("nosuchexchange", "BTC/JPY", "BTC-JPY"))
