"""A malformed command is refused with a rejection event; it never raises out of the venue.

``msgspec`` structs do not check field types when built, so a caller can hand the venue a
float quantity, a plain string for a market state, or something that is no command at all.
The venue thread must survive every one of them with nothing changed.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from venue_support import MARKET, funded, order

from haltguard.venue.commands import (
    AddMarket,
    CancelAll,
    CancelOrder,
    Command,
    ConfigureBreaker,
    Deposit,
    KillSwitch,
    PlaceOrder,
    ResumePhase,
    SetMarketState,
    StartResumePlan,
    Withdraw,
)
from haltguard.venue.events import CommandRejected, MarketStateChanged, OrderRejected
from haltguard.venue.markets import BreakerConfig
from haltguard.venue.types import MarketState, OrderType, RejectReason, Side, TimeInForce

OPS = {"actor": "ops", "reason": "test"}


def test_a_plain_string_state_is_read_as_that_state() -> None:
    harness = funded()

    events = harness(SetMarketState(MARKET, "halted", **OPS))  # type: ignore[arg-type]

    assert type(events[0]) is MarketStateChanged
    assert events[0].new is MarketState.HALTED
    assert harness.venue.market_state(MARKET).state is MarketState.HALTED


def test_a_string_that_is_no_state_is_refused_naming_the_field() -> None:
    harness = funded()
    before = harness.venue.state_hash()

    events = harness(SetMarketState(MARKET, "paused", **OPS))  # type: ignore[arg-type]

    assert type(events[0]) is CommandRejected
    assert events[0].reason is RejectReason.INVALID_COMMAND
    assert "state" in events[0].detail
    assert harness.venue.state_hash() != before  # only seq and ts moved on
    assert harness.venue.market_state(MARKET).state is MarketState.OPEN


MALFORMED: list[Any] = [
    order(1, Side.BUY, 2.0, 1_000),  # type: ignore[arg-type]
    order(True, Side.BUY, 2, 1_000),  # type: ignore[arg-type]
    order(1, Side.BUY, 2, 1_000.5),  # type: ignore[arg-type]
    order(1, Side.BUY, "2", 1_000),  # type: ignore[arg-type]
    order(1, Side.BUY, 2, 1_000, client_order_id=None),
    order(1, Side.BUY, 2, 1_000, post_only=1),
    order(1, "up", 2, 1_000),  # type: ignore[arg-type]
    PlaceOrder([MARKET], 1, Side.BUY, 2, 1_000),  # type: ignore[arg-type]
    PlaceOrder(MARKET.encode(), 1, Side.BUY, 2, 1_000),  # type: ignore[arg-type]
    PlaceOrder(MARKET, 1, Side.BUY, 2, 0, OrderType.MARKET, "now"),  # type: ignore[arg-type]
    CancelOrder(MARKET, 1, 5.0),  # type: ignore[arg-type]
    CancelOrder({MARKET: 1}, 1, 5),  # type: ignore[arg-type]
    CancelOrder(MARKET, "1", 5),  # type: ignore[arg-type]
    CancelOrder(MARKET, 1, client_order_id=7),  # type: ignore[arg-type]
    Deposit(1, "JPY", 10.0),  # type: ignore[arg-type]
    Withdraw(1, ["JPY"], 10),  # type: ignore[arg-type]
    KillSwitch("yes", **OPS),  # type: ignore[arg-type]
    StartResumePlan(MARKET, "open", **OPS),  # type: ignore[arg-type]
    StartResumePlan(MARKET, [ResumePhase("later", 1)], **OPS),  # type: ignore[arg-type]
    ConfigureBreaker(MARKET, BreakerConfig("wide", 1), **OPS),  # type: ignore[arg-type]
    AddMarket(None, MarketState.OPEN),  # type: ignore[arg-type]
    CancelAll(account=None, **OPS),  # type: ignore[arg-type]
    "halt everything",
    None,
]


@pytest.mark.parametrize(
    "command", MALFORMED, ids=[f"{n}-{type(c).__name__}" for n, c in enumerate(MALFORMED)]
)
def test_a_malformed_command_is_rejected_and_changes_nothing(command: Any) -> None:
    harness = funded()
    harness.sell(2, 3, 1_000)
    before = harness.venue.export_state()

    events = harness(command)

    assert len(events) == 1
    assert type(events[0]) in (CommandRejected, OrderRejected)
    assert events[0].reason is RejectReason.INVALID_COMMAND
    after = harness.venue.export_state()
    assert (after.last_seq, after.last_ts) != (before.last_seq, before.last_ts)
    assert msgspec.structs.replace(after, last_seq=before.last_seq, last_ts=before.last_ts) == (
        before
    )


TEMPLATES: list[Command] = [
    order(1, Side.BUY, 2, 1_000),
    order(1, Side.SELL, 2, 0),
    order(1, Side.BUY, 2, 1_001, tif=TimeInForce.IOC, client_order_id="x"),
    CancelOrder(MARKET, 2, 4),
    SetMarketState(MARKET, MarketState.HALTED, **OPS),
    Deposit(1, "JPY", 100),
    CancelAll(account=2, market=MARKET, **OPS),
]
JUNK = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False), st.text(max_size=3),
    st.binary(max_size=3), st.lists(st.integers(), max_size=2), st.integers(-5, 5),
    st.integers(2**63, 2**70), st.just(Side.SELL), st.just(MarketState.AUCTION),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template=st.sampled_from(TEMPLATES), data=st.data(), junk=JUNK)
def test_any_field_of_any_type_never_breaks_the_venue(
    template: Command, data: st.DataObject, junk: object
) -> None:
    harness = funded()
    harness.sell(2, 3, 1_000)
    field = data.draw(st.sampled_from(type(template).__struct_fields__))
    command = msgspec.structs.replace(template, **{field: junk})

    harness(command)

    assert harness.venue.check_invariants() == []
    state = harness.venue.export_state()
    assert all(type(b.available) is int and type(b.held) is int for b in state.balances)
