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
about one in five crossing, each with its own client order id. Every answer is checked: one
answer per order, in the order sent, each the order's own (its client order id) and none an
error, else the run fails. Prints a Markdown table of medians and ranges over ``--rounds``
rounds.

``--baseline-src DIR`` also streams, in alternate rounds, to a venue process started from
another source tree (``DIR/src``, e.g. the previous commit exported with ``git archive``), so
a change is measured against what it replaces under the same load.

Usage::

    .venv/bin/python benchmarks/bench_stream.py [--orders N] [--rest-orders N] [--rounds R]
        [--window W] [--data-parent DIR] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec

from haltguard.gateway.models import Units
from haltguard.gateway.runtime import CommandResult, well_typed
from haltguard.gateway.stream import _answer_of, _order_of
from haltguard.gateway.stream_client import WINDOW_DEFAULT, StreamClient
from haltguard.gateway.stream_codec import StreamCodec
from haltguard.venue.commands import AddAsset, AddMarket, Command, Deposit
from haltguard.venue.engine import Venue
from haltguard.venue.markets import Asset, make_market
from haltguard.venue.types import MarketState
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


def start_venue(data_dir: Path, port: int, stream_port: int,
                source: Path | None = None) -> subprocess.Popen[bytes]:
    """A venue process of this checkout, or of the tree ``source`` (its ``src`` first on
    the import path)."""
    env = {**os.environ, "HALTGUARD_VENUE_TOKEN": TOKEN}
    if source is not None:
        env["PYTHONPATH"] = str((source / "src").resolve())
    process = subprocess.Popen(
        [sys.executable, "-m", "haltguard.app.venue_process", "--data-dir", str(data_dir),
         "--port", str(port), "--stream-port", str(stream_port),
         "--checkpoint-every", str(10**9), "--order-capacity-per-s", "10000000"],
        env=env,
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


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from Linux's /proc; NaN
    elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def orders(count: int, prefix: str, seed: int, ids: bool = True) -> list[dict[str, Any]]:
    """The benchmark's orders; each with its own client order id unless ``ids`` is false."""
    draw = random.Random(seed)
    made = []
    for index in range(count):
        side = "buy" if index % 2 else "sell"
        offset = draw.randint(1, 50)
        crossing = draw.random() < 0.2
        price = 5_000_000 + (-offset if (side == "buy") != crossing else offset)
        made.append({"market": MARKET, "account": 1 + index % ACCOUNTS, "side": side,
                     "qty": f"0.{draw.randint(1, 50):04d}", "price": str(price),
                     "client_order_id": f"{prefix}-{index}" if ids else ""})
    return made


def check(answers: list[dict[str, Any]], sent: list[dict[str, Any]], how: str) -> None:
    """One answer per order, in order, each naming its own order, none an error."""
    errors = [answer for answer in answers if "error" in answer]
    if len(answers) != len(sent) or errors:
        raise SystemExit(f"{how}: {len(answers)} answers for {len(sent)} orders, "
                         f"{len(errors)} errors (first: {errors[:1]})")
    for order, answer in zip(sent, answers, strict=True):
        if answer["order"]["client_order_id"] != order["client_order_id"]:
            raise SystemExit(f"{how}: the answer {answer} is not for the order {order}")


def one_round(args: argparse.Namespace, round_index: int,
              source: Path | None = None) -> dict[str, float]:
    """Acknowledged orders/s through the stream and, unless ``source`` is given, REST."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-stream-", dir=args.data_parent))
    port, stream_port = free_port(), free_port()
    try:
        process = start_venue(data_dir, port, stream_port, source)
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            set_up_market(client)
            rest_orders = orders(0 if source else args.rest_orders, f"r{round_index}",
                                 round_index, not args.without_client_order_ids)
            began = time.perf_counter()
            answers = []
            for order in rest_orders:
                body = {key: value for key, value in order.items() if key != "market"}
                response = client.post(f"/v1/markets/{MARKET}/orders", json=body)
                answers.append(response.json() if response.status_code in (200, 201)
                               else {"error": response.text})
            rest_s = time.perf_counter() - began
            check(answers, rest_orders, "REST")
        stream_orders = orders(args.orders, f"s{round_index}", 1000 + round_index,
                               not args.without_client_order_ids)
        with StreamClient("127.0.0.1", stream_port) as stream:
            began, cpu_began_s = time.perf_counter(), process_cpu_s(process.pid)
            answers = stream.place_many(stream_orders, window=args.window)
            stream_s = time.perf_counter() - began
            cpu_us = (process_cpu_s(process.pid) - cpu_began_s) / len(stream_orders) * 1e6
        check(answers, stream_orders, "stream")
    finally:
        process.terminate()
        process.wait(60)
        shutil.rmtree(data_dir, ignore_errors=True)
    if source is not None:
        return {"baseline": len(stream_orders) / stream_s, "baseline_cpu_us": cpu_us}
    return {"stream": len(stream_orders) / stream_s, "stream_cpu_us": cpu_us,
            "rest": len(rest_orders) / rest_s}


def stream_thread_cpu_us(count: int) -> tuple[float, float]:
    """CPU per order of what the stream thread does around the venue, best of 3: the fast
    path (:class:`StreamCodec`) and the REST route's functions it falls back on."""
    venue = Venue()
    setup: list[Command] = [AddAsset(Asset("JPY", 4)), AddAsset(Asset("BTC", 8))]
    setup.append(AddMarket(make_market(
        MARKET, Asset("BTC", 8), Asset("JPY", 4), tick_size="1", lot_size="0.0001",
        min_qty="0.0001", max_qty="100", taker_fee_bps=10), MarketState.OPEN))
    for account in range(1, ACCOUNTS + 1):
        setup += [Deposit(account, "JPY", 100_000_000_000 * 10**4),
                  Deposit(account, "BTC", 100_000 * 10**8)]
    for seq, command in enumerate(setup, start=1):
        venue.apply(seq, seq, command)
    units = Units(venue.markets, {code: a.decimals for code, a in venue.assets.items()})
    frames = [msgspec.msgpack.encode(order) for order in orders(count, "c", 7)]
    codec, results = StreamCodec(), []
    for seq, frame in enumerate(frames, start=len(setup) + 1):
        command = codec.order(frame, units)
        assert command is not None
        results.append(CommandResult(seq, seq, command, venue.apply(seq, seq, command)))

    def fast() -> None:
        for frame in frames:
            well_typed(codec.order(frame, units))
        for result in results:
            codec.encode_into(codec.answer(result, units), bytearray(), -1)

    def rest() -> None:
        for frame in frames:
            well_typed(_order_of(msgspec.msgpack.decode(frame), units))
        for result in results:
            msgspec.msgpack.encode(_answer_of(None, result, units))  # type: ignore[arg-type]

    def cpu_us(work: Callable[[], None]) -> float:
        spent = []
        for _ in range(3):
            began = time.process_time()
            work()
            spent.append(time.process_time() - began)
        return min(spent) / count * 1e6

    return cpu_us(fast), cpu_us(rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200_000, help="stream orders per round")
    parser.add_argument("--rest-orders", type=int, default=3_000, help="REST orders per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=int, default=WINDOW_DEFAULT,
                        help="stream orders in flight at most")
    parser.add_argument("--data-parent", type=Path, default=Path.cwd(),
                        help="where the temporary data directories are made (a real disk)")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="a source tree whose venue also streams, in alternate rounds")
    parser.add_argument("--without-client-order-ids", action="store_true",
                        help="orders carry no client order id")
    args = parser.parse_args()
    fast_us, rest_us = stream_thread_cpu_us(20_000)
    figures: dict[str, list[float]] = {key: [] for key in (
        "stream", "stream_cpu_us", "rest", "baseline", "baseline_cpu_us")}
    for round_index in range(args.rounds):
        result = one_round(args, round_index)
        if args.baseline_src is not None:
            result |= one_round(args, round_index, args.baseline_src)
        for key, value in result.items():
            figures[key].append(value)
        print(f"round {round_index + 1}: " + ", ".join(
            f"{key} {value:,.1f}" for key, value in result.items()), file=sys.stderr)
    ratios = [s / r for s, r in zip(figures["stream"], figures["rest"], strict=True)]
    load = os.getloadavg()
    print("## Streaming order entry: acknowledged orders/s on one connection\n")
    print(f"Python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} at the end; data under {args.data_parent.resolve()} "
          f"(fsync on); {args.orders:,} stream orders (window {args.window}) and "
          f"{args.rest_orders:,} REST orders per round; median (range) of {args.rounds} "
          "rounds, a fresh venue process each.\n")
    print("| path | acknowledged orders/s | ratio to REST | venue CPU per order |")
    print("|---|---:|---:|---:|")
    print(f"| stream, one connection, pipelined | {spread(figures['stream'])} | "
          f"{spread(ratios, '{:.1f}', 'x')} | "
          f"{spread(figures['stream_cpu_us'], '{:.1f}', ' us')} |")
    if figures["baseline"]:
        gains = [s / b for s, b in zip(figures["stream"], figures["baseline"], strict=True)]
        print(f"| stream, baseline `{args.baseline_src}` (alternate rounds) | "
              f"{spread(figures['baseline'])} | this tree / baseline "
              f"{spread(gains, '{:.2f}', 'x')} | "
              f"{spread(figures['baseline_cpu_us'], '{:.1f}', ' us')} |")
    print(f"| REST, one kept-alive connection | {spread(figures['rest'])} | 1.0x | |")
    print(f"\nThe stream thread's own work per order (frame to command, result to answer "
          f"frame; in process, no socket, no venue thread): {fast_us:.1f} us on the fast path, "
          f"{rest_us:.1f} us through the REST route's model and rendering.")


if __name__ == "__main__":
    main()
