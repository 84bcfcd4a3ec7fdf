"""Detector overhead: the venue's throughput with every market detector on, against off.

"On" is the in-process feed (:class:`haltguard.detection.feed.VenueFeed`) with the shipped
rules (``rules.example.yaml``), so every market signal is watched: price move, trade rate,
the venue's breaker, and spread and depth sampled every 250 ms of venue time; signals go
through the policy engine. Two measurements, each over ``--rounds``:

- engine: the standard workload (``order_flow``) applied to a bare :class:`Venue` in
  batches of 1,000 with commands 50 us apart in venue time, keeping each command's result
  as the runtime does, with the feed run after each batch. Process CPU time is taken around
  each batch's applying and around its feed call, in the same run, so the drifts of a
  shared machine hit both alike. Off: the applying time; on: applying plus feed.
- runtime: a live venue runtime (journal, fsync group commit) fed the workload by one thread
  keeping 1,000 commands queued, off and on back to back in each round; commands per
  wall-clock second, and per CPU second of the whole process (every thread), which other
  work on a shared machine hardly moves. Off: a plain ``VenueRuntime``. On:
  ``VenueRuntime`` with the feed attached through its listener hook.

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
    VenueFeed,
    attach_runtime,
)
from haltguard.detection.rulesfile import DEFAULT_RULES_PATH, load_rules_file
from haltguard.detection.service import DetectionService
from haltguard.gateway.runtime import CommandResult, RuntimeLimits, VenueRuntime
from haltguard.venue.commands import Command
from haltguard.venue.engine import Venue
from haltguard.venue.workload import order_flow, setup_commands

RULES = DEFAULT_RULES_PATH
START_TS = 1_767_225_600 * 1_000_000_000
GAP_NS = 50_000  # 20,000 commands per second of venue time
SEED = 42
IN_FLIGHT = 1_000
BATCH = 1_000  # the runtime's default batch_max


def engine_round(commands: list[Command], setup: list[Command]) -> tuple[float, float]:
    """Apply ``commands`` to a fresh venue in batches of ``BATCH`` (as the runtime does),
    keeping each command's result for its caller, and run the feed after each batch.
    Returns the CPU seconds spent applying and the CPU seconds spent in the feed, timed
    batch by batch in the same run so drifts of a shared machine hit both alike."""
    venue = Venue()
    feed = VenueFeed(DetectionService(rules=load_rules_file(RULES)))
    seq, ts = 0, START_TS
    for command in setup:
        seq += 1
        feed.on_applied(venue, seq, ts, venue.apply(seq, ts, command))
    apply, on_batch, clock = venue.apply, feed.on_batch, time.process_time
    applying = detecting = 0.0
    gc.collect()
    for start in range(0, len(commands), BATCH):
        began = clock()
        results = []
        for command in commands[start:start + BATCH]:
            seq += 1
            ts += GAP_NS
            results.append(AppliedCommand(seq, ts, apply(seq, ts, command)))
        applied = clock()
        on_batch(venue, results)
        applying += applied - began
        detecting += clock() - applied
    return applying, detecting


def runtime_round(count: int, data_parent: Path, detectors: bool) -> tuple[float, float]:
    """Acknowledged commands per wall-clock second and per CPU second of this process (all
    its threads) through a live runtime."""
    data_dir = Path(tempfile.mkdtemp(prefix="detector-overhead-", dir=data_parent))
    limits = RuntimeLimits(checkpoint_every=10**9)
    runtime = VenueRuntime(data_dir, limits=limits)
    runtime.start()
    try:
        for future in [runtime.submit(command) for command in setup_commands()]:
            future.result()
        if detectors:
            attach_runtime(runtime, VenueFeed(DetectionService(rules=load_rules_file(RULES))))
        flow = list(order_flow(SEED, count, first_seq=runtime.status().last_seq + 1))
        pending: deque[Future[CommandResult]] = deque()
        gc.collect()
        began, began_cpu = time.perf_counter(), time.process_time()
        for command in flow:
            pending.append(runtime.submit(command))
            if len(pending) >= IN_FLIGHT:
                pending.popleft().result(60)
        for future in pending:
            future.result(60)
        wall_s = time.perf_counter() - began
        cpu_s = time.process_time() - began_cpu
        return count / wall_s, count / cpu_s
    finally:
        runtime.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def compare_runtime(
    rounds: int, count: int, data_parent: Path
) -> list[tuple[float, float, float]]:
    """For wall clock and CPU time: best off, best on, median on/off ratio of back-to-back
    rounds."""
    pairs = [(runtime_round(count, data_parent, False), runtime_round(count, data_parent, True))
             for _ in range(rounds)]
    rows = []
    for index in (0, 1):
        offs = [off[index] for off, _ in pairs]
        ons = [on[index] for _, on in pairs]
        rows.append((max(offs), max(ons),
                     statistics.median(on / off for off, on in zip(offs, ons, strict=True))))
    return rows


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
    splits = [engine_round(commands, setup) for _ in range(args.rounds)]
    ratios = [applying / (applying + detecting) for applying, detecting in splits]
    best_applying = min(applying for applying, _ in splits)
    best_total = min(applying + detecting for applying, detecting in splits)
    print("| venue | commands/round | off commands/s | on commands/s | on/off (median) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| engine (CPU time, same run) | {args.commands:,} "
          f"| {args.commands / best_applying:,.0f} | {args.commands / best_total:,.0f} "
          f"| {statistics.median(ratios):.3f} |")
    if args.runtime_commands:
        wall, cpu = compare_runtime(args.rounds, args.runtime_commands, args.data_parent)
        for name, (off, on, ratio) in (("runtime (wall clock, fsync)", wall),
                                       ("runtime (CPU time of all threads)", cpu)):
            print(f"| {name} | {args.runtime_commands:,} | {off:,.0f} | {on:,.0f} "
                  f"| {ratio:.3f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
