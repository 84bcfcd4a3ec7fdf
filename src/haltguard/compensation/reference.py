"""Reference prices: the volume-weighted average price (VWAP) of a market's trades over a
window, from the venue's own trades (:func:`vwap_of_market`, over the sums the journal read
gives) or a CSV of another venue's (as in 2018, when 88.549 JPY per XEM was the VWAP of
another venue's XEM-JPY market from the halt to the announcement).

Prices are quote currency per whole base unit and quantities whole base units, both exact
``Decimal``; the VWAP is computed exactly and rounded once, to ``price_places`` decimals by a
stated rule. The window is half-open: a trade at ``from_ts_ns`` counts, one at ``to_ts_ns``
does not. Reading a CSV (:func:`load_trades_csv`) is the only I/O here and is strict: a file
with any problem is refused whole, each problem with its line number.

The CSV has a header naming its columns: ``price``, ``qty`` and one of ``ts_ns`` (integer
nanoseconds since the epoch) or ``time`` (ISO 8601 with a UTC offset, e.g.
``2018-01-26T12:52:00+09:00``); ``trade_id`` and ``side`` may be present and are not used.
Times never go backwards, and two trades further apart than the stated ``gap_ns_max`` are
refused: a hole in an export would silently move the average.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from pathlib import Path
from typing import Protocol

import msgspec

from haltguard.common.units import NS_PER_S
from haltguard.compensation.errors import Problem, ReferenceDataError
from haltguard.compensation.policies import Rounding, round_ratio

TRADES_FILE_BYTES_MAX = 2 << 30
TRADES_MAX = 20_000_000
NUMBER_CHARS_MAX = 40
PRICE_PLACES_MAX = 18
PROBLEMS_COLLECTED_MAX = 1_000
"""Past this many problems a file is plainly the wrong file; stop reading it."""

TIME_COLUMNS = ("ts_ns", "time")
IGNORED_COLUMNS = ("trade_id", "side")

_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_WHOLE = re.compile(r"^[0-9]+$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])
"""Sums of products of values of at most 40 digits over at most 20 million trades fit in
200 digits; Inexact is a trap, so a sum that did not would fail loudly, never round."""


class TradePoint(msgspec.Struct, frozen=True, gc=False):
    """One trade of the reference market: when, at what price, how much (whole units)."""

    ts_ns: int
    price: Decimal
    qty: Decimal


class ReferencePrice(msgspec.Struct, frozen=True):
    """A price a policy pays at, with what it was computed from (so it can be explained)."""

    price: Decimal
    """Quote currency per whole unit of the asset, rounded as stated."""
    price_places: int
    rounding: Rounding
    from_ts_ns: int
    to_ts_ns: int
    trades_used: int
    volume: Decimal
    """The quantity traded in the window, whole units of the asset."""
    notional: Decimal
    """The sum of price x quantity in the window, in the quote currency."""


def vwap(trades: Sequence[TradePoint], from_ts_ns: int, to_ts_ns: int, *,
         price_places: int = 3, rounding: Rounding = Rounding.DOWN) -> ReferencePrice:
    """The volume-weighted average price of the trades in ``[from_ts_ns, to_ts_ns)``,
    exact until one rounding to ``price_places`` decimals. A window without trades is refused:
    there is no price to pay at."""
    if to_ts_ns <= from_ts_ns:
        raise ReferenceDataError([Problem("window", "the window ends before it starts",
                                          "期間の終わりが始まりより前です")])
    if not 0 <= price_places <= PRICE_PLACES_MAX:
        raise ReferenceDataError([Problem("price_places", f"must be 0..{PRICE_PLACES_MAX}",
                                          f"0〜{PRICE_PLACES_MAX} にしてください")])
    used = 0
    with localcontext(_EXACT):
        volume = Decimal(0)
        notional = Decimal(0)
        for trade in trades:
            if from_ts_ns <= trade.ts_ns < to_ts_ns:
                volume += trade.qty
                notional += trade.price * trade.qty
                used += 1
    return _reference_price(notional, volume, used, from_ts_ns, to_ts_ns,
                            price_places=price_places, rounding=rounding)


class ReferenceTradeLike(Protocol):
    """A trade of another exchange's market as a reference-market reader gives it
    (``haltguard.reference.markets.ReferenceTrade``: exact price and size, exchange time)."""

    @property
    def ts_ns(self) -> int: ...

    @property
    def price(self) -> Decimal: ...

    @property
    def qty(self) -> Decimal: ...


def vwap_of_reference_market(
    trades: Iterable[ReferenceTradeLike], from_ts_ns: int, to_ts_ns: int, *,
    price_places: int = 3, rounding: Rounding = Rounding.DOWN,
) -> ReferencePrice:
    """The VWAP over ``[from_ts_ns, to_ts_ns)`` of trades read from a reference market (as
    the 2018 reimbursement was priced from another venue's market), by :func:`vwap`'s
    rules; a trade with a price or size that is not positive is refused, not skipped."""
    points = []
    for trade in trades:
        if trade.price <= 0 or trade.qty <= 0:
            raise ReferenceDataError([Problem(
                "reference market", f"a trade at {trade.ts_ns} has price {trade.price} and "
                f"size {trade.qty}; both must be positive",
                f"{trade.ts_ns} の約定の価格 {trade.price}・数量 {trade.qty} は"
                "正でなければなりません")])
        points.append(TradePoint(trade.ts_ns, trade.price, trade.qty))
    points.sort(key=lambda point: point.ts_ns)
    return vwap(points, from_ts_ns, to_ts_ns, price_places=price_places, rounding=rounding)


def vwap_of_market(*, notional_ticks_lots: int, volume_lots: int, trades: int, tick: Decimal,
                   lot: Decimal, from_ts_ns: int, to_ts_ns: int, price_places: int = 3,
                   rounding: Rounding = Rounding.DOWN) -> ReferencePrice:
    """The VWAP of the venue's own market from the sums of its trades in the window (price in
    ticks x quantity in lots), by the same rule as :func:`vwap`: exact, rounded once."""
    if to_ts_ns <= from_ts_ns:
        raise ReferenceDataError([Problem("window", "the window ends before it starts",
                                          "期間の終わりが始まりより前です")])
    if not 0 <= price_places <= PRICE_PLACES_MAX:
        raise ReferenceDataError([Problem("price_places", f"must be 0..{PRICE_PLACES_MAX}",
                                          f"0〜{PRICE_PLACES_MAX} にしてください")])
    with localcontext(_EXACT):
        volume = volume_lots * lot
        notional = notional_ticks_lots * tick * lot
    return _reference_price(notional, volume, trades, from_ts_ns, to_ts_ns,
                            price_places=price_places, rounding=rounding)


def _reference_price(notional: Decimal, volume: Decimal, used: int, from_ts_ns: int,
                     to_ts_ns: int, *, price_places: int, rounding: Rounding) -> ReferencePrice:
    """``notional / volume`` rounded once to ``price_places``; no trades: no price."""
    if used == 0 or volume <= 0:
        raise ReferenceDataError([Problem(
            "window", f"no trades between {from_ts_ns} and {to_ts_ns} ns (half-open)",
            f"{from_ts_ns}〜{to_ts_ns} ns の期間に取引がありません")])
    notional_num, notional_den = notional.as_integer_ratio()
    volume_num, volume_den = volume.as_integer_ratio()
    scaled = round_ratio(notional_num * volume_den * 10**price_places,
                         notional_den * volume_num, rounding)
    return ReferencePrice(price=Decimal(scaled).scaleb(-price_places), price_places=price_places,
                          rounding=rounding, from_ts_ns=from_ts_ns, to_ts_ns=to_ts_ns,
                          trades_used=used, volume=volume, notional=notional)


def load_trades_csv(path: Path | str, *, gap_ns_max: int) -> list[TradePoint]:
    """The trades of a CSV export, or :class:`ReferenceDataError` listing every problem with
    its line. ``gap_ns_max`` is the longest time allowed between two consecutive trades."""
    path = Path(path)
    where = str(path)
    try:
        if path.stat().st_size > TRADES_FILE_BYTES_MAX:
            raise ReferenceDataError([Problem(
                where, f"larger than {TRADES_FILE_BYTES_MAX} bytes",
                f"{TRADES_FILE_BYTES_MAX}バイトを超えています")])
        with path.open(encoding="utf-8", newline="") as stream:
            return parse_trades(stream, where, gap_ns_max=gap_ns_max)
    except (OSError, UnicodeDecodeError) as error:
        raise ReferenceDataError([Problem(where, f"cannot be read: {error}",
                                          f"読み込めません: {error}")]) from error


def parse_trades(lines: Iterable[str], source: str, *, gap_ns_max: int) -> list[TradePoint]:
    """The trades of CSV text (header first); ``source`` names it in problems."""
    if gap_ns_max <= 0:
        raise ValueError("gap_ns_max must be positive")
    problems: list[Problem] = []
    reader = csv.reader(lines)
    header = next(reader, None)
    columns = _columns(header, source, problems)
    if columns is None:
        raise ReferenceDataError(problems)
    time_at, price_at, qty_at, width = columns
    trades: list[TradePoint] = []
    previous_ts_ns: int | None = None
    previous_line = 0
    for row in reader:
        line = reader.line_num
        if len(problems) >= PROBLEMS_COLLECTED_MAX or len(trades) >= TRADES_MAX:
            problems.append(Problem(
                f"{source}:{line}", "reading stopped here (too many problems or trades)",
                "ここで読み込みを止めました（誤りまたは取引が多すぎます）"))
            break
        if not row:
            continue
        if len(row) != width:
            problems.append(Problem(
                f"{source}:{line}", f"has {len(row)} fields; the header names {width}",
                f"項目が{len(row)}個です（見出しは{width}個）"))
            continue
        ts_ns = _time(row[time_at], header[time_at] if header else "", source, line, problems)
        price = _positive(row[price_at], "price", source, line, problems)
        qty = _positive(row[qty_at], "qty", source, line, problems)
        if ts_ns is None or price is None or qty is None:
            continue
        if previous_ts_ns is not None:
            if ts_ns < previous_ts_ns:
                problems.append(Problem(f"{source}:{line}", f"time goes backwards (line "
                                        f"{previous_line} is later)",
                                        f"時刻が逆行しています（{previous_line}行目の方が後です）"))
            elif ts_ns - previous_ts_ns > gap_ns_max:
                gap_s = (ts_ns - previous_ts_ns) / NS_PER_S
                problems.append(Problem(
                    f"{source}:{line}", f"{gap_s:g} s without a trade since line "
                    f"{previous_line}, longer than the stated maximum {gap_ns_max / NS_PER_S:g} s",
                    f"{previous_line}行目から{gap_s:g}秒間取引がなく、定めた上限"
                    f"{gap_ns_max / NS_PER_S:g}秒を超えています"))
        previous_ts_ns, previous_line = ts_ns, line
        trades.append(TradePoint(ts_ns=ts_ns, price=price, qty=qty))
    if not trades and not problems:
        problems.append(Problem(source, "holds no trades", "取引が一件もありません"))
    if problems:
        raise ReferenceDataError(problems)
    return trades


def _columns(header: list[str] | None, source: str,
             problems: list[Problem]) -> tuple[int, int, int, int] | None:
    """Where the time, price and quantity columns are, and how many columns a row has."""
    if not header:
        problems.append(Problem(
            f"{source}:1", "no header; the first line must name the columns (ts_ns or time, "
            "price, qty)",
            "見出し行がありません。1行目に列名（ts_ns または time、price、qty）を書いてください"))
        return None
    names = [name.strip() for name in header]
    known = {*TIME_COLUMNS, "price", "qty", *IGNORED_COLUMNS}
    for name in names:
        if name not in known:
            columns = ", ".join(sorted(known))
            problems.append(Problem(
                f"{source}:1", f"unknown column '{name}'; the columns are {columns}",
                f"不明な列 '{name}' があります。使える列: {columns}"))
    if len(set(names)) != len(names):
        problems.append(Problem(f"{source}:1", "a column is named twice", "列名が重複しています"))
    times = [name for name in names if name in TIME_COLUMNS]
    if len(times) != 1:
        problems.append(Problem(f"{source}:1", "name exactly one time column: ts_ns or time",
                                "時刻の列を一つだけ（ts_ns か time）にしてください"))
    for required in ("price", "qty"):
        if required not in names:
            problems.append(Problem(f"{source}:1", f"no '{required}' column",
                                    f"'{required}' 列がありません"))
    if problems:
        return None
    return names.index(times[0]), names.index("price"), names.index("qty"), len(names)


def _time(text: str, column: str, source: str, line: int,
          problems: list[Problem]) -> int | None:
    text = text.strip()
    if column == "ts_ns":
        if _WHOLE.fullmatch(text) and len(text) <= 20:
            return int(text)
        problems.append(Problem(f"{source}:{line}", f"ts_ns '{text}' is not a whole number "
                                "of nanoseconds", f"ts_ns '{text}' はナノ秒の整数ではありません"))
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        problems.append(Problem(f"{source}:{line}", f"time '{text}' is not ISO 8601 with a "
                                "UTC offset (e.g. 2018-01-26T12:52:00+09:00)",
                                f"time '{text}' がUTCオフセット付きのISO 8601形式"
                                "（例 2018-01-26T12:52:00+09:00）ではありません"))
        return None
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1_000


def _positive(text: str, column: str, source: str, line: int,
              problems: list[Problem]) -> Decimal | None:
    text = text.strip()
    if text.startswith("-"):
        problems.append(Problem(f"{source}:{line}", f"{column} {text} is negative; it must be "
                                "positive", f"{column} {text} が負の値です。正の値にしてください"))
        return None
    if len(text) > NUMBER_CHARS_MAX or not _NUMBER.fullmatch(text):
        problems.append(Problem(
            f"{source}:{line}",
            f"{column} '{text}' is not a plain decimal number (digits and one optional point)",
            f"{column} '{text}' は通常の十進数（数字と小数点一つ）ではありません"))
        return None
    value = Decimal(text)
    if value == 0:
        problems.append(Problem(f"{source}:{line}", f"{column} is zero; it must be positive",
                                f"{column} が0です。正の値にしてください"))
        return None
    return value
