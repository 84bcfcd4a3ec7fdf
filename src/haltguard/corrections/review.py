"""Reading the journal for corrections: the erroneous-trade review and the rollback plan.

Both read only the journal reader's events and the venue's public read methods (as the impact
analysis does), never the engine's inside, and never write anything.

- :func:`find_erroneous` is the pure rule: each trade's deviation from its market's reference
  in basis points, ``|price - reference| * 10000 // reference``, flagged when above the band.
- :func:`review` reads a window of the journal: the trades in the window, the market's own
  VWAP over the policy's look-back before it (unless a reference series is given), and each
  trade's status (``stands``, ``busted``, ``adjusted``) as of the end of the journal (the
  venue rebuilt there from the newest snapshot, without events).
- :func:`plan_rollback` rebuilds the venue at the target seq, reads every trade since and the
  orders still resting from after it, and builds the one :class:`RollbackTo` command.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from haltguard.common.units import BPS, NS_PER_S
from haltguard.corrections import tradelog
from haltguard.corrections.errors import RollbackTargetError, RollbackTooLargeError
from haltguard.corrections.policy import CorrectionPolicy
from haltguard.impact.analysis import resolve_window
from haltguard.impact.models import ImpactWindow
from haltguard.impact.state import journal_range, last_seq_at_or_before
from haltguard.journal import JournalError, JournalReader, recover
from haltguard.journal.reader import Entry
from haltguard.journal.recovery import gc_paused
from haltguard.venue.commands import (
    ROLLBACK_REVERSALS_MAX,
    BalanceChange,
    RollbackTo,
    TradeFacts,
)
from haltguard.venue.corrections import rollback_command, settlement, trade_facts
from haltguard.venue.engine import Venue
from haltguard.venue.events import Trade
from haltguard.venue.markets import MarketSpec

READ_RECORDS_MAX: Final = 10_000
FINDINGS_MAX: Final = 100_000
"""The most erroneous trades one review lists (it says when it stopped there)."""

STANDS: Final = "stands"
BUSTED: Final = "busted"
ADJUSTED: Final = "adjusted"


class ReferencePoint(msgspec.Struct, frozen=True, array_like=True):
    """One point of an imported reference series: from ``ts_ns`` on, ``market`` is
    worth ``price`` ticks (until the next point)."""

    market: str
    ts_ns: int
    price: int


class ReviewRequest(msgspec.Struct, frozen=True):
    """A window (nanoseconds, both ends included) and the filters; ``deviation_bps_min`` 0
    means each market's band from the policy."""

    from_ts_ns: int
    to_ts_ns: int
    market: str = ""
    account: int = 0
    deviation_bps_min: int = 0
    reference_series: list[ReferencePoint] = msgspec.field(default_factory=list)


class Finding(msgspec.Struct, frozen=True):
    """An erroneous trade: where it is in the journal, how far from the reference, its
    status now, and what it did to balances as it settles now."""

    seq: int
    ts_ns: int
    trade: TradeFacts
    reference_price: int
    deviation_bps: int
    status: str
    settled_price: int
    changes: list[BalanceChange]


class ReviewResult(msgspec.Struct, frozen=True):
    from_seq: int
    to_seq: int
    references: dict[str, int]  # market -> reference price in ticks (VWAP), when one was taken
    trades_reviewed: int
    findings: list[Finding]
    truncated: bool  # more findings than FINDINGS_MAX
    asset_decimals: dict[str, int]


@dataclass
class _Vwap:
    notional: int = 0
    volume: int = 0

    def price(self) -> int | None:
        return None if not self.volume else (self.notional + self.volume // 2) // self.volume


@dataclass
class _Pass:
    """What one read of the journal collects."""

    before_ts_ns: int
    vwaps: dict[str, _Vwap] = field(default_factory=dict)
    window: list[tuple[int, int, Trade]] = field(default_factory=list)


def deviation_bps(price: int, reference: int) -> int:
    """How far ``price`` is from ``reference``, in whole basis points (rounded down)."""
    return abs(price - reference) * BPS // reference


Series = dict[str, tuple[list[int], list[int]]]
"""market -> (times, prices) of an imported reference series, in time order."""


def find_erroneous(
    trades: Iterable[tuple[int, int, Trade]],
    reference_of: dict[str, int],
    band_of: dict[str, int],
    *,
    market: str = "",
    account: int = 0,
    series: Series | None = None,
    findings_max: int = FINDINGS_MAX,
) -> tuple[list[tuple[int, int, Trade, int, int]], int]:
    """``(seq, ts, trade, reference, deviation)`` of every trade more than its market's band
    from its reference, and how many trades were looked at. The reference is the series'
    price at the trade's time for a market the series covers, else ``reference_of``'s; a
    trade without one is not judged."""
    found: list[tuple[int, int, Trade, int, int]] = []
    looked = 0
    series = series or {}
    for seq, ts, trade in trades:
        if market and trade.market != market:
            continue
        if account and account not in (trade.taker_account, trade.maker_account):
            continue
        looked += 1
        points = series.get(trade.market)
        if points is None:
            reference = reference_of.get(trade.market)
        else:
            index = bisect.bisect_right(points[0], ts) - 1
            reference = points[1][index] if index >= 0 else None
        if not reference:
            continue
        deviation = abs(trade.price - reference) * BPS // reference
        if deviation > band_of[trade.market] and len(found) < findings_max:
            found.append((seq, ts, trade, reference, deviation))
    return found, looked


def review(
    data_dir: Path, request: ReviewRequest, policy: CorrectionPolicy, *, replay: bool = False
) -> tuple[ReviewResult, Venue]:
    """The erroneous trades of the window (see the module), and the reader's venue at the end
    of the journal (the state the statuses are as of).

    The trades are read from the trade log (:mod:`haltguard.corrections.tradelog`), brought
    level with the journal first; ``replay`` reads them by replaying the journal instead (the
    slow way, kept as the reference the log is tested against)."""
    data_dir = Path(data_dir)
    window = ImpactWindow(from_ts_ns=request.from_ts_ns, to_ts_ns=request.to_ts_ns)
    from_seq, to_seq, rng = resolve_window(data_dir, window)
    lookback_ns = policy.reference_lookback_minutes * 60 * NS_PER_S
    before = last_seq_at_or_before(data_dir, request.from_ts_ns - lookback_ns - 1, rng)
    start_seq = max(rng.first_seq, (before or 0) + 1)
    series = _series(request.reference_series)
    if not replay:
        try:
            tradelog.catch_up(data_dir, rng.first_seq, rng.last_seq)
        except OSError:  # the log cannot be written here (a read-only copy): replay
            replay = True
    if replay:
        venue, references, found, looked = _review_by_replay(
            data_dir, request, policy, start_seq=start_seq, to_seq=to_seq,
            last_seq=rng.last_seq, series=series)
    else:
        venue, _ = recover(data_dir, repair=False, through_seq=rng.last_seq)
        band_of = {market: (request.deviation_bps_min or policy.band_bps(market))
                   for market in venue.markets}
        references, found, looked = review_trade_log(
            data_dir, request, start_seq=start_seq, to_seq=to_seq, band_of=band_of,
            series=series)
    specs = venue.markets
    findings = [_finding(venue, specs[item[2].market], item) for item in found]
    result = ReviewResult(
        from_seq, to_seq, references, looked, findings, len(found) >= FINDINGS_MAX,
        {code: asset.decimals for code, asset in venue.assets.items()},
    )
    return result, venue


Found = list[tuple[int, int, Trade, int, int]]


def _review_by_replay(
    data_dir: Path, request: ReviewRequest, policy: CorrectionPolicy, *, start_seq: int,
    to_seq: int, last_seq: int, series: Series,
) -> tuple[Venue, dict[str, int], Found, int]:
    collected = _Pass(before_ts_ns=request.from_ts_ns)
    reader = JournalReader(data_dir)
    try:
        with gc_paused():
            reader.seek(start_seq)
            _read(reader, collected, to_seq)
            venue = reader.venue
            if venue.last_seq < last_seq:  # statuses as of now: the newest snapshot and
                venue, _ = recover(data_dir, repair=False, through_seq=last_seq)  # its tail
    finally:
        reader.close()
    references = {market: price for market, vwap in collected.vwaps.items()
                  if (price := vwap.price()) is not None}
    band_of = {market: (request.deviation_bps_min or policy.band_bps(market))
               for market in venue.markets}
    found, looked = find_erroneous(
        collected.window, references, band_of, market=request.market,
        account=request.account, series=series,
    )
    return venue, references, found, looked


def _market_key(market: str) -> bytes:
    """A market as the trade log stores it (UTF-8, NUL-padded to its field)."""
    return market.encode().ljust(32, b"\0")


def review_trade_log(
    data_dir: Path, request: ReviewRequest, *, start_seq: int, to_seq: int,
    band_of: dict[str, int], series: Series,
) -> tuple[dict[str, int], Found, int]:
    """:func:`find_erroneous` over the trade log's records of ``start_seq..to_seq``: the
    records before the window's start give each market's VWAP (times never go backwards in
    the journal, so they all come first), the rest are judged as they are read."""
    records = itertools.chain.from_iterable(
        map(tradelog.RECORD.iter_unpack, tradelog.chunks(data_dir, start_seq, to_seq)))
    before_ts = request.from_ts_ns
    sums: dict[bytes, list[int]] = {}
    first = None
    for record in records:
        if record[1] >= before_ts:
            first = record
            break
        totals = sums.get(record[12])
        if totals is None:
            totals = sums[record[12]] = [0, 0]
        totals[0] += record[3] * record[4]
        totals[1] += record[4]
    references = {key.rstrip(b"\0").decode(): (notional + volume // 2) // volume
                  for key, (notional, volume) in sums.items() if volume}
    found: Found = []
    looked = 0
    if first is None:
        return references, found, looked
    reference_of = {_market_key(market): price for market, price in references.items()}
    band_by_key = {_market_key(market): band for market, band in band_of.items()}
    series_by_key = {_market_key(market): points for market, points in series.items()}
    market_key = _market_key(request.market) if request.market else None
    account = request.account
    bisect_right = bisect.bisect_right
    for record in itertools.chain((first,), records):
        key = record[12]
        if market_key is not None and key != market_key:
            continue
        if account and account != record[6] and account != record[8]:
            continue
        looked += 1
        points = series_by_key.get(key) if series_by_key else None
        if points is None:
            reference = reference_of.get(key)
        else:
            index = bisect_right(points[0], record[1]) - 1
            reference = points[1][index] if index >= 0 else None
        if not reference:
            continue
        deviation = abs(record[3] - reference) * BPS // reference
        if deviation > band_by_key[key] and len(found) < FINDINGS_MAX:
            seq, ts, trade = tradelog.unpack(record)
            found.append((seq, ts, trade, reference, deviation))
    return references, found, looked


def _entries_through(reader: JournalReader, seq: int) -> Iterator[list[Entry]]:
    """The reader's entries up to the durable ``seq``, in chunks. A chunk may be empty while
    the reader replays the records before its starting point, so progress is judged by its
    venue's seq."""
    while reader.venue.last_seq < seq:
        before = reader.venue.last_seq
        entries = reader.read_available(READ_RECORDS_MAX, through_seq=seq)
        if reader.venue.last_seq == before:
            raise JournalError(
                f"the journal stops at seq {before}, before seq {seq} it said was durable"
            )
        yield entries


def _read(reader: JournalReader, collected: _Pass, to_seq: int) -> None:
    vwaps, window, before_ts = collected.vwaps, collected.window, collected.before_ts_ns
    for entries in _entries_through(reader, to_seq):
        for sequenced, events in entries:
            seq, ts = sequenced.seq, sequenced.ts
            for event in events:
                if type(event) is not Trade:
                    continue
                if ts < before_ts:
                    vwap = vwaps.get(event.market)
                    if vwap is None:
                        vwap = vwaps[event.market] = _Vwap()
                    vwap.notional += event.price * event.qty
                    vwap.volume += event.qty
                else:
                    window.append((seq, ts, event))


def _series(points: list[ReferencePoint]) -> Series:
    """Per market, the series' times and prices in time order."""
    by_market: dict[str, list[ReferencePoint]] = {}
    for point in points:
        by_market.setdefault(point.market, []).append(point)
    result: Series = {}
    for market, chosen in by_market.items():
        chosen.sort(key=lambda p: p.ts_ns)
        result[market] = ([p.ts_ns for p in chosen], [p.price for p in chosen])
    return result


def _finding(
    venue: Venue, spec: MarketSpec, found: tuple[int, int, Trade, int, int]
) -> Finding:
    seq, ts, trade, reference, deviation = found
    facts = trade_facts(trade)
    corrections = venue.corrections
    if corrections.is_busted(facts.trade_id):
        status = BUSTED
    elif facts.trade_id in corrections.adjusted:
        status = ADJUSTED
    else:
        status = STANDS
    terms = corrections.terms(facts)
    changes = [] if status == BUSTED else [
        BalanceChange(asset, account, amount)
        for (asset, account), amount in sorted(settlement(spec, facts, terms, 1).items())
        if amount
    ]
    return Finding(seq, ts, facts, reference, deviation, status, terms.price, changes)


# --- rollback -----------------------------------------------------------------------


class RollbackPlan(msgspec.Struct, frozen=True):
    """What a rollback to ``target_seq`` would undo, and the command that does it."""

    target_seq: int
    target_ts_ns: int
    planned_at_seq: int
    orders_to_cancel: int
    trades_to_bust: int
    accounts: list[int]
    command: RollbackTo
    asset_decimals: dict[str, int]


def plan_rollback(
    data_dir: Path, target_seq: int, *, actor: str, approver: str, reason: str, rule: str,
    incident_id: str = "", allow_debit: bool = False,
) -> RollbackPlan:
    """The rollback of the venue to the state after ``target_seq`` (see the module), or
    :class:`RollbackTargetError` for a target the journal cannot rebuild, or
    :class:`RollbackTooLargeError` when it would need more than one command."""
    data_dir = Path(data_dir)
    rng = journal_range(data_dir)
    oldest = rng.first_seq - 1  # the state after this seq is the oldest the journal rebuilds
    if not max(1, oldest) <= target_seq < rng.last_seq:
        raise RollbackTargetError(
            f"cannot roll back to seq {target_seq}: the journal rebuilds states from seq "
            f"{max(1, oldest)} (its oldest snapshot) up to before its last seq {rng.last_seq}",
            message_ja=f"シーケンス番号 {target_seq} には戻せません。記録から再現できるのは "
            f"{max(1, oldest)} から {rng.last_seq - 1} までです",
            next_step=f"choose a seq from {max(1, oldest)} to {rng.last_seq - 1}",
            details={"first_seq": max(1, oldest), "last_seq": rng.last_seq},
        )
    reader = JournalReader(data_dir)
    trades: list[TradeFacts] = []
    target_ts = 0
    try:
        with gc_paused():
            reader.seek(target_seq + 1)
            for _ in _entries_through(reader, target_seq):
                pass  # the state at the target
            first_trade_id = reader.venue.next_trade_id
            target_ts = reader.venue.last_ts
            for entries in _entries_through(reader, rng.last_seq):
                for _, events in entries:
                    trades.extend(trade_facts(e) for e in events if type(e) is Trade)
        venue = reader.venue
    finally:
        reader.close()
    command = rollback_command(
        venue.markets, trades, venue.corrections, target_seq=target_seq,
        first_trade_id=first_trade_id, last_trade_id=venue.next_trade_id - 1, actor=actor,
        approver=approver, reason=reason, rule=rule, incident_id=incident_id,
        allow_debit=allow_debit,
    )
    if len(command.reversals) > ROLLBACK_REVERSALS_MAX:
        raise RollbackTooLargeError(
            f"rolling back to seq {target_seq} changes {len(command.reversals)} balances, "
            f"more than the {ROLLBACK_REVERSALS_MAX} one command may carry",
            message_ja=f"シーケンス番号 {target_seq} への巻き戻しは変更する残高が多すぎます",
            next_step="roll back to a later seq, or bust the erroneous trades one by one",
        )
    resting = [order for market in venue.markets for order in venue.resting_orders(market)
               if order.order_id > target_seq]
    accounts = sorted({change.account for change in command.reversals}
                      | {order.account for order in resting})
    busted_before = venue.corrections.busted_in(first_trade_id, venue.next_trade_id - 1)
    return RollbackPlan(
        target_seq, target_ts, venue.last_seq, len(resting),
        len(trades) - busted_before, accounts, command,
        {code: asset.decimals for code, asset in venue.assets.items()},
    )
