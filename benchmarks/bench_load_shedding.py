"""Load shedding at the venue's HTTP gateway: offered vs admitted order rate, and the latency
of the orders admitted, at 1x, 3x and 5x the configured capacity.

A real venue process (uvicorn on loopback, a real runtime and journal in a temporary
directory) is started with ``order_capacity_per_s = --capacity``. Client threads, one funded
account each, send new orders open-loop: each thread has its own schedule of sends at an even
pace so that together they offer ``load x capacity`` orders a second, and a thread that falls
behind sends at once (it never waits for an answer longer than the answer takes). Shed
orders (429/503) are not retried: the point is what the venue admits under the offer.

Per load level: offered and admitted orders per second, the 429 and 503 answers, the
client-measured latency (request to answer) of admitted orders at p50 and p99, and the p99
latency of ``GET /v1/health`` polled every 50 ms during the run. The clients share the
machine (and its 2 cores) with the venue, so absolute rates are for scale; the shape (what is
admitted stays near capacity, its latency stays flat) is the result.

Usage::

    .venv/bin/python benchmarks/bench_load_shedding.py [--capacity 200] [--seconds 5]
        [--loads 1,3,5] [--clients 20] [--unshed] [--data-parent DIR]

With ``--unshed`` the same offers also go to a venue whose shedder never sheds (capacity
set out of reach), to show what the shedding buys.

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from haltguard.venue.workload import WORKLOAD_MARKET

SERVER = textwrap.dedent("""
    import sys
    import uvicorn
    from haltguard.gateway.limits import SheddingSettings
    from haltguard.app.venue_app import create_venue_app
    from haltguard.gateway.runtime import VenueRuntime
    from haltguard.venue.workload import setup_commands

    data_dir, port, capacity, accounts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
        int(sys.argv[4])
    runtime = VenueRuntime(data_dir).start()
    for future in [runtime.submit(c) for c in setup_commands(accounts=accounts)]:
        future.result()
    settings = SheddingSettings(order_capacity_per_s=capacity)
    app = create_venue_app(runtime, "bench-admin", load_shedding=settings)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
""")
ORDERS = f"/v1/markets/{WORKLOAD_MARKET}/orders"
HEALTH_POLL_S = 0.05
UNSHED_CAPACITY = 10_000_000  # orders/s: nothing is ever over its share


@dataclass
class Run:
    statuses: Counter[int] = field(default_factory=Counter)
    admitted_ns: list[int] = field(default_factory=list)
    health_ns: list[int] = field(default_factory=list)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def percentile_ms(values: list[int], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index] / 1e6


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Plan:
    """One load level as each client sees it."""

    url: str
    rate_per_s: float  # this client's share of the offered rate
    start: float
    stop: float
    tag: str


def client(plan: Plan, account: int, run: Run) -> None:
    interval_s = 1.0 / plan.rate_per_s
    next_send = plan.start + (account % 10) * interval_s / 10  # spread the clients' phases
    tag = plan.tag
    with httpx.Client(base_url=plan.url, timeout=15) as session:
        n = 0
        while next_send < plan.stop:
            delay = next_send - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            n += 1
            began = time.perf_counter_ns()
            try:
                answer = session.post(ORDERS, json={
                    "account": account, "side": "buy" if n % 2 else "sell", "qty": "1",
                    "price": str(99_000 if n % 2 else 101_000),
                    "client_order_id": f"{tag}-{account}-{n}",
                })
            except httpx.HTTPError:
                with run.lock:
                    run.errors += 1
                next_send += interval_s
                continue
            took = time.perf_counter_ns() - began
            with run.lock:
                run.statuses[answer.status_code] += 1
                if answer.status_code == 201:
                    run.admitted_ns.append(took)
            next_send += interval_s


def health(url: str, stop: float, run: Run) -> None:
    with httpx.Client(base_url=url, timeout=15) as session:
        while time.monotonic() < stop:
            began = time.perf_counter_ns()
            try:
                session.get("/v1/health")
                run.health_ns.append(time.perf_counter_ns() - began)
            except httpx.HTTPError:
                run.errors += 1
            time.sleep(HEALTH_POLL_S)


def measure(url: str, load: int, capacity: int, clients: int, seconds: float) -> dict[str, float]:
    run = Run()
    offered_per_s = load * capacity
    start = time.monotonic() + 0.2
    stop = start + seconds
    plan = Plan(url, offered_per_s / clients, start, stop, f"x{load}")
    threads = [threading.Thread(target=client, args=(plan, account, run))
               for account in range(1, clients + 1)]
    threads.append(threading.Thread(target=health, args=(url, stop, run)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = max(seconds, time.monotonic() - start)
    sent = sum(run.statuses.values()) + run.errors
    return {
        "target_per_s": offered_per_s,
        "offered_per_s": sent / elapsed,
        "admitted_per_s": run.statuses[201] / elapsed,
        "shed_429_per_s": run.statuses[429] / elapsed,
        "shed_503_per_s": run.statuses[503] / elapsed,
        "other": sum(v for k, v in run.statuses.items() if k not in (201, 429, 503))
        + run.errors,
        "p50_ms": percentile_ms(run.admitted_ns, 0.50),
        "p99_ms": percentile_ms(run.admitted_ns, 0.99),
        "health_p99_ms": percentile_ms(run.health_ns, 0.99),
    }


def start_server(data_dir: Path, capacity: int, clients: int) -> tuple[subprocess.Popen[bytes],
                                                                          str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(data_dir), str(port), str(capacity), str(clients)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            sys.exit("the venue did not start")
        time.sleep(0.05)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", type=int, default=200, help="orders/s the venue admits")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load level")
    parser.add_argument("--loads", default="1,3,5", help="comma-separated multiples of capacity")
    parser.add_argument("--clients", type=int, default=20, help="client threads (one account "
                        "each)")
    parser.add_argument("--unshed", action="store_true",
                        help="also run the same offers against a venue whose capacity is set "
                        "so high that nothing is shed, for comparison")
    parser.add_argument("--data-parent", type=Path, default=Path.cwd(),
                        help="where the temporary data directory is made")
    args = parser.parse_args()
    loads = [int(part) for part in args.loads.split(",")]
    modes = [("shedding", args.capacity)] + ([("no shedding", UNSHED_CAPACITY)]
                                            if args.unshed else [])
    print(f"Python {platform.python_version()} on {platform.platform()}, "
          f"{os.cpu_count()} CPUs; capacity {args.capacity} orders/s, {args.clients} "
          f"clients, {args.seconds:g} s per level; venue and clients on one machine\n")
    print("| venue | load | offered/s | admitted/s | 429/s | 503/s | other | admitted p50 ms "
          "| admitted p99 ms | health p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode, capacity in modes:
        data_dir = Path(tempfile.mkdtemp(prefix="load-shedding-", dir=args.data_parent))
        server, url = start_server(data_dir / "venue", capacity, args.clients)
        try:
            for load in loads:
                result = measure(url, load, args.capacity, args.clients, args.seconds)
                print(f"| {mode} | {load}x | {result['offered_per_s']:,.0f} "
                      f"| {result['admitted_per_s']:,.0f} | {result['shed_429_per_s']:,.0f} "
                      f"| {result['shed_503_per_s']:,.0f} | {result['other']:.0f} "
                      f"| {result['p50_ms']:.1f} | {result['p99_ms']:.1f} "
                      f"| {result['health_p99_ms']:.1f} |")
                sys.stdout.flush()
                time.sleep(2)  # let the buckets refill between levels
        finally:
            stop_server(server)
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
