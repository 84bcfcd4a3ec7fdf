"""Durable commands/s and acknowledged latency through the journal, beside ``matching-engine``.

Both journals write the same seeded order flow (``order_flow(seed=42)``, the mix of the PyPI
package ``matching-engine`` 0.1.1; the commands are checked to be the same by a digest
computed on both sides) to real files on the same filesystem, with real ``fsync``, in the
same run:

* durable commands/s: encode + append + one write and one ``fsync`` per batch (group
  commit), for batches of 1, 64, 512 and 4096 commands. Ours is ``Journal.append`` +
  ``Journal.sync``; the peer's is its ``wal.SegmentWriter.append`` (which calls its
  ``encode``) + ``sync``. Commands are stamped before the clock starts on both sides.
* acknowledged latency: a producer thread offers commands at a fixed rate into a queue; a
  group-commit thread takes whatever is queued (no timer, up to 4096), appends each, syncs
  once and acknowledges the batch. Latency is enqueue -> acknowledgement. The same loop
  (one piece of source, below) runs against both journals.

The peer needs Python 3.12 and runs in its own virtual environment (created when missing)
as a subprocess. The machine's other load shows up in every figure: each is the median (and
range) of ``--rounds`` rounds, ours and the peer's alternating.

Usage::

    .venv/bin/python benchmarks/bench_journal.py [--records N] [--rounds R] [--rates 20000,100000]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from haltguard.journal import Journal
from haltguard.venue.commands import CancelOrder, Command, PlaceOrder
from haltguard.venue.workload import order_flow
from peer import PEER_NAME, ensure_peer, ratio_cell, run_peer, spread

SEED = 42
BATCH_SIZES = (1, 64, 512, 4096)
BATCH_MAX = 4096  # the group-commit loop's largest batch
TS_START = 1_700_000_000_000_000_000
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# The group-commit loop, run as-is by both interpreters so the harness is identical.
GROUP_COMMIT_LOOP = r'''
import queue, threading, time

def group_commit_latencies(append, sync, commands, rate, batch_max):
    """Offer ``commands`` at ``rate``/s; return (latencies_ns, batches, elapsed_s)."""
    waiting = queue.SimpleQueue()
    latencies = []
    batches = [0]
    total = len(commands)

    def produce():
        per_ms = max(1, rate // 1000)
        start = time.perf_counter_ns()
        for offset in range(0, total, per_ms):
            due = start + (offset // per_ms) * 1_000_000
            pause = (due - time.perf_counter_ns()) / 1e9
            if pause > 0:
                time.sleep(pause)
            now = time.perf_counter_ns()
            for index in range(offset, min(offset + per_ms, total)):
                waiting.put((index, now))

    def commit():
        done = 0
        while done < total:
            batch = [waiting.get()]
            while len(batch) < batch_max:
                try:
                    batch.append(waiting.get_nowait())
                except queue.Empty:
                    break
            for index, _ in batch:
                append(index + 1, commands[index])
            sync()
            acked = time.perf_counter_ns()
            latencies.extend(acked - queued for _, queued in batch)
            batches[0] += 1
            done += len(batch)

    started = time.perf_counter()
    producer = threading.Thread(target=produce)
    producer.start()
    commit()
    producer.join()
    return latencies, batches[0], time.perf_counter() - started
'''

_PEER_SCRIPT = GROUP_COMMIT_LOOP + r'''
import hashlib, json, sys, tempfile, shutil
from pathlib import Path
from matching_engine.domain import CancelOrder, SequencedCommand
from matching_engine.wal import SegmentWriter
from matching_engine.workload import order_flow

mode, count, workdir = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
flow = list(order_flow(seed=%(seed)d, count=count))
digest = hashlib.blake2b(digest_size=16)
for c in flow:
    if type(c) is CancelOrder:
        digest.update(repr(("cancel", c.order_id, c.account)).encode())
    else:
        digest.update(repr(("order", c.account, c.side.value, c.price, c.qty,
                            c.order_type.value, c.tif.value)).encode())
stamped = [SequencedCommand(i + 1, %(ts)d + i + 1, c) for i, c in enumerate(flow)]
out = {"digest": digest.hexdigest()}
if mode == "durable":
    batch = int(sys.argv[4])
    directory = Path(tempfile.mkdtemp(dir=workdir))
    writer = SegmentWriter(directory / "00000000000000000001.wal")
    append, sync = writer.append, writer.sync
    start = time.perf_counter()
    for sc in stamped:
        append(sc)
        if sc.seq %% batch == 0:
            sync()
    sync()
    out["cmds_per_s"] = count / (time.perf_counter() - start)
    writer.close()
    shutil.rmtree(directory)
else:
    rate = int(sys.argv[4])
    directory = Path(tempfile.mkdtemp(dir=workdir))
    writer = SegmentWriter(directory / "00000000000000000001.wal")
    latencies, batches, elapsed = group_commit_latencies(
        lambda seq, sc: writer.append(sc), writer.sync, stamped, rate, %(batch_max)d
    )
    writer.close()
    shutil.rmtree(directory)
    out.update(latencies=latencies, batches=batches, elapsed=elapsed)
print(json.dumps(out))
'''


def flow_digest(commands: Sequence[Command], order_id_offset: int = 0) -> str:
    """The same digest the peer script computes, over the fields both flows share.

    The peer numbers orders from 1; ours are numbered by seq, so a flow that starts after
    setup commands is shifted by ``order_id_offset``.
    """
    digest = hashlib.blake2b(digest_size=16)
    for command in commands:
        if type(command) is CancelOrder:
            order_id = command.order_id - order_id_offset
            digest.update(repr(("cancel", order_id, command.account)).encode())
        else:
            assert type(command) is PlaceOrder
            digest.update(
                repr(("order", command.account, command.side.value, command.price, command.qty,
                      command.order_type.value, command.tif.value)).encode()
            )
    return digest.hexdigest()


def percentile(sorted_values: Sequence[int], fraction: float) -> float:
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index] / 1000  # ns -> µs


def ours_durable(commands: Sequence[Command], batch: int, workdir: Path) -> float:
    directory = Path(tempfile.mkdtemp(dir=workdir))
    journal = Journal(directory)
    stamped = [(seq, TS_START + seq, command) for seq, command in enumerate(commands, 1)]
    append, sync = journal.append, journal.sync
    start = time.perf_counter()
    for seq, ts, command in stamped:
        append(seq, ts, command)
        if seq % batch == 0:
            sync()
    sync()
    elapsed = time.perf_counter() - start
    journal.close()
    shutil.rmtree(directory)
    return len(commands) / elapsed


def ours_latency(commands: Sequence[Command], rate: int, workdir: Path) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(GROUP_COMMIT_LOOP, namespace)  # the shared harness source, see GROUP_COMMIT_LOOP
    loop: Callable[..., tuple[list[int], int, float]] = namespace["group_commit_latencies"]
    directory = Path(tempfile.mkdtemp(dir=workdir))
    journal = Journal(directory)
    append = journal.append

    def append_one(seq: int, command: Command) -> None:
        append(seq, TS_START + seq, command)

    latencies, batches, elapsed = loop(append_one, journal.sync, commands, rate, BATCH_MAX)
    journal.close()
    shutil.rmtree(directory)
    return {"latencies": latencies, "batches": batches, "elapsed": elapsed}


def durable_count(batch: int, records: int) -> int:
    """Commands per measurement: enough batches to be stable, never above ``records``."""
    return min(records, max(3_000, batch * 1_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=400_000, help="commands per run, most")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, alternating")
    parser.add_argument(
        "--rates", default="20000,100000", help="offered loads for the latency runs, commands/s"
    )
    parser.add_argument("--latency-seconds", type=float, default=3.0)
    args = parser.parse_args()

    peer = ensure_peer()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-journal-", dir=RESULTS_DIR))
    commands = list(order_flow(SEED, args.records, first_seq=1))
    peer_script = _PEER_SCRIPT % {"seed": SEED, "ts": TS_START, "batch_max": BATCH_MAX}
    ours_rates: dict[int, list[float]] = {batch: [] for batch in BATCH_SIZES}
    peer_rates: dict[int, list[float]] = {batch: [] for batch in BATCH_SIZES}
    try:
        for batch in BATCH_SIZES:
            count = durable_count(batch, args.records)
            expected = flow_digest(commands[:count])
            for round_index in range(args.rounds):
                for side in ("ours", "peer") if round_index % 2 == 0 else ("peer", "ours"):
                    if side == "ours":
                        ours_rates[batch].append(ours_durable(commands[:count], batch, workdir))
                        continue
                    result = run_peer(peer, peer_script, ["durable", count, workdir, batch])
                    if result["digest"] != expected:
                        raise SystemExit("the peer wrote different commands: digests differ")
                    peer_rates[batch].append(result["cmds_per_s"])
        rates = [int(rate) for rate in args.rates.split(",")]
        latencies: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
        for rate in rates:
            count = min(args.records, int(rate * args.latency_seconds))
            ours_lat = ours_latency(commands[:count], rate, workdir)
            peer_lat = run_peer(peer, peer_script, ["latency", count, workdir, rate])
            latencies.append((rate, ours_lat, peer_lat))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print("## Durable commands/s (encode + append + write + fsync per batch)\n")
    print(f"Median (range) of {args.rounds} rounds per side, alternating; ratio = ours / peer "
          "per round.\n")
    print(f"| batch | haltguard | {PEER_NAME} | ratio |")
    print("|---:|---:|---:|---:|")
    for batch in BATCH_SIZES:
        ratios = [o / p for o, p in zip(ours_rates[batch], peer_rates[batch], strict=True)]
        print(f"| {batch} | {spread(ours_rates[batch])} | {spread(peer_rates[batch])} | "
              f"{ratio_cell(ratios)} |")
    ours_top = max(BATCH_SIZES, key=lambda b: statistics.median(ours_rates[b]))
    peer_top = max(BATCH_SIZES, key=lambda b: statistics.median(peer_rates[b]))
    top_ratios = [o / p for o, p in zip(ours_rates[ours_top], peer_rates[peer_top], strict=True)]
    print(f"| best batch ({ours_top} vs {peer_top}) | {spread(ours_rates[ours_top])} | "
          f"{spread(peer_rates[peer_top])} | {ratio_cell(top_ratios)} "
          "(target >= 1.2x the peer's best batch) |")
    print("\n## Acknowledged latency (enqueue -> durable), group commit without a timer\n")
    print("One run per offered load; ratio = peer p99 / our p99 (above 1: ours is lower).\n")
    print("| offered cmds/s | journal | p50 µs | p99 µs | p99.9 µs | max µs | mean batch | "
          "achieved cmds/s | ratio |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for rate, ours_lat, peer_lat in latencies:
        p99 = {}
        for name, result in (("haltguard", ours_lat), (PEER_NAME, peer_lat)):
            values = sorted(result["latencies"])
            p99[name] = percentile(values, 0.99)
            ratio = f"**{p99[PEER_NAME] / p99['haltguard']:.2f}x**" if name == PEER_NAME else ""
            print(
                f"| {rate:,} | {name} | {percentile(values, 0.5):,.0f} | {p99[name]:,.0f} | "
                f"{percentile(values, 0.999):,.0f} | {values[-1] / 1000:,.0f} | "
                f"{len(values) / result['batches']:.1f} | "
                f"{len(values) / result['elapsed']:,.0f} | {ratio} |"
            )


if __name__ == "__main__":
    main()
