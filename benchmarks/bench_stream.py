"""Acknowledged orders a second on one connection: the streaming order entry beside REST.

A real venue process (``haltguard venue run --stream-port``, fsync on, the disk under
``--data-parent``) is started fresh for each round, a BTC-JPY market is listed and accounts
funded through the admin API, then the same orders are sent two ways, one after the other:

* **stream**: one TCP connection, pipelined (:class:`StreamClient.place_many`, up to
  ``--window`` orders unanswered), each answer read in order; an order counts once its answer
  (journaled + fsynced + applied) is back.
* **REST**: one kept-alive HTTP/1.1 connection, ``POST /v1/markets/BTC-JPY/orders`` one after
  another (HTTP/1.1 answers in order, so one connection has one order in flight).

The orders: limits around a mid of 5,000,000 JPY, buys and sells from 8 accounts alternating,
about one in five crossing, each with its own client order id. Every answer is checked: any
error fails the run. Prints a Markdown table of medians and ranges over ``--rounds`` rounds.

Usage::

    .venv/bin/python benchmarks/bench_stream.py [--orders N] [--rest-orders N] [--rounds R]
        [--window W] [--data-parent DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from haltguard.gateway.stream_client import WINDOW_DEFAULT, StreamClient
from peer import spread

TOKEN = "bench-stream-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ACCOUNTS = 8
MARKET = "BTC-JPY"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_venue(data_dir: Path, port: int, stream_port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "haltguard.app.venue_process", "--data-dir", str(data_dir),
         "--port", str(port), "--stream-port", str(stream_port),
         "--checkpoint-every", str(10**9), "--order-capacity-per-s", "10000000"],
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
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.kill()
    raise SystemExit("the venue did not answer within 60 s")


def set_up_market(client: httpx.Client) -> None:
    for code, decimals in (("JPY", 4), ("BTC", 8)):
        client.post("/v1/admin/assets", json={"code": code, "decimals": decimals},
                    headers=ADMIN).raise_for_status()
    client.post("/v1/admin/markets", headers=ADMIN, json={
        "symbol": MARKET, "base": "BTC", "quote": "JPY", "tick_size": "1",
        "lot_size": "0.0001", "min_qty": "0.0001", "max_qty": "100", "taker_fee_bps": 10,
        "state": "open",
    }).raise_for_status()
    for account in range(1, ACCOUNTS + 1):
        for asset, amount in (("JPY", "100000000000"), ("BTC", "100000")):
            client.post("/v1/admin/deposits", headers=ADMIN, json={
                "account": account, "asset": asset, "amount": amount,
                "reference": "bench funding",
            }).raise_for_status()


def orders(count: int, prefix: str, seed: int) -> list[dict[str, Any]]:
    draw = random.Random(seed)
    made = []
    for index in range(count):
        side = "buy" if index % 2 else "sell"
        offset = draw.randint(1, 50)
        crossing = draw.random() < 0.2
        price = 5_000_000 + (-offset if (side == "buy") != crossing else offset)
        made.append({"market": MARKET, "account": 1 + index % ACCOUNTS, "side": side,
                     "qty": f"0.{draw.randint(1, 50):04d}", "price": str(price),
                     "client_order_id": f"{prefix}-{index}"})
    return made


def check(answers: list[dict[str, Any]], sent: int, how: str) -> None:
    errors = [answer for answer in answers if "error" in answer]
    if len(answers) != sent or errors:
        raise SystemExit(f"{how}: {len(answers)} answers for {sent} orders, "
                         f"{len(errors)} errors (first: {errors[:1]})")


def one_round(args: argparse.Namespace, round_index: int) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-stream-", dir=args.data_parent))
    port, stream_port = free_port(), free_port()
    process = start_venue(data_dir, port, stream_port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            set_up_market(client)
            rest_orders = orders(args.rest_orders, f"r{round_index}", round_index)
            began = time.perf_counter()
            answers = []
            for order in rest_orders:
                body = {key: value for key, value in order.items() if key != "market"}
                response = client.post(f"/v1/markets/{MARKET}/orders", json=body)
                answers.append(response.json() if response.status_code in (200, 201)
                               else {"error": response.text})
            rest_s = time.perf_counter() - began
            check(answers, len(rest_orders), "REST")
        stream_orders = orders(args.orders, f"s{round_index}", 1000 + round_index)
        with StreamClient("127.0.0.1", stream_port) as stream:
            began = time.perf_counter()
            answers = stream.place_many(stream_orders, window=args.window)
            stream_s = time.perf_counter() - began
        check(answers, len(stream_orders), "stream")
    finally:
        process.terminate()
        process.wait(60)
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"stream": len(stream_orders) / stream_s, "rest": len(rest_orders) / rest_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200_000, help="stream orders per round")
    parser.add_argument("--rest-orders", type=int, default=3_000, help="REST orders per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=int, default=WINDOW_DEFAULT,
                        help="stream orders in flight at most")
    parser.add_argument("--data-parent", type=Path, default=Path.cwd(),
                        help="where the temporary data directories are made (a real disk)")
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"stream": [], "rest": []}
    for round_index in range(args.rounds):
        result = one_round(args, round_index)
        for key, value in result.items():
            figures[key].append(value)
        print(f"round {round_index + 1}: stream {result['stream']:,.0f}/s, "
              f"REST {result['rest']:,.0f}/s", file=sys.stderr)
    ratios = [s / r for s, r in zip(figures["stream"], figures["rest"], strict=True)]
    load = os.getloadavg()
    print("## Streaming order entry: acknowledged orders/s on one connection\n")
    print(f"Python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} at the end; data under {args.data_parent.resolve()} "
          f"(fsync on); {args.orders:,} stream orders (window {args.window}) and "
          f"{args.rest_orders:,} REST orders per round; median (range) of {args.rounds} "
          "rounds, a fresh venue process each.\n")
    print("| path | acknowledged orders/s | ratio to REST |")
    print("|---|---:|---:|")
    print(f"| stream, one connection, pipelined | {spread(figures['stream'])} | "
          f"{spread(ratios, '{:.1f}', 'x')} |")
    print(f"| REST, one kept-alive connection | {spread(figures['rest'])} | 1.0x |")


if __name__ == "__main__":
    main()
