"""The in-process feed and the runtime's brake lane, and the journal follower."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from detection_support import EXAMPLE_RULES

from haltguard.detection.feed import VenueFeed, follow_journal
from haltguard.detection.market import Applied
from haltguard.detection.rulesfile import load_rules_file
from haltguard.detection.service import DetectionService
from haltguard.gateway.runtime import CommandResult, VenueRuntime
from haltguard.venue.commands import Command, Deposit, PlaceOrder, SetMarketState
from haltguard.venue.engine import Venue
from haltguard.venue.events import Trade
from haltguard.venue.types import MarketState, OrderType, Side, TimeInForce
from haltguard.venue.workload import WORKLOAD_MARKET, order_flow, setup_commands

HALT = SetMarketState(WORKLOAD_MARKET, MarketState.HALTED, "operator:carol", "test")
CRASH: list[Command] = [
    Deposit(9001, "JPY", 10**12, "t"), Deposit(9002, "SIM", 10**9, "t"),
    PlaceOrder(WORKLOAD_MARKET, 9001, Side.BUY, 10, 100_000),
    PlaceOrder(WORKLOAD_MARKET, 9002, Side.SELL, 10, 100_000, OrderType.LIMIT,
               TimeInForce.IOC),
    PlaceOrder(WORKLOAD_MARKET, 9001, Side.BUY, 10, 85_000),
    PlaceOrder(WORKLOAD_MARKET, 9002, Side.SELL, 1_000_000, 85_000, OrderType.LIMIT,
               TimeInForce.IOC),
]


def _started(tmp_path: Path) -> VenueRuntime:
    runtime = VenueRuntime(tmp_path / "venue")
    runtime.start()
    for future in [runtime.submit(command) for command in setup_commands(accounts=10)]:
        future.result()
    return runtime


def test_brake_is_applied_before_orders_queued_ahead_of_it(tmp_path: Path) -> None:
    runtime = _started(tmp_path)
    hold, held = threading.Event(), threading.Event()

    def stall_once(_venue: Venue, _applied: Sequence[Applied]) -> None:
        if not held.is_set():
            held.set()
            hold.wait(10)

    runtime.add_listener(stall_once)
    try:
        first = runtime.submit(Deposit(1, "JPY", 1, "t"))
        assert held.wait(10)  # the venue thread now waits inside its listener
        flow = list(order_flow(3, 2_000, first_seq=runtime.status().last_seq + 1,
                               accounts=10))
        orders = [runtime.submit(command) for command in flow]
        halt = runtime.submit(HALT)
        hold.set()
        first.result(10)
        halted = halt.result(10)
        results = [future.result(30) for future in orders]
    finally:
        hold.set()
        runtime.stop()
    assert all(result.seq > halted.seq for result in results)
    assert not [event for result in results for event in result.events
                if isinstance(event, Trade)]


def test_a_brake_a_listener_asks_for_is_applied_before_its_batch_is_answered(
    tmp_path: Path,
) -> None:
    runtime = _started(tmp_path)
    halts: list[Future[CommandResult]] = []

    def halt_on_deposit(_venue: Venue, applied: Sequence[Applied]) -> None:
        if not halts and any(type(r.command) is Deposit for r in applied):  # type: ignore[attr-defined]
            halts.append(runtime.submit(HALT))

    seen_at_answer: list[int] = []
    runtime.add_listener(halt_on_deposit)
    try:
        deposit = runtime.submit(Deposit(1, "JPY", 1, "t"))
        deposit.add_done_callback(lambda _: seen_at_answer.append(runtime.status().last_seq))
        answered = deposit.result(10)
        assert halts[0].result(10).seq == answered.seq + 1
        assert seen_at_answer == [answered.seq + 1]  # the halt was journaled first
    finally:
        runtime.stop()


def test_idle_venue_applies_a_brake_at_once(tmp_path: Path) -> None:
    runtime = _started(tmp_path)
    try:
        began = time.monotonic()
        runtime.submit(HALT).result(5)
        assert time.monotonic() - began < 1.0
        assert runtime.read(lambda venue: venue.market_states())[WORKLOAD_MARKET] is (
            MarketState.HALTED)
    finally:
        runtime.stop()


def test_a_failing_listener_never_stops_the_venue(tmp_path: Path) -> None:
    runtime = _started(tmp_path)

    def broken(_venue: Venue, _applied: Sequence[Applied]) -> None:
        raise RuntimeError("a bug in a detector")

    runtime.add_listener(broken)
    try:
        result = runtime.submit(Deposit(1, "JPY", 5, "t")).result(5)
        assert result.seq > 0 and runtime.failure == ""
        assert runtime.status().listener_failures >= 1
    finally:
        runtime.stop()


def test_journal_follower_sees_a_crash_from_another_thread(tmp_path: Path) -> None:
    runtime = _started(tmp_path)
    try:
        for future in [runtime.submit(command) for command in CRASH]:
            future.result(10)
    finally:
        runtime.stop()
    detection = DetectionService(rules=load_rules_file(EXAMPLE_RULES))
    feed = VenueFeed(detection)
    stop = threading.Event()
    follower = threading.Thread(target=follow_journal, args=(tmp_path / "venue", feed),
                                kwargs={"stop": stop}, daemon=True)
    follower.start()
    deadline = time.monotonic() + 10
    while not detection.recent_decisions() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    follower.join(10)
    assert "market-crash-halt" in [d.rule_id for d in detection.recent_decisions()]
