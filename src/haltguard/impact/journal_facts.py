"""Everything a compensation run reads from the journal, from one rebuild of the venue:
:func:`read_journal_facts`.

A run needs the impact of a window (who was affected), the balances at a cut-off, and for
some policies each refused order's prices, the fees paid in the window and the VWAP of one of
the venue's own markets. Loading a snapshot is the costly part of each (about 8 s at a million
accounts), so they are read in one pass: the venue is rebuilt once, at the earliest point any
of them needs, and a :class:`~haltguard.journal.JournalReader` carries it forward, stopping
exactly at the window's start (where the impact analysis takes over the books) and at the
cut-off (where the balances are copied). Like :mod:`haltguard.impact.analysis`, it reads only
the reader's events and the venue's public read methods, never the engine's inside.

The rules of the figures:

- **Price at the refusal**: the price of the market's last trade at or before the refused
  order (the venue's own last trade price when the window starts, then each trade).
- **Price at reopening**: the price of the market's first trade after the refusal. A market
  trades only in a trading state, so that is the first price a customer could have got once
  it reopened. The read goes past the window's end until every refused order has one, or to
  the journal's end; an order whose market never traded again has none.
- **Fees**: each trade's ``taker_fee`` and ``maker_fee`` (in the market's quote asset) in the
  window, per paying account and asset, less those a bust in the window gave back.
- **VWAP of a venue market**: its trades stamped in ``[from, to)``; the window must start
  inside the journal (its end may pass the last record: the trades so far count).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from haltguard.impact.analysis import READ_RECORDS_MAX, _Collector, resolve_window
from haltguard.impact.errors import JournalUnreadableError, UnknownNameError
from haltguard.impact.models import (
    CutOffState,
    FactsRequest,
    FeesPaid,
    JournalFacts,
    JournalRange,
    MarketVwap,
    MarketVwapRequest,
    RefusedOrderPrices,
    iso_utc,
)
from haltguard.impact.state import last_seq_at_or_before, outside, resolve_seq
from haltguard.journal import JournalError, JournalReader, recover
from haltguard.journal.recovery import gc_paused
from haltguard.venue.commands import Sequenced
from haltguard.venue.engine import Venue
from haltguard.venue.events import Event, MarketAdded, Trade, TradeBusted


def read_journal_facts(data_dir: Path, request: FactsRequest) -> JournalFacts:
    """The impact of ``request.window`` and what else ``request`` asks for, from one rebuild
    of the venue (see the module). Errors are the impact domain's: a window, cut-off or VWAP
    window outside the journal, an unknown market, a damaged journal."""
    data_dir = Path(data_dir)
    from_seq, to_seq, rng = resolve_window(data_dir, request.window)
    cutoff_seq, _ = resolve_seq(data_dir, seq=request.cutoff_seq, ts_ns=request.cutoff_ts_ns,
                                rng=rng)
    vwap_seqs = [_vwap_seqs(data_dir, vwap, rng) for vwap in request.vwaps]
    with gc_paused():  # millions of long-lived rows, as in the analysis
        return _Pass(data_dir, request, from_seq=from_seq, to_seq=to_seq,
                     cutoff_seq=cutoff_seq, vwap_seqs=vwap_seqs).run()


def _vwap_seqs(data_dir: Path, vwap: MarketVwapRequest, rng: JournalRange) -> tuple[int, int]:
    """The records that may hold the VWAP window's trades (first and last seq)."""
    if vwap.to_ts_ns <= vwap.from_ts_ns:
        raise outside(f"the reference window {vwap.name!r} (it ends before it starts)", rng)
    if not rng.first_ts_ns <= vwap.from_ts_ns <= rng.last_ts_ns:
        raise outside(f"the start {iso_utc(vwap.from_ts_ns)} of the reference window "
                      f"{vwap.name!r}", rng)
    before = last_seq_at_or_before(data_dir, vwap.from_ts_ns - 1, rng)
    last = last_seq_at_or_before(data_dir, vwap.to_ts_ns - 1, rng) or rng.first_seq
    return max(rng.first_seq, (before or 0) + 1), max(last, rng.first_seq)


class _VwapSums:
    __slots__ = ("notional_ticks_lots", "request", "trades", "volume_lots")

    def __init__(self, request: MarketVwapRequest) -> None:
        self.request = request
        self.trades = 0
        self.volume_lots = 0
        self.notional_ticks_lots = 0


class _Pass:
    """One read: rebuild once, stop at the window's start and the cut-off, classify events."""

    def __init__(self, data_dir: Path, request: FactsRequest, *, from_seq: int, to_seq: int,
                 cutoff_seq: int, vwap_seqs: list[tuple[int, int]]) -> None:
        self.data_dir = data_dir
        self.request = request
        self.from_seq, self.to_seq, self.cutoff_seq = from_seq, to_seq, cutoff_seq
        self.emit_from = min([from_seq, *(first for first, _ in vwap_seqs)])
        self.end_seq = max([to_seq, cutoff_seq, *(last for _, last in vwap_seqs)])
        self.collector: _Collector | None = None
        self.cutoff: CutOffState | None = None
        self.last_price: dict[str, int | None] = {}
        self.quote_of: dict[str, str] = {}
        self.waiting: dict[str, list[RefusedOrderPrices]] = {}  # market -> no reopening yet
        self.prices: list[RefusedOrderPrices] = []
        self.fees: dict[tuple[int, str], list[int]] = {}  # (account, asset) -> [fees, trades]
        self.vwaps = [_VwapSums(vwap) for vwap in request.vwaps]
        self.watch_trades = request.refused_order_prices or request.fees or bool(self.vwaps)
        self.reader: JournalReader | None = None

    def run(self) -> JournalFacts:
        start_seq = min(self.emit_from - 1, self.cutoff_seq)
        reader = self.reader = JournalReader(self.data_dir)
        try:
            venue, _ = recover(self.data_dir, repair=False, through_seq=start_seq)
            self._at_point(venue)
            reader.seek(self.emit_from, start=venue)
            self._read(reader)
            markets = reader.venue.markets
            last_seq = reader.venue.last_seq
        except JournalError as exc:
            raise JournalUnreadableError(
                f"cannot read the journal from seq {start_seq + 1}: {exc}",
                next_step=f"run `haltguard venue verify {self.data_dir}`",
                message_ja=f"シーケンス番号 {start_seq + 1} 以降の記録を読めません",
            ) from exc
        finally:
            reader.close()
        collector, cutoff = self.collector, self.cutoff
        if collector is None or cutoff is None or last_seq < self.end_seq:
            raise JournalUnreadableError(
                f"the journal ended at seq {last_seq}, before seq {self.end_seq}",
                next_step=f"run `haltguard venue verify {self.data_dir}`",
            )
        window = self.request.window
        unknown = sorted(window.markets - collector.known_markets)
        unknown += sorted({vwap.request.market for vwap in self.vwaps} - set(markets))
        if unknown:
            raise UnknownNameError(
                f"no market {', '.join(unknown)} in the journal; it lists "
                f"{', '.join(sorted(markets)) or 'none'}",
                next_step="name markets the venue lists",
                message_ja=f"市場 {', '.join(unknown)} は記録にありません",
            )
        return JournalFacts(
            report=collector.report(window), cutoff=cutoff, markets=markets,
            refused_order_prices=self.prices,
            fees=[FeesPaid(account, asset, paid[0], paid[1])
                  for (account, asset), paid in sorted(self.fees.items())],
            vwaps={vwap.request.name: MarketVwap(
                vwap.request.name, vwap.request.market, vwap.request.from_ts_ns,
                vwap.request.to_ts_ns, vwap.trades, vwap.volume_lots, vwap.notional_ticks_lots)
                for vwap in self.vwaps},
            read_through_seq=last_seq,
        )

    def _read(self, reader: JournalReader) -> None:
        """Read to the end of everything asked for, stopping at each point the venue is
        looked at, then on while a refused order waits for its market to trade again."""
        stops = sorted(point for point in {self.from_seq - 1, self.cutoff_seq}
                       if point > reader.venue.last_seq)
        while reader.venue.last_seq < self.end_seq:
            through = min(stops[0], self.end_seq) if stops else self.end_seq
            entries = reader.read_available(READ_RECORDS_MAX, through_seq=through)
            self._take_all(entries)
            if stops and reader.venue.last_seq == stops[0]:
                self._at_point(reader.venue)
                stops.pop(0)
            elif not entries and reader.venue.last_seq < through:
                return  # the journal ended early: run() says so
        while any(self.waiting.values()):
            entries = reader.read_available(READ_RECORDS_MAX)
            if not entries:
                return
            self._take_all(entries)

    def _at_point(self, venue: Venue) -> None:
        """Look at the venue where the read stopped: the window's start, the cut-off."""
        if venue.last_seq == self.from_seq - 1 and self.collector is None:
            self.collector = _Collector(self.request.window, venue,
                                        caught_rows=self.request.caught_order_rows)
            self.last_price = {market: venue.last_trade_price(market) for market in venue.markets}
        if venue.last_seq == self.cutoff_seq and self.cutoff is None:
            listed = venue.assets
            self.cutoff = CutOffState(
                seq=venue.last_seq, ts_ns=venue.last_ts,
                asset_decimals={code: asset.decimals for code, asset in listed.items()},
                holdings={asset: {account: available + locked for account, (available, locked)
                                  in venue.holdings(asset).items()}
                          for asset in sorted(self.request.holdings_assets) if asset in listed},
            )

    def _take_all(self, entries: list[tuple[Sequenced, list[Event]]]) -> None:
        collector, from_seq, to_seq = self.collector, self.from_seq, self.to_seq
        watch_trades = self.watch_trades
        for sequenced, events in entries:
            seq = sequenced.seq
            if watch_trades:
                self._trades(sequenced, events)
            if collector is not None and from_seq <= seq <= to_seq:
                refused_before = len(collector.refused_orders)
                collector.take(sequenced, events)
                if self.request.refused_order_prices \
                        and len(collector.refused_orders) > refused_before:
                    self._refused(collector.refused_orders[refused_before:])

    def _refused(self, orders: list[Any]) -> None:
        for order in orders:
            priced = RefusedOrderPrices(order, self.last_price.get(order.market))
            self.prices.append(priced)
            self.waiting.setdefault(order.market, []).append(priced)

    def _trades(self, sequenced: Sequenced, events: list[Event]) -> None:
        seq, ts = sequenced.seq, sequenced.ts
        in_window = self.from_seq <= seq <= self.to_seq
        for event in events:
            if type(event) is MarketAdded:
                self.last_price.setdefault(event.market, None)
                continue
            if type(event) is TradeBusted:
                if in_window and self.request.fees:  # the bust gave these fees back
                    quote = self._quote(event.market)
                    self._fee_returned(event.taker_account, quote, event.taker_fee)
                    self._fee_returned(event.maker_account, quote, event.maker_fee)
                continue
            if type(event) is not Trade:
                continue
            market = event.market
            if self.collector is not None:
                self.last_price[market] = event.price
            waiting = self.waiting.get(market)
            if waiting:
                for priced in waiting:
                    priced.price_at_reopen_ticks = event.price
                    priced.reopen_seq, priced.reopen_ts_ns = seq, ts
                waiting.clear()
            if in_window and self.request.fees:
                quote = self._quote(market)
                self._fee(event.taker_account, quote, event.taker_fee)
                self._fee(event.maker_account, quote, event.maker_fee)
            for vwap in self.vwaps:
                wanted = vwap.request
                if wanted.market == market and wanted.from_ts_ns <= ts < wanted.to_ts_ns:
                    vwap.trades += 1
                    vwap.volume_lots += event.qty
                    vwap.notional_ticks_lots += event.price * event.qty

    def _fee(self, account: int, asset: str, fee_minor: int) -> None:
        if fee_minor > 0:
            paid = self.fees.get((account, asset))
            if paid is None:
                self.fees[(account, asset)] = [fee_minor, 1]
            else:
                paid[0] += fee_minor
                paid[1] += 1

    def _fee_returned(self, account: int, asset: str, fee_minor: int) -> None:
        """A busted trade's fee, given back by the bust, so a refund policy does not pay it
        twice."""
        paid = self.fees.get((account, asset))
        if fee_minor > 0 and paid is not None:
            paid[0] = max(0, paid[0] - fee_minor)
            paid[1] = max(0, paid[1] - 1)

    def _quote(self, market: str) -> str:
        """The market's quote asset (its fees are paid in it), looked up once per market."""
        quote = self.quote_of.get(market)
        if quote is None:
            assert self.reader is not None
            quote = self.quote_of[market] = self.reader.venue.markets[market].quote
        return quote
