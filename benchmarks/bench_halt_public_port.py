"""Halts at full order rate through ``serve``'s public port: from the crash trade to the halt
in force, while ``wrk`` keeps the public port busy with new orders.

Starts ``haltguard serve --demo`` (the venue in its own process; detection in the serving
process following the venue's journal, with the shipped rules: a 10% move within a minute
halts the market) with the order capacity out of reach. ``wrk`` sends resting orders to
``BTC-JPY`` on ``--connections`` kept-alive connections for the whole run. Meanwhile each
trial crashes a market of its own through the same public port, as a customer would: a
trade at 100,000, then a sell sweeping to 85,000 (-15%), then ``--aftershocks`` crossing
pairs right behind it.

Afterwards the journal is read back. For each crashed market: the signal-to-halt latency is
the time from the command holding the crash trade to the command that halted the market
(both stamped by the venue as it journals them), and every trade after the halt is counted
(must be zero). ``wrk``'s own rate over the run says how busy the public port was.

Usage::

    .venv/bin/python benchmarks/bench_halt_public_port.py [--trials 30] [--connections 64]

Needs ``wrk`` (Debian: ``apt-get install -y wrk``). Prints a Markdown row.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench_public_port import ORDER_LUA, free_port
from haltguard.journal.reader import JournalReader
from haltguard.venue.events import MarketStateChanged, Trade
from haltguard.venue.types import MarketState

START_S_MAX = 90.0
TOKEN = "bench-halt-public-port"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
BASE, QUOTE = "SIM", "JPY"
CRASHER_BUY, CRASHER_SELL = 900_001, 900_002
HIGH, CRASH = 100_000, 85_000
TRIAL_GAP_S = 0.5
SETTLE_S = 3.0

def start_serve(data_dir: Path, port: int, checkpoint_every: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HALTGUARD_ORDER_CAPACITY_PER_S": "10000000",
           "HALTGUARD_VENUE_TOKEN": TOKEN}
    config = data_dir.parent / "haltguard.toml"
    config.write_text(f"[venue]\ncheckpoint_every = {checkpoint_every}\n", encoding="utf-8")
    serve = subprocess.Popen(
        [sys.executable, "-m", "haltguard.cli.main", "serve", "--demo", "--data-dir",
         str(data_dir), "--port", str(port), "--config", str(config)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_S_MAX
    while not (data_dir / "serve.json").exists():
        if time.monotonic() > deadline or serve.poll() is not None:
            serve.kill()
            raise SystemExit("haltguard serve did not start; run it by hand to see why")
        time.sleep(0.3)
    return serve


def crash_market(index: int) -> str:
    return f"C{index:03d}-JPY"


def set_up(client: httpx.Client, markets: list[str]) -> None:
    """The crash markets, open, and two funded crashers (admin API, through the public port)."""
    answer = client.post("/v1/admin/assets", json={"code": BASE, "decimals": 0}, headers=ADMIN)
    assert answer.status_code in {201, 409}, answer.text
    for market in markets:
        answer = client.post("/v1/admin/markets", headers=ADMIN, json={
            "symbol": market, "base": BASE, "quote": QUOTE, "tick_size": "1", "lot_size": "1",
            "min_qty": "1", "max_qty": "1000000", "state": "open"})
        assert answer.status_code == 201, answer.text
    for account, asset, amount in ((CRASHER_BUY, QUOTE, "1000000000000"),
                                   (CRASHER_SELL, BASE, "1000000000000")):
        answer = client.post("/v1/admin/deposits", headers=ADMIN, json={
            "account": account, "asset": asset, "amount": amount, "reference": "bench"})
        assert answer.status_code in {200, 201}, answer.text


def crash(client: httpx.Client, market: str, aftershocks: int) -> None:
    path = f"/v1/markets/{market}/orders"

    def order(account: int, side: str, qty: int, price: int, tif: str = "gtc") -> None:
        client.post(path, json={"account": account, "side": side, "qty": str(qty),
                                "price": str(price), "tif": tif})

    order(CRASHER_BUY, "buy", 5, HIGH)
    order(CRASHER_SELL, "sell", 5, HIGH, "ioc")
    order(CRASHER_BUY, "buy", 5, CRASH)
    order(CRASHER_SELL, "sell", 1_000, CRASH, "ioc")
    for _ in range(aftershocks):
        order(CRASHER_BUY, "buy", 1, CRASH)
        order(CRASHER_SELL, "sell", 1, CRASH, "ioc")


def read_back(data_dir: Path, markets: set[str]) -> tuple[list[float], int, int]:
    """(signal-to-halt ms per halted market, trades after a halt, markets not halted)."""
    tripped_ns: dict[str, int] = {}
    halted: dict[str, tuple[int, int]] = {}
    late = 0
    reader = JournalReader(data_dir)
    reader.seek(1)
    while entries := reader.read_available():
        for sequenced, events in entries:
            for event in events:
                market = getattr(event, "market", "")
                if market not in markets:
                    continue
                if type(event) is Trade:
                    if market in halted:
                        late += 1
                    elif event.price == CRASH and market not in tripped_ns:
                        tripped_ns[market] = sequenced.ts
                elif (type(event) is MarketStateChanged and event.new is MarketState.HALTED
                      and market not in halted):
                    halted[market] = (sequenced.seq, sequenced.ts)
    reader.close()
    by_trial = {m: (halted[m][1] - tripped_ns[m]) / 1e6 for m in sorted(halted)
                if m in tripped_ns}
    print(json.dumps({"ms_by_market": by_trial}), file=sys.stderr)
    return sorted(by_trial.values()), late, len(markets) - len(halted)


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted ``values`` (p99 of 100 is the 99th, not the
    largest)."""
    return values[max(0, math.ceil(share * len(values)) - 1)] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--aftershocks", type=int, default=10)
    parser.add_argument("--checkpoint-every", type=int, default=100_000,
                        help="venue.checkpoint_every: commands between the venue's snapshots "
                        "(the default's; a snapshot holds the venue thread while it is taken)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    markets = [crash_market(n) for n in range(args.trials)]
    with tempfile.TemporaryDirectory(prefix="haltguard-bench-halt-") as temp:
        root = Path(temp)
        data_dir = root / "data"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve = start_serve(data_dir, port, args.checkpoint_every)
        script = root / "orders.lua"
        script.write_text(ORDER_LUA)
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                set_up(client, markets)
                duration_s = int(args.trials * TRIAL_GAP_S + 2 * SETTLE_S) + 1
                load = subprocess.Popen(
                    ["wrk", "-t1", f"-c{args.connections}", f"-d{duration_s}s", "-s",
                     str(script), url + "/v1/markets/BTC-JPY/orders"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                time.sleep(SETTLE_S)
                for market in markets:
                    crash(client, market, args.aftershocks)
                    time.sleep(TRIAL_GAP_S)
                output, _ = load.communicate(timeout=duration_s + 60)
            time.sleep(SETTLE_S)
            latencies, late, not_halted = read_back(data_dir, set(markets))
        finally:
            os.killpg(serve.pid, signal.SIGINT)
            serve.wait(60)
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    rate = float(found.group(1)) if found else float("nan")
    print(f"load average {os.getloadavg()[0]:.1f}; wrk -c{args.connections} on the public "
          "port during the trials")
    print("| trials | halted | p50 ms | p99 ms | max ms | trades after halt | "
          "public port orders/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.trials} | {len(latencies)} | {percentile(latencies, 0.5):.1f} | "
          f"{percentile(latencies, 0.99):.1f} | {max(latencies, default=float('nan')):.1f} | "
          f"{late} | {rate:,.0f} |")
    if not_halted:
        print(f"{not_halted} crashed market(s) were not halted")
    print(json.dumps({"latencies_ms": latencies}), file=sys.stderr)


if __name__ == "__main__":
    main()
