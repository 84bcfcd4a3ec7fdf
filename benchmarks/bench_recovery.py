"""Recovery time: full replay and snapshot + tail, side by side with ``matching-engine``.

Both sides recover the same seeded order flow (``order_flow(seed=42)``, checked by digest)
from their own on-disk journal, in the same run:

* full replay: ``--records`` orders (default 1,000,000), no snapshot. Ours is
  ``haltguard.journal.recover``: read each segment once, check every record's CRC32C (runs
  of plain orders and cancels with one call, see ADR 0001) and sequence number, decode, and
  replay it through the venue with its ledger (``Venue.replay_batch``, reaching the state
  ``Venue.apply`` reaches, building no events; our log also holds the 2,003 setup commands
  that list the market and fund 1,000 accounts). The peer's is ``Journal.recover`` of its own
  WAL into its engine, which has no ledger. Target: at least 2x the peer.
* snapshot + tail: the same log with a snapshot ``--tail`` records (default 100,000) before
  its end: load and verify the snapshot, then replay the tail. Target: ours under 1 s.
* read + CRC + decode only (no engine) for both, to show where the time goes.

Both journals are built once (and flushed to disk, so no round pays for write-back); then
``--rounds`` rounds run, ours and the peer's alternating, each side recovering in a fresh
process of its own each round (ours Python 3.11, the peer's 3.12), as after a restart.
Times are the process's CPU time (``time.process_time``): the files are in the page cache,
so recovery is CPU-bound, and CPU time is what other work on a shared machine disturbs
least (wall-clock time of the full replay is shown too). Each figure is the median (and
range) of the rounds; the ratio is the median of the per-round ratios.

Usage::

    .venv/bin/python benchmarks/bench_recovery.py [--records N] [--tail T] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_journal import RESULTS_DIR, SEED, TS_START, flow_digest
from haltguard.journal import Journal, recover
from haltguard.journal.codec import RecordDecoder
from haltguard.journal.recovery import gc_paused
from haltguard.journal.segments import SEGMENT_HEADER_BYTES, check_segment_header, list_segments
from haltguard.venue.commands import Command
from haltguard.venue.engine import Venue
from haltguard.venue.workload import order_flow, setup_commands
from peer import PEER_NAME, ensure_peer, ratio_cell, run_peer, spread

BATCH = 4096

_PEER_SCRIPT = r"""
import hashlib, json, os, sys, time
from pathlib import Path
from matching_engine.domain import CancelOrder, SequencedCommand
from matching_engine.engine import MatchingEngine
from matching_engine.journal import Journal
from matching_engine.snapshot import encode_snapshot
from matching_engine.wal import SegmentReader
from matching_engine.workload import order_flow

mode, count, tail, workdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
full, snap = workdir / "peer-full", workdir / "peer-snapshot"

def build(root, checkpoint_at, stamped):
    journal = Journal(root, fsync=False)
    journal.open(1)
    engine = MatchingEngine() if checkpoint_at else None
    for sc in stamped:
        journal.append(sc)
        if engine is not None and sc.seq <= checkpoint_at:
            engine.process(sc)
        if sc.seq %% %(batch)d == 0:
            journal.sync()
        if sc.seq == checkpoint_at:
            journal.sync()
            journal.checkpoint(encode_snapshot(engine, sc.ts), sc.seq)
    journal.close()

if mode == "build":
    flow = list(order_flow(seed=%(seed)d, count=count))
    digest = hashlib.blake2b(digest_size=16)
    for c in flow:
        if type(c) is CancelOrder:
            digest.update(repr(("cancel", c.order_id, c.account)).encode())
        else:
            digest.update(repr(("order", c.account, c.side.value, c.price, c.qty,
                                c.order_type.value, c.tif.value)).encode())
    stamped = [SequencedCommand(i + 1, %(ts)d + i + 1, c) for i, c in enumerate(flow)]
    build(full, 0, stamped)
    build(snap, count - tail, stamped)
    os.sync()
    print(json.dumps({"digest": digest.hexdigest()}))
else:
    times = {}
    wall, cpu = time.perf_counter(), time.process_time()
    engine, report = Journal(full).recover()
    times["full"] = time.process_time() - cpu
    times["full_wall"] = time.perf_counter() - wall
    assert report.replayed == count
    del engine
    cpu = time.process_time()
    engine, report = Journal(snap).recover()
    times["snapshot"] = time.process_time() - cpu
    assert report.replayed == tail
    del engine
    cpu = time.process_time()
    for path in sorted((full / "wal").glob("*.wal")):
        for _ in SegmentReader(path):
            pass
    times["decode"] = time.process_time() - cpu
    print(json.dumps(times))
"""


def build_ours(root: Path, commands: list[Command], checkpoint_at: int) -> Venue | None:
    """Journal ``commands`` (no fsync: writing is not what is measured)."""
    journal = Journal(root, unsafe_skip_fsync=True)
    venue = Venue() if checkpoint_at else None
    with gc_paused():
        for seq, command in enumerate(commands, 1):
            journal.append(seq, TS_START + seq, command)
            if venue is not None and seq <= checkpoint_at:
                venue.apply(seq, TS_START + seq, command)
            if seq % BATCH == 0 or seq == checkpoint_at:
                journal.sync()
            if seq == checkpoint_at and venue is not None:
                journal.checkpoint(venue, TS_START + seq)
    journal.close()
    return venue


def _ignore(*fields: object) -> None:
    """A sink that takes any record and does nothing with it."""


def decode_only(root: Path) -> float:
    """Read + CRC + decode every record (into the runs recovery hands to the venue),
    applying nothing."""
    start = time.process_time()
    for first_seq, path in list_segments(root):
        data = path.read_bytes()
        version = check_segment_header(path, data, first_seq)
        RecordDecoder(version).decode_span(
            data, SEGMENT_HEADER_BYTES, first_seq, sink=_ignore, batch_sink=_ignore
        )
    return time.process_time() - start


def ours_round(full: Path, snap: Path, expected: int, tail: int) -> dict[str, Any]:
    """One round of our three figures, in a fresh process (see ``--child``)."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(full), str(snap), str(expected), str(tail)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"our recovery round failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _child(full: Path, snap: Path, expected: int, tail: int) -> None:
    """Recover both journals and decode one; print the times and the state hash as JSON."""
    times: dict[str, Any] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    venue, report = recover(full)
    times["full"] = time.process_time() - cpu
    times["full_wall"] = time.perf_counter() - wall
    assert report.records_replayed == expected, report.describe()
    full_hash = venue.state_hash()
    del venue
    cpu = time.process_time()
    venue, report = recover(snap)
    times["snapshot"] = time.process_time() - cpu
    assert report.records_replayed == tail, report.describe()
    if venue.state_hash() != full_hash:
        raise SystemExit("snapshot + tail and full replay disagree on the state hash")
    del venue
    times["decode"] = decode_only(full)
    times["state_hash"] = full_hash
    print(json.dumps(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="orders in the log")
    parser.add_argument("--tail", type=int, default=100_000, help="records after the snapshot")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side, alternating")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        full, snap, expected, tail_records = args.child
        _child(Path(full), Path(snap), int(expected), int(tail_records))
        return
    tail = min(args.tail, args.records)

    peer = ensure_peer()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-recovery-", dir=RESULTS_DIR))
    keys = ("full", "full_wall", "snapshot", "decode")
    ours: dict[str, list[float]] = {key: [] for key in keys}
    theirs: dict[str, list[float]] = {key: [] for key in keys}
    try:
        setup = setup_commands()
        orders = list(order_flow(SEED, args.records, first_seq=len(setup) + 1))
        commands = setup + orders
        full, snap = workdir / "ours-full", workdir / "ours-snapshot"
        build_ours(full, commands, 0)
        build_ours(snap, commands, len(commands) - tail)
        total = len(commands)
        setup_digest = flow_digest(commands[len(setup) :], len(setup))
        del orders, commands
        script = _PEER_SCRIPT % {"seed": SEED, "ts": TS_START, "batch": BATCH}
        built = run_peer(peer, script, ["build", args.records, tail, workdir])
        if built["digest"] != setup_digest:
            raise SystemExit("the peer journaled different orders: digests differ")
        os.sync()
        hashes = set()
        for round_index in range(args.rounds):
            for side in ("ours", "peer") if round_index % 2 == 0 else ("peer", "ours"):
                if side == "ours":
                    result = ours_round(full, snap, total, tail)
                    hashes.add(result["state_hash"])
                else:
                    result = run_peer(peer, script, ["measure", args.records, tail, workdir])
                for key in keys:
                    (ours if side == "ours" else theirs)[key].append(result[key])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if len(hashes) != 1:
        raise SystemExit("our recoveries disagree on the state hash from one round to another")

    print(f"## Recovery: median (range) of {args.rounds} rounds per side, alternating\n")
    print("Ratio = peer time / our time per round (above 1: haltguard is faster).\n")
    print(f"| scenario | haltguard | {PEER_NAME} | ratio | target |")
    print("|---|---:|---:|---:|---|")
    rows = (
        ("full replay, CPU time", "full", f"{total:,} records", f"{args.records:,} records",
         ">= 2x"),
        ("full replay, wall clock", "full_wall", f"{total:,} records",
         f"{args.records:,} records", "-"),
        ("snapshot + tail, CPU time", "snapshot", f"{tail:,} tail", f"{tail:,} tail",
         "ours < 1 s"),
        ("read + CRC + decode only, CPU time", "decode", f"{total:,} records",
         f"{args.records:,}", "-"),
    )
    for name, key, ours_size, peer_size, target in rows:
        ratios = [p / o for o, p in zip(ours[key], theirs[key], strict=True)]
        print(
            f"| {name} | {spread(ours[key], '{:.2f}', ' s')} ({ours_size}) | "
            f"{spread(theirs[key], '{:.2f}', ' s')} ({peer_size}) | {ratio_cell(ratios)} | "
            f"{target} |"
        )


if __name__ == "__main__":
    main()
