"""Acknowledged-order latency through the venue runtime, beside ``matching-engine``'s gateway.

Each submitter sends one command, waits for its acknowledgement (durable in the journal and
applied), then sends the next. Latency is submit-to-acknowledgement, measured per command.
With more submitters more commands share each fsync (group commit, no timer), so throughput
rises while each caller waits about one fsync plus its share of the batch.

Ours is :class:`VenueRuntime` (a venue thread: stamp, append, one fsync per batch, apply
with the ledger and market states; a batch of 24 or more is applied on a helper thread while
its fsync runs), with submitter tasks on one event loop awaiting
``submit_async()`` (what the HTTP routes do; the runtime resolves a batch's results on the
loop with one wake-up). ``--driver threads`` drives it with submitter threads calling
``submit().result()`` instead (one Future and one thread wake-up per command).
The peer is ``matching-engine`` 0.1.1's own ``gateway.worker.MarketWorker`` (an asyncio task:
stamp, append, one fsync per batch in a thread, apply), with submitter tasks awaiting
``submit()``: each side driven the way its API is meant to be used, both with real fsync on
the same disk and snapshots off during the run.

The commands are the workload mix (``order_flow(seed=7)``: 25% cancels, 5% market orders,
limits around the mid with about one in ten crossing, 1,000 funded accounts; the same flow on
both sides, checked by digest), dealt round-robin to the submitters. Under concurrency the
flow's cancels may name an order another submitter has not placed yet; those are refused,
journaled and acknowledged like any other command, on both sides.

Usage::

    .venv/bin/python benchmarks/bench_ack_latency.py [--commands N] [--submitters 1,8,64]
        [--rounds R] [--data-parent DIR] [--driver asyncio|threads]

fsync cost depends on the disk under ``--data-parent`` (default: the current directory);
a tmpfs makes fsync nearly free and the figures meaningless. Each figure is the median (and
range) of ``--rounds`` rounds per side, ours and the peer's alternating. Prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench_journal import flow_digest
from haltguard.gateway.runtime import RuntimeLimits, VenueRuntime
from haltguard.venue.commands import Command
from haltguard.venue.workload import order_flow, setup_commands
from peer import PEER_NAME, ensure_peer, ratio_cell, run_peer, spread

SEED = 7
PEER_BATCH_MAX = 512  # the peer gateway's default batch (ours: RuntimeLimits().batch_max)

_PEER_SCRIPT = r"""
import asyncio, hashlib, json, shutil, statistics, sys, tempfile, time
from pathlib import Path
from matching_engine.domain import CancelOrder
from matching_engine.gateway.marketdata import MarketDataHub
from matching_engine.gateway.worker import MarketWorker
from matching_engine.journal import Journal
from matching_engine.market import MarketSpec
from matching_engine.workload import order_flow

submitters, count, parent = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
flow = list(order_flow(seed=%(seed)d, count=count))
digest = hashlib.blake2b(digest_size=16)
for c in flow:
    if type(c) is CancelOrder:
        digest.update(repr(("cancel", c.order_id, c.account)).encode())
    else:
        digest.update(repr(("order", c.account, c.side.value, c.price, c.qty,
                            c.order_type.value, c.tif.value)).encode())

async def run():
    data_dir = Path(tempfile.mkdtemp(prefix="peer-ack-", dir=parent))
    try:
        spec = MarketSpec.parse("SIM-JPY:1:1")
        journal = Journal(data_dir, fsync=True)
        engine, report = journal.recover()
        syncs = [0]
        real_sync = journal.sync
        def counted_sync():
            syncs[0] += 1
            real_sync()
        journal.sync = counted_sync
        hub = MarketDataHub(spec, depth_levels=20, subscriber_queue=1000)
        worker = MarketWorker(spec, journal, engine, report, hub, batch_max=%(batch_max)d,
                              queue_max=10_000, snapshot_every=10**12)
        worker.start()
        shares = [flow[n::submitters] for n in range(submitters)]
        latencies = [[] for _ in range(submitters)]

        async def submit(index):
            record = latencies[index].append
            for command in shares[index]:
                began = time.perf_counter_ns()
                await worker.submit(lambda seq, command=command: command)
                record(time.perf_counter_ns() - began)

        began = time.perf_counter()
        await asyncio.gather(*(submit(n) for n in range(submitters)))
        elapsed = time.perf_counter() - began
        fsyncs = syncs[0]
        await worker.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    values = sorted(v for per in latencies for v in per)
    return values, elapsed, fsyncs

values, elapsed, fsyncs = asyncio.run(run())
def percentile(fraction):
    index = min(len(values) - 1, max(0, round(fraction * len(values)) - 1))
    return values[index] / 1e6
print(json.dumps({
    "digest": digest.hexdigest(), "commands": len(values), "acked_per_s": len(values) / elapsed,
    "p50_ms": percentile(0.50), "p99_ms": percentile(0.99), "p999_ms": percentile(0.999),
    "mean_ms": statistics.fmean(values) / 1e6, "commands_per_fsync": len(values) / max(1, fsyncs),
}))
"""


def percentile(sorted_values: list[int], fraction: float) -> float:
    """Nearest-rank percentile of already sorted nanosecond values, in milliseconds."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index] / 1e6


def run(
    flow: list[Command], submitters: int, data_parent: Path, driver: str = "asyncio"
) -> dict[str, float]:
    """One run of ours: a fresh data directory, the setup, then ``flow`` from ``submitters``."""
    data_dir = Path(tempfile.mkdtemp(prefix="ack-latency-", dir=data_parent))
    runtime = VenueRuntime(data_dir, limits=RuntimeLimits(checkpoint_every=10**9)).start()
    try:
        for future in [runtime.submit(command) for command in setup_commands()]:
            future.result()
        shares: list[list[Command]] = [flow[n::submitters] for n in range(submitters)]
        latencies: list[list[int]] = [[] for _ in range(submitters)]
        batches_before = runtime.status().batches
        if driver == "asyncio":
            elapsed_s = asyncio.run(_drive_tasks(runtime, shares, latencies))
        else:
            elapsed_s = _drive_threads(runtime, shares, latencies)
        batches = runtime.status().batches - batches_before
    finally:
        runtime.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    values = sorted(value for per_submitter in latencies for value in per_submitter)
    return {
        "commands": len(values),
        "acked_per_s": len(values) / elapsed_s,
        "p50_ms": percentile(values, 0.50),
        "p99_ms": percentile(values, 0.99),
        "p999_ms": percentile(values, 0.999),
        "mean_ms": statistics.fmean(values) / 1e6,
        "commands_per_fsync": len(values) / max(1, batches),
    }


async def _drive_tasks(
    runtime: VenueRuntime, shares: list[list[Command]], latencies: list[list[int]]
) -> float:
    """Submitter tasks on this loop, each awaiting ``submit_async``; the elapsed seconds."""

    async def submit(index: int) -> None:
        record = latencies[index].append
        submit_async = runtime.submit_async
        for command in shares[index]:
            began = time.perf_counter_ns()
            await submit_async(command)
            record(time.perf_counter_ns() - began)

    began = time.perf_counter()
    await asyncio.gather(*(submit(n) for n in range(len(shares))))
    return time.perf_counter() - began


def _drive_threads(
    runtime: VenueRuntime, shares: list[list[Command]], latencies: list[list[int]]
) -> float:
    """Submitter threads, each calling ``submit().result()``; the elapsed seconds."""
    submitters = len(shares)
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
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=10_000, help="commands per run")
    parser.add_argument("--submitters", default="1,8,64", help="comma-separated counts")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, alternating")
    parser.add_argument("--data-parent", type=Path, default=Path.cwd(),
                        help="where the temporary data directories are made")
    parser.add_argument("--driver", choices=("asyncio", "threads"), default="asyncio",
                        help="how our submitters wait: tasks on one loop, or threads")
    args = parser.parse_args()
    counts = [int(part) for part in args.submitters.split(",")]
    peer = ensure_peer()
    first_seq = len(setup_commands()) + 1
    flow = list(order_flow(SEED, args.commands, first_seq=first_seq))
    digest = flow_digest(flow, first_seq - 1)
    script = _PEER_SCRIPT % {"seed": SEED, "batch_max": PEER_BATCH_MAX}
    keys = ("acked_per_s", "p50_ms", "p99_ms", "p999_ms", "commands_per_fsync")
    results: dict[int, dict[str, dict[str, list[float]]]] = {}
    for submitters in counts:
        sides: dict[str, dict[str, list[float]]] = {
            side: {key: [] for key in keys} for side in ("ours", "peer")
        }
        for round_index in range(args.rounds):
            for side in ("ours", "peer") if round_index % 2 == 0 else ("peer", "ours"):
                if side == "ours":
                    result = run(flow, submitters, args.data_parent, args.driver)
                else:
                    result = run_peer(
                        peer, script, [submitters, args.commands, args.data_parent.resolve()]
                    )
                    if result["digest"] != digest:
                        raise SystemExit("the peer submitted different commands: digests differ")
                for key in keys:
                    sides[side][key].append(result[key])
        results[submitters] = sides

    print("## Acknowledged latency through the runtime (submit -> durable and applied)\n")
    print(f"Python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs; "
          f"data under {args.data_parent.resolve()}; {args.commands:,} workload commands per "
          f"run; ours driven by {args.driver}; median (range) of {args.rounds} rounds per "
          "side, alternating. Ratios: "
          "acked/s ours / peer, p99 peer / ours (above 1: haltguard is better).\n")
    print(f"| submitters | acked/s haltguard | acked/s {PEER_NAME} | ratio | p50 / p99 / p99.9 "
          f"ms haltguard | p50 / p99 / p99.9 ms {PEER_NAME} | p99 ratio | commands per fsync "
          "(ours / peer) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for submitters, sides in results.items():
        ours, theirs = sides["ours"], sides["peer"]
        rate_ratios = [o / p for o, p in zip(ours["acked_per_s"], theirs["acked_per_s"],
                                            strict=True)]
        p99_ratios = [p / o for o, p in zip(ours["p99_ms"], theirs["p99_ms"], strict=True)]
        print(
            f"| {submitters} | {spread(ours['acked_per_s'])} | {spread(theirs['acked_per_s'])} | "
            f"{ratio_cell(rate_ratios)} | {_latencies(ours)} | {_latencies(theirs)} | "
            f"{ratio_cell(p99_ratios)} | {statistics.median(ours['commands_per_fsync']):.1f} / "
            f"{statistics.median(theirs['commands_per_fsync']):.1f} |"
        )


def _latencies(figures: dict[str, list[float]]) -> str:
    return " / ".join(
        f"{statistics.median(figures[key]):.2f}" for key in ("p50_ms", "p99_ms", "p999_ms")
    )


if __name__ == "__main__":
    main()
