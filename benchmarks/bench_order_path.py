"""How many new orders a second the supervised order path of ``haltguard serve`` sustains:
the serving process (load shedding, then forwarding) in front of the venue process.

Starts ``haltguard serve --demo`` on a temporary data directory with the order capacity set
out of reach (nothing is shed), then, for each in-flight level, runs the surge drill's load
generators closed-loop: separate processes, eight funded customers, each with a fixed number
of keep-alive connections that send the next order as soon as the last is answered. Reports
the orders acknowledged a second and the acknowledgement latency the customers measured.

This is the ceiling with no refusals to make. Under a surge the same serving process must
also refuse the excess (``haltguard drill surge`` offers 4 x capacity), so the capacity to
configure is found with the drill itself::

    HALTGUARD_ORDER_CAPACITY_PER_S=300 haltguard drill surge --own-system

Usage::

    .venv/bin/python benchmarks/bench_order_path.py [--seconds 5] [--in-flight 8,16,32]

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from haltguard.drill.load import VenueClient
from haltguard.drill.scenarios.surge import (
    CLIENTS,
    FIRST_ACCOUNT,
    market_grid,
    percentile,
    run_generators,
)

CAPACITY_OUT_OF_REACH = 10_000_000
START_TIMEOUT_S = 60.0
CLOSED_LOOP_RATE_PER_S = 1_000_000.0  # every send is due at once: the next follows the answer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    serve = subprocess.Popen(
        [sys.executable, "-m", "haltguard.cli.main", "serve", "--demo", "--data-dir",
         str(data_dir), "--port", str(port)],
        env={**os.environ, "HALTGUARD_ORDER_CAPACITY_PER_S": str(CAPACITY_OUT_OF_REACH)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/markets", timeout=1.0).status_code == 200:
                return serve
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    serve.kill()
    raise SystemExit(f"haltguard serve did not answer on port {port} within "
                     f"{START_TIMEOUT_S:g} s")


def closed_loop(url: str, port: int, in_flight: int, seconds: float) -> str:
    with VenueClient(url) as client:
        symbol, grid = market_grid(client)
    per_customer = max(1, in_flight // CLIENTS)
    customers = [{"account": FIRST_ACCOUNT + n, "rate_per_s": CLOSED_LOOP_RATE_PER_S,
                  "connections": per_customer,
                  "client_order_id_prefix": f"bench-{time.time_ns()}-{n}-"}
                 for n in range(CLIENTS)]
    plans = [{"host": "127.0.0.1", "port": port, "path": f"/v1/markets/{symbol}/orders",
              "qty": grid.qty, "price": grid.bid_price, "seconds": seconds, "timeout_s": 10.0,
              "customers": customers[index::2]} for index in range(2)]
    record = run_generators(plans, symbol, seconds)
    acked = len(record.acknowledged)
    p50 = percentile(record.ack_latencies_ms, 0.5) or 0.0
    p99 = percentile(record.ack_latencies_ms, 0.99) or 0.0
    others = sum(record.shed.values()) + sum(record.other.values())
    return (f"| {per_customer * CLIENTS} | {acked / seconds:,.0f} | {p50:.1f} / {p99:.1f} | "
            f"{others} | {os.getloadavg()[0]:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-flight", default="8,16,32")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="haltguard-bench-order-path-") as temp:
        port = free_port()
        serve = start_serve(Path(temp) / "data", port)
        try:
            print("| orders in flight | acknowledged/s | p50 / p99 ms | not 201 | load avg |")
            print("|---:|---:|---:|---:|---:|")
            for level in (int(v) for v in args.in_flight.split(",")):
                print(closed_loop(f"http://127.0.0.1:{port}", port, level, args.seconds),
                      flush=True)
        finally:
            os.killpg(serve.pid, signal.SIGINT)
            serve.wait(30)


if __name__ == "__main__":
    main()
