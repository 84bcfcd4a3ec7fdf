"""Acknowledged-order latency through the venue runtime: journal append + fsync group commit.

Each submitter thread sends one command, waits for its acknowledgement (durable in the
journal and applied), then sends the next. Latency is submit-to-acknowledgement, measured
per command. With more submitters more commands share each fsync (group commit, no timer),
so throughput rises while each caller waits about one fsync plus its share of the batch.

The commands are the workload mix (``haltguard.venue.workload.order_flow``: 25% cancels,
5% market orders, limits around the mid with about one in ten crossing, 1,000 funded
accounts), dealt round-robin to the submitters. Under concurrency the flow's cancels may name
an order another submitter's command has not placed yet; those are refused by the venue, and
a refused command is journaled and acknowledged like any other, so latency is unaffected.

Usage::

    .venv/bin/python benchmarks/bench_ack_latency.py [--commands N] [--submitters 1,8,64]
        [--data-parent DIR]

fsync cost depends on the disk under ``--data-parent`` (default: the current directory);
a tmpfs makes fsync nearly free and the figures meaningless. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from haltguard.gateway.runtime import RuntimeLimits, VenueRuntime
from haltguard.venue.commands import Command
from haltguard.venue.workload import order_flow, setup_commands

SEED = 7


def percentile(sorted_values: list[int], fraction: float) -> float:
    """Nearest-rank percentile of already sorted nanosecond values, in milliseconds."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index] / 1e6


def run(submitters: int, commands_total: int, data_parent: Path) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="ack-latency-", dir=data_parent))
    runtime = VenueRuntime(data_dir, limits=RuntimeLimits(checkpoint_every=10**9)).start()
    try:
        for future in [runtime.submit(command) for command in setup_commands()]:
            future.result()
        first_seq = runtime.status().last_seq + 1
        flow = list(order_flow(SEED, commands_total, first_seq=first_seq))
        shares: list[list[Command]] = [flow[n::submitters] for n in range(submitters)]
        latencies: list[list[int]] = [[] for _ in range(submitters)]
        batches_before = runtime.status().batches
        start = threading.Barrier(submitters + 1)

        def submit(index: int) -> None:
            record = latencies[index].append
            start.wait()
            for command in shares[index]:
                began = time.perf_counter_ns()
                runtime.submit(command).result()
                record(time.perf_counter_ns() - began)

        threads = [threading.Thread(target=submit, args=(n,)) for n in range(submitters)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed_s = time.perf_counter() - began
        batches = runtime.status().batches - batches_before
    finally:
        runtime.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    values = sorted(value for per_thread in latencies for value in per_thread)
    return {
        "commands": len(values),
        "acked_per_s": len(values) / elapsed_s,
        "p50_ms": percentile(values, 0.50),
        "p99_ms": percentile(values, 0.99),
        "p999_ms": percentile(values, 0.999),
        "mean_ms": statistics.fmean(values) / 1e6,
        "commands_per_fsync": len(values) / max(1, batches),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20_000, help="commands per run")
    parser.add_argument("--submitters", default="1,8,64", help="comma-separated thread counts")
    parser.add_argument("--data-parent", type=Path, default=Path.cwd(),
                        help="where the temporary data directories are made")
    args = parser.parse_args()
    counts = [int(part) for part in args.submitters.split(",")]
    print(f"Python {platform.python_version()} on {platform.platform()}, "
          f"{os.cpu_count()} CPUs; data under {args.data_parent.resolve()}; "
          f"{args.commands} workload commands per run\n")
    print("| submitters | commands | acked/s | p50 ms | p99 ms | p99.9 ms | mean ms "
          "| commands per fsync |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for submitters in counts:
        result = run(submitters, args.commands, args.data_parent)
        print(f"| {submitters} | {result['commands']:.0f} | {result['acked_per_s']:,.0f} "
              f"| {result['p50_ms']:.3f} | {result['p99_ms']:.3f} | {result['p999_ms']:.3f} "
              f"| {result['mean_ms']:.3f} | {result['commands_per_fsync']:.1f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
