"""Reference prices: the VWAP of a trades CSV worked by hand to the yen, the stated rounding,
and a CSV refused whole (gap, negative price, backwards time) with its lines named."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haltguard.common.units import NS_PER_S
from haltguard.compensation.errors import ReferenceDataError
from haltguard.compensation.policies import Rounding
from haltguard.compensation.reference import TradePoint, load_trades_csv, parse_trades, vwap

TRADES_2018 = Path(__file__).with_name("data") / "xem_jpy_trades_2018.csv"
HOUR_NS = 3600 * NS_PER_S
HALT_NS = int(datetime.fromisoformat("2018-01-26T12:52:00+09:00").timestamp()) * NS_PER_S
ANNOUNCEMENT_NS = int(datetime.fromisoformat("2018-01-28T23:50:00+09:00").timestamp()) * NS_PER_S


def _parse(text: str, gap_ns_max: int = HOUR_NS) -> list[TradePoint]:
    return parse_trades(text.splitlines(keepends=True), "t.csv", gap_ns_max=gap_ns_max)


def test_the_2018_vwap_from_the_halt_to_the_announcement_is_88_549_yen() -> None:
    """Worked by hand: the trade before the halt (101.5 x 800) and the one at the
    announcement (79 x 900) are outside the half-open window; the seven inside give
    notional 94x1500 + 91.2x2500 + 89x4000 + 87.5x5000 + 86.1x3000 + 88.3x2000 + 87.9x5400
    = 141000 + 228000 + 356000 + 437500 + 258300 + 176600 + 474660 = 2,072,060 JPY over
    23,400 XEM: 88.549572... JPY per XEM, rounded down to three places: 88.549."""
    trades = load_trades_csv(TRADES_2018, gap_ns_max=12 * HOUR_NS)
    assert len(trades) == 9
    reference = vwap(trades, HALT_NS, ANNOUNCEMENT_NS)
    assert reference.price == Decimal("88.549")
    assert (reference.trades_used, reference.volume, reference.notional) == (
        7, Decimal(23400), Decimal(2072060))
    assert (reference.price_places, reference.rounding) == (3, Rounding.DOWN)


def test_the_stated_rounding_decides_the_last_place() -> None:
    trades = load_trades_csv(TRADES_2018, gap_ns_max=12 * HOUR_NS)
    assert vwap(trades, HALT_NS, ANNOUNCEMENT_NS,
                rounding=Rounding.HALF_EVEN).price == Decimal("88.550")
    assert vwap(trades, HALT_NS, ANNOUNCEMENT_NS, price_places=0).price == Decimal(88)
    assert vwap(trades, HALT_NS, ANNOUNCEMENT_NS, price_places=5).price == Decimal("88.54957")


def test_a_window_without_trades_is_refused() -> None:
    trades = load_trades_csv(TRADES_2018, gap_ns_max=12 * HOUR_NS)
    with pytest.raises(ReferenceDataError, match="no trades between"):
        vwap(trades, HALT_NS + 1, HALT_NS + HOUR_NS)


def test_a_gap_longer_than_the_stated_maximum_is_refused_with_its_line() -> None:
    """The longest gap in the fixture is 10 h 15 min, between lines 7 and 8."""
    with pytest.raises(ReferenceDataError) as refused:
        load_trades_csv(TRADES_2018, gap_ns_max=10 * HOUR_NS)
    [problem] = refused.value.problems
    assert problem.where == f"{TRADES_2018}:8"
    assert "36900 s without a trade since line 7" in problem.en
    assert "36000" in problem.ja


def test_a_negative_price_is_refused_with_its_line_and_nothing_is_returned() -> None:
    text = "ts_ns,price,qty\n1000,88.5,10\n2000,-88.5,10\n3000,0,10\n4000,88.5,-1\n"
    with pytest.raises(ReferenceDataError) as refused:
        _parse(text)
    found = [problem.text_en() for problem in refused.value.problems]
    assert found == [
        "t.csv:3: price -88.5 is negative; it must be positive",
        "t.csv:4: price is zero; it must be positive",
        "t.csv:5: qty -1 is negative; it must be positive",
    ]
    assert refused.value.code == "reference_data_invalid"
    assert refused.value.message_ja and "t.csv:3" in refused.value.message_ja


def test_time_going_backwards_is_refused() -> None:
    with pytest.raises(ReferenceDataError, match=r"t\.csv:3: time goes backwards"):
        _parse("ts_ns,price,qty\n2000,88.5,10\n1000,88.5,10\n")


def test_trades_at_the_same_moment_are_accepted() -> None:
    trades = _parse("ts_ns,price,qty\n1000,88.5,10\n1000,89,0.25\n")
    assert [t.qty for t in trades] == [Decimal(10), Decimal("0.25")]


def test_a_header_is_required_and_unknown_columns_are_refused() -> None:
    with pytest.raises(ReferenceDataError, match="unknown column 'amount'"):
        _parse("ts_ns,price,amount\n1000,88.5,10\n")
    with pytest.raises(ReferenceDataError, match="name exactly one time column"):
        _parse("1000,88.5,10\n")
    with pytest.raises(ReferenceDataError, match="holds no trades"):
        _parse("time,price,qty\n")


def test_a_time_without_an_offset_or_a_number_with_an_exponent_is_refused() -> None:
    with pytest.raises(ReferenceDataError) as refused:
        _parse("time,price,qty\n2018-01-26T12:52:00,88.5,10\n2018-01-26T12:53:00Z,8.85e1,10\n")
    found = [problem.text_en() for problem in refused.value.problems]
    assert found[0].startswith("t.csv:2: time '2018-01-26T12:52:00' is not ISO 8601 with a UTC")
    assert found[1].startswith("t.csv:3: price '8.85e1' is not a plain decimal number")


def test_a_row_with_the_wrong_number_of_fields_is_refused() -> None:
    with pytest.raises(ReferenceDataError, match=r"t\.csv:2: has 2 fields; the header names 3"):
        _parse("ts_ns,price,qty\n1000,88.5\n")


_trades = st.lists(
    st.tuples(st.integers(1, 10**6), st.integers(1, 10**9), st.integers(1, 10**6)),
    min_size=1, max_size=40,
).map(lambda rows: [TradePoint(ts_ns=i, price=Decimal(p).scaleb(-3), qty=Decimal(q).scaleb(-2))
                    for i, (_, p, q) in enumerate(rows)])


@given(_trades)
def test_a_vwap_lies_within_the_prices_traded_and_rounding_down_never_exceeds_it(
        trades: list[TradePoint]) -> None:
    reference = vwap(trades, 0, len(trades), price_places=2)
    exact = reference.notional / reference.volume
    assert min(t.price for t in trades) - Decimal("0.01") <= reference.price
    assert reference.price <= exact <= max(t.price for t in trades)
    assert exact - reference.price < Decimal("0.01")
    assert reference.trades_used == len(trades)
