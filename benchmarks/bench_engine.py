"""In-process venue throughput, latency and memory, side by side with ``matching-engine``.

Both engines run the same seeded order flow (``order_flow(seed=42)``: 25% cancels, 5% market
orders, limits around the mid with about one in ten crossing, 1,000 accounts) in the same
run. The peer package needs Python 3.12, so it runs in its own virtual environment
(created here when missing) as a subprocess; the commands are checked to be the same ones
by a digest computed on both sides. Ours runs with everything on: the ledger holds and
settles every order, market states are checked on every command, the circuit breaker
checks every fill, and the invariants are verified after each run. The peer has neither a
ledger nor market states.

Usage::

    .venv/bin/python benchmarks/bench_engine.py [--count N] [--rounds R] [--resting M]

Throughput is commands per second of process CPU time (``time.process_time``), so other
work on a shared machine does not skew one side; the garbage collector runs as usual on
both. Prints a Markdown table: commands/s for both as the median (and range) of R rounds,
ours and the peer's alternating, and the median of the per-round ratios; our per-command
latency percentiles (a separate pass timing each ``apply``); and the RSS of a fresh process
holding M resting orders (target: 1,000,000 under 1 GiB).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from haltguard.venue.commands import CancelOrder, Command, PlaceOrder
from haltguard.venue.engine import Venue
from haltguard.venue.markets import coincheck_breaker
from haltguard.venue.workload import order_flow, resting_flow, setup_commands
from peer import PEER_NAME, ensure_peer, ratio_cell, spread

SEED = 42

# Runs inside the peer's venv. Prints one JSON line: throughput, resting count, digest.
_PEER_THROUGHPUT = r"""
import hashlib, json, sys, time, gc
from matching_engine.engine import MatchingEngine
from matching_engine.domain import SequencedCommand, NewOrder, CancelOrder
from matching_engine.workload import order_flow
count = int(sys.argv[1])
flow = list(order_flow(seed=%(seed)d, count=count))
digest = hashlib.blake2b(digest_size=16)
for c in flow:
    if type(c) is CancelOrder:
        digest.update(repr(("cancel", c.order_id, c.account)).encode())
    else:
        digest.update(repr(("order", c.order_id, c.account, c.side.value, c.price, c.qty,
                            c.order_type.value)).encode())
commands = [SequencedCommand(i + 1, i + 1, c) for i, c in enumerate(flow)]
engine = MatchingEngine()
process = engine.process
gc.collect()
start = time.process_time()
for sc in commands:
    process(sc)
elapsed = time.process_time() - start
print(json.dumps({"cmd_per_s": count / elapsed, "resting": len(engine.book),
                  "digest": digest.hexdigest()}))
"""

_PEER_MEMORY = r"""
import sys
from matching_engine.engine import MatchingEngine
from matching_engine.domain import SequencedCommand, NewOrder, Side
count = int(sys.argv[1])
engine = MatchingEngine()
for i in range(count):
    buy = i % 2 == 0
    price = 100_000 - 1 - i % 5_000 if buy else 100_000 + 1 + i % 5_000
    engine.process(SequencedCommand(i + 1, i + 1, NewOrder(i + 1, i % 1000 + 1,
                   Side.BUY if buy else Side.SELL, price, 1 + i % 7)))
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]
print(int(rss) * 1024, len(engine.book))
"""


def peer_throughput(python: Path, count: int) -> dict[str, float | int | str]:
    script = _PEER_THROUGHPUT % {"seed": SEED}
    out = subprocess.run(
        [str(python), "-c", script, str(count)], capture_output=True, text=True, check=True
    )
    result: dict[str, float | int | str] = json.loads(out.stdout)
    return result


def peer_memory(python: Path, count: int) -> int:
    out = subprocess.run(
        [str(python), "-c", _PEER_MEMORY, str(count)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[0])


def our_setup() -> tuple[Venue, int]:
    venue = Venue()
    seq = 0
    for command in setup_commands(breaker=coincheck_breaker()):
        seq += 1
        venue.apply(seq, seq, command)
    return venue, seq


def flow_digest(commands: list[Command], offset: int) -> str:
    """The same digest the peer computes, translating our order ids (= seq) back to its."""
    digest = hashlib.blake2b(digest_size=16)
    for index, c in enumerate(commands):
        if type(c) is CancelOrder:
            digest.update(repr(("cancel", c.order_id - offset, c.account)).encode())
        else:
            assert type(c) is PlaceOrder
            fields = ("order", index + 1, c.account, c.side.value, c.price, c.qty)
            digest.update(repr((*fields, c.order_type.value)).encode())
    return digest.hexdigest()


def resting_orders(venue: Venue) -> int:
    total = 0
    for symbol in venue.markets:
        depth = venue.depth(symbol, 1 << 30)
        total += sum(level.orders for level in depth.bids)
        total += sum(level.orders for level in depth.asks)
    return total


def our_throughput(commands: list[Command]) -> tuple[float, int, list[str]]:
    venue, seq = our_setup()
    apply = venue.apply
    gc.collect()
    start = time.process_time()
    for command in commands:
        seq += 1
        apply(seq, seq, command)
    elapsed = time.process_time() - start
    return len(commands) / elapsed, resting_orders(venue), venue.check_invariants()


def our_latency(commands: list[Command]) -> tuple[int, int, int]:
    venue, seq = our_setup()
    apply = venue.apply
    clock = time.perf_counter_ns
    samples = [0] * len(commands)
    gc.collect()
    for index, command in enumerate(commands):
        seq += 1
        start = clock()
        apply(seq, seq, command)
        samples[index] = clock() - start
    samples.sort()
    n = len(samples)
    return samples[n // 2], samples[n * 99 // 100], samples[n * 999 // 1000]


def our_memory(count: int) -> int:
    """RSS of a fresh process holding ``count`` resting orders (runs this file as a child)."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(count)],
        capture_output=True, text=True, check=True,
    )
    return int(out.stdout.split()[0])


def _memory_child(count: int) -> None:
    venue, seq = our_setup()
    for command in resting_flow(count):
        seq += 1
        events = venue.apply(seq, seq, command)
        assert type(events[0]).__name__ == "OrderAccepted", events
    status = Path("/proc/self/status").read_text().splitlines()
    rss = next(line for line in status if line.startswith("VmRSS"))
    print(int(rss.split()[1]) * 1024, resting_orders(venue))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="orders per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, alternating")
    parser.add_argument("--resting", type=int, default=1_000_000,
                        help="resting orders for the memory figure (0: skip it)")
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        _memory_child(args.memory_child)
        return
    python = ensure_peer()
    offset = len(setup_commands())
    commands = list(order_flow(SEED, args.count, first_seq=offset + 1))
    ours_digest = flow_digest(commands, offset)

    peer_rates: list[float] = []
    ours_rates: list[float] = []
    peer_resting = ours_resting = 0
    for round_index in range(args.rounds):
        for side in ("peer", "ours") if round_index % 2 == 0 else ("ours", "peer"):
            if side == "peer":
                peer = peer_throughput(python, args.count)
                if peer["digest"] != ours_digest:
                    raise SystemExit(
                        "the peer's flow differs from ours: the comparison would be unfair"
                    )
                peer_rates.append(float(peer["cmd_per_s"]))
                peer_resting = int(peer["resting"])
            else:
                rate, ours_resting, problems = our_throughput(commands)
                if problems:
                    raise SystemExit(f"invariants broken after the run: {problems[:5]}")
                ours_rates.append(rate)
    ratios = [ours / peer for ours, peer in zip(ours_rates, peer_rates, strict=True)]
    p50, p99, p999 = our_latency(commands)
    rss = our_memory(args.resting) if args.resting else 0
    peer_rss = peer_memory(python, args.resting) if args.resting else 0

    mib = 1024 * 1024
    print(f"## In-process throughput: order_flow(seed={SEED}, count={args.count:,})\n")
    print(f"Median (range) of {args.rounds} rounds per side, ours and the peer's alternating; "
          f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]} (ours) vs 3.12 (peer). "
          "Ratio: above 1 means haltguard is better.\n")
    print(f"| measure | haltguard venue | {PEER_NAME} | ratio |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| commands/s in process (CPU time) | {spread(ours_rates)} | {spread(peer_rates)} | "
          f"{ratio_cell(ratios)} |")
    print(f"| resting orders after the run | {ours_resting:,} | {peer_resting:,} | |")
    print("| ledger holds and settlement, market states, breaker | on | none | |")
    print(f"| latency per command p50 / p99 / p99.9 | {p50 / 1000:.1f} / {p99 / 1000:.1f} / "
          f"{p999 / 1000:.1f} µs | | |")
    if args.resting:
        print(f"| RSS with {args.resting:,} resting orders (target < 1 GiB) | "
              f"{rss / mib:,.0f} MiB | {peer_rss / mib:,.0f} MiB | {peer_rss / rss:.2f}x |")
    print("\ninvariants after every round (conservation, no negative balance, holds, "
          "uncrossed book): ok")


if __name__ == "__main__":
    main()
