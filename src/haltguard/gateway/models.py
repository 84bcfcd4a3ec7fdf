"""The shapes that cross the venue's HTTP API, and the one conversion between units and decimals.

Inside, the venue counts ticks, lots and minor units (ADR 0002). On the wire every price,
quantity and amount is a decimal string. :class:`Units` knows each market's grid and each
asset's minor unit and converts in both directions, exactly: the server renders events with
it and :class:`haltguard.gateway.control.HttpVenueControl` parses them back into the venue's
own event types. Timestamps (``ts``, ``*_ts``) stay integers: nanoseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, DecimalException
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from haltguard.venue.events import Event
from haltguard.venue.markets import MarketSpec, from_units
from haltguard.venue.types import (
    INT64_MAX,
    MarketState,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

# Event fields by the unit they count, so one table drives rendering and parsing.
_TICK_FIELDS = frozenset({"price", "attempted_price", "reference_price", "low", "high"})
_LOT_FIELDS = frozenset({"qty", "remaining", "volume", "imbalance"})
_QUOTE_FEE_FIELDS = frozenset({"taker_fee", "maker_fee"})
_ASSET_AMOUNT_FIELDS = frozenset({"amount"})

_EVENT_DECODER = msgspec.json.Decoder(Event)


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

    def amount_text(self, asset: str, minor: int) -> str:
        return from_units(minor, self.asset_unit(asset))

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
        for field, value in list(data.items()):
            if isinstance(value, int) and not isinstance(value, bool):
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
# Requests. Prices, sizes and amounts are strings so no float ever touches them; a JSON
# number is refused rather than guessed at.


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlaceOrderRequest(_Request):
    """A new order. Authentication of customers is out of scope for the venue API: the
    ``account`` field says whose order it is, and whatever sits in front of the venue (the
    exchange's own gateway) is responsible for checking that the caller owns it."""

    account: int = Field(gt=0, description="The customer's account number (0 is the fee account).")
    side: Side
    qty: str = Field(description="Quantity in base units, a multiple of the lot size, e.g. '0.01'.")
    price: str | None = Field(
        default=None, description="Limit price in quote per base, a multiple of the tick size."
    )
    type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER
    client_order_id: str = Field(
        default="", max_length=64, description="Retrying with the same id places nothing new."
    )


class CancelAllRequest(_Request):
    account: int = Field(gt=0, description="Whose orders to cancel in this market.")


class _Operator(_Request):
    actor: str = Field(min_length=1, max_length=128, description="Who decided (name or id).")
    reason: str = Field(min_length=1, max_length=1000, description="Why, for the audit trail.")
    incident_id: str = Field(default="", max_length=128)


class DepositRequest(_Request):
    account: int = Field(gt=0)
    asset: str
    amount: str = Field(description="A decimal amount, a multiple of the asset's minor unit.")
    reference: str = Field(default="", max_length=256)


class WithdrawRequest(DepositRequest):
    destination: str = Field(default="", max_length=256)


class AddAssetRequest(_Request):
    code: str = Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9]+$")
    decimals: int = Field(ge=0, le=18)


class AddMarketRequest(_Request):
    """A market from human decimals; the grid is checked by ``make_market``."""

    symbol: str = Field(min_length=3, max_length=32, pattern=r"^[A-Z0-9]+-[A-Z0-9]+$")
    base: str
    quote: str
    tick_size: str
    lot_size: str
    min_qty: str
    max_qty: str
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0
    breaker: Literal["none", "coincheck", "luld"] = "none"
    state: MarketState = MarketState.CLOSED


class SetMarketStateRequest(_Operator):
    state: MarketState
    cancels_allowed: bool = Field(
        default=True, description="For 'halted': false refuses even cancels (maintenance)."
    )
    auction_seconds: float = Field(
        default=0, ge=0, le=86_400, description="For 'auction': uncross and open after this long."
    )


class KillSwitchRequest(_Operator):
    engaged: bool


class FreezeWithdrawalsRequest(_Operator):
    frozen: bool


class ResumePhaseRequest(_Request):
    state: MarketState
    min_seconds: float = Field(ge=0, le=86_400)


class ResumePlanRequest(_Operator):
    phases: list[ResumePhaseRequest] = Field(min_length=1, max_length=16)


class OperatorRequest(_Operator):
    """An operator action that needs nothing but who and why (uncross, abort a resume plan)."""


class AdminCancelAllRequest(_Operator):
    market: str = Field(default="", description="Empty: every market.")
    account: int = Field(default=0, ge=0, description="0: every account.")


class BreakerRequest(_Request):
    """A breaker preset or explicit settings; ``preset='none'`` turns the breaker off."""

    actor: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=1000)
    preset: Literal["none", "coincheck", "luld", "custom"] = "custom"
    band_bps: list[int] = Field(default_factory=list, max_length=8)
    pause_seconds: float = Field(default=300, gt=0, le=86_400)
    reference: Literal["rolling", "static"] = "rolling"
    window_seconds: float = Field(default=300, gt=0, le=86_400)
    limit_state_seconds: float = Field(default=0, ge=0, le=86_400)
