"""Trade corrections: what busting, re-pricing and rolling back do to the ledger.

A trade settles, per account and asset (quote ``Q``, base ``B``, ``n`` the notional)::

    buyer   Q: -(n + buyer's fee)    B: +qty * base_per_lot
    seller  Q: +(n - seller's fee)   B: -qty * base_per_lot
    fee account (0)  Q: +(taker fee + maker fee)

so a bust applies the negation and a re-pricing the difference between the trade at its
new price and at its current one. These changes always sum to zero per asset, which keeps
the ledger's conservation. Corrections touch available balances only: the orders are not
put back (a resting order partly filled keeps its remaining quantity and its hold).

:class:`TradeCorrections` remembers which trades are busted (one by one, and as ranges for
rollbacks) and the terms of re-priced ones; the engine asks it and exports it with its
state. Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable

import msgspec

from haltguard.venue.commands import BalanceChange, RollbackTo, TradeFacts
from haltguard.venue.events import Trade
from haltguard.venue.ledger import FEE_ACCOUNT, Ledger
from haltguard.venue.markets import MarketSpec
from haltguard.venue.types import Side

BPS_PER_UNIT = 10_000

Changes = dict[tuple[str, int], int]
"""(asset, account) -> minor units to add (negative: to take)."""


class TradeTerms(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What a trade settled at now: its price and fees (the first ones, or a re-pricing's)."""

    price: int
    taker_fee: int
    maker_fee: int


class AdjustedTradeEntry(msgspec.Struct, frozen=True, array_like=True):
    trade_id: int
    price: int
    taker_fee: int
    maker_fee: int


class TradeRange(msgspec.Struct, frozen=True, array_like=True):
    first: int
    last: int


class CorrectionsState(msgspec.Struct, frozen=True):
    """The corrections part of an exported venue state, in canonical order."""

    busted_trades: list[int]  # ascending
    busted_trade_ranges: list[TradeRange]  # ascending, disjoint
    adjusted_trades: list[AdjustedTradeEntry]  # by trade id
    corrections_applied: int
    owed: list[BalanceChange]  # by asset as listed, then account


def fees_at(spec: MarketSpec, qty: int, price: int) -> TradeTerms:
    """The terms a fill of ``qty`` lots at ``price`` ticks is charged, as the engine charges
    them (rounded down, in the customer's favour)."""
    notional = price * spec.quote_per_tick_lot * qty
    return TradeTerms(
        price,
        notional * spec.taker_fee_bps // BPS_PER_UNIT,
        notional * spec.maker_fee_bps // BPS_PER_UNIT,
    )


def settlement(spec: MarketSpec, trade: TradeFacts, terms: TradeTerms, sign: int) -> Changes:
    """The trade's effect on balances at ``terms``, times ``sign`` (-1: its reversal)."""
    changes: Changes = defaultdict(int)
    add_settlement(changes, spec, trade, terms, sign)
    return changes


def add_settlement(
    changes: Changes, spec: MarketSpec, trade: TradeFacts, terms: TradeTerms, sign: int
) -> None:
    """Add ``sign`` times the trade's effect at ``terms`` to ``changes``."""
    notional = terms.price * spec.quote_per_tick_lot * trade.qty
    base = trade.qty * spec.base_per_lot
    if trade.taker_side is Side.BUY:
        buyer, buyer_fee = trade.taker_account, terms.taker_fee
        seller, seller_fee = trade.maker_account, terms.maker_fee
    else:
        buyer, buyer_fee = trade.maker_account, terms.maker_fee
        seller, seller_fee = trade.taker_account, terms.taker_fee
    quote, base_asset = spec.quote, spec.base
    fees = terms.taker_fee + terms.maker_fee
    for key, amount in (
        ((quote, buyer), -(notional + buyer_fee)),
        ((base_asset, buyer), base),
        ((base_asset, seller), -base),
        ((quote, seller), notional - seller_fee),
        ((quote, FEE_ACCOUNT), fees),
    ):
        changes[key] = changes.get(key, 0) + sign * amount


def as_balance_changes(changes: Changes) -> list[BalanceChange]:
    """``changes`` without zeros, in a canonical order (asset, then account)."""
    return [
        BalanceChange(asset, account, amount)
        for (asset, account), amount in sorted(changes.items())
        if amount
    ]


def first_shortfall(
    ledger: Ledger, changes: Iterable[BalanceChange], released: Changes | None = None
) -> BalanceChange | None:
    """The first debit the account's available balance (plus ``released`` holds) cannot
    cover, as the amount missing; None when every debit is covered."""
    for change in changes:
        if change.amount >= 0:
            continue
        extra = 0 if released is None else released.get((change.asset, change.account), 0)
        short = ledger.shortfall(change.asset, change.account, change.amount + extra)
        if short:
            return BalanceChange(change.asset, change.account, short)
    return None


def apply_changes(ledger: Ledger, changes: Iterable[BalanceChange]) -> list[BalanceChange]:
    """Apply every change (credits first, so a debit never waits on an account's own
    credit) and return the shortfalls recorded as owed."""
    ordered = sorted(changes, key=lambda change: change.amount < 0)
    owed: list[BalanceChange] = []
    for change in ordered:
        short = ledger.change(change.asset, change.account, change.amount)
        if short:
            owed.append(BalanceChange(change.asset, change.account, short))
    return owed


def unbalanced_asset(changes: Iterable[BalanceChange]) -> str | None:
    """An asset whose changes do not sum to zero (money made or lost), or None."""
    totals: dict[str, int] = defaultdict(int)
    for change in changes:
        totals[change.asset] += change.amount
    for asset, total in totals.items():
        if total:
            return asset
    return None


def trade_facts(trade: Trade) -> TradeFacts:
    """The facts a correction names, from the trade's event (as the journal reader
    regenerates it)."""
    return TradeFacts(
        trade.market, trade.trade_id, trade.price, trade.qty, trade.taker_side,
        trade.taker_account, trade.maker_account, trade.taker_fee, trade.maker_fee,
    )


def rollback_reversals(
    specs: dict[str, MarketSpec], trades: Iterable[TradeFacts], corrections: TradeCorrections
) -> list[BalanceChange]:
    """The summed reversal of ``trades`` (every trade of a rollback's range), leaving out
    the busted ones and taking re-priced ones at their current terms."""
    changes: Changes = defaultdict(int)
    for trade in trades:
        if corrections.is_busted(trade.trade_id):
            continue
        add_settlement(changes, specs[trade.market], trade, corrections.terms(trade), -1)
    return as_balance_changes(changes)


def rollback_command(
    specs: dict[str, MarketSpec],
    trades: list[TradeFacts],
    corrections: TradeCorrections,
    *,
    target_seq: int,
    first_trade_id: int,
    last_trade_id: int,
    actor: str,
    approver: str,
    reason: str,
    rule: str,
    incident_id: str = "",
    allow_debit: bool = False,
) -> RollbackTo:
    """The :class:`RollbackTo` for ``trades``, which must be exactly the trades
    ``first_trade_id..last_trade_id`` (:class:`ValueError` otherwise: a plan missing a
    trade would leave it standing)."""
    ids = [trade.trade_id for trade in trades]
    if ids != list(range(first_trade_id, last_trade_id + 1)):
        raise ValueError(
            f"the rollback plan needs every trade from {first_trade_id} to {last_trade_id} "
            f"in order; got {len(ids)} trades"
        )
    return RollbackTo(
        target_seq, first_trade_id, last_trade_id, corrections.count,
        rollback_reversals(specs, trades, corrections), actor, approver, reason, rule,
        incident_id, allow_debit,
    )


class TradeCorrections:
    """Which trades are busted and what re-priced ones settle at now."""

    __slots__ = ("adjusted", "busted", "count", "ranges")

    def __init__(self) -> None:
        self.busted: set[int] = set()  # busted one by one
        self.ranges: list[tuple[int, int]] = []  # busted by rollbacks: sorted, disjoint
        self.adjusted: dict[int, TradeTerms] = {}
        self.count = 0  # corrections applied: a rollback plan names the count it saw

    def is_busted(self, trade_id: int) -> bool:
        if trade_id in self.busted:
            return True
        index = bisect_right(self.ranges, (trade_id, 1 << 63)) - 1
        return index >= 0 and self.ranges[index][0] <= trade_id <= self.ranges[index][1]

    def terms(self, trade: TradeFacts) -> TradeTerms:
        """What ``trade`` settles at now: its re-priced terms, or the ones it printed with."""
        adjusted = self.adjusted.get(trade.trade_id)
        if adjusted is not None:
            return adjusted
        return TradeTerms(trade.price, trade.taker_fee, trade.maker_fee)

    def bust(self, trade_id: int) -> None:
        self.busted.add(trade_id)
        self.adjusted.pop(trade_id, None)
        self.count += 1

    def adjust(self, trade_id: int, terms: TradeTerms) -> None:
        self.adjusted[trade_id] = terms
        self.count += 1

    def busted_in(self, first: int, last: int) -> int:
        """How many trades in ``first..last`` are busted already (one-by-one busts never lie
        inside a range: :meth:`bust_range` folds them in)."""
        total = sum(1 for trade_id in self.busted if first <= trade_id <= last)
        for low, high in self.ranges:
            total += max(0, min(high, last) - max(low, first) + 1)
        return total

    def bust_range(self, first: int, last: int) -> None:
        """Mark ``first..last`` busted (a rollback); ranges stay sorted and disjoint, and
        one-by-one busts inside it are folded in."""
        if first > last:
            self.count += 1
            return
        merged: list[tuple[int, int]] = []
        low, high = first, last
        for a, b in self.ranges:
            if b < low - 1 or a > high + 1:
                merged.append((a, b))
            else:
                low, high = min(low, a), max(high, b)
        merged.append((low, high))
        merged.sort()
        self.ranges = merged
        self.busted = {t for t in self.busted if not low <= t <= high}
        for trade_id in [t for t in self.adjusted if first <= t <= last]:
            del self.adjusted[trade_id]
        self.count += 1

    def export(self, owed: list[BalanceChange]) -> CorrectionsState | None:
        """The state to export with the venue's, None while nothing was ever corrected."""
        if not self.count and not owed:
            return None
        return CorrectionsState(
            sorted(self.busted),
            [TradeRange(first, last) for first, last in self.ranges],
            [
                AdjustedTradeEntry(trade_id, terms.price, terms.taker_fee, terms.maker_fee)
                for trade_id, terms in sorted(self.adjusted.items())
            ],
            self.count,
            owed,
        )

    def restore(self, state: CorrectionsState) -> None:
        self.busted = set(state.busted_trades)
        self.ranges = [(r.first, r.last) for r in state.busted_trade_ranges]
        self.adjusted = {
            e.trade_id: TradeTerms(e.price, e.taker_fee, e.maker_fee)
            for e in state.adjusted_trades
        }
        self.count = state.corrections_applied
