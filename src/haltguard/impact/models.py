"""The shapes impact analysis answers with: the window asked about, the journal range read,
who was affected and why, the orders refused, the orders that could not be cancelled.

Plain dataclasses (FastAPI serves them as they are); every quantity and price is an integer
as the venue journals it (lots, ticks, minor units) with the market or asset named, so a
reader turns it into a decimal with the point-in-time state's market specs. The rows of the
lists (an account, a refused order ...) are plain slotted dataclasses, not frozen ones: a
halt of a deep market lists millions of them, and a frozen dataclass costs four times as
much to build. Codes (side, reason, state) are the venue's own string enums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from haltguard.common.units import NS_PER_S
from haltguard.venue.markets import MarketSpec


def iso_utc(ts_ns: int) -> str:
    """A journal timestamp (nanoseconds since the epoch) as ISO 8601 in UTC."""
    seconds, nanos = divmod(ts_ns, NS_PER_S)
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


@dataclass(frozen=True)
class JournalRange:
    """The records a data directory can answer for: from ``first_seq`` (the first record
    whose preceding state is known: seq 1, or the one after the oldest kept snapshot) to
    ``last_seq`` (the last durable one), with their timestamps."""

    first_seq: int
    last_seq: int
    first_ts_ns: int
    last_ts_ns: int

    def describe(self) -> str:
        return (
            f"seq {self.first_seq} to {self.last_seq} "
            f"({iso_utc(self.first_ts_ns)} to {iso_utc(self.last_ts_ns)})"
        )

    def describe_ja(self) -> str:
        return (
            f"シーケンス番号 {self.first_seq} から {self.last_seq} まで"
            f"({iso_utc(self.first_ts_ns)} から {iso_utc(self.last_ts_ns)} まで)"
        )


@dataclass(frozen=True)
class ImpactWindow:
    """What to analyse: a seq range or a time range (nanoseconds since the epoch, both ends
    included), never both; an end left out is the journal's. ``markets`` and ``assets``
    narrow orders and withdrawals to those named (empty: all)."""

    from_seq: int | None = None
    to_seq: int | None = None
    from_ts_ns: int | None = None
    to_ts_ns: int | None = None
    markets: frozenset[str] = frozenset()
    assets: frozenset[str] = frozenset()


class AffectReason(StrEnum):
    """Why an account is on the affected list (one account may have several)."""

    RESTING_ORDER_IN_HALTED_MARKET = "resting_order_in_halted_market"
    ORDER_REFUSED = "order_refused"
    CANCEL_REFUSED = "cancel_refused"
    WITHDRAWAL_REFUSED = "withdrawal_refused"
    ORDERS_CANCELLED_BY_EXCHANGE = "orders_cancelled_by_exchange"
    TRADE_BUSTED = "trade_busted"


AFFECT_REASON_TEXT: dict[AffectReason, tuple[str, str]] = {
    AffectReason.RESTING_ORDER_IN_HALTED_MARKET: (
        "had a resting order in a market while it could not trade",
        "取引できない状態の市場に注文が残っていた",
    ),
    AffectReason.ORDER_REFUSED: (
        "an order was refused because of the market's state or the kill switch",
        "市場の状態またはキルスイッチにより注文が受け付けられなかった",
    ),
    AffectReason.CANCEL_REFUSED: (
        "a cancel was refused because of the market's state",
        "市場の状態により注文の取消が受け付けられなかった",
    ),
    AffectReason.WITHDRAWAL_REFUSED: (
        "a withdrawal was refused because withdrawals were frozen",
        "出金停止により出金が受け付けられなかった",
    ),
    AffectReason.ORDERS_CANCELLED_BY_EXCHANGE: (
        "resting orders were cancelled by the exchange (mass cancel)",
        "取引所による一括取消で注文が取り消された",
    ),
    AffectReason.TRADE_BUSTED: (
        "a trade was busted or re-priced",
        "約定の取消または価格訂正があった",
    ),
}


@dataclass(slots=True)
class AffectedAccount:
    account: int
    reasons: tuple[AffectReason, ...]
    orders_refused: int
    cancels_refused: int
    withdrawals_refused: int
    resting_orders_caught: int
    first_seq: int  # the first record that put the account on the list


@dataclass(slots=True)
class RefusedOrder:
    """An order the venue refused for the market's state, the kill switch or a freeze."""

    seq: int
    ts_ns: int
    account: int
    market: str
    side: str
    order_type: str
    qty_lots: int
    price_ticks: int  # 0 for a market order
    reason: str  # the venue's reject reason code
    client_order_id: str


@dataclass(slots=True)
class UncancellableOrder:
    """A resting order whose cancel the venue refused for the market's state."""

    seq: int  # the refused cancel
    ts_ns: int
    account: int
    market: str
    order_id: int  # 0 when the cancel named only an unknown client order id
    side: str
    price_ticks: int
    remaining_lots: int
    reason: str


@dataclass(slots=True)
class RefusedWithdrawal:
    seq: int
    ts_ns: int
    account: int
    asset: str
    amount_minor: int
    reason: str


@dataclass(slots=True)
class CaughtOrder:
    """A resting order in a market that entered a state where it could not trade."""

    seq: int  # the record that restricted the market (or the window's first record)
    ts_ns: int
    account: int
    market: str
    order_id: int
    side: str
    price_ticks: int
    remaining_lots: int
    market_state: str


@dataclass(slots=True)
class StateChange:
    """A brake pulled or released in the window, as the venue journaled it."""

    seq: int
    ts_ns: int
    market: str  # "" for the kill switch or a withdrawal freeze
    change: str  # "halted", "open", "kill_switch_engaged", "withdrawals_frozen:BTC" ...
    actor: str
    reason: str
    incident_id: str


@dataclass(frozen=True)
class ImpactCounts:
    affected_accounts: int
    orders_refused: int
    cancels_refused: int
    withdrawals_refused: int
    resting_orders_caught: int
    orders_cancelled_by_exchange: int
    trades_busted: int
    by_reason: dict[str, int]  # affected accounts per AffectReason
    refused_by_code: dict[str, int]  # refused orders, cancels and withdrawals per reject code


@dataclass(frozen=True)
class LoadSheddingNote:
    """Refusals that never reached the venue: the gateway sheds load before a command is
    sequenced, so the journal cannot count them."""

    in_journal: bool
    count: int | None
    note_en: str
    note_ja: str


LOAD_SHEDDING_NOT_IN_JOURNAL = LoadSheddingNote(
    in_journal=False,
    count=None,
    note_en=(
        "Requests refused by load shedding (HTTP 429/503) never reach the venue, so the journal "
        "does not hold them and they are not counted here; the gateway's metrics and the "
        "incident timeline (load signals) are where they show."
    ),
    note_ja=(
        "負荷制御(HTTP 429/503)で拒否したリクエストは取引システムに届かないため記録(ジャーナル)に"
        "含まれず、ここでは数えていません。ゲートウェイの計測値とインシデントのタイムライン"
        "(負荷シグナル)を参照してください。"
    ),
)


@dataclass(frozen=True)
class ImpactReport:
    """Everything the journal says about who an interruption hurt, and where it says it."""

    window: ImpactWindow
    journal: JournalRange  # the records read: first and last seq and times of the window
    counts: ImpactCounts
    affected: list[AffectedAccount]
    refused_orders: list[RefusedOrder]
    uncancellable_orders: list[UncancellableOrder]
    refused_withdrawals: list[RefusedWithdrawal]
    caught_orders: list[CaughtOrder]
    state_changes: list[StateChange]
    load_shedding: LoadSheddingNote = LOAD_SHEDDING_NOT_IN_JOURNAL
    trade_busts_note: str = (
        "The venue has no command that busts or re-prices a trade, so none can appear."
    )
    incident_ref: str = ""
    markets: tuple[str, ...] = field(default_factory=tuple)  # the markets looked at ((): all)


def to_ns(moment: datetime) -> int:
    """An aware datetime as nanoseconds since the epoch (exact to the microsecond)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1_000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time_ns(text: str) -> int:
    """An ISO 8601 time (``2026-01-01T09:00:00+09:00``; without a zone, UTC) as nanoseconds
    since the epoch; ``ValueError`` saying what is accepted."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 time; write e.g. 2026-01-01T09:00:00+09:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_ns(moment)


@dataclass(frozen=True)
class ImpactFigures:
    """What the incident page and the reports fill in, and where it comes from."""

    affected_accounts: int
    orders_refused: int
    cancels_refused: int
    withdrawals_refused: int
    journal: JournalRange
    csv_path: str  # the API path of the affected accounts as CSV


# --- one read of the journal for a compensation run ------------------------------------------


@dataclass(frozen=True)
class MarketVwapRequest:
    """The venue's own market as a reference price: its trades in ``[from_ts_ns, to_ts_ns)``
    (half-open, as a trades CSV's window is), named ``name`` for the policies."""

    name: str
    market: str
    from_ts_ns: int
    to_ts_ns: int


@dataclass(frozen=True)
class FactsRequest:
    """What one read of the journal gathers besides the impact of ``window``: the balances
    of ``holdings_assets`` at a cut-off (a seq or a time, exactly one), each refused order's
    prices, the fees paid in the window, and VWAPs of the venue's own markets."""

    window: ImpactWindow
    cutoff_seq: int | None = None
    cutoff_ts_ns: int | None = None
    holdings_assets: frozenset[str] = frozenset()
    refused_order_prices: bool = False
    fees: bool = False
    vwaps: tuple[MarketVwapRequest, ...] = ()
    caught_order_rows: bool = True
    """False: the report counts caught resting orders but does not list them."""


@dataclass(frozen=True)
class CutOffState:
    """Balances at the cut-off, as the venue held them after record ``seq``."""

    seq: int
    ts_ns: int
    asset_decimals: dict[str, int]
    """asset -> decimals of its minor unit (``amount = minor / 10**decimals``)."""
    holdings: dict[str, dict[int, int]]
    """asset -> account -> available plus locked, minor units (the assets asked for that the
    venue listed at the cut-off)."""


@dataclass(slots=True)
class RefusedOrderPrices:
    """A refused order and the two prices its loss is valued at, both in ticks of its market:
    the last trade at or before the refusal, and the first trade after it (the market trades
    again only once it is back in a trading state). ``None`` where the journal has no such
    trade."""

    order: RefusedOrder
    price_at_refusal_ticks: int | None
    price_at_reopen_ticks: int | None = None
    reopen_seq: int | None = None
    reopen_ts_ns: int | None = None


@dataclass(slots=True)
class FeesPaid:
    """The fees one account paid in one asset on trades in the window (taker and maker)."""

    account: int
    asset: str
    fees_minor: int
    trades: int


@dataclass(frozen=True)
class MarketVwap:
    """The sums a VWAP of the venue's own market is computed from: ``notional_ticks_lots`` is
    the sum of price (ticks) x quantity (lots) over ``trades`` trades of ``volume_lots``."""

    name: str
    market: str
    from_ts_ns: int
    to_ts_ns: int
    trades: int
    volume_lots: int
    notional_ticks_lots: int


@dataclass(frozen=True)
class JournalFacts:
    """Everything a compensation run reads from the journal, from one rebuild of the venue."""

    report: ImpactReport
    cutoff: CutOffState
    markets: dict[str, MarketSpec]
    """Every market's spec at the end of the read (to turn ticks and lots into decimals)."""
    refused_order_prices: list[RefusedOrderPrices]
    fees: list[FeesPaid]
    vwaps: dict[str, MarketVwap]
    read_through_seq: int
    """The last record read: past the window when a refused order's market reopened later."""
