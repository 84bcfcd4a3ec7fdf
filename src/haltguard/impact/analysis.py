"""Who an interruption hurt, computed from the journal: :func:`analyse`.

Commands are journaled before they are applied and the engine is deterministic, so a refusal
is in the journal as the command that was refused, and replaying it regenerates the very
rejection the live venue answered (reason code and all). The analysis therefore reads the
window with a :class:`~haltguard.journal.JournalReader` (newest snapshot before the window,
then every record of it with the events it caused) and classifies events; it never looks
inside the engine.

What makes an account affected (:class:`~haltguard.impact.models.AffectReason`):

- a resting order in a market when it entered a state where resting orders cannot trade
  (halted, cancel-only, closed), or in such a market when the window starts;
- an order refused because of the market's state or the kill switch, a cancel refused
  because of the market's state, a withdrawal refused because withdrawals were frozen;
- resting orders cancelled by the exchange (a mass cancel of every account, or one carrying
  an incident id);
- a busted or re-priced trade: the venue has no such command, so this never appears (said in
  the report).

Refusals by load shedding happen before a command is sequenced: they are not in the journal,
and the report says so instead of counting them as zero. The open orders needed for "caught
by a halt" are tracked from the events themselves (accepted, traded, cancelled), starting
from the reader's venue at the window's start.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Final

from haltguard.impact.errors import InvalidWindowError, JournalUnreadableError, UnknownNameError
from haltguard.impact.models import (
    AffectedAccount,
    AffectReason,
    CaughtOrder,
    ImpactCounts,
    ImpactReport,
    ImpactWindow,
    JournalRange,
    RefusedOrder,
    RefusedWithdrawal,
    StateChange,
    UncancellableOrder,
    iso_utc,
)
from haltguard.impact.state import journal_range, last_seq_at_or_before, outside
from haltguard.journal import JournalError, JournalReader, recover
from haltguard.journal.recovery import gc_paused
from haltguard.venue.commands import (
    CancelAll,
    CancelOrder,
    PlaceOrder,
    RollbackTo,
    Sequenced,
    Withdraw,
)
from haltguard.venue.engine import Venue
from haltguard.venue.events import (
    CommandRejected,
    Event,
    KillSwitchChanged,
    MarketAdded,
    MarketStateChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    Trade,
    TradeAdjusted,
    TradeBusted,
    VenueRolledBack,
    WithdrawalsFrozen,
)
from haltguard.venue.types import CancelReason, MarketState, RejectReason

RESTRICTED_STATES: Final = frozenset({MarketState.HALTED, MarketState.CANCEL_ONLY,
                                      MarketState.CLOSED})
"""States in which a resting order cannot trade: whoever has one there is affected."""
ORDER_REFUSAL_CODES: Final = frozenset({
    RejectReason.MARKET_HALTED, RejectReason.MARKET_CANCEL_ONLY, RejectReason.MARKET_POST_ONLY,
    RejectReason.MARKET_LIMIT_ONLY, RejectReason.MARKET_CLOSED, RejectReason.KILL_SWITCH_ENGAGED,
})
CANCEL_REFUSAL_CODES: Final = frozenset({
    RejectReason.CANCELS_REFUSED, RejectReason.MARKET_HALTED, RejectReason.MARKET_CLOSED,
    RejectReason.KILL_SWITCH_ENGAGED,
})
WITHDRAWAL_REFUSAL_CODES: Final = frozenset({RejectReason.WITHDRAWALS_FROZEN})
READ_RECORDS_MAX: Final = 10_000
"""Records taken from the reader per call (it may apply up to this many past the window)."""

# A tracked resting order is a list (a million of them are built and updated in the hot
# path; a list is several times cheaper than an object): these are its slots.
_ACCOUNT, _SIDE, _PRICE, _REMAINING, _CLIENT_ORDER_ID, _CAUGHT = range(6)

@cache
def _with_reason(reasons: tuple[AffectReason, ...], reason: AffectReason
                 ) -> tuple[AffectReason, ...]:
    """``reasons`` with ``reason`` added, sorted (a few dozen combinations, each built once)."""
    return reasons if reason in reasons else tuple(sorted((*reasons, reason)))


class _Collector:
    """Classifies one window's events; everything it keeps is bounded by the window's size
    and the books' depth."""

    def __init__(self, window: ImpactWindow, venue: Venue, *, caught_rows: bool = True) -> None:
        """Start from ``venue`` as it stood just before the window: its resting orders are
        tracked, and those in a market that cannot trade are caught at once. Without
        ``caught_rows`` caught orders are counted (and their accounts affected) but not
        listed: a halt of a deep book catches millions, which a compensation run never
        reads."""
        self.caught_rows = caught_rows
        self.caught_count = 0
        self.markets = window.markets
        self.assets = window.assets
        self.known_markets: set[str] = set(venue.markets)
        self.last_seq = venue.last_seq
        self.first: tuple[int, int] | None = None
        self.last: tuple[int, int] = (venue.last_seq, venue.last_ts)
        self.books: dict[str, dict[int, list[Any]]] = {}  # market -> order id -> tracked
        self.by_client: dict[tuple[int, str], int] = {}
        self.affected: dict[int, AffectedAccount] = {}
        self.refused_orders: list[RefusedOrder] = []
        self.uncancellable: list[UncancellableOrder] = []
        self.refused_withdrawals: list[RefusedWithdrawal] = []
        self.caught: list[CaughtOrder] = []
        self.changes: list[StateChange] = []
        self.exchange_cancels = 0
        self.refused_by_code: dict[str, int] = {}
        self._handlers: dict[type, Callable[[Sequenced, Event], None]] = {
            OrderRejected: self._order_rejected,  # type: ignore[dict-item]
            CommandRejected: self._command_rejected,  # type: ignore[dict-item]
            MarketStateChanged: self._state_changed,  # type: ignore[dict-item]
            KillSwitchChanged: self._kill_switch,  # type: ignore[dict-item]
            WithdrawalsFrozen: self._freeze,  # type: ignore[dict-item]
            MarketAdded: self._market_added,  # type: ignore[dict-item]
            TradeBusted: self._trade_corrected,  # type: ignore[dict-item]
            TradeAdjusted: self._trade_corrected,  # type: ignore[dict-item]
            VenueRolledBack: self._rolled_back,
        }
        for symbol in venue.markets:
            if not self._looked_at(symbol):
                continue
            book = self.books[symbol] = {}
            for order in venue.resting_orders(symbol):
                book[order.order_id] = [order.account, order.side, order.price, order.remaining,
                                        order.client_order_id, False]
                if order.client_order_id:
                    self.by_client[(order.account, order.client_order_id)] = order.order_id
            state = venue.market_state(symbol).state
            if state in RESTRICTED_STATES:
                self._catch_all(venue.last_seq, venue.last_ts, symbol, state)

    def take(self, sequenced: Sequenced, events: list[Event]) -> None:
        """Classify one record's events. The hot path (orders accepted, trades, cancels:
        nearly every event) is inline; the rest goes to a handler by type."""
        if self.first is None:
            self.first = (sequenced.seq, sequenced.ts)
        self.last = (sequenced.seq, sequenced.ts)
        self.last_seq = sequenced.seq
        books = self.books
        for event in events:
            if type(event) is OrderAccepted:
                book = books.get(event.market)
                if book is not None:
                    book[event.order_id] = [event.account, event.side, event.price, event.qty,
                                            event.client_order_id, False]
                    if event.client_order_id:
                        self.by_client[(event.account, event.client_order_id)] = event.order_id
            elif type(event) is Trade:
                book = books.get(event.market)
                if book is not None:
                    for order_id in (event.maker_order_id, event.taker_order_id):
                        order = book.get(order_id)
                        if order is not None:
                            order[_REMAINING] -= event.qty
                            if order[_REMAINING] <= 0:
                                self._forget(book, order_id)
            elif type(event) is OrderCancelled:
                book = books.get(event.market)
                if book is not None:
                    self._forget(book, event.order_id)
                    if event.reason is CancelReason.MASS_CANCEL:
                        self._mass_cancelled(sequenced, event)
            else:
                handler = self._handlers.get(type(event))
                if handler is not None:
                    handler(sequenced, event)

    # --- events ---------------------------------------------------------------------------

    def _looked_at(self, market: str) -> bool:
        return not self.markets or market in self.markets

    def _forget(self, book: dict[int, list[Any]], order_id: int) -> None:
        gone = book.pop(order_id, None)
        if gone is not None and gone[_CLIENT_ORDER_ID]:
            self.by_client.pop((gone[_ACCOUNT], gone[_CLIENT_ORDER_ID]), None)

    def _mass_cancelled(self, sequenced: Sequenced, event: OrderCancelled) -> None:
        """A mass cancel of every account, or one for an incident, is the exchange's."""
        command = sequenced.command
        if type(command) is CancelAll and (command.account == 0 or command.incident_id):
            self.exchange_cancels += 1
            self._affect(event.account, AffectReason.ORDERS_CANCELLED_BY_EXCHANGE, sequenced.seq)

    def _order_rejected(self, sequenced: Sequenced, event: OrderRejected) -> None:
        if not self._looked_at(event.market):
            return
        command = sequenced.command
        reason = event.reason
        if type(command) is PlaceOrder and reason in ORDER_REFUSAL_CODES:
            self.refused_orders.append(RefusedOrder(
                sequenced.seq, sequenced.ts, command.account, command.market, command.side,
                command.order_type, command.qty, command.price, reason,
                command.client_order_id,
            ))
            self._count(reason)
            row = self._affect(command.account, AffectReason.ORDER_REFUSED, sequenced.seq)
            row.orders_refused += 1
        elif type(command) is CancelOrder and reason in CANCEL_REFUSAL_CODES:
            order_id = command.order_id or self.by_client.get(
                (command.account, command.client_order_id), 0
            )
            order = self.books.get(command.market, {}).get(order_id)
            self.uncancellable.append(UncancellableOrder(
                sequenced.seq, sequenced.ts, command.account, command.market, order_id,
                "" if order is None else order[_SIDE], 0 if order is None else order[_PRICE],
                0 if order is None else order[_REMAINING], reason,
            ))
            self._count(reason)
            row = self._affect(command.account, AffectReason.CANCEL_REFUSED, sequenced.seq)
            row.cancels_refused += 1

    def _command_rejected(self, sequenced: Sequenced, event: CommandRejected) -> None:
        command = sequenced.command
        if (
            type(command) is Withdraw
            and event.reason in WITHDRAWAL_REFUSAL_CODES
            and (not self.assets or command.asset in self.assets)
        ):
            self.refused_withdrawals.append(RefusedWithdrawal(
                sequenced.seq, sequenced.ts, command.account, command.asset, command.amount,
                event.reason,
            ))
            self._count(event.reason)
            row = self._affect(command.account, AffectReason.WITHDRAWAL_REFUSED, sequenced.seq)
            row.withdrawals_refused += 1

    def _state_changed(self, sequenced: Sequenced, event: MarketStateChanged) -> None:
        if not self._looked_at(event.market):
            return
        self.changes.append(StateChange(
            sequenced.seq, sequenced.ts, event.market, event.new, event.actor,
            event.reason, event.incident_id,
        ))
        # No order is accepted while a market cannot trade: entering such a state from
        # another one is the only moment orders get caught.
        if event.new in RESTRICTED_STATES and event.old not in RESTRICTED_STATES:
            self._catch_all(sequenced.seq, sequenced.ts, event.market, event.new)

    def _kill_switch(self, sequenced: Sequenced, event: KillSwitchChanged) -> None:
        change = "kill_switch_engaged" if event.engaged else "kill_switch_released"
        self.changes.append(StateChange(sequenced.seq, sequenced.ts, "", change, event.actor,
                                        event.reason, event.incident_id))

    def _freeze(self, sequenced: Sequenced, event: WithdrawalsFrozen) -> None:
        if self.assets and event.asset not in self.assets:
            return
        change = ("withdrawals_frozen:" if event.frozen else "withdrawals_unfrozen:") + event.asset
        self.changes.append(StateChange(sequenced.seq, sequenced.ts, "", change, event.actor,
                                        event.reason, event.incident_id))

    def _market_added(self, sequenced: Sequenced, event: MarketAdded) -> None:
        self.known_markets.add(event.market)
        if self._looked_at(event.market):
            self.books[event.market] = {}

    # --- bookkeeping ----------------------------------------------------------------------

    def _catch_all(self, seq: int, ts: int, market: str, state: MarketState) -> None:
        """Every order resting in ``market`` is caught (each order once in a window)."""
        caught, affect, reason = self.caught.append, self._affect, _RESTING
        rows = self.caught_rows
        for order_id, order in self.books.get(market, {}).items():
            if order[_CAUGHT]:
                continue
            order[_CAUGHT] = True
            account = order[_ACCOUNT]
            self.caught_count += 1
            if rows:
                caught(CaughtOrder(seq, ts, account, market, order_id, order[_SIDE],
                                   order[_PRICE], order[_REMAINING], state))
            affect(account, reason, seq).resting_orders_caught += 1

    def _trade_corrected(self, sequenced: Sequenced, event: TradeBusted | TradeAdjusted) -> None:
        """Both sides of a busted or re-priced trade are affected (the fee account is not a
        customer)."""
        if self._looked_at(event.market):
            for account in (event.taker_account, event.maker_account):
                if account:
                    self._affect(account, AffectReason.TRADE_BUSTED, sequenced.seq)

    def _rolled_back(self, sequenced: Sequenced, _event: Event) -> None:
        """Every account whose balances a rollback changed had a trade busted."""
        command = sequenced.command
        if type(command) is RollbackTo:
            for account in sorted({change.account for change in command.reversals} - {0}):
                self._affect(account, AffectReason.TRADE_BUSTED, sequenced.seq)

    def _affect(self, account: int, reason: AffectReason, seq: int) -> AffectedAccount:
        """The account's row, created on its first record (counters start at 0)."""
        row = self.affected.get(account)
        if row is None:
            row = self.affected[account] = AffectedAccount(account, (reason,), 0, 0, 0, 0, seq)
        elif reason not in row.reasons:
            row.reasons = _with_reason(row.reasons, reason)
        return row

    def _count(self, reason: RejectReason) -> None:
        self.refused_by_code[reason] = self.refused_by_code.get(reason, 0) + 1

    def report(self, window: ImpactWindow) -> ImpactReport:
        first = self.first or self.last
        affected = [self.affected[account] for account in sorted(self.affected)]
        by_reasons: dict[tuple[AffectReason, ...], int] = {}
        for row in affected:
            by_reasons[row.reasons] = by_reasons.get(row.reasons, 0) + 1
        by_reason = {str(reason): 0 for reason in AffectReason}
        for reasons, accounts in by_reasons.items():
            for reason in reasons:
                by_reason[str(reason)] += accounts
        counts = ImpactCounts(
            affected_accounts=len(affected),
            orders_refused=len(self.refused_orders),
            cancels_refused=len(self.uncancellable),
            withdrawals_refused=len(self.refused_withdrawals),
            resting_orders_caught=self.caught_count,
            orders_cancelled_by_exchange=self.exchange_cancels,
            trades_busted=0,
            by_reason=by_reason,
            refused_by_code={str(code): count
                             for code, count in sorted(self.refused_by_code.items())},
        )
        return ImpactReport(
            window=window,
            journal=JournalRange(first[0], self.last[0], first[1], self.last[1]),
            counts=counts,
            affected=affected,
            refused_orders=self.refused_orders,
            uncancellable_orders=self.uncancellable,
            refused_withdrawals=self.refused_withdrawals,
            caught_orders=self.caught,
            state_changes=self.changes,
            markets=tuple(sorted(self.markets)),
        )


_RESTING: Final = AffectReason.RESTING_ORDER_IN_HALTED_MARKET


def resolve_window(data_dir: Path, window: ImpactWindow) -> tuple[int, int, JournalRange]:
    """The window's first and last seq (both included) and the journal's range.

    A seq form must lie inside the journal; a time form must start inside it and may end
    after its last record (up to now: the rest of the journal).
    """
    seq_form = window.from_seq is not None or window.to_seq is not None
    time_form = window.from_ts_ns is not None or window.to_ts_ns is not None
    if seq_form and time_form:
        raise InvalidWindowError(
            "a window is a seq range or a time range, not both",
            next_step="give --from-seq/--to-seq or --from/--to",
            message_ja="範囲はシーケンス番号か時刻のどちらか一方で指定してください",
        )
    rng = journal_range(data_dir)
    if time_form:
        from_seq, to_seq = rng.first_seq, rng.last_seq
        if window.from_ts_ns is not None:
            if not rng.first_ts_ns <= window.from_ts_ns <= rng.last_ts_ns:
                raise outside(f"the window's start {iso_utc(window.from_ts_ns)}", rng)
            before = last_seq_at_or_before(data_dir, window.from_ts_ns - 1, rng)
            from_seq = max(rng.first_seq, (before or 0) + 1)
        if window.to_ts_ns is not None:
            if window.to_ts_ns < rng.first_ts_ns:
                raise outside(f"the window's end {iso_utc(window.to_ts_ns)}", rng)
            to_seq = last_seq_at_or_before(data_dir, window.to_ts_ns, rng) or 0
    else:
        from_seq = rng.first_seq if window.from_seq is None else window.from_seq
        to_seq = rng.last_seq if window.to_seq is None else window.to_seq
        for name, seq in (("the window's first seq", from_seq), ("its last seq", to_seq)):
            if not rng.first_seq <= seq <= rng.last_seq:
                raise outside(f"{name} {seq}", rng)
    if from_seq > to_seq:
        raise InvalidWindowError(
            f"the window holds no record (from seq {from_seq} to seq {to_seq})",
            next_step="give an end after the start",
            message_ja="指定された範囲に記録がありません(終了が開始より前です)",
        )
    return from_seq, to_seq, rng


def analyse(data_dir: Path, window: ImpactWindow) -> ImpactReport:
    """Everything the journal says about who was affected in ``window`` (see the module)."""
    data_dir = Path(data_dir)
    from_seq, to_seq, _ = resolve_window(data_dir, window)
    with gc_paused():  # millions of long-lived rows: see gc_paused
        return _analyse(data_dir, window, from_seq, to_seq)


def _analyse(data_dir: Path, window: ImpactWindow, from_seq: int, to_seq: int) -> ImpactReport:
    reader = JournalReader(data_dir)
    try:
        start, _ = recover(data_dir, repair=False, through_seq=from_seq - 1)
        collector = _Collector(window, start)
        reader.seek(from_seq, start=start)
        while collector.last_seq < to_seq:
            entries = reader.read_available(READ_RECORDS_MAX)
            if not entries:
                break
            for sequenced, events in entries:
                if sequenced.seq > to_seq:
                    break
                collector.take(sequenced, events)
    except JournalError as exc:
        raise JournalUnreadableError(
            f"cannot read the journal from seq {from_seq}: {exc}",
            next_step=f"run `haltguard venue verify {data_dir}`",
            message_ja=f"シーケンス番号 {from_seq} 以降の記録を読めません",
        ) from exc
    finally:
        reader.close()
    if collector.last_seq < to_seq:
        raise JournalUnreadableError(
            f"the journal ended at seq {collector.last_seq}, before the window's end {to_seq}",
            next_step=f"run `haltguard venue verify {data_dir}`",
        )
    unknown = sorted(window.markets - collector.known_markets)
    if unknown:
        raise UnknownNameError(
            f"no market {', '.join(unknown)} in the journal; it lists "
            f"{', '.join(sorted(collector.known_markets)) or 'none'}",
            next_step="name markets the venue lists",
            message_ja=f"市場 {', '.join(unknown)} は記録にありません",
        )
    return collector.report(window)

