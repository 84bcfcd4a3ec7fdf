"""Both VenueControl adapters behave the same: in process, and over HTTP to a real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gateway_support import LiveServer

from haltguard.gateway.control import HttpVenueControl, InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.venue.commands import PlaceOrder, ResumePhase
from haltguard.venue.control import VenueControl, VenueControlError
from haltguard.venue.events import (
    KillSwitchChanged,
    MarketStateChanged,
    OrderCancelled,
    ResumePlanStarted,
    WithdrawalsFrozen,
)
from haltguard.venue.types import CancelReason, MarketState, Side


@pytest.fixture(params=["in_process", "http"])
def control(request: pytest.FixtureRequest, runtime: VenueRuntime) -> Iterator[VenueControl]:
    if request.param == "in_process":
        yield InProcessVenueControl(runtime)
        return
    with LiveServer(runtime) as server, HttpVenueControl(server.url, "test-admin-token") as http:
        yield http


def test_halting_returns_the_journaled_state_change(control: VenueControl) -> None:
    events = control.set_market_state(
        "BTC-JPY", MarketState.HALTED, actor="alice", reason="price feed down",
        incident_id="INC-7", cancels_allowed=False,
    )

    assert events == [
        MarketStateChanged(
            market="BTC-JPY", old=MarketState.OPEN, new=MarketState.HALTED, actor="alice",
            reason="price feed down", incident_id="INC-7", cancels_allowed=False, until_ts=0,
        )
    ]
    assert control.market_states()["BTC-JPY"] is MarketState.HALTED


def test_a_refused_transition_raises_with_the_venues_reason(control: VenueControl) -> None:
    control.set_market_state("BTC-JPY", MarketState.HALTED, actor="alice", reason="r")

    with pytest.raises(VenueControlError, match="illegal_transition") as refused:
        control.set_market_state("BTC-JPY", MarketState.OPEN, actor="alice", reason="r")

    assert "auction" in str(refused.value)


def test_kill_switch_and_withdrawal_freeze_report_their_events(control: VenueControl) -> None:
    killed = control.kill_switch(True, actor="bob", reason="exchange down", incident_id="I-1")
    frozen = control.freeze_withdrawals("BTC", True, actor="bob", reason="wallet")

    assert KillSwitchChanged(True, "bob", "exchange down", "I-1") in killed
    assert set(control.market_states().values()) == {MarketState.HALTED}
    assert frozen == [WithdrawalsFrozen("BTC", True, "bob", "wallet", "")]


def test_resume_plan_starts_from_a_halt(control: VenueControl) -> None:
    control.set_market_state("ETH-JPY", MarketState.HALTED, actor="a", reason="r")
    phases = [
        ResumePhase(MarketState.CANCEL_ONLY, 60_000_000_000),
        ResumePhase(MarketState.AUCTION, 180_000_000_000),
        ResumePhase(MarketState.OPEN, 0),
    ]

    events = control.start_resume_plan("ETH-JPY", phases, actor="a", reason="clear")

    assert type(events[0]) is ResumePlanStarted
    assert control.market_states()["ETH-JPY"] is MarketState.CANCEL_ONLY


def test_cancel_all_returns_each_cancelled_order_in_lots(
    control: VenueControl, runtime: VenueRuntime
) -> None:
    placed = [
        runtime.submit_and_wait(PlaceOrder("XRP-JPY", 1, Side.BUY, qty, 80_000)).seq
        for qty in (10, 25)
    ]

    events = control.cancel_all(market="XRP-JPY", actor="ops", reason="halt cleanup")

    assert events == [
        OrderCancelled("XRP-JPY", order_id, 1, qty, CancelReason.MASS_CANCEL)
        for order_id, qty in zip(placed, (10, 25), strict=True)
    ]


def test_http_control_says_when_the_venue_cannot_be_reached() -> None:
    control = HttpVenueControl("http://127.0.0.1:9", "token", timeout_s=2)
    with control, pytest.raises(VenueControlError, match="cannot reach the venue"):
        control.market_states()


def test_http_control_with_a_wrong_token_is_refused(runtime: VenueRuntime) -> None:
    with LiveServer(runtime) as server, HttpVenueControl(server.url, "wrong") as control:
        refused = pytest.raises(VenueControlError, match="forbidden")
        with refused:
            control.kill_switch(True, actor="eve", reason="no")

    assert runtime.read(lambda venue: venue.kill_switch_engaged) is False


def test_a_plain_string_state_is_understood_by_both_adapters(control: VenueControl) -> None:
    events = control.set_market_state("BTC-JPY", "halted", actor="a", reason="r")  # type: ignore[arg-type]

    assert [type(event) for event in events] == [MarketStateChanged]
    assert control.market_states()["BTC-JPY"] is MarketState.HALTED


def test_a_wrongly_typed_argument_is_refused_before_it_reaches_the_venue(
    control: VenueControl, runtime: VenueRuntime
) -> None:
    before = runtime.status().last_seq

    with pytest.raises(VenueControlError, match="state"):
        control.set_market_state("BTC-JPY", "paused", actor="a", reason="r")  # type: ignore[arg-type]
    with pytest.raises(VenueControlError, match="phases"):
        control.start_resume_plan("BTC-JPY", "open", actor="a", reason="r")  # type: ignore[arg-type]
    with pytest.raises(VenueControlError, match="engaged"):
        control.kill_switch("yes", actor="a", reason="r")  # type: ignore[arg-type]

    assert runtime.status().last_seq == before
    assert runtime.status().failure == ""
    assert control.market_states()["BTC-JPY"] is MarketState.OPEN
