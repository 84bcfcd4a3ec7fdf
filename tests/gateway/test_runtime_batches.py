"""The runtime's event-loop API: ``submit_async`` and ``submit_many`` (one completion for N
commands, one loop wake-up per batch), with the same durability, bounds and brake lane."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from gateway_support import start_runtime

from haltguard.gateway.runtime import (
    CommandRefusedError,
    CommandResult,
    OverloadedError,
    VenueUnavailableError,
)
from haltguard.journal import recover
from haltguard.venue.commands import Command, PlaceOrder, SetMarketState
from haltguard.venue.types import MarketState, Side


def limit(index: int) -> PlaceOrder:
    side = Side.BUY if index % 2 else Side.SELL
    price = 13_000_000 - index if side is Side.BUY else 15_000_000 + index
    return PlaceOrder("BTC-JPY", 1 + index % 2, side, 10, price, client_order_id=f"b{index}")


def test_submit_many_answers_each_command_in_order_once_all_are_journaled(
    tmp_path: Path,
) -> None:
    runtime = start_runtime(tmp_path / "venue")
    commands: list[Command] = [limit(index) for index in range(500)]
    commands.insert(7, PlaceOrder("BTC-JPY", 1, Side.BUY, 1.5, 1))  # type: ignore[arg-type]

    async def place() -> list[CommandResult | BaseException]:
        return await runtime.submit_many(commands)

    try:
        outcomes = asyncio.run(place())
    finally:
        runtime.stop()
    assert isinstance(outcomes[7], CommandRefusedError)  # refused alone, no seq taken
    results = [o for o in outcomes if isinstance(o, CommandResult)]
    assert [r.command for r in results] == commands[:7] + commands[8:]
    assert [r.seq for r in results] == list(range(results[0].seq, results[0].seq + 500))
    recovered, _ = recover(tmp_path / "venue", repair=False)
    assert recovered.last_seq == results[-1].seq


def test_submit_many_queues_all_or_nothing_when_the_queue_is_nearly_full(
    tmp_path: Path,
) -> None:
    runtime = start_runtime(tmp_path / "venue", queue_depth_max=8)
    gate = threading.Event()
    runtime.add_listener(lambda _venue, _results: gate.wait(10))  # hold the venue thread
    try:
        async def fill() -> None:
            first = runtime.submit_async(limit(0))  # taken by the (held) venue thread
            await asyncio.sleep(0.2)
            held = runtime.submit_many([limit(index) for index in range(1, 6)])
            before = runtime.status().queue_depth
            with pytest.raises(OverloadedError):
                runtime.submit_many([limit(index) for index in range(6, 10)])
            assert runtime.status().queue_depth == before  # nothing of the refused four
            gate.set()
            await first
            await held

        asyncio.run(fill())
        assert runtime.status().overloads == 1
    finally:
        gate.set()
        runtime.stop()


def test_a_brake_goes_ahead_of_orders_queued_with_submit_many(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path / "venue")
    gate = threading.Event()
    runtime.add_listener(lambda _venue, _results: gate.wait(10))
    try:
        async def race() -> tuple[int, list[int]]:
            first = runtime.submit_async(limit(0))
            await asyncio.sleep(0.2)  # the venue thread holds the first order's batch
            orders = runtime.submit_many([limit(index) for index in range(1, 50)])
            halt = runtime.submit(SetMarketState("BTC-JPY", MarketState.HALTED, "ops", "test"))
            gate.set()
            await first
            outcomes = await orders
            return halt.result(10).seq, [o.seq for o in outcomes
                                         if isinstance(o, CommandResult)]

        halt_seq, order_seqs = asyncio.run(race())
    finally:
        gate.set()
        runtime.stop()
    assert halt_seq < min(order_seqs)


def test_submit_async_results_reach_the_loop_and_a_stopped_runtime_refuses(
    tmp_path: Path,
) -> None:
    runtime = start_runtime(tmp_path / "venue")

    async def place() -> list[CommandResult]:
        return list(await asyncio.gather(*(runtime.submit_async(limit(i)) for i in range(64))))

    try:
        results = asyncio.run(place())
    finally:
        runtime.stop()
    assert sorted(r.seq for r in results) == [r.seq for r in results]

    async def after_stop() -> None:
        with pytest.raises(VenueUnavailableError):
            runtime.submit_async(limit(99))
        with pytest.raises(VenueUnavailableError):
            runtime.submit_many([limit(100)])

    asyncio.run(after_stop())


def test_orders_the_journal_cannot_store_are_refused_alone_without_a_seq(
    tmp_path: Path,
) -> None:
    runtime = start_runtime(tmp_path / "venue")
    unstorable: list[Command] = [
        PlaceOrder("BTC-JPY", 1, Side.BUY, 1 << 70, 13_000_000),
        PlaceOrder("BTC-JPY", 1, Side.BUY, 10, 13_000_000, client_order_id="\ud800"),
        PlaceOrder("BTC-JPY", 1 << 70, Side.BUY, 10, 13_000_000),
    ]

    async def place() -> list[CommandResult | BaseException]:
        return await runtime.submit_many([limit(0), *unstorable, limit(1)])

    try:
        before = runtime.status().last_seq
        first, *refused, last = asyncio.run(place())
    finally:
        runtime.stop()
    assert all(isinstance(outcome, CommandRefusedError) for outcome in refused), refused
    assert "not valid Unicode" in str(refused[1])
    assert isinstance(first, CommandResult) and isinstance(last, CommandResult)
    assert (first.seq, last.seq) == (before + 1, before + 2)
    assert runtime.status().failure == ""
