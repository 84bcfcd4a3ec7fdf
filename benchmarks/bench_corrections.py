"""Trade corrections (issue 20's targets): a review over 10,000,000 trades under 20 s; a rollback
undoing 100,000 orders and trades applied under 5 s without stalling a halt on another market.

Three measurements, each against a baseline taken in the same run:

* ``finder``: :func:`haltguard.corrections.review.find_erroneous` over ``--finder-trades``
  synthetic trade events in memory (the review's rule), against a plain loop that only reads
  each trade's price (the floor any review pays).
* ``review``: :func:`haltguard.corrections.review.review` over a journal of ``--trades`` trades
  (each a resting sell and an IOC buy; built once under ``benchmarks/results/``), against a
  plain :class:`~haltguard.journal.JournalReader` pass over the same journal (the replay every
  reader of the journal pays). Three reviews of the same window, whose results must be equal:
  by replay (``replay=True``; its rate extrapolated to 10,000,000 trades, and says so), the
  first one from the trade log (which builds the log from the journal), and a second one from
  the log (the usual case: the log only caught up).
* ``tradelog``: the review's pass over the trade log (``<data dir>/tradelog/``, one 128-byte
  record per trade) of ``--log-trades`` trades, written straight into the log in the shape the
  journal of ``review`` gives (one trade per other seq, one in 1,000 at a tenth of the price;
  built once under ``benchmarks/results/``): the first half gives the reference, the second
  half is judged; against a plain read of the same file in 8 MiB blocks (the floor any reader
  of it pays). The journal's own part of a review (finding the window, the newest snapshot for
  the statuses) is measured end to end by ``review``.
* ``rollback``: a venue with ``--rollback-trades`` trades and ``--rollback-orders`` resting
  orders after the target seq; the :class:`~haltguard.venue.commands.RollbackTo` built from the
  journal (:func:`haltguard.corrections.review.plan_rollback`) and applied through a real
  :class:`~haltguard.gateway.runtime.VenueRuntime`, while another thread halts and reopens a
  second market every 5 ms: the halt's signal-to-ack latency (p50, p99, max) during the
  rollback, against the same loop with no rollback running. The apply time is also measured in
  memory, against a ``CancelAll`` of the same orders on a copy.

Usage::

    .venv/bin/python benchmarks/bench_corrections.py [--finder-trades N] [--trades N]
        [--log-trades N] [--rollback-trades N] [--rollback-orders N]
        [--only finder review tradelog rollback]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from haltguard.corrections import tradelog
from haltguard.corrections.policy import parse_policy
from haltguard.corrections.review import (
    ReviewRequest,
    find_erroneous,
    plan_rollback,
    review,
    review_trade_log,
)
from haltguard.gateway.runtime import VenueRuntime
from haltguard.journal import Journal, JournalReader
from haltguard.venue.commands import (
    AddAsset,
    AddMarket,
    CancelAll,
    Command,
    Deposit,
    PlaceOrder,
    SetMarketState,
)
from haltguard.venue.engine import Venue
from haltguard.venue.events import Trade
from haltguard.venue.markets import Asset, make_market
from haltguard.venue.types import MarketState, Side, TimeInForce

RESULTS = Path(__file__).resolve().parent / "results"
TS0 = 1_700_000_000_000_000_000
ACCOUNTS = 2_000
JPY, BTC, ETH = Asset("JPY", 4), Asset("BTC", 8), Asset("ETH", 8)
BTC_JPY = make_market("BTC-JPY", BTC, JPY, tick_size="1", lot_size="0.0001", min_qty="0.0001",
                      max_qty="100", maker_fee_bps=0, taker_fee_bps=10)
ETH_JPY = make_market("ETH-JPY", ETH, JPY, tick_size="1", lot_size="0.001", min_qty="0.001",
                      max_qty="1000", maker_fee_bps=0, taker_fee_bps=10)
PRICE = 15_000_000
POLICY = parse_policy("""\
id: bench
version: 1
text: {en: bench, ja: ベンチ}
correct_within_minutes: 60
reference_lookback_minutes: 10
band_bps_default: 1000
may_propose: [admin]
may_approve: [admin]
""")


def setup() -> list[Command]:
    commands: list[Command] = [AddAsset(JPY), AddAsset(BTC), AddAsset(ETH),
                               AddMarket(BTC_JPY, MarketState.OPEN),
                               AddMarket(ETH_JPY, MarketState.OPEN)]
    for account in range(1, ACCOUNTS + 1):
        commands += [Deposit(account, "JPY", 10**15), Deposit(account, "BTC", 10**13),
                     Deposit(account, "ETH", 10**13)]
    return commands


def trading(trades: int, *, crash_every: int = 1_000) -> list[Command]:
    """``trades`` trades: a resting sell, then an IOC buy taking it; one in ``crash_every``
    at a tenth of the price (the erroneous ones)."""
    commands: list[Command] = []
    for n in range(trades):
        seller, buyer = 1 + n % ACCOUNTS, 1 + (n + 7) % ACCOUNTS
        price = PRICE // 10 if n % crash_every == crash_every - 1 else PRICE + n % 50
        commands.append(PlaceOrder("BTC-JPY", seller, Side.SELL, 1, price))
        commands.append(PlaceOrder("BTC-JPY", buyer, Side.BUY, 1, price, tif=TimeInForce.IOC))
    return commands


def write(data_dir: Path, commands: list[Command]) -> Venue:
    journal = Journal(data_dir, unsafe_skip_fsync=True)
    venue = Venue()
    for seq, command in enumerate(commands, 1):
        journal.append(seq, TS0 + seq * 1_000, command)
        venue.apply(seq, TS0 + seq * 1_000, command, emit=False)
        if seq % 2_000 == 0:
            journal.sync()
    journal.sync()
    journal.checkpoint(venue, venue.last_ts)
    journal.close()
    return venue


def bench_finder(count: int) -> dict[str, Any]:
    """One million distinct trade events, passed ``count / 1,000,000`` times (10 million
    events would not fit a shared machine's memory)."""
    block = min(count, 1_000_000)
    trades = [(n, TS0 + n, Trade("BTC-JPY", n, PRICE // 10 if n % 1_000 == 0 else PRICE, 1,
                                 Side.BUY, n, 1, n - 1, 2, 0, 0)) for n in range(1, block + 1)]
    passes = count // block
    started = time.perf_counter()
    total = 0
    for _, _, trade in itertools.chain.from_iterable([trades] * passes):
        total += trade.price
    floor_s = time.perf_counter() - started
    started = time.perf_counter()
    found, looked = find_erroneous(itertools.chain.from_iterable([trades] * passes),
                                   {"BTC-JPY": PRICE}, {"BTC-JPY": 1_000})
    finder_s = time.perf_counter() - started
    count = block * passes
    assert looked == count and len(found) == count // 1_000
    return {"trades": count, "finder_s": round(finder_s, 2), "floor_loop_s": round(floor_s, 2),
            "ratio_to_floor": round(finder_s / floor_s, 2), "found": len(found)}


def bench_review(trades: int) -> dict[str, Any]:
    data_dir = RESULTS / f"corrections-review-{trades}"
    if not (data_dir / "segments").exists():
        write(data_dir, setup() + trading(trades))
    first_trade_seq = len(setup()) + 1
    started = time.perf_counter()
    reader = JournalReader(data_dir)
    reader.seek(first_trade_seq)
    while reader.read_available(10_000):
        pass
    reader.close()
    replay_s = time.perf_counter() - started
    # The second half is reviewed; the first half, inside the look-back, gives the reference.
    request = ReviewRequest(TS0 + (first_trade_seq + trades) * 1_000,
                            TS0 + (first_trade_seq + 2 * trades) * 1_000)
    started = time.perf_counter()
    replayed, _ = review(data_dir, request, POLICY, replay=True)
    review_s = time.perf_counter() - started
    shutil.rmtree(data_dir / tradelog.DIR_NAME, ignore_errors=True)
    started = time.perf_counter()
    review(data_dir, request, POLICY)  # builds the trade log from the journal
    first_log_s = time.perf_counter() - started
    started = time.perf_counter()
    result, _ = review(data_dir, request, POLICY)
    log_s = time.perf_counter() - started
    assert result == replayed
    rate = 2 * trades / review_s  # the replay review reads (and replays) the whole journal
    return {"trades": trades, "reviewed": result.trades_reviewed,
            "review_replay_s": round(review_s, 2), "replay_s": round(replay_s, 2),
            "ratio_to_replay": round(review_s / replay_s, 2),
            "found": len(result.findings), "replay_trades_per_s": round(rate),
            "replay_extrapolated_10m_trades_s": round(10_000_000 / rate, 1),
            "review_building_log_s": round(first_log_s, 2),
            "review_from_log_s": round(log_s, 3),
            "log_speedup_vs_replay_review": round(review_s / log_s, 1)}


def _write_trade_log(data_dir: Path, trades: int) -> tuple[int, int]:
    """A trade log of ``trades`` trades as the journal of :func:`trading` would give (a
    resting sell, then the IOC buy that trades: one trade every second seq); its last seq."""
    folder = data_dir / tradelog.DIR_NAME
    folder.mkdir(parents=True, exist_ok=True)
    first_seq = len(setup()) + 1
    with open(folder / "trades.bin", "wb") as out:
        for start in range(0, trades, 65_536):
            block = []
            for n in range(start, min(trades, start + 65_536)):
                seq = first_seq + 2 * n + 1
                price = PRICE // 10 if n % 1_000 == 999 else PRICE + n % 50
                block.append(tradelog.pack(seq, TS0 + seq * 1_000, Trade(
                    "BTC-JPY", n + 1, price, 1, Side.BUY, seq, 1 + (n + 7) % ACCOUNTS,
                    seq - 1, 1 + n % ACCOUNTS, price // 1_000, 0)))
            out.write(b"".join(block))
    last_seq = first_seq + 2 * trades - 1
    (folder / "covered").write_text(f"1 {last_seq}\n")
    return first_seq, last_seq


def bench_tradelog(trades: int) -> dict[str, Any]:
    data_dir = RESULTS / f"corrections-tradelog-{trades}"
    first_seq = len(setup()) + 1
    last_seq = first_seq + 2 * trades - 1
    path = data_dir / tradelog.DIR_NAME / "trades.bin"
    if not path.exists() or path.stat().st_size != trades * tradelog.RECORD_BYTES:
        _write_trade_log(data_dir, trades)
    started = time.perf_counter()
    size = 0
    with open(path, "rb") as source:
        while block := source.read(8 << 20):
            size += len(block)
    read_s = time.perf_counter() - started
    request = ReviewRequest(TS0 + (first_seq + trades) * 1_000, TS0 + last_seq * 1_000)
    started = time.perf_counter()
    references, found, looked = review_trade_log(
        data_dir, request, start_seq=1, to_seq=last_seq,
        band_of={"BTC-JPY": POLICY.band_bps("BTC-JPY"), "ETH-JPY": 1_000}, series={})
    scan_s = time.perf_counter() - started
    assert looked == trades // 2 and len(found) == trades // 1_000 // 2
    return {"trades": trades, "log_bytes": size, "review_pass_s": round(scan_s, 2),
            "plain_read_s": round(read_s, 2), "ratio_to_plain_read": round(scan_s / read_s, 1),
            "judged": looked, "found": len(found), "reference": references["BTC-JPY"]}


def bench_rollback(trades: int, orders: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "venue"
        head = setup() + trading(1_000)
        target = len(head)
        after = trading(trades) + [
            PlaceOrder("BTC-JPY", 1 + n % ACCOUNTS, Side.BUY, 1, PRICE // 2 - n % 1_000)
            for n in range(orders)
        ]
        venue = write(data_dir, head + after)
        plan = plan_rollback(data_dir, target, actor="alice", approver="bob",
                             reason="bench", rule="bench v1")
        copy = Venue.restore(venue.export_state())
        started = time.perf_counter()
        venue.apply(venue.last_seq + 1, venue.last_ts + 1, plan.command)
        apply_s = time.perf_counter() - started
        assert venue.check_invariants() == []
        started = time.perf_counter()
        copy.apply(copy.last_seq + 1, copy.last_ts + 1,
                   CancelAll(0, "BTC-JPY", "bench", "baseline"))
        cancel_all_s = time.perf_counter() - started
        quiet = _halt_latencies(data_dir, None)
        during = _halt_latencies(data_dir, plan.command)
    return {
        "trades_busted": plan.trades_to_bust, "orders_cancelled": plan.orders_to_cancel,
        "balance_changes": len(plan.command.reversals),
        "apply_in_memory_s": round(apply_s, 3), "cancel_all_same_orders_s": round(cancel_all_s, 3),
        "ratio_to_cancel_all": round(apply_s / cancel_all_s, 2),
        "halt_ms_quiet": quiet, "halt_ms_during_rollback": during,
    }


def _halt_latencies(data_dir: Path, command: Command | None) -> dict[str, float]:
    """Halt and reopen ETH-JPY every 5 ms for about 2 s (the rollback, if any, sent after
    0.3 s); the halt's submit-to-ack latencies in ms."""
    runtime = VenueRuntime(data_dir).start()
    latencies: list[float] = []
    stop = threading.Event()

    def brake() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            runtime.submit_and_wait(SetMarketState("ETH-JPY", MarketState.HALTED, "bench", "b"))
            latencies.append((time.perf_counter() - started) * 1_000)
            runtime.submit_and_wait(SetMarketState("ETH-JPY", MarketState.OPEN, "bench", "b"))
            time.sleep(0.005)

    thread = threading.Thread(target=brake)
    try:
        thread.start()
        time.sleep(0.3)
        if command is not None:
            runtime.submit_and_wait(command, 60)
        time.sleep(1.7)
    finally:
        stop.set()
        thread.join(30)
        runtime.stop()
    ordered = sorted(latencies)
    return {"count": len(ordered), "p50": round(statistics.median(ordered), 2),
            "p99": round(ordered[int(len(ordered) * 0.99) - 1], 2),
            "max": round(ordered[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finder-trades", type=int, default=10_000_000)
    parser.add_argument("--trades", type=int, default=500_000)
    parser.add_argument("--log-trades", type=int, default=10_000_000)
    parser.add_argument("--rollback-trades", type=int, default=50_000)
    parser.add_argument("--rollback-orders", type=int, default=50_000)
    parser.add_argument("--only", nargs="*",
                        default=["finder", "review", "tradelog", "rollback"])
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    figures: dict[str, Any] = {}
    if "finder" in args.only:
        figures["finder"] = bench_finder(args.finder_trades)
        print(json.dumps({"finder": figures["finder"]}), flush=True)
    if "review" in args.only:
        figures["review"] = bench_review(args.trades)
        print(json.dumps({"review": figures["review"]}), flush=True)
    if "tradelog" in args.only:
        figures["tradelog"] = bench_tradelog(args.log_trades)
        print(json.dumps({"tradelog": figures["tradelog"]}), flush=True)
    if "rollback" in args.only:
        figures["rollback"] = bench_rollback(args.rollback_trades, args.rollback_orders)
        print(json.dumps({"rollback": figures["rollback"]}), flush=True)
    (RESULTS / "corrections.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
