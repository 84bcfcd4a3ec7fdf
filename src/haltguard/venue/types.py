"""The venue's small shared vocabulary: sides, order types, market states, reasons.

Enum values are the wire and journal names; they are never renamed once released.
"""

from __future__ import annotations

from enum import StrEnum

# Prices, quantities and amounts are signed 64-bit integers in the journal.
INT64_MAX = (1 << 63) - 1


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(StrEnum):
    GTC = "gtc"  # good till cancelled: the remainder rests on the book
    IOC = "ioc"  # immediate or cancel: fill what crosses now, cancel the rest
    FOK = "fok"  # fill or kill: fill completely at once, or not at all


class SelfTradePrevention(StrEnum):
    """What happens when an incoming order would trade with its own account's resting order."""

    CANCEL_TAKER = "cancel_taker"  # cancel the incoming remainder, keep the resting order
    CANCEL_MAKER = "cancel_maker"  # cancel the resting order and keep matching
    CANCEL_BOTH = "cancel_both"  # cancel both


class MarketState(StrEnum):
    """The brakes. Names follow what real venues call them (see docs/adr/0003)."""

    OPEN = "open"  # everything allowed, continuous matching
    HALTED = "halted"  # no new orders; cancels allowed unless the halt refuses them
    CANCEL_ONLY = "cancel_only"  # only cancels
    POST_ONLY = "post_only"  # only post-only limit orders (nothing takes liquidity)
    LIMIT_ONLY = "limit_only"  # no market orders
    AUCTION = "auction"  # orders collect, nothing matches; leaving it uncrosses at one price
    CLOSED = "closed"  # not trading at all (listed but not yet opened, or delisted)


class RejectReason(StrEnum):
    """Why a command did nothing. Every reject carries one of these plus a human detail."""

    UNKNOWN_MARKET = "unknown_market"
    UNKNOWN_ASSET = "unknown_asset"
    UNKNOWN_ORDER = "unknown_order"
    NOT_ORDER_OWNER = "not_order_owner"
    INVALID_QUANTITY = "invalid_quantity"
    INVALID_PRICE = "invalid_price"
    INVALID_AMOUNT = "invalid_amount"
    BELOW_MIN_SIZE = "below_min_size"
    ABOVE_MAX_SIZE = "above_max_size"
    INVALID_TIME_IN_FORCE = "invalid_time_in_force"
    INVALID_ACCOUNT = "invalid_account"
    POST_ONLY_WOULD_CROSS = "post_only_would_cross"
    FOK_NOT_FILLABLE = "fok_not_fillable"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    UNKNOWN_ACCOUNT = "unknown_account"  # holds nothing in any asset: never funded, or typo
    CLIENT_ORDER_ID_REUSED = "client_order_id_reused"  # the id placed an order with other terms
    MARKET_HALTED = "market_halted"
    MARKET_CANCEL_ONLY = "market_cancel_only"
    MARKET_POST_ONLY = "market_post_only"
    MARKET_LIMIT_ONLY = "market_limit_only"
    MARKET_CLOSED = "market_closed"
    CANCELS_REFUSED = "cancels_refused"
    KILL_SWITCH_ENGAGED = "kill_switch_engaged"
    WITHDRAWALS_FROZEN = "withdrawals_frozen"
    ILLEGAL_TRANSITION = "illegal_transition"
    INVALID_COMMAND = "invalid_command"
    ALREADY_EXISTS = "already_exists"
    NO_AUCTION = "no_auction"
    ALREADY_CREDITED = "already_credited"  # this compensation line was paid before
    INVALID_REFERENCE = "invalid_reference"  # a compensation run id or line number out of range
    UNKNOWN_TRADE = "unknown_trade"  # a correction named a trade id the venue never issued
    ALREADY_BUSTED = "already_busted"  # the trade was busted (alone or by a rollback) before
    FOUR_EYES_REQUIRED = "four_eyes_required"  # a correction's proposer also approved it
    STALE_PLAN = "stale_plan"  # trades or corrections happened since the rollback was planned


class CancelReason(StrEnum):
    USER = "user"  # an explicit cancel by the owner
    UNFILLED = "unfilled"  # IOC or market remainder with nothing left to cross
    SELF_TRADE = "self_trade"  # removed by self-trade prevention
    MASS_CANCEL = "mass_cancel"  # cancel-all by account or by market (an operator or the owner)
    PRICE_BAND = "price_band"  # the circuit breaker stopped the order trading outside its band
    INSUFFICIENT_FUNDS = "insufficient_funds"  # a market buy ran out of its hold
    ROLLBACK = "rollback"  # placed after the point an operator rolled the venue back to
