"""What the venue can be told to do. Every change of venue state is one of these commands.

Commands are frozen ``msgspec`` structs tagged by ``type``: cheap to build, and they encode
to JSON or MessagePack for the journal and the HTTP API without a hand-written serializer.
The sequencer wraps each in a :class:`Sequenced` with its gap-free ``seq`` and its ``ts``
(nanoseconds since the epoch), the only time the engine ever sees.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any, Final, Union, get_args

import msgspec

from haltguard.venue.markets import Asset, BreakerConfig, MarketSpec
from haltguard.venue.types import MarketState, OrderType, SelfTradePrevention, Side, TimeInForce


class _Command(msgspec.Struct, frozen=True, tag_field="type", gc=False):
    pass


class PlaceOrder(_Command, frozen=True, tag="place_order"):
    """Place an order. ``price`` is in ticks and must be 0 for a market order."""

    market: str
    account: int
    side: Side
    qty: int
    price: int = 0
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER
    client_order_id: str = ""  # a retried submit with the same id places nothing new


class CancelOrder(_Command, frozen=True, tag="cancel_order"):
    """Cancel one resting order by venue ``order_id`` or by the owner's ``client_order_id``."""

    market: str
    account: int
    order_id: int = 0
    client_order_id: str = ""


class CancelAll(_Command, frozen=True, tag="cancel_all"):
    """Cancel every resting order of ``account`` (0: all accounts) in ``market`` ("": all)."""

    account: int = 0
    market: str = ""
    actor: str = ""
    reason: str = ""
    incident_id: str = ""


class Deposit(_Command, frozen=True, tag="deposit"):
    account: int
    asset: str
    amount: int  # minor units
    reference: str = ""


class Withdraw(_Command, frozen=True, tag="withdraw"):
    account: int
    asset: str
    amount: int  # minor units
    destination: str = ""
    reference: str = ""


class AddAsset(_Command, frozen=True, tag="add_asset"):
    asset: Asset


class AddMarket(_Command, frozen=True, tag="add_market"):
    """List a market. It starts ``closed`` unless ``state`` says otherwise."""

    spec: MarketSpec
    state: MarketState = MarketState.CLOSED


class SetMarketState(_Command, frozen=True, tag="set_market_state"):
    """Move a market to another state. Illegal transitions are refused, naming the legal ones.

    ``cancels_allowed`` matters for ``halted``: False refuses even cancels (Kraken's
    maintenance). ``auction_ns`` > 0 with ``auction`` uncrosses automatically after that long
    and then opens the market.
    """

    market: str
    state: MarketState
    actor: str
    reason: str
    incident_id: str = ""
    cancels_allowed: bool = True
    auction_ns: int = 0


class KillSwitch(_Command, frozen=True, tag="kill_switch"):
    """Halt every market at once (``engaged``) or release the switch.

    Releasing does not reopen anything: each market stays halted until a person resumes it.
    """

    engaged: bool
    actor: str
    reason: str
    incident_id: str = ""


class FreezeWithdrawals(_Command, frozen=True, tag="freeze_withdrawals"):
    asset: str
    frozen: bool
    actor: str
    reason: str
    incident_id: str = ""


class FreezeAccountWithdrawals(_Command, frozen=True, tag="freeze_account_withdrawals"):
    """Freeze (or unfreeze) every withdrawal of one customer account, whatever the asset:
    the evidence of a taken-over account is per account, so the rest keep withdrawing."""

    account: int
    frozen: bool
    actor: str
    reason: str
    incident_id: str = ""


class ResumePhase(msgspec.Struct, frozen=True):
    """One step of a resume plan: a market state held for at least ``min_ns``."""

    state: MarketState
    min_ns: int


class StartResumePlan(_Command, frozen=True, tag="start_resume_plan"):
    """Reopen a market through phases, e.g. cancel_only -> auction -> open.

    Starting the plan is the human decision; the venue then moves to the next phase once the
    current one has lasted its minimum time (an auction phase ends with its uncross). The
    last phase is normally ``open``.
    """

    market: str
    phases: list[ResumePhase]
    actor: str
    reason: str
    incident_id: str = ""


class AbortResumePlan(_Command, frozen=True, tag="abort_resume_plan"):
    """Stop a running resume plan; the market stays in the state it is in."""

    market: str
    actor: str
    reason: str
    incident_id: str = ""


class Uncross(_Command, frozen=True, tag="uncross"):
    """End a market's auction now: match at the single uncross price, then open."""

    market: str
    actor: str
    reason: str
    incident_id: str = ""


class ConfigureBreaker(_Command, frozen=True, tag="configure_breaker"):
    """Replace a market's circuit breaker (``None`` turns it off)."""

    market: str
    breaker: BreakerConfig | None
    actor: str
    reason: str


COMPENSATION_LINES_MAX: Final = 4_096
"""The most lines one :class:`CreditCompensation` carries: a few hundred kilobytes in the
journal and a few milliseconds of the venue thread, so orders queued behind it wait little."""
LINE_NO_BITS: Final = 32
RUN_ID_MAX: Final = (1 << 31) - 1
LINE_NO_MAX: Final = (1 << LINE_NO_BITS) - 1


def payout_reference(run_id: int, line_no: int) -> int:
    """(run id, line number) packed into one int below 2**63, how the venue remembers a paid
    line: a million of them are a set of plain ints, not a million tuples."""
    return run_id << LINE_NO_BITS | line_no


class CompensationLine(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One line of an approved compensation run: ``amount`` minor units of ``asset`` for
    ``account``, known for ever by (``run_id``, ``line_no``), 1..RUN_ID_MAX and 0..LINE_NO_MAX."""

    account: int
    asset: str
    amount: int  # minor units
    run_id: int
    line_no: int


class CreditCompensation(_Command, frozen=True, tag="credit_compensation"):
    """Credit up to :data:`COMPENSATION_LINES_MAX` compensation lines, each on its own.

    A line is credited (``CompensationCredited``) or refused (``CompensationRefused``) by
    itself: ``already_credited`` when its (run id, line number) was credited before, which
    is what makes a repeated or resumed payout pay nobody twice; an unknown asset, an amount
    that is not positive, a non-customer account or a reference out of range. One line is a
    batch of one. The money comes from outside the books, as a deposit does.
    """

    lines: list[CompensationLine]
    actor: str
    reason: str = ""


CORRECTION_TEXT_LENGTH_MAX: Final = 500
"""The longest reason or rule text a correction carries (it is printed on statements)."""
ROLLBACK_REVERSALS_MAX: Final = 30_000
"""The most balance changes one :class:`RollbackTo` carries (the trades it busts summed per
account and asset, about 20 bytes each): 100,000 trades among thousands of accounts fit in
one journal record. A rollback touching more is refused before anything is journaled."""


class TradeFacts(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A trade as the journal recorded it: the fields of its ``Trade`` event.

    The venue keeps no trade history (the journal is that history), so a correction names
    the trade by these facts, read back from the journal; the venue checks what it can
    (the trade id was issued, it is not busted, the market and its fee rates).
    """

    market: str
    trade_id: int
    price: int  # ticks, as first printed
    qty: int  # lots
    taker_side: Side
    taker_account: int
    maker_account: int
    taker_fee: int  # quote minor units, as first charged
    maker_fee: int


class BalanceChange(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """``amount`` minor units of ``asset`` added to (negative: taken from) ``account``."""

    asset: str
    account: int
    amount: int


BUST_TRADES_MAX: Final = 1_000
"""The most trades one :class:`BustTrade` reverses together (all or none)."""


class BustTrade(_Command, frozen=True, tag="bust_trade"):
    """Reverse trades' ledger effects for both sides and the fee account, as if they had not
    matched (the orders are not put back), all or none. ``actor`` proposed it and
    ``approver``, another person, approved it; ``rule`` names the published rule that allows
    it. Refused when the reversals would take more than an account has available, unless
    ``allow_debit``: then the shortfall is recorded as owed. A trade is busted at most once."""

    trades: list[TradeFacts]
    actor: str
    approver: str
    reason: str
    rule: str
    incident_id: str = ""
    allow_debit: bool = False


class AdjustTrade(_Command, frozen=True, tag="adjust_trade"):
    """Re-price a trade to ``price`` ticks: both sides settle as if it had printed there,
    fees recomputed at the market's rates. Same approval, rule and debit terms as a bust;
    a busted trade cannot be adjusted."""

    trade: TradeFacts
    price: int
    actor: str
    approver: str
    reason: str
    rule: str
    incident_id: str = ""
    allow_debit: bool = False


class RollbackTo(_Command, frozen=True, tag="rollback_to"):
    """Restore the venue's business state to what it was after ``target_seq``, as one
    command: every resting order placed after it (order id > ``target_seq``) is cancelled and
    every trade from ``first_trade_id`` to ``last_trade_id`` is busted, its reversal summed
    into ``reversals`` (per account and asset, fees included, already-busted trades left out
    and adjusted ones at their adjusted price). Nothing is truncated: the journal keeps the
    whole history. ``last_trade_id`` and ``corrections_seen`` are what the plan saw; the
    venue refuses if trades or corrections happened since (plan again)."""

    target_seq: int
    first_trade_id: int
    last_trade_id: int
    corrections_seen: int
    reversals: list[BalanceChange]
    actor: str
    approver: str
    reason: str
    rule: str
    incident_id: str = ""
    allow_debit: bool = False


class Heartbeat(_Command, frozen=True, tag="heartbeat"):
    """Carries only time. The runtime sends one when a deadline the venue reported is due
    (an auction's end, a breaker pause, a resume phase), so time-driven transitions are
    journaled like everything else."""


Command = Union[  # noqa: UP007 - a runtime union msgspec can decode
    PlaceOrder,
    CancelOrder,
    CancelAll,
    Deposit,
    Withdraw,
    AddAsset,
    AddMarket,
    SetMarketState,
    KillSwitch,
    FreezeWithdrawals,
    StartResumePlan,
    AbortResumePlan,
    Uncross,
    ConfigureBreaker,
    Heartbeat,
    CreditCompensation,
    FreezeAccountWithdrawals,
    BustTrade,
    AdjustTrade,
    RollbackTo,
]


class Sequenced(msgspec.Struct, frozen=True, gc=False):
    """A command stamped by the sequencer: the unit the journal stores and replays.

    ``seq`` is gap-free and strictly increasing; ``ts`` is wall-clock nanoseconds taken by
    the sequencer (never by the engine) and never goes backwards.
    """

    seq: int
    ts: int
    command: Command


COMMAND_TYPES: Final = frozenset(get_args(Command))
# Each kind as the type ``msgspec.convert`` checks against (the concrete class: converting to
# the whole union costs several times more).
_TARGETS: Final[dict[type, Any]] = {kind: kind for kind in COMMAND_TYPES}

# Passed through unchanged by the check below, so that none of them is quietly turned into
# a string that a ``str`` field would then accept.
_UNCONVERTED: Final = (
    bytes, bytearray, memoryview, datetime.datetime, datetime.date, datetime.time,
    datetime.timedelta, uuid.UUID, decimal.Decimal,
)


class MalformedCommandError(ValueError):
    """Something that is not a command, or a command with a field of the wrong type."""


def validated(command: object) -> Command:
    """``command`` with every field checked against its declared type, or
    :class:`MalformedCommandError` naming the first wrong field.

    ``msgspec`` structs do not check types when built, so a hand-built command can carry a
    float quantity or a plain string where a :class:`MarketState` belongs. Enum fields given
    as their string value are converted to the enum; nothing else is coerced (no floats,
    bools or strings for integers).
    """
    kind = type(command)
    target = _TARGETS.get(kind)
    if target is None:
        raise MalformedCommandError(
            f"{kind.__name__} is not a venue command; send one of "
            f"{', '.join(sorted(t.__name__ for t in COMMAND_TYPES))}"
        )
    try:
        builtins = msgspec.to_builtins(command, builtin_types=_UNCONVERTED)
        checked: Command = msgspec.convert(builtins, target)
    except (msgspec.ValidationError, TypeError, ValueError) as error:
        raise MalformedCommandError(
            f"{kind.__name__} has a field of the wrong type: {error}; build commands with "
            "the types haltguard.venue.commands declares"
        ) from None
    return checked
