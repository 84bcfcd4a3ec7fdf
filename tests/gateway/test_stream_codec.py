"""The streaming order entry's fast path agrees with the REST route's model and answers: it
takes exactly the orders the REST route takes (anything else is left to the REST route's
own functions), and its answers are those the REST route's functions render, byte for byte."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haltguard.gateway.models import Units
from haltguard.gateway.runtime import CommandRefusedError, CommandResult, VenueRuntime, well_typed
from haltguard.gateway.stream import _answer_of, _order_of
from haltguard.gateway.stream_codec import GRID_TEXTS_MAX, Grid, StreamCodec
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.markets import DEMO_ASSETS, demo_markets, from_units
from haltguard.venue.types import OrderType, SelfTradePrevention, Side, TimeInForce

UNITS = Units({spec.symbol: spec for spec in demo_markets()},
              {asset.code: asset.decimals for asset in DEMO_ASSETS})
GOOD_ORDER: dict[str, Any] = {"market": "BTC-JPY", "account": 1, "side": "buy", "qty": "0.001",
                              "price": "4990000", "client_order_id": "c-1"}

# Each field's candidates: valid values and the ways a client gets it wrong.
FIELD_VALUES: dict[str, list[Any]] = {
    "market": ["BTC-JPY", "ETH-JPY", "NOPE-JPY", 7, None, ""],
    "account": [1, 2, 0, -1, 2**63 - 1, 2**63, True, 1.0, "1"],
    "side": ["buy", "sell", "BUY", "sideways", 1],
    "qty": ["0.001", "0.0001", "1", "0.00001", "1e-3", "01", "-1", "0", " 1", "1.", 0.001,
            "100.0000", "100.0001"],
    "price": ["4990000", "5010000", "4990000.0", "4990000.5", "1e6", "0", None, 4990000],
    "type": ["limit", "market", "stop", None],
    "tif": ["gtc", "ioc", "fok", "day"],
    "post_only": [False, True, 0, "false"],
    "stp": ["cancel_taker", "cancel_maker", "cancel_both", "none"],
    "client_order_id": ["", "c-1", "x" * 64, "x" * 65, 5],
    "extra": [1],
}


@st.composite
def order_maps(draw: st.DrawFn) -> dict[str, Any]:
    """A valid order with up to three fields replaced by a candidate or left out."""
    fields = dict(GOOD_ORDER)
    for name in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=3)):
        if draw(st.booleans()) and name in fields:
            del fields[name]
        else:
            fields[name] = draw(st.sampled_from(FIELD_VALUES[name]))
    return fields


@settings(max_examples=500, deadline=None)
@given(fields=order_maps())
def test_the_fast_path_takes_an_order_only_as_the_rest_route_would(
    fields: dict[str, Any],
) -> None:
    _agrees_with_the_rest_route(fields)


def _agrees_with_the_rest_route(fields: dict[str, Any]) -> None:
    fast = StreamCodec().order(msgspec.msgpack.encode(fields), UNITS)
    if fast is not None:
        assert fast == _order_of(fields, UNITS), fields
        assert well_typed(fast) is fast  # already exactly typed: taken without a copy


def test_every_single_wrong_field_is_left_to_the_rest_route() -> None:
    for name, values in FIELD_VALUES.items():
        _agrees_with_the_rest_route({k: v for k, v in GOOD_ORDER.items() if k != name})
        for value in values:
            _agrees_with_the_rest_route({**GOOD_ORDER, name: value})


@pytest.mark.parametrize("changes", [
    {}, {"side": "sell", "price": "5010000"}, {"type": "market", "tif": "ioc", "price": None},
    {"tif": "ioc"}, {"post_only": True}, {"stp": "cancel_both"}, {"client_order_id": ""},
    {"qty": "0.0010"},
])
def test_valid_orders_take_the_fast_path(changes: dict[str, Any]) -> None:
    fields = {**GOOD_ORDER, **changes}
    if fields["price"] is None:
        del fields["price"]
    fast = StreamCodec().order(msgspec.msgpack.encode(fields), UNITS)
    assert fast is not None
    assert fast == _order_of(fields, UNITS)


def test_a_grid_converts_exactly_and_forgets_everything_when_full() -> None:
    grid = Grid(Decimal("0.0001"))
    assert grid.units("0.0123") == 123
    assert grid.units("0.00001") is None  # off the grid: the REST route says why
    assert grid.text(123) == "0.0123"
    for units in range(GRID_TEXTS_MAX + 5):
        assert grid.text(units) == from_units(units, grid.step)
    assert grid.text(123) == "0.0123"


def _submit(runtime: VenueRuntime, commands: list[PlaceOrder]) -> list[Any]:
    async def submit() -> list[Any]:
        return await runtime.submit_many(commands)
    return asyncio.run(submit())


def _order(account: int, side: Side, qty: int, price: int, **changes: Any) -> PlaceOrder:
    return msgspec.structs.replace(PlaceOrder("BTC-JPY", account, side, qty, price), **changes)


def test_fast_answers_are_the_rest_routes_answers_byte_for_byte(runtime: VenueRuntime) -> None:
    buy, sell = Side.BUY, Side.SELL
    commands = [
        _order(1, buy, 10, 4_999_990, client_order_id="rest"),  # rests
        _order(2, sell, 30, 5_000_010),
        _order(2, sell, 5, 5_000_020),
        _order(1, buy, 20, 5_000_010),  # fills completely
        _order(1, buy, 20, 5_000_020, tif=TimeInForce.IOC),  # fills 10 + 5, the rest cancelled
        _order(3, sell, 7, 0, order_type=OrderType.MARKET, tif=TimeInForce.IOC),  # fills
        _order(1, sell, 1, 4_999_990),  # self-trade: the taker is cancelled
        # self-trade again: its own resting bid is cancelled this time, and the order rests
        _order(1, sell, 1, 4_999_990, stp=SelfTradePrevention.CANCEL_MAKER),
        _order(1, buy, 10, 4_999_990, client_order_id="rest"),  # a repeat
        _order(1, buy, 11, 4_999_990, client_order_id="rest"),  # the same id, other terms
        _order(9, buy, 1, 4_999_990),  # an account with no funds
    ]
    outcomes = _submit(runtime, commands)
    units, codec = runtime.units(), StreamCodec()
    fast_answers = 0
    for outcome in outcomes:
        assert isinstance(outcome, CommandResult)
        rest = _answer_of(runtime, outcome, units)
        fast = codec.answer(outcome, units)
        if fast is None:
            assert "error" in rest or rest["repeated"]
            continue
        fast_answers += 1
        assert msgspec.msgpack.encode(fast) == msgspec.msgpack.encode(rest)  # byte for byte
    assert fast_answers == 8
    statuses = [codec.answer(o, units) for o in outcomes[:8]]
    assert [a.order.status for a in statuses if a is not None] == [
        "resting", "resting", "resting", "filled", "cancelled", "filled", "cancelled", "resting"]


def test_an_order_not_exactly_typed_is_still_checked_field_by_field() -> None:
    text_side = PlaceOrder("BTC-JPY", 1, "buy", 10, 5_000_000)  # type: ignore[arg-type]
    assert well_typed(text_side).side is Side.BUY  # converted, not passed through
    with pytest.raises(CommandRefusedError, match="wrong type"):
        well_typed(PlaceOrder("BTC-JPY", 1, Side.BUY, True, 5_000_000))
