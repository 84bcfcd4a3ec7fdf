"""Backup speed against ``cp`` of the same files, verify time, and order latency during a
backup (issue 16's performance targets).

The data: a venue journal of ``--commands`` orders (default 10,000,000, the seeded
``order_flow`` after the workload's setup; no snapshot, so a backup copies every segment) and
a SQLite database of ``--db-bytes`` (default 1 GiB: rows of 4 KiB hex text, which compresses
about 2x). In the same run, alternating, ``--rounds`` times:

* ``cp``: ``cp -r`` of the segments directory and the database file to a fresh directory on
  the same disk, then ``sync`` (our backup fsyncs every file it writes, so the baseline does
  too). Target: our plain backup within 2x of it.
* ours, plain: ``create_backup`` with no compression and no key (SQLite online backup API,
  SHA-256 of every file, manifest);
* ours, zstd + AES-256-GCM: the same, compressed and encrypted.

Then ``verify_backup`` of the last encrypted backup (decrypt, decompress, SHA-256, replay the
whole journal, check the ledger, open the database, compare row counts). Target: < 2 min.

Latency: an in-process venue takes orders one at a time at ``--rate`` per second for
``--latency-s`` seconds, once alone and once while another process takes encrypted backups of
the same data in a loop (as ``serve`` does: the venue runs in its own process, the backup in
the operations process). Target: p99 at most 1.2x.

Usage::

    .venv/bin/python benchmarks/bench_backup.py [--commands N] [--db-bytes B] [--rounds R]
        [--latency-s S] [--rate R] [--data-parent DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from haltguard.backup import archive
from haltguard.backup.flows import create_backup, verify_backup
from haltguard.backup.settings import BackupSettings, BackupSources
from haltguard.gateway.runtime import VenueRuntime
from haltguard.journal import Journal
from haltguard.venue.workload import order_flow, setup_commands

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEED = 42
TS_START = 1_700_000_000_000_000_000
BATCH = 4096
ROW_BYTES = 4096


def build_journal(data_dir: Path, commands: int) -> int:
    """Journal the setup and ``commands`` orders without applying them (fast); return seqs."""
    journal = Journal(data_dir, unsafe_skip_fsync=True)
    setup = setup_commands()
    seq = 0
    for command in [*setup, *order_flow(SEED, commands, first_seq=len(setup) + 1)]:
        seq += 1
        journal.append(seq, TS_START + seq * 1000, command)
        if seq % BATCH == 0:
            journal.sync()
    journal.close()
    return seq


def build_database(path: Path, size_bytes: int) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    connection.execute("CREATE TABLE payload (id INTEGER PRIMARY KEY, body TEXT)")
    rows = size_bytes // (ROW_BYTES + 64)
    with connection:
        for start in range(0, rows, 1000):
            connection.executemany("INSERT INTO payload (body) VALUES (?)",
                                   [(os.urandom(ROW_BYTES // 2).hex(),)
                                    for _ in range(min(1000, rows - start))])
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def tree_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def time_cp(data_dir: Path, database: Path, destination: Path) -> float:
    destination.mkdir()
    started = time.perf_counter()
    subprocess.run(["cp", "-r", str(data_dir / "segments"), str(database), str(destination)],
                   check=True)
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - started


def time_ours(settings: BackupSettings, sources: BackupSources) -> tuple[float, str]:
    started = time.perf_counter()
    manifest = create_backup(settings, sources, now=datetime.now(UTC))
    return time.perf_counter() - started, manifest.backup_id


def order_latencies(rate: int, seconds: float, workdir: Path) -> list[float]:
    """Ack latency (ms) of orders placed one at a time at ``rate`` per second."""
    runtime = VenueRuntime(workdir).start()
    try:
        setup = setup_commands(accounts=100)
        for future in [runtime.submit(command) for command in setup]:
            future.result()
        flow = order_flow(SEED, 10**9, first_seq=len(setup) + 1, accounts=100)
        latencies: list[float] = []
        interval = 1.0 / rate
        next_at = time.perf_counter()
        end = next_at + seconds
        while next_at < end:
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            started = time.perf_counter()
            runtime.submit(next(flow)).result()
            latencies.append((time.perf_counter() - started) * 1000)
            next_at += interval
        return latencies
    finally:
        runtime.stop()


BACKUP_LOOP = r"""
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from haltguard.backup.flows import create_backup, run_in_background
from haltguard.backup.settings import BackupSettings, BackupSources
run_in_background()  # as the backup thread in serve and `haltguard backup create` do
target, key, data_dir, database, end, bytes_per_s = sys.argv[1:7]
settings = BackupSettings(target_url=target, key_file=Path(key),
                          bytes_per_s_max=int(bytes_per_s))
sources = BackupSources(Path(data_dir), f"sqlite:///{database}")
taken = 0
while time.time() < float(end):
    create_backup(settings, sources, now=datetime.now(UTC))
    taken += 1
print(taken)
"""


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=10_000_000)
    parser.add_argument("--db-bytes", type=int, default=1 << 30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-s", type=float, default=8.0)
    parser.add_argument("--latency-windows", type=int, default=3)
    parser.add_argument("--paced-bytes-per-s", type=int, default=32 << 20)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--data-parent", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-backup-", dir=args.data_parent))
    try:
        report = run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "backup.json").write_text(json.dumps(report, indent=2))
    print_report(report)


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    data_dir, database = root / "data", root / "data" / "haltguard.sqlite3"
    load_at_start = os.getloadavg()[0]
    started = time.perf_counter()
    seqs = build_journal(data_dir, args.commands)
    build_database(database, args.db_bytes)
    print(f"built {seqs} journal records and a {database.stat().st_size >> 20} MiB database "
          f"in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    key = root / "backup.key"
    archive.generate_key_file(key)
    sources = BackupSources(data_dir, f"sqlite:///{database}")
    plain = BackupSettings(target_url=(root / "plain").as_uri(), compression="none")
    sealed = BackupSettings(target_url=(root / "sealed").as_uri(), key_file=key)
    figures: dict[str, list[float]] = {"cp": [], "plain": [], "sealed": []}
    sealed_id = ""
    for round_no in range(args.rounds):
        figures["cp"].append(time_cp(data_dir, database, root / f"cp-{round_no}"))
        shutil.rmtree(root / f"cp-{round_no}")
        seconds, backup_id = time_ours(plain, sources)
        figures["plain"].append(seconds)
        shutil.rmtree(root / "plain" / backup_id)
        seconds, sealed_id = time_ours(sealed, sources)
        figures["sealed"].append(seconds)
        if round_no < args.rounds - 1:
            shutil.rmtree(root / "sealed" / sealed_id)
        print(f"round {round_no + 1}: cp {figures['cp'][-1]:.1f} s, plain "
              f"{figures['plain'][-1]:.1f} s, zstd+AES {figures['sealed'][-1]:.1f} s",
              file=sys.stderr)
    source_bytes = tree_bytes(data_dir / "segments") + database.stat().st_size
    stored_bytes = tree_bytes(root / "sealed" / sealed_id)
    verified = verify_backup(sealed, sealed_id)
    assert verified.ok, verified.problems
    p99s: dict[str, list[float]] = {"alone": [], "unpaced": [], "paced": []}
    taken = 0
    for window in range(args.latency_windows):
        for kind, found in p99s.items():
            workdir = root / "latency" / f"{kind}-{window}"
            if kind == "alone":
                found.append(p99(order_latencies(args.rate, args.latency_s, workdir)))
                continue
            end = time.time() + args.latency_s + 3
            limit = args.paced_bytes_per_s if kind == "paced" else 0
            loop = subprocess.Popen(
                [sys.executable, "-c", BACKUP_LOOP, (root / "loop").as_uri(), str(key),
                 str(data_dir), str(database), str(end), str(limit)],
                stdout=subprocess.PIPE, text=True)
            time.sleep(1)
            found.append(p99(order_latencies(args.rate, args.latency_s, workdir)))
            taken += int(loop.communicate()[0].strip() or 0)
            shutil.rmtree(root / "loop", ignore_errors=True)
        print(f"latency window {window + 1}: p99 " + ", ".join(
            f"{kind} {values[-1]:.2f} ms" for kind, values in p99s.items()), file=sys.stderr)
    ratios = [ours / cp for ours, cp in zip(figures["plain"], figures["cp"], strict=True)]
    sealed_ratios = [ours / cp for ours, cp in zip(figures["sealed"], figures["cp"], strict=True)]
    return {
        "commands": args.commands, "journal_records": seqs, "db_bytes": database.stat().st_size,
        "source_bytes": source_bytes, "stored_bytes_sealed": stored_bytes,
        "seconds": figures, "plain_over_cp": ratios, "sealed_over_cp": sealed_ratios,
        "verify_s": verified.duration_s, "verify_seq": verified.venue_seq,
        "latency_rate_per_s": args.rate, "latency_s": args.latency_s, "p99_ms": p99s,
        "paced_bytes_per_s": args.paced_bytes_per_s,
        "backups_during_latency": taken, "cpus": os.cpu_count(),
        "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()[0],
    }


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} s ({min(values):.1f}-{max(values):.1f})"


def _ratio(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def print_report(report: dict[str, Any]) -> None:
    seconds = report["seconds"]
    mib = report["source_bytes"] / (1 << 20)
    p99s = report["p99_ms"]
    alone = statistics.median(p99s["alone"])
    print(f"Backup of {report['journal_records']:,} journal records + a "
          f"{report['db_bytes'] >> 20} MiB SQLite database ({mib:.0f} MiB in all), "
          f"{report['cpus']} CPUs, load average {report['load_average_at_start']:.1f} at the "
          f"start and {report['load_average_at_end']:.1f} at the end, medians (ranges) of "
          f"{len(seconds['cp'])} rounds:\n")
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| `cp -r` + `sync` (baseline) | {_cell(seconds['cp'])} | |")
    print(f"| backup, plain | {_cell(seconds['plain'])}, {_ratio(report['plain_over_cp'])} of cp "
          "| <= 2x of cp |")
    print(f"| backup, zstd + AES-256-GCM | {_cell(seconds['sealed'])}, "
          f"{_ratio(report['sealed_over_cp'])} of cp; stored "
          f"{report['stored_bytes_sealed'] / (1 << 20):.0f} MiB | |")
    print(f"| verify (zstd + AES) | {report['verify_s']:.1f} s to seq {report['verify_seq']:,} "
          "| < 120 s |")
    print(f"| order ack p99 at {report['latency_rate_per_s']}/s, no backup | {alone:.2f} ms "
          f"({min(p99s['alone']):.2f}-{max(p99s['alone']):.2f}) | |")
    for kind, label in (("unpaced", "during backups, no limit"),
                        ("paced", "during backups, bytes_per_s_max "
                         f"{report['paced_bytes_per_s'] >> 20} MiB/s")):
        during = statistics.median(p99s[kind])
        print(f"| order ack p99, {label} | {during:.2f} ms ({min(p99s[kind]):.2f}-"
              f"{max(p99s[kind]):.2f}), {during / alone:.2f}x | <= 1.2x |")
    print(f"\n({report['backups_during_latency']} backups ran during the latency windows.)")


if __name__ == "__main__":
    main()
