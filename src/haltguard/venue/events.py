"""What the venue reports: the complete, ordered effect of each command.

The list of events the engine returns for one command is everything that command changed;
nothing about books, balances or states changes that is not in it. Consumers (incidents,
detection, the status page, compensation) pair them with the command's ``seq`` and ``ts``.
"""

from __future__ import annotations

from typing import Union

import msgspec

from haltguard.venue.commands import BalanceChange
from haltguard.venue.types import (
    CancelReason,
    MarketState,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)


class _Event(msgspec.Struct, frozen=True, tag_field="type", gc=False):
    pass


class OrderAccepted(_Event, frozen=True, tag="order_accepted"):
    market: str
    order_id: int
    account: int
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int
    qty: int
    client_order_id: str


class OrderRejected(_Event, frozen=True, tag="order_rejected"):
    market: str
    account: int
    reason: RejectReason
    detail: str
    order_id: int = 0
    client_order_id: str = ""


class OrderRepeated(_Event, frozen=True, tag="order_repeated"):
    """A submit repeated a client order id already used: nothing new was placed."""

    market: str
    account: int
    client_order_id: str
    order_id: int


class Trade(_Event, frozen=True, tag="trade"):
    """A fill, at the maker's price. Fees are in quote minor units."""

    market: str
    trade_id: int
    price: int
    qty: int
    taker_side: Side
    taker_order_id: int
    taker_account: int
    maker_order_id: int
    maker_account: int
    taker_fee: int
    maker_fee: int


class OrderCancelled(_Event, frozen=True, tag="order_cancelled"):
    market: str
    order_id: int
    account: int
    remaining: int
    reason: CancelReason


class Deposited(_Event, frozen=True, tag="deposited"):
    account: int
    asset: str
    amount: int
    reference: str


class Withdrawn(_Event, frozen=True, tag="withdrawn"):
    account: int
    asset: str
    amount: int
    destination: str
    reference: str


class CommandRejected(_Event, frozen=True, tag="command_rejected"):
    """A non-order command that changed nothing, and why (e.g. an illegal transition)."""

    command: str
    reason: RejectReason
    detail: str


class AssetAdded(_Event, frozen=True, tag="asset_added"):
    asset: str
    decimals: int


class MarketAdded(_Event, frozen=True, tag="market_added"):
    market: str
    state: MarketState


class MarketStateChanged(_Event, frozen=True, tag="market_state_changed"):
    market: str
    old: MarketState
    new: MarketState
    actor: str
    reason: str
    incident_id: str
    cancels_allowed: bool
    until_ts: int  # when a timed state (auction, pause) ends by itself; 0 if it does not


class KillSwitchChanged(_Event, frozen=True, tag="kill_switch_changed"):
    engaged: bool
    actor: str
    reason: str
    incident_id: str


class WithdrawalsFrozen(_Event, frozen=True, tag="withdrawals_frozen"):
    asset: str
    frozen: bool
    actor: str
    reason: str
    incident_id: str


class AccountWithdrawalsFrozen(_Event, frozen=True, tag="account_withdrawals_frozen"):
    account: int
    frozen: bool
    actor: str
    reason: str
    incident_id: str


class IndicativeUncross(_Event, frozen=True, tag="indicative_uncross"):
    """During an auction: where it would uncross now (price 0 when nothing crosses)."""

    market: str
    price: int
    volume: int
    imbalance: int  # buy volume minus sell volume at that price


class AuctionUncrossed(_Event, frozen=True, tag="auction_uncrossed"):
    market: str
    price: int
    volume: int


class CircuitBreakerTripped(_Event, frozen=True, tag="circuit_breaker_tripped"):
    """An order would have traded outside the band: it did not, and the market paused."""

    market: str
    reference_price: int
    band_bps: int
    low: int
    high: int
    attempted_price: int
    order_id: int
    trigger_count: int
    pause_until_ts: int


class BreakerConfigured(_Event, frozen=True, tag="breaker_configured"):
    market: str
    enabled: bool
    actor: str
    reason: str


class ResumePlanStarted(_Event, frozen=True, tag="resume_plan_started"):
    market: str
    phases: list[str]
    actor: str
    reason: str
    incident_id: str


class ResumePhaseEntered(_Event, frozen=True, tag="resume_phase_entered"):
    market: str
    index: int
    state: MarketState
    earliest_next_ts: int


class ResumePlanEnded(_Event, frozen=True, tag="resume_plan_ended"):
    market: str
    completed: bool  # False: aborted, or overridden by a halt
    actor: str
    reason: str


class CompensationCredited(_Event, frozen=True, tag="compensation_credited"):
    """A compensation line paid into ``account``: its (run id, line number) is now spent."""

    account: int
    asset: str
    amount: int
    run_id: int
    line_no: int


class CompensationRefused(_Event, frozen=True, tag="compensation_refused"):
    """A compensation line not credited now; ``already_credited`` means it was paid before."""

    run_id: int
    line_no: int
    account: int
    reason: RejectReason
    detail: str


class TradeBusted(_Event, frozen=True, tag="trade_busted"):
    """A trade reversed: both sides and the fee account settle as if it never matched.
    ``price``, ``taker_fee`` and ``maker_fee`` are what was reversed (an adjusted trade's
    adjusted terms); ``owed`` lists shortfalls recorded as owed (allowed debit balances)."""

    market: str
    trade_id: int
    price: int
    qty: int
    taker_account: int
    maker_account: int
    taker_fee: int
    maker_fee: int
    owed: list[BalanceChange]
    actor: str
    approver: str
    reason: str
    rule: str
    incident_id: str


class TradeAdjusted(_Event, frozen=True, tag="trade_adjusted"):
    """A trade re-priced from ``old_price`` to ``new_price``, fees recomputed."""

    market: str
    trade_id: int
    old_price: int
    new_price: int
    qty: int
    taker_account: int
    maker_account: int
    taker_fee: int
    maker_fee: int
    owed: list[BalanceChange]
    actor: str
    approver: str
    reason: str
    rule: str
    incident_id: str


class VenueRolledBack(_Event, frozen=True, tag="venue_rolled_back"):
    """What a rollback to ``target_seq`` undid: the resting orders placed after it (each
    also reported by its own ``OrderCancelled``) and the trades ``first_trade_id`` to
    ``last_trade_id`` (``trades_busted`` of them were not busted before)."""

    target_seq: int
    orders_cancelled: int
    first_trade_id: int
    last_trade_id: int
    trades_busted: int
    accounts_changed: int
    owed: list[BalanceChange]
    actor: str
    approver: str
    reason: str
    rule: str
    incident_id: str


Event = Union[  # noqa: UP007 - a runtime union msgspec can decode
    OrderAccepted,
    OrderRejected,
    OrderRepeated,
    Trade,
    OrderCancelled,
    Deposited,
    Withdrawn,
    CommandRejected,
    AssetAdded,
    MarketAdded,
    MarketStateChanged,
    KillSwitchChanged,
    WithdrawalsFrozen,
    IndicativeUncross,
    AuctionUncrossed,
    CircuitBreakerTripped,
    BreakerConfigured,
    ResumePlanStarted,
    ResumePhaseEntered,
    ResumePlanEnded,
    CompensationCredited,
    CompensationRefused,
    AccountWithdrawalsFrozen,
    TradeBusted,
    TradeAdjusted,
    VenueRolledBack,
]
