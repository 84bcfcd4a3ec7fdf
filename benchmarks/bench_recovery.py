"""Recovery time: full replay and snapshot + tail, side by side with ``matching-engine``.

Both sides recover the same seeded order flow (``order_flow(seed=42)``, checked by digest)
from their own on-disk journal, in the same run:

* full replay: ``--records`` orders (default 1,000,000), no snapshot. Ours is
  ``haltguard.journal.recover``: read each segment once, check every record's CRC32C and
  sequence number, decode, and apply through the venue with its ledger (our log also holds
  the 2,003 setup commands that list the market and fund 1,000 accounts). The peer's is
  ``Journal.recover`` of its own WAL into its engine, which has no ledger.
* snapshot + tail: the same log with a snapshot ``--tail`` records (default 100,000) before
  its end: load and verify the snapshot, then replay the tail. Target: under 1 s.
* read + CRC + decode only (no engine) for both, to show where the time goes.

Each figure is the best of ``--rounds`` rounds, ours and the peer's alternating; the machine's
other load shows up in all of them. The peer runs in its own Python 3.12 virtual environment
(created when missing) as a subprocess.

Usage::

    .venv/bin/python benchmarks/bench_recovery.py [--records N] [--tail T] [--rounds R]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_journal import RESULTS_DIR, SEED, TS_START, ensure_peer, flow_digest, run_peer
from haltguard.journal import Journal, recover
from haltguard.journal.codec import RecordDecoder
from haltguard.journal.recovery import gc_paused
from haltguard.journal.segments import SEGMENT_HEADER_BYTES, list_segments
from haltguard.venue.commands import Command
from haltguard.venue.engine import Venue
from haltguard.venue.workload import order_flow, setup_commands

BATCH = 4096

_PEER_SCRIPT = r"""
import hashlib, json, sys, time
from pathlib import Path
from matching_engine.domain import CancelOrder, SequencedCommand
from matching_engine.engine import MatchingEngine
from matching_engine.journal import Journal
from matching_engine.snapshot import encode_snapshot
from matching_engine.wal import SegmentReader
from matching_engine.workload import order_flow

count, tail, rounds, workdir = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                Path(sys.argv[4]))
flow = list(order_flow(seed=%(seed)d, count=count))
digest = hashlib.blake2b(digest_size=16)
for c in flow:
    if type(c) is CancelOrder:
        digest.update(repr(("cancel", c.order_id, c.account)).encode())
    else:
        digest.update(repr(("order", c.account, c.side.value, c.price, c.qty,
                            c.order_type.value, c.tif.value)).encode())
stamped = [SequencedCommand(i + 1, %(ts)d + i + 1, c) for i, c in enumerate(flow)]

def build(root, checkpoint_at):
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

full, snap = workdir / "peer-full", workdir / "peer-snapshot"
build(full, 0)
build(snap, count - tail)
best = {"full": 1e9, "snapshot": 1e9, "decode": 1e9}
for _ in range(rounds):
    start = time.perf_counter()
    engine, report = Journal(full).recover()
    best["full"] = min(best["full"], time.perf_counter() - start)
    assert report.replayed == count
    start = time.perf_counter()
    engine, report = Journal(snap).recover()
    best["snapshot"] = min(best["snapshot"], time.perf_counter() - start)
    assert report.replayed == tail
    start = time.perf_counter()
    for path in sorted((full / "wal").glob("*.wal")):
        for _ in SegmentReader(path):
            pass
    best["decode"] = min(best["decode"], time.perf_counter() - start)
print(json.dumps({"digest": digest.hexdigest(), **best}))
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


def decode_only(root: Path) -> float:
    """Read + CRC + decode every record, applying nothing."""
    start = time.perf_counter()
    for first_seq, path in list_segments(root):
        data = path.read_bytes()
        RecordDecoder().decode_span(data, SEGMENT_HEADER_BYTES, first_seq, sink=slice)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="orders in the log")
    parser.add_argument("--tail", type=int, default=100_000, help="records after the snapshot")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    args = parser.parse_args()
    tail = min(args.tail, args.records)

    peer = ensure_peer()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-recovery-", dir=RESULTS_DIR))
    try:
        setup = setup_commands()
        orders = list(order_flow(SEED, args.records, first_seq=len(setup) + 1))
        commands = setup + orders
        full, snap = workdir / "ours-full", workdir / "ours-snapshot"
        build_ours(full, commands, 0)
        build_ours(snap, commands, len(commands) - tail)
        del orders
        script = _PEER_SCRIPT % {"seed": SEED, "ts": TS_START, "batch": BATCH}
        peer_result: dict[str, Any] = run_peer(
            peer, script, [args.records, tail, args.rounds, workdir]
        )
        if peer_result["digest"] != flow_digest(commands[len(setup) :], len(setup)):
            raise SystemExit("the peer journaled different orders: digests differ")
        ours = {"full": 1e9, "snapshot": 1e9, "decode": 1e9}
        hashes = set()
        for _ in range(args.rounds):
            start = time.perf_counter()
            venue, report = recover(full)
            ours["full"] = min(ours["full"], time.perf_counter() - start)
            assert report.records_replayed == len(commands), report.describe()
            hashes.add(venue.state_hash())
            del venue
            start = time.perf_counter()
            venue, report = recover(snap)
            ours["snapshot"] = min(ours["snapshot"], time.perf_counter() - start)
            assert report.records_replayed == tail, report.describe()
            hashes.add(venue.state_hash())
            del venue
            ours["decode"] = min(ours["decode"], decode_only(full))
        if len(hashes) != 1:
            raise SystemExit("recoveries disagree on the state hash")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    total = len(commands)
    print(f"## Recovery, best of {args.rounds} (ratio = peer time / our time)\n")
    print("| scenario | haltguard | matching-engine 0.1.1 | ratio | target |")
    print("|---|---:|---:|---:|---|")
    rows = (
        ("full replay", "full", f"{total:,} records", f"{args.records:,} records", ">= 2x"),
        ("snapshot + tail", "snapshot", f"{tail:,} tail", f"{tail:,} tail", "ours < 1 s"),
        ("read + CRC + decode only", "decode", f"{total:,} records", f"{args.records:,}", "-"),
    )
    for name, key, ours_size, peer_size, target in rows:
        ratio = peer_result[key] / ours[key]
        print(
            f"| {name} | {ours[key]:.2f} s ({ours_size}, "
            f"{(total if key != 'snapshot' else tail) / ours[key]:,.0f}/s) | "
            f"{peer_result[key]:.2f} s ({peer_size}) | {ratio:.2f}x | {target} |"
        )


if __name__ == "__main__":
    main()
