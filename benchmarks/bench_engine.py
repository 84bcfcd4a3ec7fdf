"""In-process venue throughput, latency and memory, side by side with ``matching-engine``.

Both engines run the same seeded order flows in the same run. First the peer's own mix
(``order_flow(seed=42)``: 25% cancels, 5% market orders, limits around the mid with about
one in ten crossing, 1,000 accounts), which both sides generate with the same draws. Then
the harder flows of ``stress_flow`` (``sweep``: two thirds of limit orders priced through
the mid; ``drift``: a trending mid; ``cancel_heavy``: a third of commands cancels;
``mixed``: all three), which only we generate: they are written to a JSON file and the
peer's subprocess builds its commands from it. Either way the commands are checked to be
the same ones by a digest computed on both sides. The peer package needs Python 3.12, so
it runs in its own virtual environment (created here when missing). Ours runs with
everything on: the ledger holds and settles every order, market states are checked on
every command, the circuit breaker checks every fill, and the invariants are verified
after each run. The peer has neither a ledger nor market states.

Usage::

    .venv/bin/python benchmarks/bench_engine.py [--count N] [--rounds R] [--resting M]
        [--stress-count N] [--flows sweep,drift,cancel_heavy,mixed]

Throughput is commands per second of process CPU time (``time.process_time``), so other
work on a shared machine does not skew one side; the garbage collector runs as usual on
both. Prints Markdown tables: commands/s for both as the median (and range) of R rounds,
ours and the peer's alternating, and the median of the per-round ratios; our per-command
latency percentiles (a separate pass timing each ``apply``, which also counts the trades);
the orders left resting on each side (equal when both engines matched alike); and the RSS
of a fresh process holding M resting orders (target: 1,000,000 under 1 GiB).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haltguard.venue.commands import CancelOrder, Command, PlaceOrder
from haltguard.venue.engine import Venue
from haltguard.venue.events import Trade
from haltguard.venue.markets import coincheck_breaker
from haltguard.venue.workload import (
    STRESS_PROFILES,
    order_flow,
    resting_flow,
    setup_commands,
    stress_flow,
)
from peer import PEER_NAME, ensure_peer, ratio_cell, run_peer, spread

SEED = 42

# Runs inside the peer's venv. Prints one JSON line: throughput, resting count, digest.
# The flow is the peer's own generator (argv[2] == "-") or the file of commands we wrote.
_PEER_THROUGHPUT = r"""
import hashlib, json, sys, time, gc
from matching_engine.engine import MatchingEngine
from matching_engine.domain import (SequencedCommand, NewOrder, CancelOrder, Side, OrderType,
                                    TimeInForce)
from matching_engine.workload import order_flow
count, source = int(sys.argv[1]), sys.argv[2]
if source == "-":
    flow = list(order_flow(seed=%(seed)d, count=count))
else:
    with open(source) as f:
        rows = json.load(f)
    flow = [CancelOrder(row[1], row[2]) if row[0] == "cancel" else
            NewOrder(i + 1, row[1], Side(row[2]), row[3], row[4], OrderType(row[5]),
                     TimeInForce.GTC if row[5] == "limit" else TimeInForce.IOC)
            for i, row in enumerate(rows)]
    assert len(flow) == count
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


def peer_throughput(python: Path, count: int, flow_file: Path | None) -> dict[str, Any]:
    """One round of the peer on its own flow (``flow_file`` None) or on the commands in
    ``flow_file`` (see :func:`write_peer_flow`)."""
    script = _PEER_THROUGHPUT % {"seed": SEED}
    return run_peer(python, script, [count, "-" if flow_file is None else flow_file])


def write_peer_flow(commands: list[Command], offset: int, path: Path) -> None:
    """Our commands in the peer's terms, one JSON row each: ``["cancel", order_id, account]``
    or ``["order", account, side, price, qty, order_type]``; the peer numbers orders 1, 2, ..."""
    rows: list[list[object]] = []
    for c in commands:
        if type(c) is CancelOrder:
            rows.append(["cancel", c.order_id - offset, c.account])
        else:
            assert type(c) is PlaceOrder
            rows.append(["order", c.account, c.side.value, c.price, c.qty, c.order_type.value])
    path.write_text(json.dumps(rows))


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


def our_latency(commands: list[Command]) -> tuple[int, int, int, int]:
    """Per-command latency percentiles p50, p99, p99.9 (ns), and how many trades the flow
    made (counted outside the timed calls)."""
    venue, seq = our_setup()
    apply = venue.apply
    clock = time.perf_counter_ns
    samples = [0] * len(commands)
    trades = 0
    gc.collect()
    for index, command in enumerate(commands):
        seq += 1
        start = clock()
        events = apply(seq, seq, command)
        samples[index] = clock() - start
        trades += sum(1 for event in events if type(event) is Trade)
    samples.sort()
    n = len(samples)
    return samples[n // 2], samples[n * 99 // 100], samples[n * 999 // 1000], trades


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


@dataclass
class Comparison:
    """One flow measured on both sides: commands/s per round, and what was left resting."""

    ours_rates: list[float]
    peer_rates: list[float]
    ours_resting: int
    peer_resting: int

    @property
    def ratios(self) -> list[float]:
        return [ours / peer for ours, peer in zip(self.ours_rates, self.peer_rates, strict=True)]


def compare(
    python: Path, commands: list[Command], offset: int, flow_file: Path | None, rounds: int
) -> Comparison:
    """``rounds`` rounds per side, ours and the peer's alternating, on the same commands
    (checked by digest); our invariants are checked after each of our rounds."""
    ours_digest = flow_digest(commands, offset)
    result = Comparison([], [], 0, 0)
    for round_index in range(rounds):
        for side in ("peer", "ours") if round_index % 2 == 0 else ("ours", "peer"):
            if side == "peer":
                peer = peer_throughput(python, len(commands), flow_file)
                if peer["digest"] != ours_digest:
                    raise SystemExit(
                        "the peer's flow differs from ours: the comparison would be unfair"
                    )
                result.peer_rates.append(float(peer["cmd_per_s"]))
                result.peer_resting = int(peer["resting"])
            else:
                rate, result.ours_resting, problems = our_throughput(commands)
                if problems:
                    raise SystemExit(f"invariants broken after the run: {problems[:5]}")
                result.ours_rates.append(rate)
    return result


def stress_table(python: Path, names: list[str], count: int, rounds: int) -> None:
    """The harder flows (:func:`stress_flow`), each generated here and handed to the peer
    as a file, so both engines run exactly the same commands."""
    offset = len(setup_commands())
    print(f"\n## In-process throughput on harder flows: stress_flow(seed={SEED}, "
          f"count={count:,})\n")
    print(f"Median (range) of {rounds} rounds per side, alternating, same run; "
          "ratio above 1 means haltguard is faster.\n")
    print(f"| flow | haltguard venue, cmd/s | {PEER_NAME}, cmd/s | ratio | trades per command "
          "| resting after (ours / peer) | our p50 / p99 µs |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as workdir:
        for name in names:
            profile = STRESS_PROFILES[name]
            commands = list(stress_flow(SEED, count, profile, first_seq=offset + 1))
            flow_file = Path(workdir) / f"{name}.json"
            write_peer_flow(commands, offset, flow_file)
            result = compare(python, commands, offset, flow_file, rounds)
            p50, p99, _, trades = our_latency(commands)
            print(f"| {name} | {spread(result.ours_rates)} | {spread(result.peer_rates)} | "
                  f"{ratio_cell(result.ratios)} | {trades / count:.2f} | "
                  f"{result.ours_resting:,} / {result.peer_resting:,} | "
                  f"{p50 / 1000:.1f} / {p99 / 1000:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="orders per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, alternating")
    parser.add_argument("--resting", type=int, default=1_000_000,
                        help="resting orders for the memory figure (0: skip it)")
    parser.add_argument("--stress-count", type=int, default=300_000,
                        help="commands per round of each harder flow (0: skip them)")
    parser.add_argument("--flows", default=",".join(STRESS_PROFILES),
                        help="which harder flows, comma-separated: " + ", ".join(STRESS_PROFILES))
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        _memory_child(args.memory_child)
        return
    names = [name for name in args.flows.split(",") if name]
    unknown = sorted(set(names) - set(STRESS_PROFILES))
    if unknown:
        parser.error(f"unknown flow {', '.join(unknown)}: choose from {', '.join(STRESS_PROFILES)}")
    python = ensure_peer()
    if args.count:
        standard_table(python, args.count, args.rounds, args.resting)
    if args.stress_count and names:
        stress_table(python, names, args.stress_count, args.rounds)


def standard_table(python: Path, count: int, rounds: int, resting: int) -> None:
    """The peer's own mix (its generator on its side, ours on ours; checked by digest),
    with latency and memory."""
    offset = len(setup_commands())
    commands = list(order_flow(SEED, count, first_seq=offset + 1))
    result = compare(python, commands, offset, None, rounds)
    p50, p99, p999, _ = our_latency(commands)
    rss = our_memory(resting) if resting else 0
    peer_rss = peer_memory(python, resting) if resting else 0

    mib = 1024 * 1024
    print(f"## In-process throughput: order_flow(seed={SEED}, count={count:,})\n")
    print(f"Median (range) of {rounds} rounds per side, ours and the peer's alternating; "
          f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]} (ours) vs 3.12 (peer). "
          "Ratio: above 1 means haltguard is better.\n")
    print(f"| measure | haltguard venue | {PEER_NAME} | ratio |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| commands/s in process (CPU time) | {spread(result.ours_rates)} | "
          f"{spread(result.peer_rates)} | {ratio_cell(result.ratios)} |")
    print(f"| resting orders after the run | {result.ours_resting:,} | "
          f"{result.peer_resting:,} | |")
    print("| ledger holds and settlement, market states, breaker | on | none | |")
    print(f"| latency per command p50 / p99 / p99.9 | {p50 / 1000:.1f} / {p99 / 1000:.1f} / "
          f"{p999 / 1000:.1f} µs | | |")
    if resting:
        print(f"| RSS with {resting:,} resting orders (target < 1 GiB) | "
              f"{rss / mib:,.0f} MiB | {peer_rss / mib:,.0f} MiB | {peer_rss / rss:.2f}x |")
    print("\ninvariants after every round (conservation, no negative balance, holds, "
          "uncrossed book): ok", flush=True)


if __name__ == "__main__":
    main()
