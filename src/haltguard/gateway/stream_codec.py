"""The streaming order entry's fast path from a frame to an order and from a result to an answer.

A market maker streams tens of thousands of orders a second, almost all of them valid and
on a few hundred prices and sizes. Building the REST route's model for each (and checking
its decimal text twice), type-checking the command again and rendering the answer
through the generic event renderer cost more than journaling and matching it. So:

* :meth:`StreamCodec.order` decodes a frame straight into :class:`StreamOrder`, a msgspec
  struct whose types are the REST model's (:class:`PlaceOrderRequest`), and converts its
  decimal text through grids that remember what they converted. It returns ``None``
  whenever anything is wrong or unusual, and the caller then asks the REST route's own
  model and conversion (slow, but only for bad input), so every error answer is the REST
  route's. Nothing is accepted here that the REST route refuses: the same types, the same
  grammar check (:func:`to_units`) and the same grid.
* :meth:`StreamCodec.answer` renders an accepted order's outcome as msgspec structs that
  encode to exactly what the REST route's functions render (:func:`order_outcome` plus the
  trades; the stream leaves out the route's full event list), with texts the grids
  remember. Rejected and repeated orders return ``None``: the caller renders those through
  the REST route's own functions.

Tests hold both halves to the REST route's functions (``tests/gateway/test_stream_codec.py``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

import msgspec

from haltguard.gateway.models import OrderBody, Units
from haltguard.gateway.runtime import CommandResult
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.events import (
    CommandRejected,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderRepeated,
    Trade,
)
from haltguard.venue.markets import GridError, MarketSpec, from_units, to_units
from haltguard.venue.types import (
    CancelReason,
    OrderType,
    Side,
    TimeInForce,
)

GRID_TEXTS_MAX = 65_536  # texts one grid remembers each way; past it, it starts afresh


class StreamOrder(OrderBody, kw_only=True, forbid_unknown_fields=True, frozen=True, gc=False):
    """One order frame: the body of ``POST /v1/markets/{market}/orders`` (:class:`OrderBody`,
    the REST model's strict types) plus ``market``."""

    market: str


class OrderView(msgspec.Struct, gc=False):
    """What became of an order: the keys and values of :func:`order_outcome`."""

    market: str
    order_id: int
    client_order_id: str
    account: int
    side: Side
    type: OrderType
    tif: TimeInForce
    post_only: bool
    price: str | None
    qty: str
    filled_qty: str
    open_qty: str
    status: str
    cancel_reason: CancelReason | None


class TradeView(msgspec.Struct, tag_field="type", tag="trade", gc=False):
    """A fill as :meth:`Units.render_event` renders it: amounts as decimal text."""

    market: str
    trade_id: int
    price: str
    qty: str
    taker_side: Side
    taker_order_id: int
    taker_account: int
    maker_order_id: int
    maker_account: int
    taker_fee: str
    maker_fee: str


class OrderAnswer(msgspec.Struct):
    """The answer to an accepted order, as the REST route answers a new order."""

    seq: int
    ts: int
    repeated: bool
    order: OrderView
    trades: list[TradeView]


class Grid:
    """Decimal text and whole steps of one step size, both ways, remembered.

    Converting is exact and done by the venue's own :func:`to_units` and
    :func:`from_units`; the grid only keeps the answers (at most :data:`GRID_TEXTS_MAX`
    each way, then it forgets them all and starts again).
    """

    __slots__ = ("_text_of", "_units_of", "step")

    def __init__(self, step: Decimal) -> None:
        self.step = step
        self._units_of: dict[str, int] = {}
        self._text_of: dict[int, str] = {}

    def units(self, text: str) -> int | None:
        """``text`` in whole steps, or None when it is not a positive multiple in the
        decimal grammar (the REST route's conversion then says why)."""
        units = self._units_of.get(text)
        if units is None:
            try:
                units = to_units(text, self.step, "value")
            except GridError:
                return None
            if len(self._units_of) >= GRID_TEXTS_MAX:
                self._units_of.clear()
            self._units_of[text] = units
        return units

    def text(self, units: int) -> str:
        text = self._text_of.get(units)
        if text is None:
            text = from_units(units, self.step)
            if len(self._text_of) >= GRID_TEXTS_MAX:
                self._text_of.clear()
            self._text_of[units] = text
        return text


class MarketGrids(NamedTuple):
    """One market's grids, for the spec they were made from."""

    spec: MarketSpec
    prices: Grid
    sizes: Grid
    fees: Grid  # the quote asset's minor unit


class StreamCodec:
    """Frames to venue commands and results to answers, for every connection of a stream
    server (one event loop thread: no locks)."""

    def __init__(self) -> None:
        self._decode = msgspec.msgpack.Decoder(StreamOrder).decode
        self.encode_into = msgspec.msgpack.Encoder().encode_into
        self._grids: dict[Decimal, Grid] = {}  # by step: markets on one grid share it
        self._markets: dict[str, MarketGrids] = {}

    def _market(self, symbol: str, units: Units) -> MarketGrids | None:
        """The market's grids, made again when its spec was replaced (a new listing)."""
        spec = units.markets.get(symbol)
        if spec is None:
            return None
        grids = self._markets.get(symbol)
        if grids is None or grids.spec is not spec:
            grids = self._markets[symbol] = MarketGrids(
                spec, self._grid(spec.tick), self._grid(spec.lot),
                self._grid(units.asset_unit(spec.quote)),
            )
        return grids

    def _grid(self, step: Decimal) -> Grid:
        grid = self._grids.get(step)
        if grid is None:
            grid = self._grids[step] = Grid(step)
        return grid

    def order(self, frame: bytes | memoryview, units: Units) -> PlaceOrder | None:
        """The venue command for a valid order frame; None for anything else."""
        try:
            wire = self._decode(frame)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        grids = self._market(wire.market, units)
        if grids is None:
            return None
        qty = grids.sizes.units(wire.qty)
        if qty is None:
            return None
        price = 0
        if wire.type is OrderType.LIMIT:
            if wire.price is None:
                return None
            ticks = grids.prices.units(wire.price)
            if ticks is None:
                return None
            price = ticks
        elif wire.price is not None:
            return None
        # The spec's own symbol, equal to the wire's: one string object the venue's lookups
        # hash once.
        return PlaceOrder(grids.spec.symbol, wire.account, wire.side, qty, price, wire.type,
                          wire.tif, wire.post_only, wire.stp, wire.client_order_id)

    def answer(self, result: CommandResult, units: Units) -> OrderAnswer | None:
        """The answer to an order the venue accepted; None when it was rejected or repeated
        a client order id (the REST route's functions render those)."""
        command = result.command
        if type(command) is not PlaceOrder:
            return None
        accepted: OrderAccepted | None = None
        trades: list[Trade] = []
        cancels: list[OrderCancelled] = []
        for event in result.events:
            if type(event) is OrderAccepted:
                accepted = accepted or event
            elif type(event) is Trade:
                trades.append(event)
            elif type(event) is OrderCancelled:
                cancels.append(event)
            elif type(event) in _NOT_AN_ACCEPTANCE:
                return None
        grids = self._market(command.market, units)
        if accepted is None or grids is None:
            return None
        return OrderAnswer(result.seq, result.ts, False,
                           _order_view(command, accepted, trades, cancels, grids),
                           [_trade_view(trade, grids) for trade in trades])


def _order_view(command: PlaceOrder, accepted: OrderAccepted, trades: list[Trade],
                cancels: list[OrderCancelled], grids: MarketGrids) -> OrderView:
    """:func:`order_outcome`'s reading of an accepted order's events."""
    order_id = accepted.order_id
    filled = 0
    for trade in trades:
        if order_id in (trade.taker_order_id, trade.maker_order_id):
            filled += trade.qty
    cancelled = next((c for c in cancels if c.order_id == order_id), None) if cancels else None
    if cancelled is not None:
        status, open_qty = "cancelled", 0
    elif filled >= accepted.qty:
        status, open_qty = "filled", 0
    else:
        status, open_qty = "resting", accepted.qty - filled
    sizes = grids.sizes
    return OrderView(
        command.market, order_id, command.client_order_id, command.account, command.side,
        command.order_type, command.tif, command.post_only,
        grids.prices.text(accepted.price) if accepted.price else None,
        sizes.text(accepted.qty), sizes.text(filled), sizes.text(open_qty), status,
        None if cancelled is None else cancelled.reason,
    )


def _trade_view(trade: Trade, grids: MarketGrids) -> TradeView:
    fees = grids.fees
    return TradeView(
        trade.market, trade.trade_id, grids.prices.text(trade.price),
        grids.sizes.text(trade.qty), trade.taker_side, trade.taker_order_id,
        trade.taker_account, trade.maker_order_id, trade.maker_account,
        fees.text(trade.taker_fee), fees.text(trade.maker_fee),
    )


# Events after which the answer is not an accepted order's: the REST route's functions
# render these (an error naming the reason, or the original order of a repeated id).
_NOT_AN_ACCEPTANCE = frozenset({OrderRejected, OrderRepeated, CommandRejected})
