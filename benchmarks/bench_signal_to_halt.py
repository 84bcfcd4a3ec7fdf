"""Signal-to-halt: from the trade that trips a rule to the halt in force in the venue.

A live :class:`VenueRuntime` (journal, fsync group commit, brake lane) runs the standard
workload (``haltguard.venue.workload.order_flow``) on ``SIM-JPY`` at full speed: one driver
thread keeps ``--in-flight`` commands queued at all times. Detection runs in process with the
shipped rules (``rules.example.yaml``: every market detector on) and the real action
executor on a SQLite operations database, so every halt also opens an incident, writes the
timeline and the audit chain, and tries to page.

Each trial crashes one of ``--trials`` extra markets (same grid as the workload's): a trade
at 100,000, then a sell sweeping to 85,000 (-15%), immediately followed by a stream of
crossing orders on that market. Two timestamps are taken on the venue's own thread as each
command is applied: when the command holding the crash trade is applied, and when the
command that halts the market is applied. Their difference is the
signal-to-halt latency. Afterwards the journal is read back and, for every crashed market,
the trades after its halt's seq are counted (must be zero).

A full garbage collection stops every thread of the process, the venue's included, for as
long as it takes to scan every live object; with the workload's book growing to hundreds
of thousands of orders that is hundreds of milliseconds, which lands in the tail. The
runtime's own policy (``RuntimeLimits.gc_freeze_every``: ``gc.freeze()`` at a batch
boundary every N commands, after recovery and after each snapshot) keeps collections to
what is new; ``--no-gc-policy`` turns it off to show the difference, and ``--gc-freeze-every``
changes N. The table says how many full collections ran and the longest ones.

Usage::

    .venv/bin/python benchmarks/bench_signal_to_halt.py [--trials N] [--in-flight W]
        [--no-gc-policy] [--gc-freeze-every N] [--data-parent DIR]

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from haltguard.common.clock import SystemClock
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory
from haltguard.detection.feed import protect_in_process
from haltguard.detection.rulesfile import DEFAULT_RULES_PATH, load_rules_file
from haltguard.detection.service import DetectionService
from haltguard.gateway.runtime import CommandResult, RuntimeLimits, VenueRuntime
from haltguard.journal.reader import JournalReader
from haltguard.venue.commands import AddMarket, Command, Deposit, PlaceOrder
from haltguard.venue.events import Event, MarketStateChanged, Trade
from haltguard.venue.markets import make_market
from haltguard.venue.types import MarketState, OrderType, Side, TimeInForce
from haltguard.venue.workload import BASE_ASSET, QUOTE_ASSET, order_flow, setup_commands

RULES = DEFAULT_RULES_PATH
CRASH_PRICE = 85_000
CRASHER_BUY, CRASHER_SELL = 900_001, 900_002
AFTERSHOCK_ORDERS = 20  # crossing pairs sent right behind each crash
TRIAL_GAP_S = 0.25


def percentile(sorted_values: Sequence[int], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index] / 1e6


def crash_market(index: int) -> str:
    return f"C{index:03d}-JPY"


class TimedRuntime(VenueRuntime):
    """Notes, on the venue thread as each command is applied, when each crash trade and
    each halt comes into force, by market. (An instrument: it hooks the runtime's per-command
    bookkeeping, which the batch listeners cannot time, since they run after the batch.)"""

    def __init__(self, data_dir: Path, limits: RuntimeLimits) -> None:
        super().__init__(data_dir, limits=limits)
        self.tripped_ns: dict[str, int] = {}
        self.halted_ns: dict[str, int] = {}
        self.halted_seq: dict[str, int] = {}

    def _record(self, seq: int, ts: int, command: Command, events: list[Event]) -> CommandResult:
        now = time.perf_counter_ns()
        for event in events:
            if type(event) is Trade and event.price <= CRASH_PRICE:
                self.tripped_ns.setdefault(event.market, now)
            elif type(event) is MarketStateChanged and event.new is MarketState.HALTED:
                self.halted_ns.setdefault(event.market, now)
                self.halted_seq.setdefault(event.market, seq)
        return super()._record(seq, ts, command, events)


class GcPauses:
    """How long each full (generation 2) collection stopped the process."""

    def __init__(self) -> None:
        self.durations_ms: list[float] = []
        self._began = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.durations_ms.append((time.perf_counter() - self._began) * 1000)

    def longest(self, count: int) -> str:
        if not self.durations_ms:
            return "0"
        worst = sorted(self.durations_ms, reverse=True)[:count]
        return f"{len(self.durations_ms)} (longest " + ", ".join(f"{d:.0f}" for d in worst) + ")"

    def stop(self) -> None:
        gc.callbacks.remove(self._note)


class Driver(threading.Thread):
    """Keeps ``in_flight`` workload commands queued until stopped."""

    def __init__(self, runtime: TimedRuntime, first_seq: int, in_flight: int) -> None:
        super().__init__(name="workload", daemon=True)
        self.runtime = runtime
        self.first_seq = first_seq
        self.in_flight = in_flight
        self.stop_event = threading.Event()
        self.done = 0
        self.elapsed_s = 0.0

    def run(self) -> None:
        pending: deque[Future[CommandResult]] = deque()
        began = time.perf_counter()
        for command in order_flow(17, 50_000_000, first_seq=self.first_seq):
            if self.stop_event.is_set():
                break
            pending.append(self.runtime.submit(command))
            if len(pending) >= self.in_flight:
                pending.popleft().result(60)
                self.done += 1
        for future in pending:
            future.result(60)
            self.done += 1
        self.elapsed_s = time.perf_counter() - began


def trial_commands(market: str) -> list[Command]:
    commands: list[Command] = [
        PlaceOrder(market, CRASHER_BUY, Side.BUY, 5, 100_000),
        PlaceOrder(market, CRASHER_SELL, Side.SELL, 5, 100_000, OrderType.LIMIT,
                   TimeInForce.IOC),
        PlaceOrder(market, CRASHER_BUY, Side.BUY, 5, CRASH_PRICE),
        PlaceOrder(market, CRASHER_SELL, Side.SELL, 1_000, CRASH_PRICE, OrderType.LIMIT,
                   TimeInForce.IOC),
    ]
    for _ in range(AFTERSHOCK_ORDERS):
        commands.append(PlaceOrder(market, CRASHER_BUY, Side.BUY, 1, CRASH_PRICE))
        commands.append(PlaceOrder(market, CRASHER_SELL, Side.SELL, 1, CRASH_PRICE,
                                   OrderType.LIMIT, TimeInForce.IOC))
    return commands


def run(
    trials: int, in_flight: int, data_parent: Path, *, gc_freeze_every: int
) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="signal-to-halt-", dir=data_parent))
    database = make_engine(f"sqlite:///{work / 'operations.sqlite3'}")
    upgrade(database)
    runtime = TimedRuntime(work / "venue", RuntimeLimits(checkpoint_every=10**9,
                                                         gc_freeze_every=gc_freeze_every))
    runtime.start()
    markets = [crash_market(n) for n in range(trials)]
    setup: list[Command] = [*setup_commands()]
    setup += [AddMarket(make_market(m, BASE_ASSET, QUOTE_ASSET, tick_size="1", lot_size="1",
                                    min_qty="1", max_qty="1000000"), MarketState.OPEN)
              for m in markets]
    setup += [Deposit(CRASHER_BUY, QUOTE_ASSET.code, 10**15, "bench"),
              Deposit(CRASHER_SELL, BASE_ASSET.code, 10**12, "bench")]
    for future in [runtime.submit(command) for command in setup]:
        future.result()
    detection = DetectionService(rules=load_rules_file(RULES))
    protect_in_process(runtime, detection, session_factory=make_session_factory(database),
                       clock=SystemClock())
    detection.start()
    driver = Driver(runtime, runtime.status().last_seq + 1, in_flight)
    pauses = GcPauses()
    try:
        driver.start()
        time.sleep(1.0)  # let the workload reach full speed
        for market in markets:
            for future in [runtime.submit(command) for command in trial_commands(market)]:
                future.result(60)
            time.sleep(TRIAL_GAP_S)
        driver.stop_event.set()
        driver.join(120)
        assert detection.flush(60), "the detection worker did not finish"
        commands_per_s = driver.done / driver.elapsed_s
        gen2_pauses = pauses.longest(5)
    finally:
        pauses.stop()
        detection.stop()
        runtime.stop()
    trades_after_halt = count_trades_after_halt(work / "venue", runtime.halted_seq)
    latencies = sorted(runtime.halted_ns[m] - runtime.tripped_ns[m]
                       for m in markets if m in runtime.halted_ns)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "trials": trials,
        "halted": len(latencies),
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] / 1e6,
        "trades_after_halt": trades_after_halt,
        "workload_per_s": commands_per_s,
        "gc_pauses_ms": gen2_pauses,
    }


def count_trades_after_halt(data_dir: Path, halted_seq: dict[str, int]) -> int:
    reader = JournalReader(data_dir)
    reader.seek(1)
    late = 0
    while entries := reader.read_available():
        for sequenced, events in entries:
            for event in events:
                if type(event) is Trade and event.market in halted_seq:
                    late += sequenced.seq > halted_seq[event.market]
    reader.close()
    return late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="crashes, one market each")
    parser.add_argument("--in-flight", type=int, default=1_000,
                        help="workload commands kept queued (the runtime's batch is 1,000)")
    parser.add_argument("--no-gc-policy", action="store_true",
                        help="turn the runtime's garbage-collection policy off (Python's "
                        "defaults), to compare")
    parser.add_argument("--gc-freeze-every", type=int,
                        default=RuntimeLimits().gc_freeze_every,
                        help="commands between the runtime's gc.freeze() calls")
    parser.add_argument("--switch-interval-ms", type=float, default=0.0,
                        help="sys.setswitchinterval for the run (0: Python's 5 ms): how long "
                        "a thread may hold the GIL while the venue thread waits for it")
    parser.add_argument("--data-parent", type=Path, default=Path.cwd(),
                        help="where the temporary data directories are made")
    args = parser.parse_args()
    freeze_every = 0 if args.no_gc_policy else args.gc_freeze_every
    if args.switch_interval_ms > 0:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    print(f"Python {platform.python_version()} on {platform.platform()}, "
          f"{os.cpu_count()} CPUs; data under {args.data_parent.resolve()}; "
          f"{args.in_flight} workload commands in flight; garbage collector: "
          f"{f'frozen every {freeze_every:,} commands' if freeze_every else 'Python defaults'}"
          f"; GIL switch interval {sys.getswitchinterval() * 1000:g} ms"
          f"; load average {os.getloadavg()[0]:.1f}\n")
    result = run(args.trials, args.in_flight, args.data_parent, gc_freeze_every=freeze_every)
    print("| trials | halted | p50 ms | p90 ms | p99 ms | max ms | trades after halt "
          "| workload commands/s | full GCs (longest ms) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print(f"| {result['trials']:.0f} | {result['halted']:.0f} | {result['p50_ms']:.2f} "
          f"| {result['p90_ms']:.2f} | {result['p99_ms']:.2f} | {result['max_ms']:.2f} "
          f"| {result['trades_after_halt']:.0f} | {result['workload_per_s']:,.0f} "
          f"| {result['gc_pauses_ms']} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
