"""Large batches are applied while their fsync runs; nobody reads or is answered before the
batch is durable, and a failed sync or an engine exception in such a batch ends as it does
in a small one. Also: commands an event loop queued are taken even if the loop stops, and
an exactly typed cancel skips the field-by-field copy as an order does."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

import pytest
from gateway_support import start_runtime

from haltguard.gateway import runtime as runtime_module
from haltguard.gateway.runtime import (
    CommandQuarantinedError,
    CommandRefusedError,
    CommandResult,
    VenueRuntime,
    VenueUnavailableError,
    well_typed,
)
from haltguard.journal import recover
from haltguard.journal.segments import segment_name
from haltguard.venue.commands import CancelOrder, Command, Heartbeat, PlaceOrder
from haltguard.venue.engine import Venue
from haltguard.venue.types import Side

BATCH = runtime_module._OVERLAP_COMMANDS_MIN + 8  # large enough to be applied during its sync


def order(index: int, client_order_id: str = "") -> PlaceOrder:
    side = Side.BUY if index % 2 else Side.SELL
    price = 13_000_000 - index if side is Side.BUY else 15_000_000 + index  # never crosses
    return PlaceOrder("BTC-JPY", 1 + index % 3, side, 1, price,
                      client_order_id=client_order_id or f"o{index}")


def queue_as_one_batch(
    runtime: VenueRuntime, commands: Sequence[Command], before_release: Callable[[], None]
) -> list[Future[CommandResult]]:
    """Hold the venue thread in a listener while ``commands`` queue, so they share a batch;
    ``before_release`` runs just before the venue thread is let go."""
    hold, held = threading.Event(), threading.Event()

    def stall_once(_venue: Venue, _applied: Sequence[CommandResult]) -> None:
        if not held.is_set():
            held.set()
            hold.wait(10)

    runtime.add_listener(stall_once)
    runtime.submit(Heartbeat())
    assert held.wait(10)
    futures = [runtime.submit(command) for command in commands]
    before_release()
    hold.set()
    return futures


def hold_next_sync(runtime: VenueRuntime, *, fail: bool = False) -> tuple[
        threading.Event, threading.Event, list[int]]:
    """Make the journal's next sync wait for a gate (and then fail, if asked). The runtime's
    journal is reached directly: nothing else can hold an fsync open from a test.

    Returns (sync entered, gate, the venue's last seq seen while the sync waited)."""
    journal = runtime._journal
    real_sync = journal.sync
    entered, gate = threading.Event(), threading.Event()
    seen: list[int] = []

    def held_sync() -> None:
        journal.sync = real_sync  # type: ignore[method-assign]
        entered.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not gate.is_set():
            seen[:] = [runtime._venue.last_seq]
            time.sleep(0.01)
        gate.wait(10)
        if fail:  # the segment's descriptor becomes read-only: the write fails as a disk would
            writer = journal._writer
            read_only = os.open(writer.directory / segment_name(writer.segment_first_seq),
                                os.O_RDONLY)
            os.dup2(read_only, writer._fd)
            os.close(read_only)
        real_sync()

    journal.sync = held_sync  # type: ignore[method-assign]
    return entered, gate, seen


def test_a_large_batch_is_applied_during_its_sync_but_read_and_answered_only_after_it(
    tmp_path: Path,
) -> None:
    runtime = start_runtime(tmp_path / "venue")
    try:
        holder: list[tuple[threading.Event, threading.Event, list[int]]] = []
        futures = queue_as_one_batch(
            runtime, [order(index) for index in range(BATCH)],
            lambda: holder.append(hold_next_sync(runtime)),
        )
        entered, gate, seen = holder[0]
        assert entered.wait(10)
        read: list[int] = []
        reader = threading.Thread(target=lambda: read.append(runtime.read(lambda v: v.last_seq)))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive(), "a reader saw the batch before its sync returned"
        assert not any(future.done() for future in futures)
        gate.set()
        results = [future.result(10) for future in futures]
        reader.join(10)
    finally:
        runtime.stop()
    last_seq = results[-1].seq
    assert seen == [last_seq], "the batch was applied while its sync was still waiting"
    assert read == [last_seq]
    assert [r.seq for r in results] == list(range(results[0].seq, last_seq + 1))
    recovered, _ = recover(tmp_path / "venue", repair=False)
    assert recovered.last_seq == last_seq


def test_a_failed_sync_of_a_large_batch_answers_every_caller_and_stops_the_venue(
    tmp_path: Path,
) -> None:
    runtime = start_runtime(tmp_path / "venue")
    try:
        acked_seq = runtime.status().last_seq

        def fail_the_next_sync() -> None:  # armed only once the held batch was synced
            hold_next_sync(runtime, fail=True)[1].set()

        futures = queue_as_one_batch(
            runtime, [order(index) for index in range(BATCH)], fail_the_next_sync
        )
        for future in futures:
            with pytest.raises(VenueUnavailableError, match="journal could not be written"):
                future.result(10)
        assert "journal could not be written" in runtime.failure
        with pytest.raises(VenueUnavailableError):
            runtime.read(lambda venue: venue.last_seq)
    finally:
        runtime.stop()
    recovered, _ = recover(tmp_path / "venue", repair=True)
    assert recovered.last_seq <= acked_seq + 1  # the held heartbeat at most; none of the batch
    assert recovered.check_invariants() == []


def test_an_engine_exception_inside_a_large_batch_quarantines_only_that_command(
    tmp_path: Path,
) -> None:
    runtime = start_runtime(tmp_path / "venue", fault_injection=True)
    try:
        runtime.arm_fault("engine_raise", "bug-")
        commands = [order(index) for index in range(BATCH)]
        commands[5] = order(5, "bug-5")
        futures = queue_as_one_batch(runtime, commands, lambda: None)
        with pytest.raises(CommandQuarantinedError, match="quarantined"):
            futures[5].result(10)
        results = [f.result(10) for n, f in enumerate(futures) if n != 5]
        assert results[-1].seq - results[0].seq == BATCH - 1  # one batch, nothing skipped
        open_ids = {o.client_order_id for account in (1, 2, 3)
                    for o in runtime.read(lambda v, a=account: v.open_orders(a))}
        assert open_ids == {c.client_order_id for n, c in enumerate(commands) if n != 5}
        assert [entry["seq"] for entry in runtime.quarantined()] == [results[4].seq + 1]
    finally:
        runtime.stop()


def test_a_command_queued_by_a_loop_that_stops_running_is_still_taken(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path / "venue")
    try:
        before = runtime.status().last_seq

        async def submit_then_block() -> int:
            answer = runtime.submit_async(order(1))
            time.sleep(1.0)  # the loop is blocked: its end-of-iteration wake-up cannot run
            taken = runtime.status().last_seq
            await answer
            return taken

        taken = asyncio.run(submit_then_block())
    finally:
        runtime.stop()
    assert taken == before + 1


def test_an_exactly_typed_cancel_is_taken_as_is_and_a_wrongly_typed_one_is_still_refused(
) -> None:
    exact = CancelOrder("BTC-JPY", 1, 5)
    assert well_typed(exact) is exact  # no copy through validation
    for wrong in (CancelOrder("BTC-JPY", True, 5), CancelOrder("BTC-JPY", 1, 5.0),
                  CancelOrder("BTC-JPY", 1, client_order_id=7)):
        with pytest.raises(CommandRefusedError, match="wrong type"):
            well_typed(wrong)
