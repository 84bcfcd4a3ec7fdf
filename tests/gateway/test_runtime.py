"""The venue runtime: durable before acknowledged, group commit, bounds, stop and fail-stop."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from gateway_support import start_runtime

from haltguard.gateway.runtime import (
    CommandRefusedError,
    RuntimeLimits,
    VenueRuntime,
    VenueUnavailableError,
)
from haltguard.journal import JournalReader, recover
from haltguard.venue.commands import Deposit, Heartbeat, PlaceOrder, SetMarketState
from haltguard.venue.events import OrderAccepted
from haltguard.venue.types import MarketState, Side

SRC = Path(__file__).resolve().parents[2] / "src"


def limit(
    account: int, side: Side, price: int, qty: int = 10, client_order_id: str = ""
) -> PlaceOrder:
    return PlaceOrder("BTC-JPY", account, side, qty, price, client_order_id=client_order_id)


def test_an_acknowledged_command_is_already_in_the_journal(runtime: VenueRuntime) -> None:
    result = runtime.submit_and_wait(limit(1, Side.BUY, 14_000_000))

    reader = JournalReader(runtime.data_dir)
    try:
        reader.seek(result.seq)
        [(sequenced, events)] = reader.read_available()
    finally:
        reader.close()
    assert (sequenced.seq, sequenced.ts, sequenced.command) == (
        result.seq, result.ts, result.command
    )
    assert events == result.events


def test_concurrent_submitters_get_gap_free_sequence_numbers_and_shared_fsyncs(
    runtime: VenueRuntime,
) -> None:
    first_seq = runtime.status().last_seq + 1
    batches_before = runtime.status().batches
    seqs: list[int] = []
    lock = threading.Lock()

    def submitter(account: int) -> None:
        for index in range(100):
            result = runtime.submit_and_wait(limit(account % 3 + 1, Side.BUY, 10_000_000 + index))
            with lock:
                seqs.append(result.seq)

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(seqs) == list(range(first_seq, first_seq + 800))
    status = runtime.status()
    assert status.batches - batches_before < 800  # some fsyncs carried several commands
    assert status.batch_size_max_seen > 1


def test_a_batch_never_exceeds_batch_max(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path, batch_max=4)
    try:
        futures = [runtime.submit(Heartbeat()) for _ in range(200)]
        seqs = [future.result(10).seq for future in futures]
    finally:
        runtime.stop()

    assert seqs == sorted(seqs)
    assert runtime.status().batch_size_max_seen <= 4


def test_readers_never_observe_half_applied_commands(runtime: VenueRuntime) -> None:
    stop = threading.Event()
    problems: list[list[str]] = []

    def trade() -> None:
        for index in range(150):
            side = Side.BUY if index % 2 else Side.SELL
            runtime.submit_and_wait(limit(index % 3 + 1, side, 15_000_000, qty=index % 7 + 1))
        stop.set()

    trader = threading.Thread(target=trade)
    trader.start()
    while not stop.is_set():
        problems.append(runtime.read(lambda venue: venue.check_invariants()))
    trader.join()

    assert len(problems) > 1
    assert all(found == [] for found in problems)


def test_clean_stop_finishes_queued_commands_and_snapshots(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path)
    futures = [runtime.submit(limit(1, Side.BUY, 14_000_000 + n)) for n in range(300)]

    runtime.stop()

    results = [future.result(0) for future in futures]
    assert all(type(r.events[0]) is OrderAccepted for r in results)
    venue, report = recover(tmp_path, repair=False)
    assert report.snapshot_seq == results[-1].seq == venue.last_seq
    assert report.records_replayed == 0


def test_commands_after_stop_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path)
    runtime.stop()

    with pytest.raises(VenueUnavailableError, match="shutting down"):
        runtime.submit(Heartbeat())


def test_a_command_the_journal_cannot_store_is_refused_alone(runtime: VenueRuntime) -> None:
    before = runtime.status().last_seq

    too_big = runtime.submit(Deposit(1, "JPY", 1 << 70))
    next_one = runtime.submit(Heartbeat())

    with pytest.raises(CommandRefusedError):
        too_big.result(5)
    assert next_one.result(5).seq == before + 1
    assert runtime.status().failure == ""


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        (limit(1, Side.BUY, 15_000_000, client_order_id="\ud800"), "not valid Unicode"),
        (PlaceOrder("BTC-JPY", 1, Side.BUY, 10, 15_000_000.0), "wrong type"),  # type: ignore[arg-type]
        (SetMarketState("BTC-JPY", "paused", "ops", "r"), "wrong type"),  # type: ignore[arg-type]
        ("halt", "not a venue command"),
    ],
    ids=["lone-surrogate", "float-price", "unknown-state-string", "not-a-command"],
)
def test_a_malformed_or_unstorable_command_is_refused_before_it_gets_a_seq(
    runtime: VenueRuntime, command: object, problem: str
) -> None:
    before = runtime.status().last_seq

    refused = runtime.submit(command)  # type: ignore[arg-type]

    with pytest.raises(CommandRefusedError, match=problem):
        refused.result(5)
    assert runtime.submit_and_wait(Heartbeat()).seq == before + 1
    assert runtime.status().failure == ""


def test_a_plain_string_state_is_applied_as_that_state(runtime: VenueRuntime) -> None:
    result = runtime.submit_and_wait(SetMarketState("BTC-JPY", "halted", "ops", "r"))  # type: ignore[arg-type]

    assert result.command == SetMarketState("BTC-JPY", MarketState.HALTED, "ops", "r")
    assert runtime.read(lambda venue: venue.market_states()["BTC-JPY"]) is MarketState.HALTED


def test_time_never_goes_back_even_when_the_clock_does(tmp_path: Path) -> None:
    readings = iter([5_000_000_000 - step * 1_000 for step in range(10_000)])
    runtime = VenueRuntime(tmp_path, clock=lambda: next(readings)).start()
    try:
        stamps = [runtime.submit_and_wait(Heartbeat()).ts for _ in range(5)]
    finally:
        runtime.stop()

    assert stamps == sorted(stamps)
    assert runtime.status().clock_steps_back >= 4


def test_recent_trades_keep_only_the_newest_per_market(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path, trades_per_market_max=3)
    try:
        for price in range(15_000_000, 15_000_005):
            runtime.submit_and_wait(limit(2, Side.SELL, price, qty=1))
            runtime.submit_and_wait(limit(1, Side.BUY, price, qty=1))
        trades = runtime.recent_trades("BTC-JPY", 10)
    finally:
        runtime.stop()

    assert [record.trade.price for record in trades] == [15_000_004, 15_000_003, 15_000_002]


def test_a_retry_gets_the_first_result_while_it_is_remembered(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path, order_outcomes_max=2)
    try:
        first = {c: runtime.submit_and_wait(limit(1, Side.BUY, 14_000_000, 1, c)) for c in "abc"}
        retry_c = runtime.submit_and_wait(limit(1, Side.BUY, 14_000_000, 1, "c"))
        retry_a = runtime.submit_and_wait(limit(1, Side.BUY, 14_000_000, 1, "a"))
    finally:
        runtime.stop()

    assert retry_c.original == first["c"]
    assert retry_a.original is None  # forgotten: only the two newest are kept
    assert [type(e).__name__ for e in retry_a.events] == ["OrderRepeated"]


def test_limits_refuse_nonsense_bounds() -> None:
    with pytest.raises(ValueError, match="queue_depth_max"):
        RuntimeLimits(queue_depth_max=0)


JOURNAL_FAILURE_SCRIPT = textwrap.dedent(
    """
    import json, resource, signal, sys
    sys.path.insert(0, sys.argv[2])
    from gateway_support import setup_commands
    from haltguard.gateway.runtime import VenueRuntime, VenueUnavailableError
    from haltguard.venue.commands import PlaceOrder
    from haltguard.venue.types import Side

    runtime = VenueRuntime(sys.argv[1]).start()
    for command in setup_commands():
        runtime.submit_and_wait(command)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    segment_bytes = sum(p.stat().st_size for p in runtime.data_dir.glob("segments/*"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (segment_bytes + 4096, segment_bytes + 4096))
    acked, error = [], ""
    for n in range(2000):
        try:
            acked.append(runtime.submit_and_wait(
                PlaceOrder("BTC-JPY", 1, Side.BUY, 1, 10_000_000 + n)).seq)
        except VenueUnavailableError as exc:
            error = str(exc)
            break
    try:
        runtime.submit(PlaceOrder("BTC-JPY", 1, Side.BUY, 1, 10_000_000))
        after = "accepted"
    except VenueUnavailableError as exc:
        after = str(exc)
    print(json.dumps({"acked": acked, "error": error, "after": after,
                      "health": runtime.status().failure}))
    """
)


def test_a_journal_that_cannot_be_written_stops_the_venue(tmp_path: Path) -> None:
    data_dir = tmp_path / "venue"
    support = Path(__file__).resolve().parent
    completed = subprocess.run(
        [sys.executable, "-c", JOURNAL_FAILURE_SCRIPT, str(data_dir), str(support)],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 0, completed.stderr
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])

    assert outcome["acked"], "some orders fit under the file size limit"
    assert "journal could not be written" in outcome["error"]
    assert "journal could not be written" in outcome["after"]
    assert outcome["health"] == outcome["error"]
    venue, _ = recover(data_dir, repair=True)
    assert venue.last_seq >= outcome["acked"][-1]
    assert venue.check_invariants() == []


def test_a_restarted_venue_still_shows_its_last_trades(tmp_path: Path) -> None:
    """Recovery replays without events; the recent trades come back from the journal."""
    runtime = start_runtime(tmp_path, trades_per_market_max=3)
    try:
        for price in range(15_000_000, 15_000_005):
            runtime.submit_and_wait(limit(2, Side.SELL, price, qty=1))
            runtime.submit_and_wait(limit(1, Side.BUY, price, qty=1))
        before = runtime.recent_trades("BTC-JPY", 10)
    finally:
        runtime.stop()

    restarted = start_runtime(tmp_path, set_up=False, trades_per_market_max=3)
    try:
        deadline = time.monotonic() + 10
        while not restarted.recent_trades("BTC-JPY", 10) and time.monotonic() < deadline:
            time.sleep(0.01)
        restarted.submit_and_wait(limit(2, Side.SELL, 15_000_009, qty=1))
        restarted.submit_and_wait(limit(1, Side.BUY, 15_000_009, qty=1))
        after = restarted.recent_trades("BTC-JPY", 10)
    finally:
        restarted.stop()

    assert [(r.seq, r.trade.price) for r in before[:2]] == [
        (r.seq, r.trade.price) for r in after[1:]]
    assert [r.trade.price for r in after] == [15_000_009, 15_000_004, 15_000_003]
