"""The shapes that cross the venue's HTTP API, and the one conversion between units and decimals.

Inside, the venue counts ticks, lots and minor units (ADR 0002). On the wire every price,
quantity and amount is a decimal string. :class:`Units` knows each market's grid and each
asset's minor unit and converts in both directions, exactly: the server renders events with
it and :class:`haltguard.gateway.control.HttpVenueControl` parses them back into the venue's
own event types. Timestamps (``ts``, ``*_ts``) stay integers: nanoseconds since the epoch.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, DecimalException
from typing import Annotated, Any, Literal

import msgspec
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)

from haltguard.venue.commands import COMPENSATION_LINES_MAX
from haltguard.venue.engine import BPS_PER_UNIT
from haltguard.venue.events import Event
from haltguard.venue.markets import (
    ASSET_CODE_LENGTH_MAX,
    ASSET_CODE_PATTERN,
    DECIMAL_GRAMMAR,
    DECIMAL_PATTERN,
    DECIMAL_TEXT_LENGTH_MAX,
    MARKET_SYMBOL_LENGTH_MAX,
    MARKET_SYMBOL_PATTERN,
    MarketSpec,
    decimal_text_problem,
    from_units,
)
from haltguard.venue.types import (
    INT64_MAX,
    MarketState,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

# Event fields by the unit they count, so one table drives rendering and parsing.
_TICK_FIELDS = frozenset({
    "price", "attempted_price", "reference_price", "low", "high", "old_price", "new_price",
})
_LOT_FIELDS = frozenset({"qty", "remaining", "volume", "imbalance"})
_QUOTE_FEE_FIELDS = frozenset({"taker_fee", "maker_fee"})
_ASSET_AMOUNT_FIELDS = frozenset({"amount"})

_EVENT_DECODER = msgspec.json.Decoder(Event)


@functools.cache
def _unit_fields(kind: type[Event]) -> tuple[str, ...]:
    """The fields of an event type that hold prices, sizes or amounts (found once a type)."""
    return tuple(field for field in kind.__struct_fields__
                 if field in _TICK_FIELDS or field in _LOT_FIELDS
                 or field in _QUOTE_FEE_FIELDS or field in _ASSET_AMOUNT_FIELDS)


class UnitError(ValueError):
    """A wire value that is not a whole number of its unit (or names an unknown market)."""


def signed_units(text: str, step: Decimal, what: str) -> int:
    """``text / step`` as an exact integer of either sign (zero allowed), or :class:`UnitError`.

    The strictly positive conversion for orders is :func:`haltguard.venue.markets.to_units`;
    this one reads values the venue itself rendered, such as an auction imbalance.
    """
    try:
        units = Decimal(text) / step
    except (DecimalException, ValueError, TypeError):
        raise UnitError(f"{what} {text!r} is not a decimal number") from None
    if not units.is_finite() or units != units.to_integral_value() or abs(units) > INT64_MAX:
        raise UnitError(f"{what} {text!r} is not a whole number of {step}")
    return int(units)


class Units:
    """Every grid the venue knows: market specs by symbol and asset decimals by code."""

    def __init__(self, markets: Mapping[str, MarketSpec], asset_decimals: Mapping[str, int]):
        self.markets = dict(markets)
        self.asset_decimals = dict(asset_decimals)

    def spec(self, symbol: str) -> MarketSpec:
        spec = self.markets.get(symbol)
        if spec is None:
            raise UnitError(f"unknown market {symbol!r}")
        return spec

    def asset_unit(self, asset: str) -> Decimal:
        decimals = self.asset_decimals.get(asset)
        if decimals is None:
            raise UnitError(f"unknown asset {asset!r}")
        return Decimal(1).scaleb(-decimals)

    def _step(self, field: str, data: Mapping[str, Any]) -> Decimal | None:
        if field in _TICK_FIELDS:
            return self.spec(str(data["market"])).tick
        if field in _LOT_FIELDS:
            return self.spec(str(data["market"])).lot
        if field in _QUOTE_FEE_FIELDS:
            return self.asset_unit(self.spec(str(data["market"])).quote)
        if field in _ASSET_AMOUNT_FIELDS:
            return self.asset_unit(str(data["asset"]))
        return None

    def render_event(self, event: Event) -> dict[str, Any]:
        """The event as JSON-ready data with every price, size and amount a decimal string."""
        data: dict[str, Any] = msgspec.to_builtins(event)
        for field in _unit_fields(type(event)):
            value = data.get(field)
            if type(value) is int:  # not None, not a flag
                step = self._step(field, data)
                if step is not None:
                    data[field] = from_units(value, step)
        return data

    def render_events(self, events: list[Event]) -> list[dict[str, Any]]:
        return [self.render_event(event) for event in events]

    def parse_event(self, data: Mapping[str, Any]) -> Event:
        """The inverse of :meth:`render_event`: the venue's own event, in integer units."""
        raw = dict(data)
        for field, value in list(raw.items()):
            if isinstance(value, str):
                step = self._step(field, raw)
                if step is not None:
                    raw[field] = signed_units(value, step, field)
        try:
            event: Event = _EVENT_DECODER.decode(msgspec.json.encode(raw))
        except msgspec.ValidationError as exc:
            raise UnitError(f"not a venue event: {exc}") from None
        return event


# ---------------------------------------------------------------------------------------
# Requests. Prices, sizes and amounts are strings in the plain decimal grammar so no float
# ever touches them; a JSON number is refused rather than guessed at. Every other field
# takes exactly its JSON type: an integer is a JSON integer (not ``true``, ``"1"`` or
# ``1.0``) within the 64-bit range the journal stores, a flag is ``true`` or ``false``.


def _plain_decimal(text: str) -> str:
    problem = decimal_text_problem(text)
    if problem is not None:
        raise ValueError(f"{problem}; nothing is rounded or guessed")
    return text


def _named(pattern: str, what: str, length_max: int) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def check(text: str) -> str:
        if len(text) > length_max or compiled.fullmatch(text) is None:
            raise ValueError(f"{text[:40]!r} is not {what}")
        return text

    return check


_SYMBOL_RULE = (
    "two asset codes joined by '-', at most "
    f"{MARKET_SYMBOL_LENGTH_MAX} characters, e.g. 'BTC-JPY'"
)
_ASSET_RULE = f"1 to {ASSET_CODE_LENGTH_MAX} capital ASCII letters and digits, e.g. 'BTC'"
_check_symbol = _named(
    MARKET_SYMBOL_PATTERN, f"a market symbol ({_SYMBOL_RULE})", MARKET_SYMBOL_LENGTH_MAX
)
_check_asset = _named(ASSET_CODE_PATTERN, f"an asset code ({_ASSET_RULE})", ASSET_CODE_LENGTH_MAX)

GRAMMAR_TEXT = (
    f"Decimals (prices, quantities, amounts) are JSON strings, {DECIMAL_GRAMMAR}. Integers "
    "are JSON integers (not true, '1' or 1.0) from 0 to 2^63-1; flags are true or false; "
    f"asset codes are {_ASSET_RULE}; market symbols are {_SYMBOL_RULE}."
)
"""The wire grammar in one sentence, for the OpenAPI description."""

DecimalText = Annotated[
    StrictStr,
    AfterValidator(_plain_decimal),
    Field(json_schema_extra={"pattern": DECIMAL_PATTERN, "maxLength": DECIMAL_TEXT_LENGTH_MAX}),
]
"""A price, quantity or amount as text: :data:`DECIMAL_PATTERN`, never a JSON number."""
MarketSymbol = Annotated[
    StrictStr,
    AfterValidator(_check_symbol),
    Field(json_schema_extra={"pattern": MARKET_SYMBOL_PATTERN,
                             "maxLength": MARKET_SYMBOL_LENGTH_MAX}),
]
AssetCode = Annotated[
    StrictStr,
    AfterValidator(_check_asset),
    Field(json_schema_extra={"pattern": ASSET_CODE_PATTERN, "maxLength": ASSET_CODE_LENGTH_MAX}),
]
Account = Annotated[StrictInt, Field(gt=0, le=INT64_MAX)]
"""A customer account: a positive JSON integer the journal can store."""
Seconds = Annotated[StrictFloat, Field(ge=0, le=86_400, allow_inf_nan=False)]
"""A duration in seconds: a JSON number (integer or not), at most one day."""
PositiveSeconds = Annotated[StrictFloat, Field(gt=0, le=86_400, allow_inf_nan=False)]
FeeBps = Annotated[StrictInt, Field(ge=0, le=1_000)]
BandBps = Annotated[StrictInt, Field(gt=0, le=BPS_PER_UNIT)]


def _decimal(what: str) -> str:
    return f"{what}, as a JSON string: {DECIMAL_GRAMMAR}."


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlaceOrderRequest(_Request):
    """A new order. Authentication of customers is out of scope for the venue API: the
    ``account`` field says whose order it is, and whatever sits in front of the venue (the
    exchange's own gateway) is responsible for checking that the caller owns it."""

    account: Account = Field(
        description="The customer's account number, 1 to 2^63-1 (0 is the fee account)."
    )
    side: Side
    qty: DecimalText = Field(
        description=_decimal("Quantity in base units, a multiple of the lot size, e.g. '0.01'")
    )
    price: DecimalText | None = Field(
        default=None,
        description=_decimal("Limit price in quote per base, a multiple of the tick size"),
    )
    type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    post_only: StrictBool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER
    client_order_id: StrictStr = Field(
        default="", max_length=64,
        description="Scoped to the account, across markets. Resending the same id with the "
        "same terms places nothing and answers 200 with the original order; the same id "
        "with any other term (market, side, type, tif, price, qty, post_only, stp) is a 409 "
        "client_order_id_reused.",
    )


def _order_max_length(field: str) -> int:
    """The REST model's length bound on ``field``, so the fast paths cannot drift from it."""
    for rule in PlaceOrderRequest.model_fields[field].metadata:
        length_max = getattr(rule, "max_length", None)
        if isinstance(length_max, int):
            return length_max
    raise LookupError(f"PlaceOrderRequest.{field} has no maximum length")


CLIENT_ORDER_ID_LENGTH_MAX = _order_max_length("client_order_id")


class OrderBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """:class:`PlaceOrderRequest`'s fields for the fast paths (the fast order lane, the
    streaming order entry), decoded at least as strictly (an integer is an integer, not a
    float or a flag): what this refuses goes to the REST model, which says what is wrong.
    Decimal text is checked where it is converted."""

    account: Annotated[int, msgspec.Meta(gt=0, le=INT64_MAX)]
    side: Side
    qty: str
    price: str | None = None
    type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER
    client_order_id: Annotated[str, msgspec.Meta(max_length=CLIENT_ORDER_ID_LENGTH_MAX)] = ""


class CancelAllRequest(_Request):
    account: Account = Field(description="Whose orders to cancel in this market.")


class _Operator(_Request):
    actor: StrictStr = Field(
        min_length=1, max_length=128, description="Who decided (name or id)."
    )
    reason: StrictStr = Field(
        min_length=1, max_length=1000, description="Why, for the audit trail."
    )
    incident_id: StrictStr = Field(default="", max_length=128)


class DepositRequest(_Request):
    account: Account
    asset: AssetCode
    amount: DecimalText = Field(
        description=_decimal("An amount, a multiple of the asset's minor unit")
    )
    reference: StrictStr = Field(default="", max_length=256)


class WithdrawRequest(DepositRequest):
    destination: StrictStr = Field(default="", max_length=256)


class AddAssetRequest(_Request):
    code: AssetCode
    decimals: StrictInt = Field(ge=0, le=18)


class AddMarketRequest(_Request):
    """A market from human decimals; the grid is checked by ``make_market``."""

    symbol: MarketSymbol
    base: AssetCode
    quote: AssetCode
    tick_size: DecimalText = Field(description=_decimal("The price step"))
    lot_size: DecimalText = Field(description=_decimal("The quantity step"))
    min_qty: DecimalText = Field(description=_decimal("The smallest order size"))
    max_qty: DecimalText = Field(description=_decimal("The largest order size"))
    maker_fee_bps: FeeBps = 0
    taker_fee_bps: FeeBps = 0
    breaker: Literal["none", "coincheck", "luld"] = "none"
    state: MarketState = MarketState.CLOSED


class SetMarketStateRequest(_Operator):
    state: MarketState
    cancels_allowed: StrictBool = Field(
        default=True, description="For 'halted': false refuses even cancels (maintenance)."
    )
    auction_seconds: Seconds = Field(
        default=0, description="For 'auction': uncross and open after this long (0 to 86400)."
    )


class KillSwitchRequest(_Operator):
    engaged: StrictBool


class FreezeWithdrawalsRequest(_Operator):
    frozen: StrictBool


class FreezeAccountWithdrawalsRequest(_Operator):
    """Every withdrawal of one customer account, whatever the asset."""

    frozen: StrictBool


class ResumePhaseRequest(_Request):
    state: MarketState
    min_seconds: Seconds


class ResumePlanRequest(_Operator):
    phases: list[ResumePhaseRequest] = Field(min_length=1, max_length=16)


class OperatorRequest(_Operator):
    """An operator action that needs nothing but who and why (uncross, abort a resume plan)."""


def _empty_or_symbol(text: str) -> str:
    return text if text == "" else _check_symbol(text)


class AdminCancelAllRequest(_Operator):
    market: Annotated[StrictStr, AfterValidator(_empty_or_symbol)] = Field(
        default="", description=f"Empty: every market; otherwise a market, {_SYMBOL_RULE}."
    )
    account: StrictInt = Field(default=0, ge=0, le=INT64_MAX, description="0: every account.")


class BreakerRequest(_Request):
    """A breaker preset or explicit settings; ``preset='none'`` turns the breaker off."""

    actor: StrictStr = Field(min_length=1, max_length=128)
    reason: StrictStr = Field(min_length=1, max_length=1000)
    preset: Literal["none", "coincheck", "luld", "custom"] = "custom"
    band_bps: list[BandBps] = Field(
        default_factory=list, max_length=8,
        description=f"Band half-widths in basis points, 1 to {BPS_PER_UNIT} each.",
    )
    pause_seconds: PositiveSeconds = 300
    reference: Literal["rolling", "static"] = "rolling"
    window_seconds: PositiveSeconds = 300
    limit_state_seconds: Seconds = 0


Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=INT64_MAX)]
"""Any integer the journal can store; the venue judges the value itself."""


class CompensationLineRequest(_Request):
    """One compensation line. The amount is an integer of the asset's minor units (a payout
    is computed in them; a million lines are not turned into decimals and back). A line the
    venue cannot credit is refused on its own, with the reason, and the others are credited;
    the asset is therefore judged by the venue (``unknown_asset``), not by its grammar here."""

    account: Int64 = Field(description="The customer's account number (1 to 2^63-1).")
    asset: StrictStr = Field(
        max_length=ASSET_CODE_LENGTH_MAX,
        description="The asset code; an asset the venue does not list refuses the line only.",
    )
    amount_minor: Int64 = Field(description="The amount in the asset's minor units, > 0.")
    run_id: Int64 = Field(description="The compensation run, 1 to 2^31-1.")
    line_no: Int64 = Field(description="The line of the run, 0 to 2^32-1.")


class CreditCompensationRequest(_Request):
    actor: StrictStr = Field(min_length=1, max_length=128, description="Who pays (name or id).")
    reason: StrictStr = Field(default="", max_length=1000, description="Why, for the audit trail.")
    lines: list[CompensationLineRequest] = Field(
        min_length=1, max_length=COMPENSATION_LINES_MAX,
        description=f"1 to {COMPENSATION_LINES_MAX} lines, credited in this order.",
    )
