"""Paying a compensation run of 1,000,000 lines into a venue that keeps taking orders.

The venue runs as ``haltguard serve`` runs it: its own process (``python -m
haltguard.app.venue_process``), journal with real fsync, group commit. The payout is
:func:`haltguard.compensation.payout.pay` over :class:`HttpVenueControl` (what the operations
service holds), in batches of ``--batch`` lines, each batch one journaled
``CreditCompensation`` and one HTTP call. Meanwhile a separate process places resting limit
orders at a steady ``--order-rate`` over HTTP and times each acknowledgement; the figures
compare the orders sent before the payout started (a baseline of ``--baseline-s`` seconds)
with those sent while it ran, in the same run. Then the same run is paid again: every line is
found credited, nothing is sent.

Checked at the end: the payout is complete, the venue's credited ranges are the whole run, and
the data directory recovered offline has deposited exactly the run's total per asset.

Usage::

    .venv/bin/python benchmarks/bench_payout.py [--lines 1000000] [--batch 4096]
        [--order-rate 200] [--baseline-s 5] [--data-parent DIR]

fsync cost depends on the disk under ``--data-parent`` (default: the current directory).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import httpx

from haltguard.compensation.payout import PayoutLine, PayoutReport, pay
from haltguard.gateway.control import HttpVenueControl
from haltguard.journal import recover

TOKEN = "bench-payout-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
RUN_ID = 1
ACCOUNTS = 200_000
ORDER_ACCOUNT = 1
ORDER_FUNDS_JPY = 100_000_000
JPY_DECIMALS = 4


def run_lines(count: int) -> Iterator[PayoutLine]:
    """The run's lines, generated lazily: mostly JPY, every 7th BTC, amounts varied."""
    for n in range(count):
        yield PayoutLine(RUN_ID, n, 1 + n % ACCOUNTS, "BTC" if n % 7 == 0 else "JPY",
                         1 + n * 13 % 99_991)


def run_totals(count: int) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for line in run_lines(count):
        totals[line.asset] += line.amount_minor
    return dict(totals)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_venue(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "haltguard.app.venue_process", "--data-dir", str(data_dir),
         "--port", str(port), "--order-capacity-per-s", "100000"],
        env={**os.environ, "HALTGUARD_VENUE_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the venue process exited during start-up")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the venue did not answer within 60 s")


def set_up(url: str) -> None:
    with httpx.Client(base_url=url, headers=ADMIN, timeout=10) as client:
        for code, decimals in (("JPY", JPY_DECIMALS), ("BTC", 8)):
            client.post("/v1/admin/assets", json={"code": code, "decimals": decimals})
        client.post("/v1/admin/markets", json={
            "symbol": "BTC-JPY", "base": "BTC", "quote": "JPY", "tick_size": "1",
            "lot_size": "0.0001", "min_qty": "0.0001", "max_qty": "100", "state": "open",
        }).raise_for_status()
        client.post("/v1/admin/deposits", json={
            "account": ORDER_ACCOUNT, "asset": "JPY", "amount": str(ORDER_FUNDS_JPY),
        }).raise_for_status()


def place_orders(url: str, rate_per_s: float, stop: EventType,
                 results: multiprocessing.Queue[list[tuple[float, float, bool]]]) -> None:
    """Resting buys far below the market at a steady rate; (sent at, latency s, ok) each."""
    timings: list[tuple[float, float, bool]] = []
    interval_s = 1.0 / rate_per_s
    next_at = time.monotonic()
    with httpx.Client(base_url=url, timeout=30) as client:
        n = 0
        while not stop.is_set():
            now = time.monotonic()
            if now < next_at:
                time.sleep(next_at - now)
            next_at += interval_s
            sent = time.monotonic()
            try:
                response = client.post("/v1/markets/BTC-JPY/orders", json={
                    "account": ORDER_ACCOUNT, "side": "buy", "qty": "0.0001",
                    "price": str(1_000 + n % 500),
                })
                ok = response.status_code == 201
            except httpx.HTTPError:
                ok = False
            timings.append((sent, time.monotonic() - sent, ok))
            n += 1
    results.put(timings)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def latency_row(name: str, timings: list[tuple[float, float, bool]]) -> str:
    latencies_ms = [latency * 1_000 for _, latency, ok in timings if ok]
    failed = sum(1 for *_, ok in timings if not ok)
    if not latencies_ms:
        return f"| {name} | 0 | - | - | - | {failed} |"
    return (f"| {name} | {len(latencies_ms):,} | {statistics.median(latencies_ms):.1f} | "
            f"{percentile(latencies_ms, 0.99):.1f} | {max(latencies_ms):.1f} | {failed} |")


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def venue_memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of the venue process, MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=4_096)
    parser.add_argument("--order-rate", type=float, default=200.0)
    parser.add_argument("--baseline-s", type=float, default=5.0)
    parser.add_argument("--data-parent", type=Path, default=Path.cwd())
    args = parser.parse_args()

    parent = Path(tempfile.mkdtemp(prefix="bench-payout-", dir=args.data_parent))
    data_dir = parent / "venue"
    process, url = start_venue(data_dir)
    try:
        set_up(url)
        stop = multiprocessing.Event()
        results: multiprocessing.Queue[list[tuple[float, float, bool]]] = multiprocessing.Queue()
        orders = multiprocessing.Process(
            target=place_orders, args=(url, args.order_rate, stop, results), daemon=True
        )
        orders.start()
        time.sleep(args.baseline_s)
        reports: list[PayoutReport] = []
        with HttpVenueControl(url, TOKEN, timeout_s=120) as control:
            venue_cpu_before, client_cpu_before = cpu_s(process.pid), time.process_time()
            started = time.monotonic()
            report = pay(run_lines(args.lines), control, batch_lines_max=args.batch,
                         on_progress=reports.append)
            finished = time.monotonic()
            venue_cpu = cpu_s(process.pid) - venue_cpu_before
            client_cpu = time.process_time() - client_cpu_before
            stop.set()
            timings = results.get(timeout=60)
            orders.join(30)
            again_started = time.monotonic()
            again = pay(run_lines(args.lines), control, batch_lines_max=args.batch)
            again_s = time.monotonic() - again_started
            ranges = control.credited_line_ranges(RUN_ID)
        rss_mib, peak_mib = venue_memory_mib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(120)
    recovered, _ = recover(data_dir)
    deposited = {asset: total for asset, total in recovered.ledger.deposited.items() if total}
    shutil.rmtree(parent)

    payout_s = finished - started
    before = [t for t in timings if t[0] < started]
    during = [t for t in timings if started <= t[0] < finished]
    load = os.getloadavg()[0]
    print(f"payout of {args.lines:,} lines, batches of {args.batch}, orders at "
          f"{args.order_rate:g}/s over HTTP from another process (load average {load:.1f})\n")
    print("| figure | value |\n|---|---:|")
    print(f"| payout wall time | {payout_s:.1f} s |")
    print(f"| lines credited per second | {report.lines_credited / payout_s:,.0f} |")
    print(f"| CPU: venue process (orders included) / paying client | {venue_cpu:.1f} s / "
          f"{client_cpu:.1f} s |")
    print(f"| batches (journaled commands, HTTP calls) | {report.batches_sent:,} |")
    print(f"| paying the same run again (all found credited, nothing sent) | {again_s:.1f} s |")
    print(f"| venue RSS after / peak | {rss_mib:.0f} / {peak_mib:.0f} MiB |")
    print("\n| orders | acked | p50 ms | p99 ms | max ms | failed |")
    print("|---|---:|---:|---:|---:|---:|")
    print(latency_row("before the payout", before))
    print(latency_row("during the payout", during))
    totals = run_totals(args.lines)
    totals["JPY"] += ORDER_FUNDS_JPY * 10**JPY_DECIMALS
    checks = {
        "payout complete": report.complete and report.lines_credited == args.lines,
        "second payout sent nothing": again.complete and again.batches_sent == 0,
        "credited ranges are the whole run": ranges == [(0, args.lines - 1)],
        "recovered ledger deposited exactly the run's total": deposited == totals,
    }
    print("\nchecks: " + ", ".join(f"{name}: {'ok' if ok else 'FAILED'}"
                                  for name, ok in checks.items()))
    if not all(checks.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
