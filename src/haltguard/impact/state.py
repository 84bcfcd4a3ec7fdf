"""The venue as it stood at a sequence number or a moment: the basis of cut-off balances.

:func:`state_at` rebuilds it the way recovery does (the newest snapshot at or before the
point, then the journal up to and including it, read-only: nothing on disk changes) and
answers through :class:`PointInTimeState`, which reads the rebuilt venue only through its
public read methods. A time is resolved to the last record stamped at or before it; the
journal's own timestamps (the sequencer's) are the only clock used.

Only durable records count (up to the commit mark), and only the part of the journal whose
preceding state is still known: seq 1 on, or, once retention removed old segments, the
record after the oldest kept snapshot on (:func:`journal_range`). Anything outside is an
:class:`~haltguard.impact.errors.OutsideJournalError` that says the range that exists.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from haltguard.impact.errors import (
    InvalidWindowError,
    JournalUnreadableError,
    NoJournalError,
    OutsideJournalError,
    UnknownNameError,
)
from haltguard.impact.models import JournalRange, iso_utc
from haltguard.journal import JournalError, recover
from haltguard.journal.codec import PlainRecord, RecordDecoder
from haltguard.journal.segments import (
    SEGMENT_HEADER_BYTES,
    check_segment_header,
    list_segments,
    read_commit_mark,
)
from haltguard.journal.snapshots import list_snapshots
from haltguard.venue.commands import Command
from haltguard.venue.engine import Depth, OrderView, Venue
from haltguard.venue.markets import MarketSpec
from haltguard.venue.types import MarketState

FIRST_RECORD_BYTES: Final = 1 << 16
"""Read this much of a segment to find its first record's time (a larger first record: the
whole segment is read)."""
DEPTH_LEVELS_MAX: Final = 1_000


class PointInTimeState:
    """The venue's books, balances and market states at one journaled point. Read-only."""

    def __init__(self, venue: Venue) -> None:
        self._venue = venue

    @property
    def seq(self) -> int:
        """The last record applied."""
        return self._venue.last_seq

    @property
    def ts_ns(self) -> int:
        """That record's timestamp (nanoseconds since the epoch, the sequencer's clock)."""
        return self._venue.last_ts

    def state_hash(self) -> str:
        """The venue's state hash at this point (equal hashes: equal books and balances)."""
        return self._venue.state_hash()

    def assets(self) -> list[str]:
        """Asset codes in the order they were listed."""
        return list(self._venue.assets)

    def asset_decimals(self, asset: str) -> int:
        """How many decimals the asset's minor unit has (``amount = minor / 10**decimals``)."""
        found = self._venue.assets.get(asset)
        if found is None:
            raise self._unknown("asset", asset, self.assets())
        return found.decimals

    def to_decimal(self, asset: str, minor: int) -> Decimal:
        """``minor`` units of ``asset`` as a decimal amount (exact)."""
        return Decimal(minor).scaleb(-self.asset_decimals(asset))

    def markets(self) -> list[str]:
        return list(self._venue.markets)

    def market_spec(self, market: str) -> MarketSpec:
        """Tick, lot and the minor units per tick-lot, to turn lots and ticks into decimals."""
        spec = self._venue.markets.get(market)
        if spec is None:
            raise self._unknown("market", market, self.markets())
        return spec

    def market_state(self, market: str) -> MarketState:
        self.market_spec(market)
        return self._venue.market_state(market).state

    def kill_switch_engaged(self) -> bool:
        return self._venue.kill_switch_engaged

    def frozen_assets(self) -> frozenset[str]:
        return self._venue.frozen_assets

    def balances(self, asset: str) -> dict[int, int]:
        """``account -> total held`` (available plus locked by open orders), minor units, for
        every account holding any of ``asset``; account 0 is the exchange's fee account."""
        return {account: available + held
                for account, (available, held) in self.balance_parts(asset).items()}

    def balance_parts(self, asset: str) -> dict[int, tuple[int, int]]:
        """``account -> (available, locked)`` in minor units."""
        self.asset_decimals(asset)
        return self._venue.holdings(asset)

    def open_orders(self, market: str | None = None) -> list[OrderView]:
        """Resting orders, oldest first (of one market, or of all)."""
        symbols = [market] if market is not None else self.markets()
        orders: list[OrderView] = []
        for symbol in symbols:
            self.market_spec(symbol)
            orders.extend(self._venue.resting_orders(symbol))
        if market is None:
            orders.sort(key=lambda order: order.order_id)
        return orders

    def book(self, market: str, depth: int = 10) -> Depth:
        """Aggregated depth, at most ``depth`` levels a side, best first."""
        self.market_spec(market)
        if not 1 <= depth <= DEPTH_LEVELS_MAX:
            raise InvalidWindowError(
                f"depth {depth} is outside 1..{DEPTH_LEVELS_MAX}; ask for fewer levels",
                message_ja=f"板の段数 {depth} は 1〜{DEPTH_LEVELS_MAX} の範囲外です",
            )
        return self._venue.depth(market, depth)

    def _unknown(self, what: str, name: str, known: list[str]) -> UnknownNameError:
        listed = ", ".join(known) or "none"
        return UnknownNameError(
            f"no {what} {name!r} at seq {self.seq}; the venue listed: {listed}",
            next_step=f"name one of the {what}s listed at that point",
            message_ja=f"シーケンス番号 {self.seq} の時点で {name} は存在しません(存在: {listed})",
        )


def point_in_time_summary(
    state: PointInTimeState, *, asset: str | None = None, market: str | None = None,
    depth: int = 10,
) -> dict[str, Any]:
    """Plain values for the CLI and JSON: market states, and where asked an asset's balances
    (decimal strings, by account) or a market's book and open orders (decimal prices)."""
    summary: dict[str, Any] = {
        "seq": state.seq,
        "ts_ns": state.ts_ns,
        "time_utc": iso_utc(state.ts_ns),
        "kill_switch": state.kill_switch_engaged(),
        "frozen_assets": sorted(state.frozen_assets()),
        "markets": {
            name: {"state": state.market_state(name).value,
                   "open_orders": len(state.open_orders(name))}
            for name in state.markets()
        },
    }
    if asset is not None:
        decimals = state.asset_decimals(asset)
        summary["asset"] = asset
        summary["decimals"] = decimals
        summary["balances"] = {
            str(account): {
                "total": _amount_text(available + held, decimals),
                "available": _amount_text(available, decimals),
                "locked": _amount_text(held, decimals),
            }
            for account, (available, held) in sorted(state.balance_parts(asset).items())
        }
    if market is not None:
        spec = state.market_spec(market)
        book = state.book(market, depth)
        summary["market"] = market
        summary["book"] = {
            "bids": [[spec.price_text(level.price), spec.qty_text(level.qty)]
                     for level in book.bids],
            "asks": [[spec.price_text(level.price), spec.qty_text(level.qty)]
                     for level in book.asks],
        }
        summary["open_orders"] = [
            {"order_id": order.order_id, "account": order.account, "side": str(order.side),
             "price": spec.price_text(order.price), "remaining": spec.qty_text(order.remaining)}
            for order in state.open_orders(market)
        ]
    return summary


def _amount_text(minor: int, decimals: int) -> str:
    """``minor`` units as a plain decimal with ``decimals`` places (never an exponent)."""
    return format(Decimal(minor).scaleb(-decimals), "f")


def journal_range(data_dir: Path) -> JournalRange:
    """The durable records of ``data_dir`` whose preceding state is known (see the module)."""
    mark = read_commit_mark(data_dir)
    segments = list_segments(data_dir)
    if mark is None or mark.last_seq == 0 or not segments:
        raise NoJournalError(
            f"{data_dir} holds no durable journal (no segments, or no commit mark)",
            next_step="pass the data directory the venue runs on (`haltguard serve --data-dir`)",
            message_ja=f"{data_dir} に読み取れる記録(ジャーナル)がありません",
        )
    first_seq = segments[0][0]
    if first_seq > 1:
        kept = [seq for seq, _ in list_snapshots(data_dir) if seq + 1 >= first_seq]
        if not kept:
            raise JournalUnreadableError(
                f"{data_dir}: the log starts at seq {first_seq} and no snapshot before it is "
                "kept, so no state can be rebuilt",
                next_step=f"run `haltguard venue verify {data_dir}`",
            )
        first_seq = min(kept) + 1
    first_ts = _first_ts_at_or_after(data_dir, first_seq, mark.last_seq)
    return JournalRange(first_seq, mark.last_seq, first_ts, mark.last_ts)


def outside(what: str, rng: JournalRange) -> OutsideJournalError:
    """The error for a point outside ``rng``, naming the range that exists."""
    return OutsideJournalError(
        f"{what} is outside the journal, which holds {rng.describe()}",
        next_step="ask for a seq or time inside that range",
        message_ja=f"{what} は記録の範囲外です。記録にあるのは{rng.describe_ja()}です",
        details={"first_seq": rng.first_seq, "last_seq": rng.last_seq,
                 "first_ts_ns": rng.first_ts_ns, "last_ts_ns": rng.last_ts_ns},
    )


def last_seq_at_or_before(data_dir: Path, ts_ns: int, rng: JournalRange) -> int | None:
    """The last durable record stamped at or before ``ts_ns`` (None: every one is later)."""
    if ts_ns >= rng.last_ts_ns:
        return rng.last_seq
    segments = [item for item in list_segments(data_dir) if item[0] <= rng.last_seq]
    chosen = None
    for first_seq, path in segments:  # the last segment that starts at or before ts_ns
        first = _first_record(path, first_seq)
        if first is None or first[1] > ts_ns:
            break
        chosen = (first_seq, path)
    if chosen is None:
        return None
    found = chosen[0]

    def take(seq: int, ts: int) -> None:
        nonlocal found
        if ts > ts_ns or seq > rng.last_seq:
            raise _PastPointError
        found = seq

    _scan(chosen[1], chosen[0], take, whole=True)
    return found


def resolve_seq(
    data_dir: Path, *, seq: int | None, ts_ns: int | None, rng: JournalRange | None = None
) -> tuple[int, JournalRange]:
    """The seq a point names (``seq`` itself, or the last record at or before ``ts_ns``),
    checked against the journal range, and that range."""
    if (seq is None) == (ts_ns is None):
        raise InvalidWindowError(
            "give exactly one of a seq or a time",
            next_step="pass --seq N or --time T, not both",
            message_ja="シーケンス番号か時刻のどちらか一方を指定してください",
        )
    rng = rng or journal_range(data_dir)
    if ts_ns is not None:
        if ts_ns > rng.last_ts_ns:
            raise outside(f"time {iso_utc(ts_ns)}", rng)
        found = last_seq_at_or_before(data_dir, ts_ns, rng)
        if found is None or found < rng.first_seq:
            raise outside(f"time {iso_utc(ts_ns)}", rng)
        return found, rng
    assert seq is not None
    if not rng.first_seq <= seq <= rng.last_seq:
        raise outside(f"seq {seq}", rng)
    return seq, rng


def state_at(
    data_dir: Path, *, seq: int | None = None, ts_ns: int | None = None
) -> PointInTimeState:
    """The venue after record ``seq`` (or after the last record at or before ``ts_ns``)."""
    data_dir = Path(data_dir)
    target, _ = resolve_seq(data_dir, seq=seq, ts_ns=ts_ns)
    try:
        venue, _ = recover(data_dir, repair=False, through_seq=target)
    except JournalError as exc:
        raise JournalUnreadableError(
            f"cannot rebuild the venue at seq {target}: {exc}",
            next_step=f"run `haltguard venue verify {data_dir}`",
            message_ja=f"シーケンス番号 {target} の状態を再構築できません",
        ) from exc
    if venue.last_seq != target:
        raise JournalUnreadableError(
            f"the journal ends at seq {venue.last_seq} before seq {target}",
            next_step=f"run `haltguard venue verify {data_dir}`",
        )
    return PointInTimeState(venue)


# --- reading timestamps without a venue ----------------------------------------------------


class _PastPointError(Exception):
    """Raised by a scan callback to stop at the first record past the point looked for."""


def _scan(
    path: Path, first_seq: int, take: Callable[[int, int], None], *, whole: bool
) -> None:
    """Call ``take(seq, ts)`` for the records of one segment, in order, until it raises
    :class:`_PastPointError`. Reads the first 64 KiB only unless ``whole``."""
    with path.open("rb") as file:
        data = file.read() if whole else file.read(FIRST_RECORD_BYTES)
    if len(data) < SEGMENT_HEADER_BYTES:
        return
    try:
        version = check_segment_header(path, data, first_seq)
    except JournalError as exc:
        raise JournalUnreadableError(str(exc), next_step="run `haltguard venue verify`") from exc

    def sink(seq: int, ts: int, _command: Command) -> None:
        take(seq, ts)

    def batch(records: list[PlainRecord]) -> None:
        for record in records:
            take(record[0], record[1])

    try:
        RecordDecoder(version).decode_span(
            data, SEGMENT_HEADER_BYTES, first_seq, sink=sink, batch_sink=batch
        )
    except _PastPointError:
        return


def _first_record(path: Path, first_seq: int) -> tuple[int, int] | None:
    found: list[tuple[int, int]] = []

    def take(seq: int, ts: int) -> None:
        found.append((seq, ts))
        raise _PastPointError

    _scan(path, first_seq, take, whole=False)
    if not found:
        _scan(path, first_seq, take, whole=True)
    return found[0] if found else None


def _first_ts_at_or_after(data_dir: Path, seq: int, last_seq: int) -> int:
    """The timestamp of record ``seq`` (it is in the retained log: see the module)."""
    segments = list_segments(data_dir)
    holder = max((item for item in segments if item[0] <= seq), default=None)
    if holder is None or seq > last_seq:
        raise JournalUnreadableError(f"no retained segment holds seq {seq}")
    found: list[int] = []

    def take(record_seq: int, ts: int) -> None:
        if record_seq >= seq:
            found.append(ts)
            raise _PastPointError

    _scan(holder[1], holder[0], take, whole=holder[0] != seq)
    if not found:
        raise JournalUnreadableError(f"record {seq} cannot be read from {holder[1].name}")
    return found[0]
