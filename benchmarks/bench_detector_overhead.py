"""Detector overhead: the venue's throughput with every market detector on, against off.

"On" is the in-process feed (:class:`haltguard.detection.feed.VenueFeed`) with the shipped
rules (``rules.example.yaml``), so every market signal is watched: price move, trade rate,
the venue's breaker, and spread and depth sampled every 250 ms of venue time; signals go
through the policy engine. Two measurements, each alternating off/on for ``--rounds``:

- engine: the standard workload (``order_flow``) applied to a bare :class:`Venue` in
  batches of 1,000 with commands 50 us apart in venue time, timed in process CPU time, so
  other work on a shared machine does not count. Off: ``Venue.apply``, keeping each
  command's result as the runtime does. On: the same plus the feed after each batch.
- runtime: a live venue runtime (journal, fsync group commit) fed the workload by one thread
  keeping 1,000 commands queued; wall-clock commands per second. Off: a plain
  ``VenueRuntime``. On: ``GuardedVenueRuntime`` with the feed attached.

Usage::

    .venv/bin/python benchmarks/bench_detector_overhead.py [--commands N] [--rounds R]
        [--runtime-commands M] [--data-parent DIR]

Prints a Markdown table: best commands/s of each side and the median of the per-round
on/off ratios (target: at least 0.9).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path

from haltguard.detection.feed import (
    AppliedCommand,
    GuardedVenueRuntime,
    VenueFeed,
    attach_runtime,
)
from haltguard.detection.rulesfile import load_rules_file
from haltguard.detection.service import DetectionService
from haltguard.gateway.runtime import CommandResult, RuntimeLimits, VenueRuntime
from haltguard.venue.commands import Command
from haltguard.venue.engine import Venue
from haltguard.venue.workload import order_flow, setup_commands

RULES = Path(__file__).parents[1] / "src" / "haltguard" / "detection" / "rules.example.yaml"
START_TS = 1_767_225_600 * 1_000_000_000
GAP_NS = 50_000  # 20,000 commands per second of venue time
SEED = 42
IN_FLIGHT = 1_000
BATCH = 1_000  # the runtime's default batch_max


def engine_round(commands: list[Command], setup: list[Command], detectors: bool) -> float:
    """Commands per CPU second applying ``commands`` to a fresh venue in batches of
    ``BATCH`` (as the runtime does), keeping each command's result for its caller."""
    venue = Venue()
    feed = VenueFeed(DetectionService(rules=load_rules_file(RULES))) if detectors else None
    seq, ts = 0, START_TS
    for command in setup:
        seq += 1
        events = venue.apply(seq, ts, command)
        if feed is not None:
            feed.on_applied(venue, seq, ts, events)
    apply = venue.apply
    gc.collect()
    began = time.process_time()
    for start in range(0, len(commands), BATCH):
        results = []
        for command in commands[start:start + BATCH]:
            seq += 1
            ts += GAP_NS
            results.append(AppliedCommand(seq, ts, apply(seq, ts, command)))
        if feed is not None:
            feed.on_batch(venue, results)
    return len(commands) / (time.process_time() - began)


def runtime_round(count: int, data_parent: Path, detectors: bool) -> float:
    """Acknowledged commands per wall-clock second through a live runtime."""
    data_dir = Path(tempfile.mkdtemp(prefix="detector-overhead-", dir=data_parent))
    limits = RuntimeLimits(checkpoint_every=10**9)
    runtime = (GuardedVenueRuntime(data_dir, limits=limits) if detectors
               else VenueRuntime(data_dir, limits=limits)).start()
    try:
        for future in [runtime.submit(command) for command in setup_commands()]:
            future.result()
        if isinstance(runtime, GuardedVenueRuntime):
            attach_runtime(runtime, VenueFeed(DetectionService(rules=load_rules_file(RULES))))
        flow = list(order_flow(SEED, count, first_seq=runtime.status().last_seq + 1))
        pending: deque[Future[CommandResult]] = deque()
        began = time.perf_counter()
        for command in flow:
            pending.append(runtime.submit(command))
            if len(pending) >= IN_FLIGHT:
                pending.popleft().result(60)
        for future in pending:
            future.result(60)
        return count / (time.perf_counter() - began)
    finally:
        runtime.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def compare(rounds: int, measure: object) -> tuple[float, float, float]:
    """Best off, best on, median on/off ratio of back-to-back rounds."""
    assert callable(measure)
    offs, ons, ratios = [], [], []
    for _ in range(rounds):
        off = float(measure(False))
        on = float(measure(True))
        offs.append(off)
        ons.append(on)
        ratios.append(on / off)
    return max(offs), max(ons), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=200_000, help="engine commands/round")
    parser.add_argument("--runtime-commands", type=int, default=100_000,
                        help="runtime commands per round (0 skips the runtime rows)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data-parent", type=Path, default=Path.cwd(),
                        help="where the runtime's temporary data directories are made")
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.platform()}, "
          f"{os.cpu_count()} CPUs; {args.rounds} rounds, off and on alternating\n")
    setup = setup_commands()
    commands = list(order_flow(SEED, args.commands, first_seq=len(setup) + 1))
    rows = [("engine (CPU time)", args.commands,
             compare(args.rounds, lambda on: engine_round(commands, setup, on)))]
    if args.runtime_commands:
        rows.append(("runtime (wall clock, fsync)", args.runtime_commands, compare(
            args.rounds, lambda on: runtime_round(args.runtime_commands, args.data_parent,
                                                  on))))
    print("| venue | commands/round | off commands/s | on commands/s | on/off (median) |")
    print("|---|---:|---:|---:|---:|")
    for name, count, (off, on, ratio) in rows:
        print(f"| {name} | {count:,} | {off:,.0f} | {on:,.0f} | {ratio:.3f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
