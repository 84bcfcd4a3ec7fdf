"""The venue: every market and the one shared ledger, driven by sequenced commands.

:meth:`Venue.apply` is the only way anything changes. It takes the sequencer's ``seq`` and
``ts`` with each command and returns the complete list of events the command caused. The
engine reads no clock, draws no random number and does no I/O, so replaying the same
commands into a fresh venue reproduces every event and :meth:`Venue.state_hash` exactly.
Recovery, which needs the state but not the events, uses :meth:`Venue.replay`,
``Venue.replay_order`` and ``Venue.replay_cancel``: the same code with event building
switched off (``emit``), the last two taking a journal record's fields directly; and
:meth:`Venue.replay_batch` for runs of plain orders and cancels, which rests orders and
cancels inline and hands everything else to those or to the placing code ``apply`` runs,
reaching the same state hash. Matching exists once, in :meth:`Venue._match`.

Rules worth knowing before reading the code:

- A command applies completely or is rejected with one event saying why (``OrderRejected``
  or ``CommandRejected``, with a reason and a sentence for people). Checks come first,
  changes after, so nothing is ever half-applied.
- ``order_id`` is the ``seq`` of the command that placed the order; ``trade_id`` counts up.
- Fills print at the resting (maker) order's price. Fees are in the quote asset's minor
  units, ``notional * bps // 10000``: rounded down, in the customer's favour. The taker pays
  ``taker_fee_bps``, the maker ``maker_fee_bps``; both go to account 0 (the fee account).
- Holds: a limit buy holds ``hold_per_lot * qty`` quote, where ``hold_per_lot`` is one
  lot's notional at the limit price plus that notional's worst-case fee rounded *up* (the
  larger of the two fee rates). Rounding up per lot makes the hold linear in the quantity:
  a resting order always holds exactly ``remaining * hold_per_lot`` and a fill releases
  ``fill * hold_per_lot``, which always covers what the fill costs (a fill at a better price
  releases the difference). A sell holds ``qty * base_per_lot`` base. A market buy has no
  price: it may spend the buyer's whole available quote, fills while that covers the next
  fill and its fee, and is cancelled with ``insufficient_funds`` when it runs out.
- Client order ids are scoped per account, across markets: ``(account, client_order_id)``
  maps to the order it placed and that order's terms (market, side, type, time in force,
  price, quantity, post-only, self-trade prevention). A repeat with the same terms returns
  ``OrderRepeated`` and places nothing; the same id with any other term (another market
  included) is rejected with ``client_order_id_reused``, naming the terms that differ. Ids
  of resting orders are always kept; the ids of finished orders are kept for the last
  ``CLIENT_ORDER_ID_WINDOW`` of them. A rejected order does not use up its id, so the
  retry of a refused submit is judged afresh. (Ids restored from a snapshot written before
  terms were kept have none, and any reuse of them repeats.)
- Accounts are not registered: the venue knows an account by what it holds. An order or a
  withdrawal from a customer account holding nothing in any asset is rejected with
  ``unknown_account`` rather than ``insufficient_funds``, so a mistyped account number says
  so.
- Self-trade prevention applies to continuous matching. An auction uncross matches at one
  price for everyone and lets an account's own buy and sell cross (both orders were placed
  on purpose into the auction), charging the later order the taker fee like any trade.
- Time moves only with the commands' ``ts``: timed auctions, breaker pauses, limit states
  and resume-plan phases end when a command (a ``Heartbeat`` at :meth:`next_deadline_ts`
  at the latest) arrives at or after their deadline. Their events come first in that
  command's list.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from heapq import heappop
from typing import TypeVar, cast

import msgspec

from haltguard.venue.auction import UncrossResult, allocate, indicative, uncross
from haltguard.venue.book import NO_LIMIT_KEY, BookSide, OrderBook, PriceLevel, RestingOrder
from haltguard.venue.breaker import (
    BreakerConfigError,
    BreakerSnapshot,
    BreakerState,
    BreakerTrip,
    Verdict,
)
from haltguard.venue.commands import (
    BUST_TRADES_MAX,
    COMPENSATION_LINES_MAX,
    CORRECTION_TEXT_LENGTH_MAX,
    LINE_NO_BITS,
    LINE_NO_MAX,
    ROLLBACK_REVERSALS_MAX,
    RUN_ID_MAX,
    AbortResumePlan,
    AddAsset,
    AddMarket,
    AdjustTrade,
    BalanceChange,
    BustTrade,
    CancelAll,
    CancelOrder,
    Command,
    CompensationLine,
    ConfigureBreaker,
    CreditCompensation,
    Deposit,
    FreezeAccountWithdrawals,
    FreezeWithdrawals,
    Heartbeat,
    KillSwitch,
    MalformedCommandError,
    PlaceOrder,
    RollbackTo,
    SetMarketState,
    StartResumePlan,
    TradeFacts,
    Uncross,
    Withdraw,
    payout_reference,
    validated,
)
from haltguard.venue.corrections import (
    CorrectionsState,
    TradeCorrections,
    add_settlement,
    apply_changes,
    as_balance_changes,
    fees_at,
    first_shortfall,
    settlement,
    unbalanced_asset,
)
from haltguard.venue.events import (
    AccountWithdrawalsFrozen,
    AssetAdded,
    AuctionUncrossed,
    BreakerConfigured,
    CircuitBreakerTripped,
    CommandRejected,
    CompensationCredited,
    CompensationRefused,
    Deposited,
    Event,
    IndicativeUncross,
    KillSwitchChanged,
    MarketAdded,
    MarketStateChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderRepeated,
    ResumePhaseEntered,
    ResumePlanEnded,
    ResumePlanStarted,
    Trade,
    TradeAdjusted,
    TradeBusted,
    VenueRolledBack,
    WithdrawalsFrozen,
    Withdrawn,
)
from haltguard.venue.ledger import FEE_ACCOUNT, Ledger
from haltguard.venue.markets import Asset, MarketSpec
from haltguard.venue.states import (
    PhaseChange,
    ResumePlan,
    ResumePlanError,
    ResumePlanSnapshot,
    admits,
    check_transition,
    order_kind,
    refusal_detail,
    uncrosses_on_exit,
)
from haltguard.venue.types import (
    INT64_MAX,
    CancelReason,
    MarketState,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

CLIENT_ORDER_ID_WINDOW = 1_000_000
"""How many client order ids of finished orders are remembered (oldest forgotten first).

Ids of resting orders are always remembered. A retry arriving after a million later orders
with client ids is treated as a new order; at realistic rates that is hours, far longer
than any client retries.
"""
CLIENT_ORDER_ID_LENGTH_MAX = 64
BUY_HOLD_CACHE_MAX = 4_096  # distinct prices whose buy hold per lot a market remembers
ASSET_DECIMALS_MAX = 18
BPS_PER_UNIT = 10_000
STATE_VERSION = 1
NO_DEADLINE = INT64_MAX
"""``next_deadline`` sentinel: later than any timestamp a sequencer can stamp."""

VENUE_ACTOR = "venue"  # who time-driven transitions are attributed to
BREAKER_ACTOR = "circuit_breaker"

# Enum members as module constants: identity checks on the hot path.
_BUY, _SELL = Side.BUY, Side.SELL
_LIMIT, _MARKET = OrderType.LIMIT, OrderType.MARKET
_GTC, _IOC, _FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
_CANCEL_TAKER = SelfTradePrevention.CANCEL_TAKER
_CANCEL_MAKER = SelfTradePrevention.CANCEL_MAKER
_CANCEL_BOTH = SelfTradePrevention.CANCEL_BOTH
_OPEN, _HALTED, _AUCTION, _CLOSED = (
    MarketState.OPEN,
    MarketState.HALTED,
    MarketState.AUCTION,
    MarketState.CLOSED,
)
_USER, _UNFILLED, _SELF_TRADE = CancelReason.USER, CancelReason.UNFILLED, CancelReason.SELF_TRADE
_PRICE_BAND, _OUT_OF_FUNDS = CancelReason.PRICE_BAND, CancelReason.INSUFFICIENT_FUNDS
_R = RejectReason
# Looking a member up on its enum class costs ~0.1 µs on Python 3.11: the hot paths use these.
_UNKNOWN_ORDER = RejectReason.UNKNOWN_ORDER
_NOT_RESTING = "the order is not resting in this market: filled, cancelled or never placed"
_TRADING_STATES = frozenset({MarketState.OPEN, MarketState.LIMIT_ONLY, MarketState.POST_ONLY})
_PRICES = range(1, INT64_MAX + 1)  # every valid limit price in ticks; for ints only (see qty_range)


_T = TypeVar("_T")

ReplayRecord = tuple[int, int, str, int, int, int, tuple[Side, OrderType, TimeInForce] | None]
"""A journal record as :meth:`Venue.replay_batch` takes it (see there)."""
GTC_LIMIT_BUY: tuple[Side, OrderType, TimeInForce] = (Side.BUY, OrderType.LIMIT, TimeInForce.GTC)
GTC_LIMIT_SELL: tuple[Side, OrderType, TimeInForce] = (
    Side.SELL, OrderType.LIMIT, TimeInForce.GTC
)
"""The options of a plain GTC limit order in a :data:`ReplayRecord`. Decoders pass these very
objects, so :meth:`Venue.replay_batch` knows the commonest records by one identity check
(an equal tuple that is another object takes the general path, with the same result)."""


class SequenceError(ValueError):
    """A command arrived out of sequence (``seq`` not last + 1) or with time going back."""


# --- read views (what the HTTP API serves) ---------------------------------------------


class DepthLevel(msgspec.Struct, frozen=True, array_like=True):
    """One aggregated L2 level: ``[price, qty, orders]`` on the wire."""

    price: int
    qty: int
    orders: int


class Depth(msgspec.Struct, frozen=True):
    market: str
    bids: list[DepthLevel]
    asks: list[DepthLevel]


class OrderView(msgspec.Struct, frozen=True):
    market: str
    order_id: int
    account: int
    side: Side
    price: int
    qty: int
    remaining: int
    client_order_id: str


class MarketStatus(msgspec.Struct, frozen=True):
    """A market's state as the status page and operators see it."""

    market: str
    state: MarketState
    cancels_allowed: bool
    until_ts: int  # when a timed auction or pause ends by itself; 0 if it does not
    resume_phase: int  # index of the running resume plan's phase; -1 without a plan
    kill_switch: bool


# --- exported state ------------------------------------------------------------------


class OrderEntry(msgspec.Struct, frozen=True, array_like=True):
    """A resting order as exported, in queue position."""

    order_id: int
    account: int
    is_buy: bool
    price: int
    qty: int
    remaining: int
    client_order_id: str


class MarketEntry(msgspec.Struct, frozen=True):
    spec: MarketSpec
    state: MarketState
    cancels_allowed: bool
    until_ts: int
    after_auction: MarketState
    last_price: int
    orders: list[OrderEntry]  # bids best first, then asks best first; oldest first per level
    breaker: BreakerSnapshot | None
    resume_plan: ResumePlanSnapshot | None
    plan_actor: str
    plan_reason: str
    plan_incident_id: str


class BalanceEntry(msgspec.Struct, frozen=True, array_like=True):
    asset: str
    account: int
    available: int
    held: int


class AssetTotals(msgspec.Struct, frozen=True, array_like=True):
    asset: str
    deposited: int
    withdrawn: int


class OrderTerms(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What an order with a client order id asked for: a retry must ask for the same."""

    market: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int
    qty: int
    post_only: bool
    stp: SelfTradePrevention


class ClientOrderIdEntry(msgspec.Struct, frozen=True, array_like=True):
    account: int
    client_order_id: str
    order_id: int


class ClientOrderTermsEntry(msgspec.Struct, frozen=True, array_like=True):
    account: int
    client_order_id: str
    terms: OrderTerms


class VenueState(msgspec.Struct, frozen=True, omit_defaults=True):
    """Everything a venue is. ``Venue.restore(state)`` rebuilds one that behaves identically.

    Lists are in a canonical order (assets and markets as listed, balances by asset then
    account, finished client order ids oldest first; client order terms those of the
    finished ids in that order, then those of resting orders market by market in queue
    position), so equal venues export equal states. ``client_order_terms`` came later: it
    is left out of the encoding when empty, so a state without any (every snapshot written
    before it) encodes, and hashes, exactly as it did.
    """

    version: int
    last_seq: int
    last_ts: int
    next_trade_id: int
    kill_switch: bool
    assets: list[Asset]
    frozen_assets: list[str]
    totals: list[AssetTotals]
    balances: list[BalanceEntry]
    markets: list[MarketEntry]
    finished_client_order_ids: list[ClientOrderIdEntry]
    client_order_terms: list[ClientOrderTermsEntry] = msgspec.field(default_factory=list)
    # Compensation lines paid, as payout_reference ints, ascending; left out when empty
    # (as client_order_terms is), so older states encode and hash as they did.
    credited_references: list[int] = msgspec.field(default_factory=list)
    # Customer accounts whose withdrawals are frozen, ascending; left out when empty.
    frozen_accounts: list[int] = msgspec.field(default_factory=list)
    # Trade corrections and the debts they left; left out while there are none. One field:
    # past 15 fields msgspec writes a wider map header, which would change every older
    # state's bytes and hash.
    corrections: CorrectionsState | None = None


_STATE_ENCODER = msgspec.msgpack.Encoder(order="deterministic")


# --- per-market runtime --------------------------------------------------------------


class _Market:
    """One market's book, state and cached numbers, laid out for the hot path."""

    __slots__ = (
        "after_auction",
        "asks",
        "base_per_lot",
        "base_rows",
        "bids",
        "book",
        "breaker",
        "buy_holds",
        "cancels_allowed",
        "fee_row",
        "hold_bps",
        "last_price",
        "maker_bps",
        "max_qty",
        "min_qty",
        "orders",
        "plan",
        "plan_actor",
        "plan_incident_id",
        "plan_reason",
        "qty_range",
        "quote_per_tick_lot",
        "quote_rows",
        "spec",
        "state",
        "symbol",
        "taker_bps",
        "until_ts",
    )

    def __init__(self, spec: MarketSpec, state: MarketState, ledger: Ledger) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.book = OrderBook()
        self.bids = self.book.bids
        self.asks = self.book.asks
        self.orders = self.book.orders
        self.state = state
        self.cancels_allowed = True
        self.until_ts = 0
        self.after_auction = _OPEN
        self.last_price = 0
        self.quote_rows = ledger.rows[spec.quote]
        self.base_rows = ledger.rows[spec.base]
        self.fee_row = ledger.row(spec.quote, FEE_ACCOUNT)
        self.quote_per_tick_lot = spec.quote_per_tick_lot
        self.base_per_lot = spec.base_per_lot
        self.maker_bps = spec.maker_fee_bps
        self.taker_bps = spec.taker_fee_bps
        self.hold_bps = max(spec.maker_fee_bps, spec.taker_fee_bps)
        # price -> buy_hold_per_lot(price): a cache, as prices repeat; cleared when it fills.
        self.buy_holds: dict[int, int] = {}
        self.min_qty = spec.min_qty
        self.max_qty = spec.max_qty
        # ``qty in qty_range``: one C-level test on the hot path. Only for ints: a range
        # tests anything else by iterating (callers check types first).
        self.qty_range = range(spec.min_qty, spec.max_qty + 1)
        self.breaker: BreakerState | None = (
            None if spec.breaker is None else BreakerState(spec.breaker)
        )
        self.plan: ResumePlan | None = None
        self.plan_actor = ""
        self.plan_reason = ""
        self.plan_incident_id = ""

    def buy_hold_per_lot(self, price: int) -> int:
        unit = price * self.quote_per_tick_lot
        return unit + (unit * self.hold_bps + BPS_PER_UNIT - 1) // BPS_PER_UNIT

    def cache_buy_hold(self, price: int) -> int:
        if len(self.buy_holds) >= BUY_HOLD_CACHE_MAX:
            self.buy_holds.clear()
        hold = self.buy_holds[price] = self.buy_hold_per_lot(price)
        return hold

    def hold_per_lot(self, is_buy: bool, price: int) -> int:
        return self.buy_hold_per_lot(price) if is_buy else self.base_per_lot

    def crossed(self) -> bool:
        return self.book.is_crossed()

    def next_deadline(self) -> int:
        deadline = self.until_ts or NO_DEADLINE
        if self.plan is not None:
            due = self.plan.due_ts()
            if due is not None and due < deadline:
                deadline = due
        if self.breaker is not None and self.state in _TRADING_STATES:
            due = self.breaker.next_deadline_ts()
            if due is not None and due < deadline:
                deadline = due
        return deadline


def _price_levels(side: BookSide) -> Iterator[tuple[int, int]]:
    for level in side.sorted_levels():
        yield level.price, level.qty


def _priority_orders(side: BookSide) -> Iterator[RestingOrder]:
    for level in side.sorted_levels():
        yield from level


class Venue:
    """All markets and the shared ledger. See the module docstring for the rules."""

    def __init__(self) -> None:
        self.last_seq = 0
        self.last_ts = 0
        self.ledger = Ledger()
        self._assets: dict[str, Asset] = {}
        self._markets: dict[str, _Market] = {}
        self._frozen_assets: set[str] = set()
        self._frozen_accounts: set[int] = set()
        self._corrections = TradeCorrections()
        self._kill_switch = False
        self._next_trade_id = 1
        self._next_deadline = NO_DEADLINE
        self._live_client_ids: dict[tuple[int, str], int] = {}
        self._finished_client_ids: dict[tuple[int, str], int] = {}
        self._finished_client_order: deque[tuple[int, str]] = deque()
        # The terms of the remembered client order ids, live or finished (all of them but
        # those restored from a snapshot written before terms were kept).
        self._client_terms: dict[tuple[int, str], OrderTerms] = {}
        self._credited: set[int] = set()  # payout_reference of every compensation line paid
        self._admin: dict[type, Callable[[int, int, Command], list[Event]]] = {
            Deposit: self._deposit,
            Withdraw: self._withdraw,
            AddAsset: self._add_asset,
            AddMarket: self._add_market,
            SetMarketState: self._set_market_state,
            KillSwitch: self._kill_switch_command,
            FreezeWithdrawals: self._freeze_withdrawals,
            StartResumePlan: self._start_resume_plan,
            AbortResumePlan: self._abort_resume_plan,
            Uncross: self._uncross_command,
            ConfigureBreaker: self._configure_breaker,
            CancelAll: self._cancel_all,
            Heartbeat: self._heartbeat,
            CreditCompensation: self._credit_compensation,
            FreezeAccountWithdrawals: self._freeze_account_withdrawals,
            BustTrade: self._bust_trade,
            AdjustTrade: self._adjust_trade,
            RollbackTo: self._rollback_to,
        }

    # --- entry points --------------------------------------------------------------------

    def apply(self, seq: int, ts: int, command: Command, *, emit: bool = True) -> list[Event]:
        """Apply one sequenced command; return everything it caused, in order.

        Raises :class:`SequenceError` (changing nothing) if ``seq`` is not ``last_seq + 1``
        or ``ts`` is before ``last_ts``: the caller has lost its place in the journal. Any
        other problem with the command, a wrongly typed field included, is a rejection event.

        ``emit=False`` runs the same code without building the events of orders, cancels
        and trades (recovery needs the state, not the events); what it returns is then
        incomplete and should be ignored. See :meth:`replay`.
        """
        if seq != self.last_seq + 1 or ts < self.last_ts:
            raise self._out_of_sequence(seq, ts)
        self.last_seq = seq
        self.last_ts = ts
        early = self._advance_time(ts) if ts >= self._next_deadline else None
        if type(command) is PlaceOrder:
            events = self._order(
                seq, ts, command.market, command.account, command.side, command.qty,
                command.price, command.order_type, command.tif, command, emit,
            )
        elif type(command) is CancelOrder:
            events = self._cancel(
                seq, ts, command.market, command.account, command.order_id, command, emit
            )
        else:
            events = self._dispatch(seq, ts, command)
        return events if early is None else early + events

    def replay(self, seq: int, ts: int, command: Command) -> None:
        """Apply ``command`` for recovery: :meth:`apply` without building events.

        The same code runs either way, so a replay reaches the same :meth:`state_hash`.
        """
        self.apply(seq, ts, command, emit=False)

    def _out_of_sequence(self, seq: int, ts: int) -> SequenceError:
        return SequenceError(
            f"command seq {seq} at ts {ts} cannot follow seq {self.last_seq} at ts "
            f"{self.last_ts}: seq must be exactly {self.last_seq + 1} and ts must not go "
            "back; replay the journal from the last applied command"
        )

    def _dispatch(self, seq: int, ts: int, command: Command) -> list[Event]:
        """Every command but orders and cancels, each field checked against its declared
        type first (:func:`validated`)."""
        kind = type(command)
        handler = self._admin.get(kind)
        if handler is None:
            return [
                CommandRejected(
                    kind.__name__, _R.INVALID_COMMAND,
                    f"the venue has no command {kind.__name__}; send one of the commands in "
                    "haltguard.venue.commands",
                )
            ]
        try:
            checked = validated(command)
        except MalformedCommandError as error:
            return [_rejected(command, _R.INVALID_COMMAND, str(error))]
        events = handler(seq, ts, checked)
        self._refresh_deadline()
        return events

    # --- placing orders ------------------------------------------------------------------

    def _order(  # noqa: PLR0917 - hot: positional on purpose
        self,
        seq: int,
        ts: int,
        symbol: str,
        account: int,
        side: Side,
        qty: int,
        price: int,
        order_type: OrderType,
        tif: TimeInForce,
        command: PlaceOrder | None = None,
        emit: bool = False,
    ) -> list[Event]:
        """Place an order: ``command`` from :meth:`apply`, which has already sequenced it,
        or, as :meth:`replay_order` (``command`` None), the fields of a journal record.

        A record's fields are those of an order without client order id, post-only or a
        self-trade option other than the default, typed as the journal stores them
        (``int`` numbers, enum members), so they skip the command's type checks; the
        record is sequenced here, and a command is built only if a less common path needs
        one. Such an order, if it is a GTC limit order that rests (the usual case), is
        handled right here; any other order, or a command with a wrongly typed field,
        takes :meth:`_place` with every check.
        """
        if command is None:
            if seq != self.last_seq + 1 or ts < self.last_ts:
                raise self._out_of_sequence(seq, ts)
            self.last_seq = seq
            self.last_ts = ts
            if ts >= self._next_deadline:
                self._advance_time(ts)
        elif not (
            command.client_order_id == ""
            and command.stp is _CANCEL_TAKER
            and command.post_only is False
            and type(qty) is type(price) is type(account) is int
        ):
            return self._place(seq, ts, command, emit)
        # Subscripts in try blocks rather than .get(): the hot path's lookups nearly always
        # hit, and a try costs nothing until something is raised.
        try:
            market: _Market | None = self._markets[symbol]
        except (KeyError, TypeError):  # unknown, or unhashable: _place says which
            market = None
        is_buy = side is _BUY
        if (
            market is not None
            and market.state is _OPEN
            and account > 0
            and (is_buy or side is _SELL)
            and qty in market.qty_range
        ):
            if order_type is _LIMIT and tif is _GTC and price in _PRICES:
                # Check the funds, match the order if it crosses, rest what is left.
                try:
                    if is_buy:
                        own, opposite, limit_key = market.bids, market.asks, price
                        hold_row: list[int] | None = market.quote_rows[account]
                        hold_per_lot = market.buy_holds[price]
                    else:
                        own, opposite, limit_key = market.asks, market.bids, -price
                        hold_row = market.base_rows[account]
                        hold_per_lot = market.base_per_lot
                except KeyError:  # no balance at all, or a price not seen lately
                    rows = market.quote_rows if is_buy else market.base_rows
                    hold_row = rows.get(account)
                    hold_per_lot = (
                        market.cache_buy_hold(price) if is_buy else market.base_per_lot
                    )
                need = qty * hold_per_lot
                if hold_row is None or hold_row[0] < need:
                    if not emit:
                        return []
                    command = command or PlaceOrder(symbol, account, side, qty, price)
                    return [self._funds_rejected(command, market, is_buy, need, hold_row)]
                heap = opposite.heap
                events: list[Event] | None = None
                remaining = qty
                if heap and heap[0] <= limit_key:
                    # It may cross (the commonest taker): match it, settle its fills with
                    # one update per balance, and rest what is left below. Matching stops
                    # early only for a self-trade or the price band (here: cancel-taker, and
                    # an order refused by the band rests only if the market is now in its
                    # auction), as _place_limit_fully decides for every other limit order;
                    # tests/venue/test_engine_taker_paths.py holds the two to one result.
                    events = []
                    if emit:
                        events.append(
                            OrderAccepted(
                                market.symbol, seq, account, side, _LIMIT, _GTC, price, qty, ""
                            )
                        )
                    remaining, spent, received, fees, stop = self._match(
                        market, events, seq, ts, is_buy, account, limit_key, qty,
                        _CANCEL_TAKER, -1, emit,
                    )
                    hold_row[0] -= spent
                    if received:
                        receive_rows = market.base_rows if is_buy else market.quote_rows
                        try:
                            receive_rows[account][0] += received
                        except KeyError:  # the taker's first receipt of this asset
                            receive_rows[account] = [received, 0]
                    if fees:
                        market.fee_row[0] += fees
                    if not remaining or (
                        stop is not None and not (stop is _PRICE_BAND and market.state is _AUCTION)
                    ):
                        if remaining and emit:
                            events.append(
                                OrderCancelled(
                                    market.symbol, seq, account, remaining, stop or _UNFILLED
                                )
                            )
                        if emit and market.state is _AUCTION:
                            events.append(self._indicative_event(market))
                        return events
                    need = remaining * hold_per_lot
                # .get, not a subscript in a try: a new price level is common (an emptied
                # level comes back), and raising costs more than the lookup.
                level = own.levels.get(-limit_key)
                if level is None:
                    level = own.level_for(price)
                tail = level.tail
                # The level's price object, not the command's: one int shared by the level.
                order = RestingOrder(
                    seq, account, is_buy, level.price, qty, remaining, "", hold_per_lot,
                    hold_row, tail, None, level,
                )
                market.orders[seq] = order
                if tail is None:
                    level.head = order
                else:
                    tail.next = order
                level.tail = order
                level.qty += remaining
                level.count += 1
                hold_row[0] -= need
                hold_row[1] += need
                if not emit:
                    return []
                if events is None:
                    return [
                        OrderAccepted(
                            market.symbol, seq, account, side, _LIMIT, _GTC, price, qty, ""
                        )
                    ]
                if market.state is _AUCTION:  # the band tripped the breaker while matching
                    events.append(self._indicative_event(market))
                return events
            if order_type is _MARKET and tif is _IOC and price == 0:
                return self._place_market(
                    seq, ts, command or PlaceOrder(symbol, account, side, qty, 0, _MARKET, _IOC),
                    market, is_buy, qty, emit,
                )
        if command is None:
            command = PlaceOrder(symbol, account, side, qty, price, order_type, tif)
        return self._place(seq, ts, command, emit)

    # The journal decoder's entry for a plain order, ``replay_order(seq, ts, market, account,
    # side, qty, price, order_type, tif)``: :meth:`_order` itself with no command and no
    # events (see there), so replaying a record costs no extra call.
    replay_order = _order

    def _place(self, seq: int, ts: int, command: PlaceOrder, emit: bool) -> list[Event]:
        """Any order, with every check spelled out (and each field's type checked first)."""
        try:
            cmd = validated(command)
        except MalformedCommandError as error:
            return [_rejected(command, _R.INVALID_COMMAND, str(error))]
        assert type(cmd) is PlaceOrder
        market = self._markets.get(cmd.market)
        if market is None:
            return [_order_rejected(cmd, _R.UNKNOWN_MARKET, self._unknown_market(cmd.market))]
        account = cmd.account
        if account <= FEE_ACCOUNT:
            return [
                _order_rejected(
                    cmd,
                    _R.INVALID_ACCOUNT,
                    f"account {account} cannot trade: accounts are positive numbers and "
                    "account 0 is the exchange's fee account",
                )
            ]
        client_id = cmd.client_order_id
        if client_id:
            repeated = self._repeated(cmd)
            if repeated is not None:
                return [repeated]
        is_buy = cmd.side is _BUY
        order_type, tif = cmd.order_type, cmd.tif
        if market.state is not _OPEN:
            kind = order_kind(order_type, tif, cmd.post_only)
            reason = admits(market.state, market.cancels_allowed, kind)
            if reason is not None:
                if reason is _R.MARKET_HALTED and self._kill_switch:
                    return [
                        _order_rejected(
                            cmd,
                            _R.KILL_SWITCH_ENGAGED,
                            "the kill switch is engaged: every market is halted",
                        )
                    ]
                detail = refusal_detail(market.state, market.cancels_allowed, kind)
                return [_order_rejected(cmd, reason, detail)]
        qty = cmd.qty
        if qty < market.min_qty or qty > market.max_qty:
            return [self._size_rejected(cmd, market)]
        if len(client_id) > CLIENT_ORDER_ID_LENGTH_MAX:
            return [
                _order_rejected(
                    cmd,
                    _R.INVALID_COMMAND,
                    f"client_order_id is {len(client_id)} characters; the most is "
                    f"{CLIENT_ORDER_ID_LENGTH_MAX}",
                )
            ]
        if order_type is _LIMIT:
            price = cmd.price
            if price <= 0 or price > INT64_MAX:
                return [
                    _order_rejected(
                        cmd,
                        _R.INVALID_PRICE,
                        f"a limit price is a positive number of ticks, got {price}",
                    )
                ]
            if cmd.post_only and tif is not _GTC:
                return [
                    _order_rejected(
                        cmd,
                        _R.INVALID_TIME_IN_FORCE,
                        "a post-only order must rest, so its time in force must be gtc",
                    )
                ]
            return self._place_limit(seq, ts, cmd, market, is_buy, price, qty, emit)
        if cmd.price != 0 or tif is _GTC or cmd.post_only:
            return [
                _order_rejected(
                    cmd,
                    _R.INVALID_PRICE if cmd.price != 0 else _R.INVALID_TIME_IN_FORCE,
                    "a market order has price 0 and time in force ioc or fok, and cannot be "
                    "post-only",
                )
            ]
        return self._place_market(seq, ts, cmd, market, is_buy, qty, emit)

    def _place_limit(  # noqa: PLR0917 - hot or internal: positional on purpose
        self,
        seq: int,
        ts: int,
        cmd: PlaceOrder,
        market: _Market,
        is_buy: bool,
        price: int,
        qty: int,
        emit: bool,
    ) -> list[Event]:
        """A validated limit order that is not the plain case :meth:`_order` handles itself:
        check its funds, then :meth:`_place_limit_fully`."""
        account = cmd.account
        if is_buy:
            hold_per_lot = market.buy_hold_per_lot(price)
            hold_row = market.quote_rows.get(account)
            limit_key = price
        else:
            hold_per_lot = market.base_per_lot
            hold_row = market.base_rows.get(account)
            limit_key = -price
        need = qty * hold_per_lot
        if hold_row is None or hold_row[0] < need:
            return [self._funds_rejected(cmd, market, is_buy, need, hold_row)]
        return self._place_limit_fully(
            seq, ts, cmd, market, is_buy, price, qty, hold_per_lot, hold_row, limit_key, emit
        )

    def _place_limit_fully(  # noqa: PLR0917 - hot or internal: positional on purpose
        self,
        seq: int,
        ts: int,
        cmd: PlaceOrder,
        market: _Market,
        is_buy: bool,
        price: int,
        qty: int,
        hold_per_lot: int,
        hold_row: list[int],
        limit_key: int,
        emit: bool,
    ) -> list[Event]:
        """A limit order that may cross, is IOC/FOK/post-only, has a client id, or arrives
        outside continuous trading; its funds are already checked."""
        account, tif = cmd.account, cmd.tif
        crossing = False
        if market.state is not _AUCTION:
            # The opposite side's best level (as BookSide.best finds it, without a call).
            opposite = market.asks if is_buy else market.bids
            heap, levels = opposite.heap, opposite.levels
            while heap and heap[0] not in levels:
                heappop(heap)
            crossing = bool(heap) and heap[0] <= limit_key
        if crossing:
            if cmd.post_only:
                return [
                    _order_rejected(
                        cmd,
                        _R.POST_ONLY_WOULD_CROSS,
                        "the post-only order would take liquidity at its price; it was not "
                        "placed",
                    )
                ]
            if tif is _FOK:
                problem = self._fok_problem(market, ts, is_buy, account, limit_key, qty, cmd.stp)
                if problem is not None:
                    return [_order_rejected(cmd, _R.FOK_NOT_FILLABLE, problem)]
        elif tif is _FOK:
            return [
                _order_rejected(
                    cmd, _R.FOK_NOT_FILLABLE, "nothing on the book crosses the fill-or-kill price"
                )
            ]
        client_id = cmd.client_order_id
        if client_id:
            self._client_terms[(account, client_id)] = _terms(cmd, market.symbol)
        events: list[Event] = []
        if emit:
            events.append(
                OrderAccepted(
                    market.symbol, seq, account, cmd.side, _LIMIT, tif, price, qty, client_id
                )
            )
        if crossing:
            remaining, spent, received, fees, stop = self._match(
                market, events, seq, ts, is_buy, account, limit_key, qty, cmd.stp, -1, emit
            )
        else:
            remaining, spent, received, fees, stop = qty, 0, 0, 0, None
        rest_hold = 0
        if remaining and tif is _GTC and (
            stop is None or (stop is _PRICE_BAND and market.state is _AUCTION)
        ):
            rest_hold = remaining * hold_per_lot
            own = market.bids if is_buy else market.asks
            level = own.levels.get(-limit_key)
            if level is None:
                level = own.level_for(price)
            tail = level.tail
            order = RestingOrder(
                seq, account, is_buy, level.price, qty, remaining, client_id, hold_per_lot,
                hold_row, tail, None, level,
            )
            market.orders[seq] = order
            if tail is None:
                level.head = order
            else:
                tail.next = order
            level.tail = order
            level.qty += remaining
            level.count += 1
            if client_id:
                self._live_client_ids[(account, client_id)] = seq
        else:
            if remaining and emit:
                events.append(
                    OrderCancelled(market.symbol, seq, account, remaining, stop or _UNFILLED)
                )
            if client_id:
                self._finish_client_id(account, client_id, seq)
        hold_row[0] -= spent + rest_hold
        hold_row[1] += rest_hold
        if received:
            receive_rows = market.base_rows if is_buy else market.quote_rows
            receive_row = receive_rows.get(account)
            if receive_row is None:
                receive_row = receive_rows[account] = [0, 0]
            receive_row[0] += received
        if fees:
            market.fee_row[0] += fees
        if emit and market.state is _AUCTION:
            events.append(self._indicative_event(market))
        return events

    def _place_market(  # noqa: PLR0917 - hot or internal: positional on purpose
        self,
        seq: int,
        ts: int,
        cmd: PlaceOrder,
        market: _Market,
        is_buy: bool,
        qty: int,
        emit: bool,
    ) -> list[Event]:
        account = cmd.account
        if is_buy:
            pay_rows, receive_rows = market.quote_rows, market.base_rows
            pay_row = pay_rows.get(account)
            budget = 0 if pay_row is None else pay_row[0]
            if budget <= 0:
                return [self._funds_rejected(cmd, market, is_buy, 1, pay_row)]
        else:
            pay_rows, receive_rows = market.base_rows, market.quote_rows
            pay_row = pay_rows.get(account)
            need = qty * market.base_per_lot
            if pay_row is None or pay_row[0] < need:
                return [self._funds_rejected(cmd, market, is_buy, need, pay_row)]
            budget = -1
        if cmd.tif is _FOK:
            problem = self._fok_problem(
                market, ts, is_buy, account, NO_LIMIT_KEY, qty, cmd.stp, budget
            )
            if problem is not None:
                return [_order_rejected(cmd, _R.FOK_NOT_FILLABLE, problem)]
        assert pay_row is not None
        client_id = cmd.client_order_id
        if client_id:
            self._client_terms[(account, client_id)] = _terms(cmd, market.symbol)
        events: list[Event] = []
        if emit:
            events.append(
                OrderAccepted(
                    market.symbol, seq, account, cmd.side, _MARKET, cmd.tif, 0, qty, client_id
                )
            )
        remaining, spent, received, fees, stop = self._match(
            market, events, seq, ts, is_buy, account, NO_LIMIT_KEY, qty, cmd.stp, budget, emit
        )
        if remaining and emit:
            events.append(OrderCancelled(market.symbol, seq, account, remaining, stop or _UNFILLED))
        if client_id:
            self._finish_client_id(account, client_id, seq)
        pay_row[0] -= spent
        if received:
            _receive_row(receive_rows, account)[0] += received
        if fees:
            market.fee_row[0] += fees
        return events

    def _match(  # noqa: PLR0917 - hot or internal: positional on purpose
        self,
        market: _Market,
        events: list[Event],
        seq: int,
        ts: int,
        is_buy: bool,
        account: int,
        limit_key: int,
        qty: int,
        stp: SelfTradePrevention,
        budget: int,
        emit: bool,
    ) -> tuple[int, int, int, int, CancelReason | None]:
        """Cross an incoming order against the book, settling every maker as it goes.

        Returns ``(remaining, spent, received, fees, stop)``: what the taker has left, what it
        paid out (quote for a buy, base for a sell), what it received, the fees of all fills,
        and why matching stopped early (self-trade, price band, out of funds) or None. The
        caller settles the taker's own balances with those totals. ``budget`` is the quote a
        market buy may spend; -1 means the order's hold already covers every fill. Without
        ``emit`` no trade events are built.
        """
        # The one matching loop: live trading and recovery (``emit`` off) both run it, so a
        # change to the rules reaches both. It is the venue's hottest code, hence one long
        # function with no call per fill, and per level the queue's head, count and
        # quantity are updated once after the walk (``taken`` makers filled off the
        # front), not per fill.
        opposite = market.asks if is_buy else market.bids
        heap, levels, orders = opposite.heap, opposite.levels, market.orders
        maker_receive_rows = market.quote_rows if is_buy else market.base_rows
        per_tick_lot, base_per_lot = market.quote_per_tick_lot, market.base_per_lot
        taker_bps, maker_bps = market.taker_bps, market.maker_bps
        breaker = market.breaker
        symbol, taker_side = market.symbol, _BUY if is_buy else _SELL
        trade_id = self._next_trade_id
        remaining = qty
        spent = received = fees = 0
        stop: CancelReason | None = None
        while remaining and heap:
            key = heap[0]
            level = levels.get(key)
            if level is None:
                heappop(heap)
                continue
            if key > limit_key:
                break
            price = level.price
            if breaker is not None and not (
                breaker.low <= price <= breaker.high or ts >= breaker.next_reset_ts
            ):  # breaker.allows(price, ts), without the call
                stop = self._refused_by_breaker(market, events, ts, price, seq)
                break
            unit = price * per_tick_lot
            before = remaining
            taken = 0
            maker = level.head
            while maker is not None:
                maker_account = maker.account
                if maker_account == account:
                    if taken:  # bring the queue up to date before changing it
                        level.head = maker
                        maker.prev = None
                        level.count -= taken
                        taken = 0
                    stop, maker = self._self_trade(market, events, level, maker, stp)
                    if stop is not None:
                        break
                    continue
                maker_left = maker.remaining
                fill = remaining if remaining < maker_left else maker_left
                notional = unit * fill
                taker_fee = notional * taker_bps // BPS_PER_UNIT
                if budget >= 0:
                    if notional + taker_fee > budget:
                        fill = _affordable_lots(budget, unit, taker_bps, fill)
                        if fill == 0:
                            stop = _OUT_OF_FUNDS
                            break
                        notional = unit * fill
                        taker_fee = notional * taker_bps // BPS_PER_UNIT
                    budget -= notional + taker_fee
                maker_fee = notional * maker_bps // BPS_PER_UNIT if maker_bps else 0
                try:
                    receive_row = maker_receive_rows[maker_account]
                except KeyError:  # the maker's first receipt of this asset
                    receive_row = maker_receive_rows[maker_account] = [0, 0]
                if is_buy:
                    maker.hold_row[1] -= fill * base_per_lot
                    receive_row[0] += notional - maker_fee
                    spent += notional + taker_fee
                else:
                    release = fill * maker.hold_per_lot
                    hold_row = maker.hold_row
                    hold_row[1] -= release
                    hold_row[0] += release - notional - maker_fee
                    receive_row[0] += fill * base_per_lot
                    received += notional - taker_fee
                fees += taker_fee + maker_fee
                if emit:
                    events.append(
                        Trade(
                            symbol, trade_id, price, fill, taker_side,
                            seq, account, maker.order_id, maker_account, taker_fee, maker_fee,
                        )
                    )
                trade_id += 1
                remaining -= fill
                if fill != maker_left:  # the taker is done, or a market buy is out of funds
                    maker.remaining = maker_left - fill
                    if not remaining:
                        break
                    continue  # (the same maker: one more lot may still be affordable)
                maker.remaining = 0
                del orders[maker.order_id]
                if maker.client_order_id:
                    self._finish_client_id(maker_account, maker.client_order_id, maker.order_id)
                taken += 1
                maker = maker.next
                if not remaining:
                    break
            if taken:
                level.head = maker
                if maker is None:
                    level.tail = None
                else:
                    maker.prev = None
                level.count -= taken
            level_filled = before - remaining
            if level_filled:
                level.qty -= level_filled
                market.last_price = price
                if breaker is not None:
                    breaker.record_trade(price, level_filled, ts)
            if level.head is None:
                del levels[key]
                heappop(heap)
            if stop is not None:
                break
        self._next_trade_id = trade_id
        filled = qty - remaining
        if is_buy:
            received = filled * base_per_lot
        else:
            spent = filled * base_per_lot
        return remaining, spent, received, fees, stop

    def _self_trade(
        self,
        market: _Market,
        events: list[Event],
        level: PriceLevel,
        maker: RestingOrder,
        stp: SelfTradePrevention,
    ) -> tuple[CancelReason | None, RestingOrder | None]:
        """The taker meets its own resting ``maker`` (the head of ``level``): stop there
        (cancel-taker), or cancel the maker and go on (cancel-maker) or stop (cancel-both).
        Returns why matching stops, or None, and the maker to go on with."""
        if stp is _CANCEL_TAKER:
            return _SELF_TRADE, maker
        following = maker.next
        self._cancel_at_head(market, level, maker)
        events.append(
            OrderCancelled(market.symbol, maker.order_id, maker.account, maker.remaining,
                           _SELF_TRADE)
        )
        return (_SELF_TRADE if stp is _CANCEL_BOTH else None), following

    def _cancel_at_head(self, market: _Market, level: PriceLevel, order: RestingOrder) -> None:
        """Self-trade prevention removes the maker being matched; the level stays for now."""
        level.unlink(order)
        del market.orders[order.order_id]
        release = order.remaining * order.hold_per_lot
        row = order.hold_row
        row[1] -= release
        row[0] += release
        if order.client_order_id:
            self._finish_client_id(order.account, order.client_order_id, order.order_id)

    def _take_off_book(self, market: _Market, order: RestingOrder) -> None:
        """Remove a resting order and give its hold back (cancel of any kind)."""
        market.book.remove(order)
        release = order.remaining * order.hold_per_lot
        row = order.hold_row
        row[1] -= release
        row[0] += release
        if order.client_order_id:
            self._finish_client_id(order.account, order.client_order_id, order.order_id)

    def _fok_problem(  # noqa: PLR0917 - hot or internal: positional on purpose
        self,
        market: _Market,
        ts: int,
        is_buy: bool,
        account: int,
        limit_key: int,
        qty: int,
        stp: SelfTradePrevention,
        budget: int = -1,
    ) -> str | None:
        """Why a fill-or-kill order would not fill completely now, or None. Reads only.

        Mirrors :meth:`_match`: an own order ends the walk unless self-trade prevention
        cancels makers, a level outside the breaker's band ends it, and a market buy must
        afford every fill.
        """
        opposite = market.asks if is_buy else market.bids
        levels, breaker = opposite.levels, market.breaker
        per_tick_lot, taker_bps = market.quote_per_tick_lot, market.taker_bps
        needed = qty
        for key in sorted(k for k in levels if k <= limit_key):
            level = levels[key]
            if breaker is not None and not breaker.allows(level.price, ts):
                return "filling it completely would trade outside the price band"
            for maker in level:
                if maker.account == account:
                    if stp is not _CANCEL_MAKER:
                        return "filling it completely would trade with your own resting order"
                    continue
                fill = min(needed, maker.remaining)
                if budget >= 0:
                    notional = level.price * fill * per_tick_lot
                    budget -= notional + notional * taker_bps // BPS_PER_UNIT
                    if budget < 0:
                        return "the available balance does not cover filling it completely"
                needed -= fill
                if needed == 0:
                    return None
        return f"only {qty - needed} of {qty} lots can be filled now"

    def _refused_by_breaker(
        self, market: _Market, events: list[Event], ts: int, price: int, order_id: int
    ) -> CancelReason:
        """A fill at ``price`` is outside the band: refuse it, and trip if the breaker says so."""
        breaker = market.breaker
        assert breaker is not None
        if breaker.violation(price, ts, order_id) is Verdict.TRIP:
            self._trip(market, events, ts, breaker.trip(ts, price, order_id))
        else:
            self._next_deadline = min(self._next_deadline, market.next_deadline())
        return _PRICE_BAND

    def _trip(self, market: _Market, events: list[Event], ts: int, trip: BreakerTrip) -> None:
        events.append(
            CircuitBreakerTripped(
                market.symbol,
                trip.reference_price,
                trip.band_bps,
                trip.low,
                trip.high,
                trip.attempted_price,
                trip.order_id,
                trip.trigger_count,
                trip.pause_until_ts,
            )
        )
        self._end_plan(market, events, False, BREAKER_ACTOR, "circuit breaker tripped")
        if market.state in _TRADING_STATES:
            market.after_auction = market.state
        detail = (
            f"price band {trip.low}..{trip.high} ticks (reference {trip.reference_price}, "
            f"{trip.band_bps} bps) broken at {trip.attempted_price}"
        )
        self._change_state(
            market, events, ts, _AUCTION, BREAKER_ACTOR, detail, "", True, trip.pause_until_ts
        )
        self._next_deadline = min(self._next_deadline, trip.pause_until_ts)

    # --- cancelling ----------------------------------------------------------------------

    def _cancel(  # noqa: PLR0917 - hot: positional on purpose
        self,
        seq: int,
        ts: int,
        symbol: str,
        account: int,
        order_id: int,
        command: CancelOrder | None = None,
        emit: bool = False,
    ) -> list[Event]:
        """Cancel one order: ``command`` from :meth:`apply`, or, as :meth:`replay_cancel`
        (``command`` None), a journal record's cancel by order id, sequenced here and
        trusted to be typed as in :meth:`_order`. The common case (by order id, open
        market, the owner asking) runs in a straight line, anything else through
        :meth:`_cancel_checked`."""
        if command is None:
            if seq != self.last_seq + 1 or ts < self.last_ts:
                raise self._out_of_sequence(seq, ts)
            self.last_seq = seq
            self.last_ts = ts
            if ts >= self._next_deadline:
                self._advance_time(ts)
        elif not (command.client_order_id == "" and type(order_id) is type(account) is int):
            return self._cancel_checked(command)
        try:
            market: _Market | None = self._markets[symbol]
        except (KeyError, TypeError):  # unknown, or unhashable: _cancel_checked says which
            market = None
        if market is None or market.state is not _OPEN or not order_id:
            return self._cancel_checked(command or CancelOrder(symbol, account, order_id))
        order = market.orders.get(order_id)
        if order is None:  # (no client order id on this path)
            if not emit:
                return []
            return [OrderRejected(symbol, account, _UNKNOWN_ORDER, _NOT_RESTING, order_id)]
        if order.account != account:
            return self._cancel_checked(command or CancelOrder(symbol, account, order_id))
        del market.orders[order_id]
        level = order.level
        assert level is not None
        prev, following = order.prev, order.next
        if prev is None:
            level.head = following
        else:
            prev.next = following
        if following is None:
            level.tail = prev
        else:
            following.prev = prev
        remaining = order.remaining
        level.qty -= remaining
        level.count -= 1
        if level.head is None:
            (market.bids if order.is_buy else market.asks).drop_level(level)
        release = remaining * order.hold_per_lot
        row = order.hold_row
        row[1] -= release
        row[0] += release
        if order.client_order_id:
            self._finish_client_id(account, order.client_order_id, order_id)
        if not emit:
            return []
        return [OrderCancelled(market.symbol, order_id, account, remaining, _USER)]

    # ``replay_cancel(seq, ts, market, account, order_id)``: see :meth:`_cancel`.
    replay_cancel = _cancel

    def replay_batch(self, records: Iterable[ReplayRecord]) -> None:
        """Replay a run of journal records of plain orders and cancels, in order.

        Each record is an order as :meth:`replay_order` takes it, ``(seq, ts, market,
        account, qty, price, (side, order_type, tif))``, or a cancel by order id, ``(seq,
        ts, market, account, order_id, 0, None)``, with numbers as the journal stores them
        (64-bit ints). Recovery spends most of its time here, so the commonest records
        run without a call, the market's structures held in local variables: a GTC limit
        order (``GTC_LIMIT_BUY`` / ``GTC_LIMIT_SELL`` as its options) that rests or is
        refused for funds, and a cancel in an open market. A limit order that may cross,
        and a market order, go straight to the code :meth:`apply` runs for them
        (:meth:`_place_limit_fully`, :meth:`_place_market`, both matching with
        :meth:`_match`) with ``emit`` off: there is one matching implementation, so a
        change to the matching rules cannot miss replay. Everything else (markets that are
        not open, deadlines due, a sequence error) goes to :meth:`replay_order` /
        :meth:`replay_cancel`, after which the locals are reloaded. The replay tests check
        by state hash that all of this reaches what :meth:`apply` reaches.
        """
        bound: str | None = None  # the open market whose structures are in the locals below
        deadline = self._next_deadline
        last_seq, last_ts = self.last_seq, self.last_ts
        # Bound per market; initial values only keep the type checker informed.
        market = cast(_Market, None)
        orders: dict[int, RestingOrder] = {}
        bids = asks = BookSide(True)
        bid_levels: dict[int, PriceLevel] = {}
        ask_levels: dict[int, PriceLevel] = {}
        quote_rows: dict[int, list[int]] = {}
        base_rows: dict[int, list[int]] = {}
        buy_holds: dict[int, int] = {}
        base_per_lot = min_qty = max_qty = 0
        try:
            for seq, ts, symbol, account, number, price, enums in records:
                if symbol is not bound:
                    found = self._markets.get(symbol)
                    if found is None or found.state is not _OPEN:
                        bound = None
                    else:
                        bound, market = symbol, found
                        orders, bids, asks = market.orders, market.bids, market.asks
                        bid_levels, ask_levels = bids.levels, asks.levels
                        quote_rows, base_rows = market.quote_rows, market.base_rows
                        buy_holds, base_per_lot = market.buy_holds, market.base_per_lot
                        min_qty, max_qty = market.min_qty, market.max_qty
                if (
                    bound is not None
                    and seq == last_seq + 1
                    and last_ts <= ts < deadline
                    and account > 0
                ):
                    if enums is GTC_LIMIT_BUY:
                        if min_qty <= number <= max_qty and price > 0:
                            hold_row: list[int] | None
                            try:
                                hold_row = quote_rows[account]
                                hold_per_lot = buy_holds[price]
                            except KeyError:
                                hold_row = quote_rows.get(account)
                                hold_per_lot = market.cache_buy_hold(price)
                            need = number * hold_per_lot
                            if hold_row is None or hold_row[0] < need:  # refused for funds
                                last_seq, last_ts = seq, ts
                                continue
                            heap = asks.heap
                            if not heap or heap[0] > price:  # nothing to cross: it rests
                                level = bid_levels.get(-price)
                                if level is None:
                                    level = bids.level_for(price)
                                tail = level.tail
                                order = RestingOrder(
                                    seq, account, True, level.price, number, number, "",
                                    hold_per_lot, hold_row, tail, None, level,
                                )
                                orders[seq] = order
                                if tail is None:
                                    level.head = order
                                else:
                                    tail.next = order
                                level.tail = order
                                level.qty += number
                                level.count += 1
                                hold_row[0] -= need
                                hold_row[1] += need
                                last_seq, last_ts = seq, ts
                                continue
                            # It may cross: the one matching path, as apply takes it.
                            self.last_seq, self.last_ts = seq, ts
                            self._place_limit_fully(
                                seq, ts, PlaceOrder(symbol, account, _BUY, number, price),
                                market, True, price, number, hold_per_lot, hold_row, price,
                                False,
                            )
                            last_seq, last_ts = seq, ts
                            deadline = self._next_deadline  # a breaker may have tripped
                            if market.state is not _OPEN:
                                bound = None
                            continue
                    elif enums is GTC_LIMIT_SELL:
                        if min_qty <= number <= max_qty and price > 0:
                            try:
                                hold_row = base_rows[account]
                            except KeyError:
                                hold_row = None
                            need = number * base_per_lot
                            if hold_row is None or hold_row[0] < need:
                                last_seq, last_ts = seq, ts
                                continue
                            heap = bids.heap
                            if not heap or heap[0] > -price:
                                level = ask_levels.get(price)
                                if level is None:
                                    level = asks.level_for(price)
                                tail = level.tail
                                order = RestingOrder(
                                    seq, account, False, level.price, number, number, "",
                                    base_per_lot, hold_row, tail, None, level,
                                )
                                orders[seq] = order
                                if tail is None:
                                    level.head = order
                                else:
                                    tail.next = order
                                level.tail = order
                                level.qty += number
                                level.count += 1
                                hold_row[0] -= need
                                hold_row[1] += need
                                last_seq, last_ts = seq, ts
                                continue
                            self.last_seq, self.last_ts = seq, ts
                            self._place_limit_fully(
                                seq, ts, PlaceOrder(symbol, account, _SELL, number, price),
                                market, False, price, number, base_per_lot, hold_row, -price,
                                False,
                            )
                            last_seq, last_ts = seq, ts
                            deadline = self._next_deadline
                            if market.state is not _OPEN:
                                bound = None
                            continue
                    elif enums is None:  # a cancel
                        gone = orders.pop(number, None)
                        if gone is None:  # filled, cancelled or never placed: refused
                            last_seq, last_ts = seq, ts
                            continue
                        if gone.account != account:  # not the owner's: refused below
                            orders[number] = gone  # (the index's order does not matter)
                        else:
                            at = gone.level
                            assert at is not None
                            prev, following = gone.prev, gone.next
                            if prev is None:
                                at.head = following
                            else:
                                prev.next = following
                            if following is None:
                                at.tail = prev
                            else:
                                following.prev = prev
                            remaining = gone.remaining
                            at.qty -= remaining
                            at.count -= 1
                            if at.head is None:
                                (bids if gone.is_buy else asks).drop_level(at)
                            release = remaining * gone.hold_per_lot
                            row = gone.hold_row
                            row[1] -= release
                            row[0] += release
                            if gone.client_order_id:
                                self._finish_client_id(account, gone.client_order_id, number)
                            last_seq, last_ts = seq, ts
                            continue
                    else:
                        side, order_type, tif = enums
                        if (
                            order_type is _MARKET
                            and tif is _IOC
                            and price == 0
                            and min_qty <= number <= max_qty
                            and (side is _BUY or side is _SELL)
                        ):
                            self.last_seq, self.last_ts = seq, ts
                            self._place_market(
                                seq, ts,
                                PlaceOrder(symbol, account, side, number, 0, _MARKET, _IOC),
                                market, side is _BUY, number, False,
                            )
                            last_seq, last_ts = seq, ts
                            deadline = self._next_deadline
                            if market.state is not _OPEN:
                                bound = None
                            continue
                # Anything else: the general entry points, then reload what they may change.
                self.last_seq, self.last_ts = last_seq, last_ts
                if enums is None:
                    self._cancel(seq, ts, symbol, account, number)
                else:
                    side, order_type, tif = enums
                    self._order(seq, ts, symbol, account, side, number, price, order_type, tif)
                last_seq, last_ts = self.last_seq, self.last_ts
                deadline = self._next_deadline
                bound = None
        finally:
            self.last_seq, self.last_ts = last_seq, last_ts

    def _cancel_checked(self, command: CancelOrder) -> list[Event]:
        """Cancel with every check spelled out (each field's type first), for rejections,
        cancels by client order id and markets that are not open."""
        try:
            cmd = validated(command)
        except MalformedCommandError as error:
            return [_rejected(command, _R.INVALID_COMMAND, str(error))]
        assert type(cmd) is CancelOrder
        market = self._markets.get(cmd.market)
        if market is None:
            return [_cancel_rejected(cmd, _R.UNKNOWN_MARKET, self._unknown_market(cmd.market))]
        if market.state is _HALTED and not market.cancels_allowed:
            return [
                _cancel_rejected(
                    cmd,
                    _R.CANCELS_REFUSED,
                    "the market is halted and this halt refuses cancels too; wait until it "
                    "lifts",
                )
            ]
        order_id = cmd.order_id
        if not order_id:
            if not cmd.client_order_id:
                return [
                    _cancel_rejected(
                        cmd, _R.INVALID_COMMAND, "give the order_id or the client_order_id"
                    )
                ]
            found = self._live_client_ids.get((cmd.account, cmd.client_order_id))
            if found is None:
                return [
                    _cancel_rejected(
                        cmd,
                        _R.UNKNOWN_ORDER,
                        f"no resting order of account {cmd.account} has client_order_id "
                        f"{cmd.client_order_id!r}",
                    )
                ]
            order_id = found
        order = market.orders.get(order_id)
        if order is None:
            return [_cancel_rejected(cmd, _R.UNKNOWN_ORDER, _NOT_RESTING)]
        if order.account != cmd.account:
            return [
                _cancel_rejected(
                    cmd,
                    _R.NOT_ORDER_OWNER,
                    f"order {order_id} belongs to another account; only its owner may cancel",
                )
            ]
        self._take_off_book(market, order)
        cancelled = OrderCancelled(
            market.symbol, order_id, order.account, order.remaining, CancelReason.USER
        )
        if market.state is _AUCTION:
            return [cancelled, self._indicative_event(market)]
        return [cancelled]

    def _cancel_all(self, seq: int, ts: int, command: Command) -> list[Event]:
        """Cancel every resting order of an account (0: all) in a market ("": all markets).

        Markets whose halt refuses cancels keep their orders when every market is targeted;
        naming such a market directly is refused.
        """
        cmd = _as(command, CancelAll)
        if cmd.account < 0:
            return [_rejected(cmd, _R.INVALID_ACCOUNT, f"account {cmd.account} is negative")]
        if cmd.market:
            market = self._markets.get(cmd.market)
            if market is None:
                return [_rejected(cmd, _R.UNKNOWN_MARKET, self._unknown_market(cmd.market))]
            if market.state is _HALTED and not market.cancels_allowed:
                return [
                    _rejected(
                        cmd, _R.CANCELS_REFUSED, "the market is halted and refuses cancels too"
                    )
                ]
            targets = [market]
        else:
            targets = [
                m
                for m in self._markets.values()
                if m.state is not _HALTED or m.cancels_allowed
            ]
        events: list[Event] = []
        for market in targets:
            chosen = sorted(
                order_id
                for order_id, order in market.orders.items()
                if cmd.account in (0, order.account)
            )
            for order_id in chosen:
                order = market.orders[order_id]
                self._take_off_book(market, order)
                events.append(
                    OrderCancelled(
                        market.symbol, order_id, order.account, order.remaining,
                        CancelReason.MASS_CANCEL,
                    )
                )
            if chosen and market.state is _AUCTION:
                events.append(self._indicative_event(market))
        return events

    # --- client order ids ----------------------------------------------------------------

    def _repeated(self, cmd: PlaceOrder) -> OrderRepeated | OrderRejected | None:
        """``OrderRepeated`` for a retry with the same terms, a ``client_order_id_reused``
        rejection for the id with other terms, None for an id not in use."""
        key = (cmd.account, cmd.client_order_id)
        order_id = self._live_client_ids.get(key)
        if order_id is None:
            order_id = self._finished_client_ids.get(key)
        if order_id is None:
            return None
        terms = self._client_terms.get(key)
        if terms is not None:
            differing = [
                name
                for name, then, now in zip(
                    _TERM_NAMES, msgspec.structs.astuple(terms), _terms_tuple(cmd), strict=True
                )
                if then != now
            ]
            if differing:
                return _order_rejected(
                    cmd,
                    _R.CLIENT_ORDER_ID_REUSED,
                    f"client_order_id {cmd.client_order_id!r} of account {cmd.account} already "
                    f"placed order {order_id} in {terms.market}; this order differs in "
                    f"{', '.join(differing)}. Use a new client_order_id for a new order, or "
                    "resend the original unchanged to learn its outcome",
                )
        return OrderRepeated(cmd.market, cmd.account, cmd.client_order_id, order_id)

    def _finish_client_id(self, account: int, client_id: str, order_id: int) -> None:
        """The order is done: move its client id to the bounded window of finished ids."""
        key = (account, client_id)
        self._live_client_ids.pop(key, None)
        finished = self._finished_client_ids
        finished[key] = order_id
        order = self._finished_client_order
        order.append(key)
        if len(order) > CLIENT_ORDER_ID_WINDOW:
            forgotten = order.popleft()
            del finished[forgotten]
            self._client_terms.pop(forgotten, None)

    # --- funds -------------------------------------------------------------------------

    def _deposit(self, seq: int, ts: int, command: Command) -> list[Event]:
        cmd = _as(command, Deposit)
        if cmd.account <= FEE_ACCOUNT:
            return [
                _rejected(
                    cmd,
                    _R.INVALID_ACCOUNT,
                    f"deposits go to customer accounts (positive numbers), not {cmd.account}",
                )
            ]
        problem = self._amount_problem(cmd.asset, cmd.amount)
        if problem is not None:
            return [_rejected(cmd, *problem)]
        if self.ledger.available(cmd.asset, cmd.account) + cmd.amount > INT64_MAX:
            return [
                _rejected(cmd, _R.INVALID_AMOUNT, "the balance would exceed the largest amount")
            ]
        self.ledger.deposit(cmd.asset, cmd.account, cmd.amount)
        return [Deposited(cmd.account, cmd.asset, cmd.amount, cmd.reference)]

    def _withdraw(self, seq: int, ts: int, command: Command) -> list[Event]:
        cmd = _as(command, Withdraw)
        if cmd.account < FEE_ACCOUNT:
            return [_rejected(cmd, _R.INVALID_ACCOUNT, f"account {cmd.account} is negative")]
        problem = self._amount_problem(cmd.asset, cmd.amount)
        if problem is not None:
            return [_rejected(cmd, *problem)]
        if cmd.asset in self._frozen_assets:
            return [
                _rejected(
                    cmd,
                    _R.WITHDRAWALS_FROZEN,
                    f"{cmd.asset} withdrawals are frozen; they resume when an operator "
                    "unfreezes them",
                )
            ]
        if cmd.account in self._frozen_accounts:
            return [
                _rejected(
                    cmd,
                    _R.WITHDRAWALS_FROZEN,
                    f"withdrawals of account {cmd.account} are frozen; they resume when "
                    "support has verified the customer and unfreezes them",
                )
            ]
        available = self.ledger.available(cmd.asset, cmd.account)
        if cmd.amount > available:
            if cmd.account > FEE_ACCOUNT and not self.ledger.holds_anything(cmd.account):
                return [_rejected(cmd, _R.UNKNOWN_ACCOUNT, _unknown_account(cmd.account))]
            return [
                _rejected(
                    cmd,
                    _R.INSUFFICIENT_FUNDS,
                    f"withdrawal of {cmd.amount} exceeds the available {available} "
                    f"{cmd.asset} (cancel orders to release held funds)",
                )
            ]
        self.ledger.withdraw(cmd.asset, cmd.account, cmd.amount)
        return [Withdrawn(cmd.account, cmd.asset, cmd.amount, cmd.destination, cmd.reference)]

    def _amount_problem(self, asset: str, amount: int) -> tuple[RejectReason, str] | None:
        if asset not in self._assets:
            return _R.UNKNOWN_ASSET, f"asset {asset!r} is not listed; add it first"
        if not 0 < amount <= INT64_MAX:
            return _R.INVALID_AMOUNT, f"amount must be positive minor units, not {amount}"
        return None

    def _freeze_withdrawals(self, seq: int, ts: int, command: Command) -> list[Event]:
        cmd = _as(command, FreezeWithdrawals)
        if cmd.asset not in self._assets:
            return [_rejected(cmd, _R.UNKNOWN_ASSET, f"asset {cmd.asset!r} is not listed")]
        if cmd.frozen:
            self._frozen_assets.add(cmd.asset)
        else:
            self._frozen_assets.discard(cmd.asset)
        return [
            WithdrawalsFrozen(cmd.asset, cmd.frozen, cmd.actor, cmd.reason, cmd.incident_id)
        ]

    def _freeze_account_withdrawals(self, seq: int, ts: int, command: Command) -> list[Event]:
        cmd = _as(command, FreezeAccountWithdrawals)
        if cmd.account <= FEE_ACCOUNT:
            return [_rejected(cmd, _R.INVALID_ACCOUNT,
                              f"account {cmd.account} is not a customer account")]
        if cmd.frozen:
            self._frozen_accounts.add(cmd.account)
        else:
            self._frozen_accounts.discard(cmd.account)
        return [AccountWithdrawalsFrozen(cmd.account, cmd.frozen, cmd.actor, cmd.reason,
                                         cmd.incident_id)]

    def _credit_compensation(self, seq: int, ts: int, command: Command) -> list[Event]:
        """Each line credited or refused on its own; a line's reference is spent once."""
        cmd = _as(command, CreditCompensation)
        if not 0 < len(cmd.lines) <= COMPENSATION_LINES_MAX:
            return [
                _rejected(
                    cmd,
                    _R.INVALID_COMMAND,
                    f"a compensation credit carries 1 to {COMPENSATION_LINES_MAX} lines, not "
                    f"{len(cmd.lines)}; split the run into batches of at most that many",
                )
            ]
        events: list[Event] = []
        append = events.append
        credited = self._credited
        rows, deposited = self.ledger.rows, self.ledger.deposited
        # A million lines go through here: the common case is checked inline (what
        # _credit_problem checks, in one expression), a refusal asks it for the reason.
        for line in cmd.lines:
            run_id, line_no, account, asset, amount = (
                line.run_id, line.line_no, line.account, line.asset, line.amount
            )
            asset_rows = rows.get(asset)
            row = None if asset_rows is None else asset_rows.get(account)
            if (
                0 < run_id <= RUN_ID_MAX
                and 0 <= line_no <= LINE_NO_MAX
                and (reference := run_id << LINE_NO_BITS | line_no) not in credited
                and account > FEE_ACCOUNT
                and asset_rows is not None
                and 0 < amount <= INT64_MAX - (0 if row is None else row[0])
            ):
                if row is None:
                    row = asset_rows[account] = [0, 0]
                row[0] += amount
                deposited[asset] += amount
                credited.add(reference)
                append(CompensationCredited(account, asset, amount, run_id, line_no))
                continue
            problem = self._credit_problem(line)
            assert problem is not None, "the inline check and _credit_problem disagree"
            append(CompensationRefused(run_id, line_no, account, *problem))
        return events

    def _credit_problem(self, line: CompensationLine) -> tuple[RejectReason, str] | None:
        if not (0 < line.run_id <= RUN_ID_MAX and 0 <= line.line_no <= LINE_NO_MAX):
            return _R.INVALID_REFERENCE, (
                f"run {line.run_id} line {line.line_no} is out of range: run ids are 1 to "
                f"{RUN_ID_MAX}, line numbers 0 to {LINE_NO_MAX}"
            )
        if payout_reference(line.run_id, line.line_no) in self._credited:
            return _R.ALREADY_CREDITED, (
                f"run {line.run_id} line {line.line_no} was credited before; it is paid"
            )
        if line.account <= FEE_ACCOUNT:
            return _R.INVALID_ACCOUNT, (
                f"compensation goes to customer accounts (positive numbers), not {line.account}"
            )
        problem = self._amount_problem(line.asset, line.amount)
        if problem is not None:
            return problem
        if self.ledger.available(line.asset, line.account) + line.amount > INT64_MAX:
            return _R.INVALID_AMOUNT, "the balance would exceed the largest amount"
        return None

    # --- listing -------------------------------------------------------------------------

    # --- trade corrections (rare operator commands; see venue/corrections.py) -----------

    def _bust_trade(self, seq: int, ts: int, command: Command) -> list[Event]:
        """Reverse the trades' settlements, all or none; refused (changing nothing) when one
        is unknown, busted before or named twice, when the proposer approved it, or when the
        reversals together would take more than an account has available without
        ``allow_debit``. The owed shortfalls are on the last ``TradeBusted``."""
        cmd = _as(command, BustTrade)
        if not 0 < len(cmd.trades) <= BUST_TRADES_MAX:
            return [_rejected(cmd, _R.INVALID_COMMAND,
                              f"a bust names 1 to {BUST_TRADES_MAX} trades, not {len(cmd.trades)}")]
        if len({trade.trade_id for trade in cmd.trades}) != len(cmd.trades):
            return [_rejected(cmd, _R.INVALID_COMMAND, "a bust names each trade once")]
        for trade in cmd.trades:
            problem = self._correction_problem(cmd, trade)
            if problem is not None:
                return [_rejected(cmd, *problem)]
        corrections = self._corrections
        changes_by_key: dict[tuple[str, int], int] = {}
        terms_of = [corrections.terms(trade) for trade in cmd.trades]
        for trade, terms in zip(cmd.trades, terms_of, strict=True):
            spec = self._markets[trade.market].spec
            add_settlement(changes_by_key, spec, trade, terms, -1)
        changes = as_balance_changes(changes_by_key)
        short = first_shortfall(self.ledger, changes)
        if short is not None and not cmd.allow_debit:
            return [_rejected(cmd, _R.INSUFFICIENT_FUNDS, _shortfall_detail(short))]
        owed = apply_changes(self.ledger, changes)
        events: list[Event] = []
        for index, (trade, terms) in enumerate(zip(cmd.trades, terms_of, strict=True)):
            corrections.bust(trade.trade_id)
            events.append(TradeBusted(
                trade.market, trade.trade_id, terms.price, trade.qty, trade.taker_account,
                trade.maker_account, terms.taker_fee, terms.maker_fee,
                owed if index == len(cmd.trades) - 1 else [], cmd.actor, cmd.approver,
                cmd.reason, cmd.rule, cmd.incident_id,
            ))
        return events

    def _adjust_trade(self, seq: int, ts: int, command: Command) -> list[Event]:
        """Re-price one trade: settle the difference between its new and current terms."""
        cmd = _as(command, AdjustTrade)
        problem = self._correction_problem(cmd, cmd.trade)
        if problem is not None:
            return [_rejected(cmd, *problem)]
        trade = cmd.trade
        spec = self._markets[trade.market].spec
        old = self._corrections.terms(trade)
        if not 0 < cmd.price <= INT64_MAX or cmd.price == old.price:
            return [
                _rejected(
                    cmd, _R.INVALID_PRICE,
                    f"the new price must be a positive number of ticks other than the trade's "
                    f"current {old.price}, not {cmd.price}",
                )
            ]
        new = fees_at(spec, trade.qty, cmd.price)
        changes_by_key = settlement(spec, trade, new, 1)
        add_settlement(changes_by_key, spec, trade, old, -1)
        changes = as_balance_changes(changes_by_key)
        short = first_shortfall(self.ledger, changes)
        if short is not None and not cmd.allow_debit:
            return [_rejected(cmd, _R.INSUFFICIENT_FUNDS, _shortfall_detail(short))]
        owed = apply_changes(self.ledger, changes)
        self._corrections.adjust(trade.trade_id, new)
        return [
            TradeAdjusted(
                trade.market, trade.trade_id, old.price, new.price, trade.qty,
                trade.taker_account, trade.maker_account, new.taker_fee, new.maker_fee, owed,
                cmd.actor, cmd.approver, cmd.reason, cmd.rule, cmd.incident_id,
            )
        ]

    def _correction_problem(
        self, cmd: BustTrade | AdjustTrade | RollbackTo, trade: TradeFacts | None
    ) -> tuple[RejectReason, str] | None:
        """What is wrong with a correction before anything changes: four eyes, texts, and
        for a trade that it was issued, is not busted and matches its market's fee rates."""
        if not cmd.actor or not cmd.approver or cmd.actor == cmd.approver:
            return _R.FOUR_EYES_REQUIRED, (
                f"a correction needs a proposer and another person approving it; got proposer "
                f"{cmd.actor!r} and approver {cmd.approver!r}"
            )
        for name, text in (("reason", cmd.reason), ("rule", cmd.rule)):
            if not 0 < len(text) <= CORRECTION_TEXT_LENGTH_MAX:
                return _R.INVALID_COMMAND, (
                    f"a correction's {name} must be 1 to {CORRECTION_TEXT_LENGTH_MAX} "
                    f"characters; name the {name} that allows it"
                )
        if trade is None:
            return None
        market = self._markets.get(trade.market)
        if market is None:
            return _R.UNKNOWN_MARKET, self._unknown_market(trade.market)
        if not 0 < trade.trade_id < self._next_trade_id:
            return _R.UNKNOWN_TRADE, (
                f"trade {trade.trade_id} was never issued (the venue's trades are 1 to "
                f"{self._next_trade_id - 1}); look the trade up with `haltguard trades review`"
            )
        if self._corrections.is_busted(trade.trade_id):
            return _R.ALREADY_BUSTED, f"trade {trade.trade_id} is busted already; nothing to do"
        printed = fees_at(market.spec, trade.qty, trade.price)
        if (
            trade.qty <= 0 or trade.price <= 0 or trade.taker_account < 0
            or trade.maker_account < 0
            or (printed.taker_fee, printed.maker_fee) != (trade.taker_fee, trade.maker_fee)
        ):
            return _R.INVALID_COMMAND, (
                f"the facts given for trade {trade.trade_id} do not fit {trade.market} "
                "(quantity, price, accounts or fees); read them from the journal"
            )
        return None

    def _rollback_to(self, seq: int, ts: int, command: Command) -> list[Event]:
        """Cancel every resting order placed after ``target_seq`` and bust every trade since,
        all or nothing; see :class:`RollbackTo`."""
        cmd = _as(command, RollbackTo)
        problem = self._correction_problem(cmd, None) or self._rollback_problem(cmd, seq)
        if problem is not None:
            return [_rejected(cmd, *problem)]
        chosen: list[tuple[_Market, RestingOrder]] = []
        released: dict[tuple[str, int], int] = {}
        for market in self._markets.values():
            for order_id in sorted(market.orders):
                if order_id > cmd.target_seq:
                    order = market.orders[order_id]
                    chosen.append((market, order))
                    asset = market.spec.quote if order.is_buy else market.spec.base
                    key = (asset, order.account)
                    released[key] = released.get(key, 0) + order.remaining * order.hold_per_lot
        short = first_shortfall(self.ledger, cmd.reversals, released)
        if short is not None and not cmd.allow_debit:
            return [_rejected(cmd, _R.INSUFFICIENT_FUNDS, _shortfall_detail(short))]
        events: list[Event] = []
        for market, order in chosen:
            self._take_off_book(market, order)
            events.append(
                OrderCancelled(market.symbol, order.order_id, order.account, order.remaining,
                               CancelReason.ROLLBACK)
            )
        for market in {market.symbol: market for market, _ in chosen}.values():
            if market.state is _AUCTION:
                events.append(self._indicative_event(market))
        corrections = self._corrections
        newly_busted = (cmd.last_trade_id - cmd.first_trade_id + 1) - corrections.busted_in(
            cmd.first_trade_id, cmd.last_trade_id
        )
        owed = apply_changes(self.ledger, cmd.reversals)
        corrections.bust_range(cmd.first_trade_id, cmd.last_trade_id)
        events.append(
            VenueRolledBack(
                cmd.target_seq, len(chosen), cmd.first_trade_id, cmd.last_trade_id,
                newly_busted, len({change.account for change in cmd.reversals}), owed,
                cmd.actor, cmd.approver, cmd.reason, cmd.rule, cmd.incident_id,
            )
        )
        return events

    def _rollback_problem(self, cmd: RollbackTo, seq: int) -> tuple[RejectReason, str] | None:
        if not 0 < cmd.target_seq < seq:
            return _R.INVALID_COMMAND, (
                f"the rollback target must be a seq from 1 to {seq - 1} (the last command "
                f"before the rollback), not {cmd.target_seq}"
            )
        if (cmd.last_trade_id, cmd.corrections_seen) != (
            self._next_trade_id - 1, self._corrections.count
        ):
            return _R.STALE_PLAN, (
                f"the plan saw trades up to {cmd.last_trade_id} and "
                f"{cmd.corrections_seen} corrections; the venue is at "
                f"{self._next_trade_id - 1} and {self._corrections.count}: plan again "
                "(halt the markets first so the plan stays current)"
            )
        if not 0 < cmd.first_trade_id <= cmd.last_trade_id + 1:
            return _R.INVALID_COMMAND, (
                f"the first trade to bust ({cmd.first_trade_id}) must be from 1 to "
                f"{cmd.last_trade_id + 1}"
            )
        if len(cmd.reversals) > ROLLBACK_REVERSALS_MAX:
            return _R.INVALID_COMMAND, (
                f"{len(cmd.reversals)} balance changes are more than the "
                f"{ROLLBACK_REVERSALS_MAX} one rollback may carry; roll back to a later point"
            )
        for change in cmd.reversals:
            if change.asset not in self._assets or change.account < 0:
                return _R.INVALID_COMMAND, (
                    f"balance change of {change.asset} for account {change.account}: unknown "
                    "asset or negative account"
                )
        asset = unbalanced_asset(cmd.reversals)
        if asset is not None:
            return _R.INVALID_COMMAND, (
                f"the {asset} changes do not sum to zero: a rollback moves money between "
                "accounts and creates none; rebuild the plan from the journal"
            )
        return None

    def _add_asset(self, seq: int, ts: int, command: Command) -> list[Event]:
        cmd = _as(command, AddAsset)
        asset = cmd.asset
        if asset.code in self._assets:
            return [_rejected(cmd, _R.ALREADY_EXISTS, f"asset {asset.code} is already listed")]
        if not asset.code or not 0 <= asset.decimals <= ASSET_DECIMALS_MAX:
            return [
                _rejected(
                    cmd,
                    _R.INVALID_COMMAND,
                    f"an asset needs a code and 0 to {ASSET_DECIMALS_MAX} decimals",
                )
            ]
        self._assets[asset.code] = asset
        self.ledger.add_asset(asset.code)
        return [AssetAdded(asset.code, asset.decimals)]

    def _add_market(self, seq: int, ts: int, command: Command) -> list[Event]:
        cmd = _as(command, AddMarket)
        spec = cmd.spec
        problem = self._spec_problem(spec)
        if problem is not None:
            return [_rejected(cmd, *problem)]
        if self._kill_switch and cmd.state not in (_HALTED, _CLOSED):
            return [
                _rejected(
                    cmd,
                    _R.KILL_SWITCH_ENGAGED,
                    "the kill switch is engaged: list the market halted or closed",
                )
            ]
        self._markets[spec.symbol] = _Market(spec, cmd.state, self.ledger)
        return [MarketAdded(spec.symbol, cmd.state)]

    def _spec_problem(self, spec: MarketSpec) -> tuple[RejectReason, str] | None:
        if not spec.symbol:
            return _R.INVALID_COMMAND, "a market needs a symbol"
        if spec.symbol in self._markets:
            return _R.ALREADY_EXISTS, f"market {spec.symbol} is already listed"
        for code in (spec.base, spec.quote):
            if code not in self._assets:
                return _R.UNKNOWN_ASSET, f"asset {code!r} is not listed; add it first"
        if spec.base == spec.quote:
            return _R.INVALID_COMMAND, "base and quote must be different assets"
        if spec.quote_per_tick_lot < 1 or spec.base_per_lot < 1:
            return _R.INVALID_COMMAND, "quote_per_tick_lot and base_per_lot must be at least 1"
        if not 1 <= spec.min_qty <= spec.max_qty <= INT64_MAX:
            return _R.INVALID_COMMAND, "sizes must satisfy 1 <= min_qty <= max_qty"
        if not 0 <= spec.maker_fee_bps <= 1_000 or not 0 <= spec.taker_fee_bps <= 1_000:
            return _R.INVALID_COMMAND, "fees must be between 0 and 1000 basis points"
        if spec.breaker is not None:
            try:
                BreakerState(spec.breaker)
            except BreakerConfigError as error:
                return _R.INVALID_COMMAND, f"breaker: {error}"
        return None

    # --- market states -------------------------------------------------------------------

    def _set_market_state(self, seq: int, ts: int, command: Command) -> list[Event]:
        cmd = _as(command, SetMarketState)
        market = self._markets.get(cmd.market)
        if market is None:
            return [_rejected(cmd, _R.UNKNOWN_MARKET, self._unknown_market(cmd.market))]
        new = cmd.state
        if self._kill_switch and new not in (_HALTED, _CLOSED):
            return [
                _rejected(
                    cmd,
                    _R.KILL_SWITCH_ENGAGED,
                    "the kill switch is engaged: release it first (markets stay halted until "
                    "each is resumed)",
                )
            ]
        if cmd.auction_ns < 0 or (cmd.auction_ns and new is not _AUCTION):
            return [
                _rejected(
                    cmd,
                    _R.INVALID_COMMAND,
                    "auction_ns is a positive length and only applies to the auction state",
                )
            ]
        problem = check_transition(market.state, new, book_crossed=market.crossed())
        if problem is not None:
            return [_rejected(cmd, _R.ILLEGAL_TRANSITION, problem)]
        events: list[Event] = []
        self._end_plan(market, events, False, cmd.actor, cmd.reason)
        until = ts + cmd.auction_ns if cmd.auction_ns else 0
        market.after_auction = _OPEN
        self._change_state(
            market, events, ts, new, cmd.actor, cmd.reason, cmd.incident_id,
            cmd.cancels_allowed, until,
        )
        return events

    def _change_state(  # noqa: PLR0917 - hot or internal: positional on purpose
        self,
        market: _Market,
        events: list[Event],
        ts: int,
        new: MarketState,
        actor: str,
        reason: str,
        incident_id: str,
        cancels_allowed: bool,
        until_ts: int,
    ) -> None:
        """Move a market to ``new``, uncrossing first when that ends an auction."""
        old = market.state
        if uncrosses_on_exit(old, new):
            self._run_uncross(market, events, ts)
        market.state = new
        market.cancels_allowed = cancels_allowed if new is _HALTED else True
        market.until_ts = until_ts if new is _AUCTION else 0
        events.append(
            MarketStateChanged(
                market.symbol, old, new, actor, reason, incident_id, market.cancels_allowed,
                market.until_ts,
            )
        )

    def _kill_switch_command(self, seq: int, ts: int, command: Command) -> list[Event]:
        cmd = _as(command, KillSwitch)
        if not cmd.engaged and not self._kill_switch:
            return [_rejected(cmd, _R.INVALID_COMMAND, "the kill switch is not engaged")]
        self._kill_switch = cmd.engaged
        events: list[Event] = [
            KillSwitchChanged(cmd.engaged, cmd.actor, cmd.reason, cmd.incident_id)
        ]
        if cmd.engaged:
            for symbol in sorted(self._markets):
                market = self._markets[symbol]
                if market.state is _HALTED or market.state is _CLOSED:
                    continue
                self._end_plan(market, events, False, cmd.actor, cmd.reason)
                self._change_state(
                    market, events, ts, _HALTED, cmd.actor, cmd.reason, cmd.incident_id, True, 0
                )
        return events

    def _uncross_command(self, seq: int, ts: int, command: Command) -> list[Event]:
        cmd = _as(command, Uncross)
        market = self._markets.get(cmd.market)
        if market is None:
            return [_rejected(cmd, _R.UNKNOWN_MARKET, self._unknown_market(cmd.market))]
        if market.state is not _AUCTION:
            return [
                _rejected(
                    cmd, _R.NO_AUCTION, f"{market.symbol} is {market.state.value}, not in auction"
                )
            ]
        if market.plan is not None:
            return [
                _rejected(
                    cmd,
                    _R.INVALID_COMMAND,
                    "a resume plan runs this auction; abort the plan first to end it by hand",
                )
            ]
        events: list[Event] = []
        self._change_state(
            market, events, ts, market.after_auction, cmd.actor, cmd.reason, cmd.incident_id,
            True, 0,
        )
        return events

    def _configure_breaker(self, seq: int, ts: int, command: Command) -> list[Event]:
        """Replace the breaker. The market's spec carries the new config from now on, so
        everything that reads the spec (listings, the HTTP API, snapshots) shows it."""
        cmd = _as(command, ConfigureBreaker)
        market = self._markets.get(cmd.market)
        if market is None:
            return [_rejected(cmd, _R.UNKNOWN_MARKET, self._unknown_market(cmd.market))]
        try:
            breaker = None if cmd.breaker is None else BreakerState(cmd.breaker)
        except BreakerConfigError as error:
            return [_rejected(cmd, _R.INVALID_COMMAND, f"breaker: {error}")]
        market.breaker = breaker
        market.spec = msgspec.structs.replace(market.spec, breaker=cmd.breaker)
        return [BreakerConfigured(market.symbol, breaker is not None, cmd.actor, cmd.reason)]

    # --- resume plans --------------------------------------------------------------------

    def _start_resume_plan(self, seq: int, ts: int, command: Command) -> list[Event]:
        cmd = _as(command, StartResumePlan)
        market = self._markets.get(cmd.market)
        if market is None:
            return [_rejected(cmd, _R.UNKNOWN_MARKET, self._unknown_market(cmd.market))]
        if self._kill_switch:
            return [
                _rejected(cmd, _R.KILL_SWITCH_ENGAGED, "release the kill switch before resuming")
            ]
        if market.plan is not None:
            return [
                _rejected(
                    cmd, _R.INVALID_COMMAND, "a resume plan is already running; abort it first"
                )
            ]
        try:
            plan, changes = ResumePlan.start(
                market.state, cmd.phases, ts, book_crossed=market.crossed()
            )
        except ResumePlanError as error:
            return [_rejected(cmd, _R.ILLEGAL_TRANSITION, str(error))]
        events: list[Event] = [
            ResumePlanStarted(
                market.symbol,
                [phase.state.value for phase in cmd.phases],
                cmd.actor,
                cmd.reason,
                cmd.incident_id,
            )
        ]
        market.plan = plan
        market.plan_actor, market.plan_reason = cmd.actor, cmd.reason
        market.plan_incident_id = cmd.incident_id
        self._apply_phase_changes(market, events, ts, changes)
        return events

    def _apply_phase_changes(
        self, market: _Market, events: list[Event], ts: int, changes: list[PhaseChange]
    ) -> None:
        plan = market.plan
        assert plan is not None
        for change in changes:
            self._change_state(
                market, events, ts, change.new, market.plan_actor,
                f"resume plan phase {change.index + 1}: {market.plan_reason}",
                market.plan_incident_id, True, 0,
            )
            events.append(
                ResumePhaseEntered(market.symbol, change.index, change.new, change.earliest_next_ts)
            )
        if plan.done:
            self._end_plan(market, events, True, market.plan_actor, market.plan_reason)

    def _abort_resume_plan(self, seq: int, ts: int, command: Command) -> list[Event]:
        cmd = _as(command, AbortResumePlan)
        market = self._markets.get(cmd.market)
        if market is None:
            return [_rejected(cmd, _R.UNKNOWN_MARKET, self._unknown_market(cmd.market))]
        if market.plan is None:
            return [_rejected(cmd, _R.INVALID_COMMAND, f"{market.symbol} has no resume plan")]
        events: list[Event] = []
        self._end_plan(market, events, False, cmd.actor, cmd.reason)
        return events

    def _end_plan(
        self, market: _Market, events: list[Event], completed: bool, actor: str, reason: str
    ) -> None:
        if market.plan is None:
            return
        market.plan = None
        market.plan_actor = market.plan_reason = market.plan_incident_id = ""
        events.append(ResumePlanEnded(market.symbol, completed, actor, reason))

    # --- time ---------------------------------------------------------------------------

    def _heartbeat(self, seq: int, ts: int, command: Command) -> list[Event]:
        return []

    def _advance_time(self, ts: int) -> list[Event]:
        """Run every deadline due by ``ts``, market by market in symbol order."""
        events: list[Event] = []
        for symbol in sorted(self._markets):
            market = self._markets[symbol]
            if market.next_deadline() > ts:
                continue
            if market.breaker is not None and market.state in _TRADING_STATES:
                trip = market.breaker.expire(ts)
                if trip is not None:
                    self._trip(market, events, ts, trip)
            if market.until_ts and ts >= market.until_ts and market.state is _AUCTION:
                self._change_state(
                    market, events, ts, market.after_auction, VENUE_ACTOR,
                    "the auction's collection period ended", "", True, 0,
                )
            plan = market.plan
            if plan is not None:
                changes = plan.advance(ts)
                if changes:
                    self._apply_phase_changes(market, events, ts, changes)
        self._refresh_deadline()
        return events

    def _refresh_deadline(self) -> None:
        deadline = NO_DEADLINE
        for market in self._markets.values():
            deadline = min(deadline, market.next_deadline())
        self._next_deadline = deadline

    def next_deadline_ts(self) -> int | None:
        """The earliest ``ts`` at which a Heartbeat would change something, or None."""
        self._refresh_deadline()
        return None if self._next_deadline == NO_DEADLINE else self._next_deadline

    # --- auctions ------------------------------------------------------------------------

    def _indicative(self, market: _Market) -> UncrossResult:
        return indicative(
            _price_levels(market.bids), _price_levels(market.asks), market.last_price or None
        )

    def _indicative_event(self, market: _Market) -> IndicativeUncross:
        result = self._indicative(market)
        return IndicativeUncross(market.symbol, result.price, result.volume, result.imbalance)

    def _run_uncross(self, market: _Market, events: list[Event], ts: int) -> None:
        """Match everything that crosses at the single uncross price (see auction.py)."""
        result = uncross(
            _price_levels(market.bids), _price_levels(market.asks), market.last_price or None
        )
        fills = allocate(_priority_orders(market.bids), _priority_orders(market.asks), result)
        orders = market.orders
        per_tick_lot, base_per_lot = market.quote_per_tick_lot, market.base_per_lot
        for fill in fills:
            buy, sell = orders[fill.buy_order_id], orders[fill.sell_order_id]
            notional = fill.price * fill.qty * per_tick_lot
            taker_is_buy = fill.taker_side is _BUY
            buy_bps = market.taker_bps if taker_is_buy else market.maker_bps
            sell_bps = market.maker_bps if taker_is_buy else market.taker_bps
            buy_fee = notional * buy_bps // BPS_PER_UNIT
            sell_fee = notional * sell_bps // BPS_PER_UNIT
            release = fill.qty * buy.hold_per_lot
            buy.hold_row[1] -= release
            buy.hold_row[0] += release - notional - buy_fee
            _receive_row(market.base_rows, buy.account)[0] += fill.qty * base_per_lot
            sell.hold_row[1] -= fill.qty * base_per_lot
            _receive_row(market.quote_rows, sell.account)[0] += notional - sell_fee
            market.fee_row[0] += buy_fee + sell_fee
            taker, maker = (buy, sell) if taker_is_buy else (sell, buy)
            events.append(
                Trade(
                    market.symbol, self._next_trade_id, fill.price, fill.qty, fill.taker_side,
                    taker.order_id, taker.account, maker.order_id, maker.account,
                    buy_fee if taker_is_buy else sell_fee, sell_fee if taker_is_buy else buy_fee,
                )
            )
            self._next_trade_id += 1
            for order in (buy, sell):
                order.remaining -= fill.qty
                assert order.level is not None
                order.level.qty -= fill.qty
                if order.remaining == 0:
                    order.remaining = 0
                    market.book.remove(order)
                    if order.client_order_id:
                        self._finish_client_id(order.account, order.client_order_id, order.order_id)
        if result.volume:
            market.last_price = result.price
        if market.breaker is not None:
            market.breaker.record_uncross(result.price, result.volume, ts)
        events.append(AuctionUncrossed(market.symbol, result.price, result.volume))

    # --- rejections with details ---------------------------------------------------------

    def _unknown_market(self, symbol: str) -> str:
        listed = ", ".join(sorted(self._markets)) or "none"
        return f"market {symbol!r} is not listed; listed markets: {listed}"

    def _size_rejected(self, cmd: PlaceOrder, market: _Market) -> OrderRejected:
        if cmd.qty <= 0:
            return _order_rejected(
                cmd, _R.INVALID_QUANTITY, f"quantity must be positive lots, not {cmd.qty}"
            )
        if cmd.qty < market.min_qty:
            return _order_rejected(
                cmd,
                _R.BELOW_MIN_SIZE,
                f"{cmd.qty} lots is below {market.symbol}'s minimum of {market.min_qty} lots",
            )
        return _order_rejected(
            cmd,
            _R.ABOVE_MAX_SIZE,
            f"{cmd.qty} lots is above {market.symbol}'s maximum of {market.max_qty} lots",
        )

    def _funds_rejected(
        self, cmd: PlaceOrder, market: _Market, is_buy: bool, need: int, row: list[int] | None
    ) -> OrderRejected:
        if not self.ledger.holds_anything(cmd.account):
            return _order_rejected(cmd, _R.UNKNOWN_ACCOUNT, _unknown_account(cmd.account))
        asset = market.spec.quote if is_buy else market.spec.base
        available = 0 if row is None else row[0]
        return _order_rejected(
            cmd,
            _R.INSUFFICIENT_FUNDS,
            f"the order needs {need} {asset} minor units available, the account has "
            f"{available}; deposit or cancel orders first",
        )

    # --- reading -------------------------------------------------------------------------

    @property
    def markets(self) -> dict[str, MarketSpec]:
        """Every market's spec as it is now (its ``breaker`` is the one in force)."""
        return {symbol: market.spec for symbol, market in self._markets.items()}

    @property
    def assets(self) -> dict[str, Asset]:
        return dict(self._assets)

    @property
    def kill_switch_engaged(self) -> bool:
        return self._kill_switch

    @property
    def frozen_assets(self) -> frozenset[str]:
        return frozenset(self._frozen_assets)

    @property
    def frozen_accounts(self) -> frozenset[int]:
        return frozenset(self._frozen_accounts)

    @property
    def next_trade_id(self) -> int:
        """The id the next trade gets: every trade so far is below it."""
        return self._next_trade_id

    @property
    def corrections(self) -> TradeCorrections:
        """Busted and re-priced trades (read it; only commands change it)."""
        return self._corrections

    def owed(self, account: int) -> dict[str, int]:
        """What ``account`` owes after corrections that allowed a debit, per asset."""
        return self.ledger.owed_by(account)

    def _market(self, symbol: str) -> _Market:
        market = self._markets.get(symbol)
        if market is None:
            raise KeyError(self._unknown_market(symbol))
        return market

    def market_state(self, symbol: str) -> MarketStatus:
        market = self._market(symbol)
        return MarketStatus(
            market=symbol,
            state=market.state,
            cancels_allowed=market.cancels_allowed,
            until_ts=market.until_ts,
            resume_phase=-1 if market.plan is None else market.plan.index,
            kill_switch=self._kill_switch,
        )

    def market_states(self) -> dict[str, MarketState]:
        return {symbol: market.state for symbol, market in self._markets.items()}

    def last_trade_price(self, symbol: str) -> int | None:
        """The price (ticks) of the market's last trade, or None before its first: the
        reference price at a moment that compensation for a refused order starts from."""
        return self._market(symbol).last_price or None

    def depth(self, symbol: str, levels: int = 10) -> Depth:
        """Aggregated L2 depth, at most ``levels`` per side, best first."""
        market = self._market(symbol)
        count = max(0, levels)
        return Depth(
            market=symbol,
            bids=[DepthLevel(lv.price, lv.qty, lv.count) for lv in market.bids.top_levels(count)],
            asks=[DepthLevel(lv.price, lv.qty, lv.count) for lv in market.asks.top_levels(count)],
        )

    def credited_line_ranges(self, run_id: int) -> list[tuple[int, int]]:
        """The line numbers of compensation run ``run_id`` already credited, as ascending
        inclusive ranges: a payout paid in order is a handful of ranges, however long."""
        low = run_id << LINE_NO_BITS
        high = low + LINE_NO_MAX
        ranges: list[tuple[int, int]] = []
        for reference in sorted(r for r in self._credited if low <= r <= high):
            line_no = reference - low
            if ranges and ranges[-1][1] == line_no - 1:
                ranges[-1] = (ranges[-1][0], line_no)
            else:
                ranges.append((line_no, line_no))
        return ranges

    def balances(self, account: int) -> dict[str, tuple[int, int]]:
        """``asset -> (available, held)`` for every asset the account holds any of."""
        return self.ledger.balances(account)

    def open_orders(self, account: int, market: str | None = None) -> list[OrderView]:
        """The account's resting orders, oldest first."""
        symbols = [market] if market is not None else sorted(self._markets)
        views: list[OrderView] = []
        for symbol in symbols:
            views.extend(
                _view(symbol, order)
                for order in self._market(symbol).orders.values()
                if order.account == account
            )
        views.sort(key=lambda view: view.order_id)
        return views

    def resting_orders(self, market: str) -> list[OrderView]:
        """Every resting order of ``market``, oldest first (impact analysis lists whose
        orders a halt caught)."""
        views = [_view(market, order) for order in self._market(market).orders.values()]
        views.sort(key=lambda view: view.order_id)
        return views

    def holdings(self, asset: str) -> dict[int, tuple[int, int]]:
        """``account -> (available, held)`` of every account holding any of ``asset``
        (cut-off balances for compensation); ``KeyError`` for an unknown asset."""
        return {
            account: (row[0], row[1])
            for account, row in self.ledger.rows[asset].items()
            if row[0] or row[1]
        }

    def order(self, market: str, order_id: int) -> OrderView | None:
        order = self._market(market).orders.get(order_id)
        return None if order is None else _view(market, order)

    def indicative_uncross(self, symbol: str) -> UncrossResult:
        """Where the market's book would uncross now (price 0 when nothing crosses)."""
        return self._indicative(self._market(symbol))

    # --- state -------------------------------------------------------------------------

    def export_state(self) -> VenueState:
        ledger = self.ledger
        balances = [
            BalanceEntry(asset, account, row[0], row[1])
            for asset in self._assets
            for account, row in sorted(ledger.rows[asset].items())
            if row[0] or row[1]
        ]
        resting_terms: list[ClientOrderTermsEntry] = []
        markets = [
            self._export_market(market, resting_terms) for market in self._markets.values()
        ]
        return VenueState(
            version=STATE_VERSION,
            last_seq=self.last_seq,
            last_ts=self.last_ts,
            next_trade_id=self._next_trade_id,
            kill_switch=self._kill_switch,
            assets=list(self._assets.values()),
            frozen_assets=sorted(self._frozen_assets),
            totals=[
                AssetTotals(asset, ledger.deposited[asset], ledger.withdrawn[asset])
                for asset in self._assets
            ],
            balances=balances,
            markets=markets,
            finished_client_order_ids=[
                ClientOrderIdEntry(
                    account, client_id, self._finished_client_ids[(account, client_id)]
                )
                for account, client_id in self._finished_client_order
            ],
            client_order_terms=[
                ClientOrderTermsEntry(account, client_id, terms)
                for account, client_id in self._finished_client_order
                if (terms := self._client_terms.get((account, client_id))) is not None
            ] + resting_terms,
            credited_references=sorted(self._credited),
            frozen_accounts=sorted(self._frozen_accounts),
            corrections=self._corrections.export(
                [
                    BalanceChange(asset, account, amount)
                    for asset in self._assets
                    for account, amount in sorted(ledger.owed.get(asset, {}).items())
                ]
            ),
        )

    def _export_market(
        self, market: _Market, terms_out: list[ClientOrderTermsEntry]
    ) -> MarketEntry:
        """The market's entry; the terms of its resting orders' client ids go to
        ``terms_out``, in queue position."""
        orders = [
            OrderEntry(
                o.order_id, o.account, o.is_buy, o.price, o.qty, o.remaining, o.client_order_id
            )
            for o in market.book.in_priority_order()
        ]
        kept = self._client_terms
        for o in orders:
            if o.client_order_id:
                terms = kept.get((o.account, o.client_order_id))
                if terms is not None:
                    terms_out.append(ClientOrderTermsEntry(o.account, o.client_order_id, terms))
        plan = market.plan
        return MarketEntry(
            spec=market.spec,
            state=market.state,
            cancels_allowed=market.cancels_allowed,
            until_ts=market.until_ts,
            after_auction=market.after_auction,
            last_price=market.last_price,
            orders=orders,
            breaker=None if market.breaker is None else market.breaker.export(),
            resume_plan=None if plan is None else plan.export(),
            plan_actor=market.plan_actor,
            plan_reason=market.plan_reason,
            plan_incident_id=market.plan_incident_id,
        )

    @classmethod
    def restore(cls, state: VenueState) -> Venue:
        """Rebuild a venue from :meth:`export_state`, queue positions included."""
        if state.version != STATE_VERSION:
            raise ValueError(
                f"venue state version {state.version} is not {STATE_VERSION}; restore it with "
                "the haltguard release that wrote it"
            )
        venue = cls()
        venue.last_seq, venue.last_ts = state.last_seq, state.last_ts
        venue._next_trade_id = state.next_trade_id
        venue._kill_switch = state.kill_switch
        ledger = venue.ledger
        for asset in state.assets:
            venue._assets[asset.code] = asset
            ledger.add_asset(asset.code)
        venue._frozen_assets = set(state.frozen_assets)
        for totals in state.totals:
            ledger.deposited[totals.asset] = totals.deposited
            ledger.withdrawn[totals.asset] = totals.withdrawn
        for entry in state.balances:
            ledger.rows[entry.asset][entry.account] = [entry.available, entry.held]
        for market_entry in state.markets:
            venue._restore_market(market_entry)
        for item in state.finished_client_order_ids:
            key = (item.account, item.client_order_id)
            venue._finished_client_ids[key] = item.order_id
            venue._finished_client_order.append(key)
        for kept in state.client_order_terms:
            venue._client_terms[(kept.account, kept.client_order_id)] = kept.terms
        venue._credited = set(state.credited_references)
        venue._frozen_accounts = set(state.frozen_accounts)
        if state.corrections is not None:
            venue._corrections.restore(state.corrections)
            for debt in state.corrections.owed:
                ledger.owed.setdefault(debt.asset, {})[debt.account] = debt.amount
        venue._refresh_deadline()
        return venue

    def _restore_market(self, entry: MarketEntry) -> None:
        market = _Market(entry.spec, entry.state, self.ledger)
        market.cancels_allowed = entry.cancels_allowed
        market.until_ts = entry.until_ts
        market.after_auction = entry.after_auction
        market.last_price = entry.last_price
        market.breaker = None if entry.breaker is None else BreakerState.restore(entry.breaker)
        if entry.resume_plan is not None:
            market.plan = ResumePlan.restore(entry.resume_plan)
        market.plan_actor, market.plan_reason = entry.plan_actor, entry.plan_reason
        market.plan_incident_id = entry.plan_incident_id
        # A deep book is hundreds of thousands of orders: look up each hold per lot once
        # per price, and each ledger row through its asset's dictionary.
        holds: dict[tuple[bool, int], int] = {}
        rows = {True: market.quote_rows, False: market.base_rows}
        add = market.book.add
        for o in entry.orders:
            key = (o.is_buy, o.price)
            hold_per_lot = holds.get(key)
            if hold_per_lot is None:
                hold_per_lot = holds[key] = market.hold_per_lot(o.is_buy, o.price)
            hold_row = _receive_row(rows[o.is_buy], o.account)
            add(RestingOrder(
                o.order_id, o.account, o.is_buy, o.price, o.qty, o.remaining, o.client_order_id,
                hold_per_lot, hold_row,
            ))
            if o.client_order_id:
                self._live_client_ids[(o.account, o.client_order_id)] = o.order_id
        self._markets[entry.spec.symbol] = market

    def state_hash(self) -> str:
        """blake2b over the canonical encoding of :meth:`export_state`.

        Two venues with the same hash hold the same books, balances, states and counters,
        and react identically to any future command.
        """
        return hash_state(self.export_state())

    def check_invariants(self) -> list[str]:
        """Every broken invariant, as sentences; empty when the venue is sound."""
        problems = self.ledger.check()
        expected_held: dict[tuple[str, int], int] = {}
        for market in self._markets.values():
            symbol = market.symbol
            problems.extend(f"{symbol}: {problem}" for problem in market.book.check())
            if market.state in _TRADING_STATES and market.crossed():
                problems.append(f"{symbol}: book is crossed while {market.state.value}")
            for order in market.orders.values():
                asset = market.spec.quote if order.is_buy else market.spec.base
                if order.hold_per_lot != market.hold_per_lot(order.is_buy, order.price):
                    problems.append(f"{symbol}: order {order.order_id} has a wrong hold per lot")
                if order.hold_row is not self.ledger.rows[asset].get(order.account):
                    problems.append(f"{symbol}: order {order.order_id} holds in a stray row")
                key = (asset, order.account)
                held = order.remaining * order.hold_per_lot
                expected_held[key] = expected_held.get(key, 0) + held
        for asset, rows in self.ledger.rows.items():
            for account, row in rows.items():
                if row[1] != expected_held.get((asset, account), 0):
                    problems.append(
                        f"{asset} account {account}: held {row[1]} but resting orders need "
                        f"{expected_held.get((asset, account), 0)}"
                    )
        for (account, client_id), order_id in self._live_client_ids.items():
            if not any(
                (live := m.orders.get(order_id)) is not None
                and live.account == account
                and live.client_order_id == client_id
                for m in self._markets.values()
            ):
                problems.append(f"client order id {client_id!r} points at no resting order")
        remembered = self._live_client_ids.keys() | self._finished_client_ids.keys()
        if not self._client_terms.keys() <= remembered:
            problems.append("terms are kept for a client order id that is not")
        return problems


# --- small helpers -------------------------------------------------------------------


def hash_state(state: VenueState) -> str:
    """:meth:`Venue.state_hash` of the venue that exported ``state`` (for callers that
    already hold the export, such as a snapshot writer)."""
    encoded = _STATE_ENCODER.encode(state)
    return hashlib.blake2b(encoded, digest_size=32).hexdigest()


def _affordable_lots(budget: int, unit: int, taker_bps: int, most: int) -> int:
    """The most lots (up to ``most``) whose notional plus fee fits in ``budget``."""
    lots = budget * BPS_PER_UNIT // (unit * (BPS_PER_UNIT + taker_bps))
    while lots < most:
        notional = (lots + 1) * unit
        if notional + notional * taker_bps // BPS_PER_UNIT > budget:
            break
        lots += 1
    return min(lots, most)


def _receive_row(rows: dict[int, list[int]], account: int) -> list[int]:
    """The account's row in ``rows``, created on first receipt."""
    try:
        return rows[account]
    except KeyError:
        row = rows[account] = [0, 0]
        return row


_TERM_NAMES = tuple(OrderTerms.__struct_fields__)


def _terms(cmd: PlaceOrder, symbol: str) -> OrderTerms:
    """The terms of a validated order; ``symbol`` is the market's own string (shared)."""
    return OrderTerms(
        symbol, cmd.side, cmd.order_type, cmd.tif, cmd.price, cmd.qty, cmd.post_only, cmd.stp
    )


def _terms_tuple(cmd: PlaceOrder) -> tuple[object, ...]:
    return (
        cmd.market, cmd.side, cmd.order_type, cmd.tif, cmd.price, cmd.qty, cmd.post_only, cmd.stp
    )


def _unknown_account(account: int) -> str:
    return (
        f"account {account} is unknown to the venue: it holds nothing in any asset (accounts "
        "exist by their balances); check the account number, or deposit to it first"
    )


def _order_rejected(cmd: PlaceOrder, reason: RejectReason, detail: str) -> OrderRejected:
    return OrderRejected(
        cmd.market, cmd.account, reason, detail, client_order_id=cmd.client_order_id
    )


def _cancel_rejected(cmd: CancelOrder, reason: RejectReason, detail: str) -> OrderRejected:
    return OrderRejected(
        cmd.market, cmd.account, reason, detail, cmd.order_id, cmd.client_order_id
    )


def _shortfall_detail(short: BalanceChange) -> str:
    return (
        f"the correction would take {short.amount} {short.asset} more than account "
        f"{short.account} has available; ask the account to fund it, or correct under a "
        "policy that allows a debit balance (it is then shown as owed)"
    )


def _rejected(cmd: Command, reason: RejectReason, detail: str) -> CommandRejected:
    return CommandRejected(type(cmd).__name__, reason, detail)


def _as(command: Command, kind: type[_T]) -> _T:
    assert type(command) is kind
    return command


def _view(symbol: str, order: RestingOrder) -> OrderView:
    return OrderView(
        symbol, order.order_id, order.account, order.side, order.price, order.qty,
        order.remaining, order.client_order_id,
    )
