"""The venue reached through the HTTP adapter, against the venue in process, in one run.

1. **Signal-to-halt.** Two venues run the demo (its synthetic flow at ``--demo-rate``
   orders/s): one in this process (a :class:`VenueRuntime`), one as its own process
   (``haltguard venue run``, as ``serve`` runs it). Two detection services run the shipped
   rules with the real action executor on one SQLite operations database: one acts on the
   venue here through the brake lane, the other on the venue process through the HTTP
   adapter described by ``haltguard/adapters/haltguard_venue.yaml`` (a read of the market
   states, the halt call, then reads until it shows). Trials alternate between them; each
   submits one ``market.price_move_bps`` signal of 1,500 bps for a fresh market; the time is
   from the submit to the halt's journal stamp (the sequencer's wall clock, the same clock:
   the halt is durable and applied right after). The halt call's own round trip (sent and
   confirmed by a read) is timed against the in-process call too.
2. **Event feed.** Events/s delivered by the adapter's follower (polling
   ``/v1/admin/events`` with a cursor): a backlog of ``--backlog`` events read from the
   start, then a live stream at ``--events-per-s`` for ``--live-s`` seconds (the lag is
   sampled every 100 ms; every event must arrive once, in order).

Usage::

    .venv/bin/python benchmarks/bench_adapter.py [--trials N] [--demo-rate R]
        [--backlog N] [--events-per-s R] [--live-s S]

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import httpx
import uvicorn

from haltguard.adapters.control import AdapterVenueControl
from haltguard.adapters.feed import EventFollower
from haltguard.adapters.spec import load_adapter
from haltguard.app.venue_app import create_venue_app
from haltguard.common.clock import SystemClock
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory
from haltguard.detection.actions import ActionExecutor
from haltguard.detection.market import market_labels
from haltguard.detection.rulesfile import DEFAULT_RULES_PATH, load_rules_file
from haltguard.detection.service import DetectionService
from haltguard.detection.signals import Signal
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.demo import DemoFlow, set_up_demo
from haltguard.gateway.runtime import RuntimeLimits, VenueRuntime
from haltguard.journal.reader import JournalReader
from haltguard.venue.commands import AddMarket, Command, Deposit, PlaceOrder, SetMarketState
from haltguard.venue.control import FeedEvent
from haltguard.venue.markets import make_market
from haltguard.venue.types import MarketState, Side
from haltguard.venue.workload import BASE_ASSET, QUOTE_ASSET, setup_commands

ADAPTER_FILE = (Path(__file__).resolve().parents[1] / "src" / "haltguard" / "adapters"
                / "haltguard_venue.yaml")
TOKEN = "bench-adapter-admin-token-0123456789"
BUYER = 900_001
TRIAL_GAP_S = 0.05


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


class Served:
    """The venue's HTTP API on a free local port (uvicorn on a thread)."""

    def __init__(self, runtime: VenueRuntime) -> None:
        self.server = uvicorn.Server(uvicorn.Config(create_venue_app(runtime, TOKEN),
                                                    host="127.0.0.1", port=0,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _market(name: str) -> AddMarket:
    return AddMarket(make_market(name, BASE_ASSET, QUOTE_ASSET, tick_size="1", lot_size="1",
                                 min_qty="1", max_qty="1000000"), MarketState.OPEN)


def _submit_all(runtime: VenueRuntime, commands: Sequence[Command]) -> None:
    for future in [runtime.submit(command) for command in commands]:
        future.result(60)


def _signal(market: str) -> Signal:
    return Signal(source="market", name="market.price_move_bps", value=Decimal(1500),
                  ts_ns=time.time_ns(), labels={**market_labels(market), "direction": "down"},
                  details={"window_s": "60"})


def _start_venue_process(data_dir: Path, demo_rate_per_s: float) -> tuple[
        subprocess.Popen[bytes], str]:
    """``haltguard venue run`` with the demo (its synthetic flow as background load), as
    ``serve`` runs it: the adapter's venue lives in a process of its own."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "haltguard.app.venue_process", "--data-dir",
               str(data_dir), "--port", str(port), "--checkpoint-every", str(10**9)]
    if demo_rate_per_s > 0:
        command += ["--demo", "--demo-rate", repr(demo_rate_per_s)]
    child = subprocess.Popen(command, env={**os.environ, "HALTGUARD_VENUE_TOKEN": TOKEN},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return child, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    child.kill()
    raise RuntimeError("the venue process did not answer within 60 s")


def _halt_ts(data_dir: Path, markets: set[str]) -> dict[str, int]:
    """When each market's halt was journaled (the sequencer's wall-clock ns)."""
    reader = JournalReader(data_dir)
    reader.seek(1)
    found: dict[str, int] = {}
    while entries := reader.read_available():
        for sequenced, _events in entries:
            command = sequenced.command
            if type(command) is SetMarketState and command.market in markets \
                    and command.state is MarketState.HALTED:
                found.setdefault(command.market, sequenced.ts)
    reader.close()
    return found


def signal_to_halt(work: Path, trials: int, demo_rate_per_s: float
                   ) -> dict[str, dict[str, float]]:
    """Both venues run the demo flow; each trial's halt is timed from the signal's submit
    (wall clock) to the halt command's journal stamp (the same clock)."""
    database = make_engine(f"sqlite:///{work / 'operations.sqlite3'}")
    upgrade(database)
    sessions = make_session_factory(database)
    markets = {mode: [f"{mode[0].upper()}{n:03d}-JPY" for n in range(trials)]
               for mode in ("in_process", "adapter")}
    runtime = VenueRuntime(work / "venue-here", limits=RuntimeLimits(checkpoint_every=10**9))
    runtime.start()
    set_up_demo(runtime)
    _submit_all(runtime, [_market(m) for m in markets["in_process"]])
    flow = DemoFlow(runtime, rate_per_s=demo_rate_per_s).start() if demo_rate_per_s else None
    child, url = _start_venue_process(work / "venue-there", demo_rate_per_s)
    adapter = AdapterVenueControl(load_adapter(ADAPTER_FILE, {"base_url": url,
                                                              "admin_token": TOKEN}))
    for market in markets["adapter"]:
        httpx.post(
            f"{url}/v1/admin/markets", headers={"Authorization": f"Bearer {TOKEN}"},
            json={"symbol": market, "base": "BTC", "quote": "JPY", "tick_size": "1",
                  "lot_size": "0.0001", "min_qty": "0.0001", "max_qty": "100",
                  "state": "open"}, timeout=10).raise_for_status()
    rules = load_rules_file(DEFAULT_RULES_PATH)
    services = {"in_process": DetectionService(rules=rules),
                "adapter": DetectionService(rules=rules)}
    services["in_process"].set_executor(ActionExecutor(
        session_factory=sessions, venue=InProcessVenueControl(runtime), clock=SystemClock(),
        brake_lane=runtime))
    services["adapter"].set_executor(ActionExecutor(
        session_factory=sessions, venue=adapter, clock=SystemClock()))
    for service in services.values():
        service.start()
    submitted: dict[str, int] = {}
    calls: dict[str, list[float]] = {"call_in_process": [], "call_adapter": []}
    try:
        time.sleep(0.5)
        for trial in range(trials):
            for mode in ("in_process", "adapter"):
                market = markets[mode][trial]
                submitted[market] = time.time_ns()
                services[mode].submit(_signal(market))
                services[mode].flush(30)  # one decision at a time: its latency, not a queue's
                time.sleep(TRIAL_GAP_S)
        for service in services.values():
            service.flush(60)
        for name, control, market in (("call_in_process", InProcessVenueControl(runtime),
                                       "BTC-JPY"), ("call_adapter", adapter, "BTC-JPY")):
            for _ in range(min(trials, 50)):
                began = time.perf_counter_ns()
                control.set_market_state(market, MarketState.HALTED, actor="bench",
                                         reason="call round trip")
                calls[name].append((time.perf_counter_ns() - began) / 1e6)
                control.set_market_state(market, MarketState.AUCTION, actor="bench",
                                         reason="back", auction_ns=60 * 10**9)
    finally:
        for service in services.values():
            service.stop()
        if flow is not None:
            flow.stop()
        adapter.close()
        runtime.stop()
        child.terminate()
        child.wait(30)
    latencies: dict[str, list[float]] = dict(calls)
    for mode, data_dir in (("in_process", work / "venue-here"),
                           ("adapter", work / "venue-there")):
        stamps = _halt_ts(data_dir, set(markets[mode]))
        latencies[mode] = [(stamps[m] - submitted[m]) / 1e6 for m in markets[mode]
                           if m in stamps]
    return {name: {"n": len(values), "p50": percentile(values, 0.5),
                   "p99": percentile(values, 0.99), "max": max(values)}
            for name, values in latencies.items() if values}


def event_feed(work: Path, backlog: int, events_per_s: float, live_s: float
               ) -> dict[str, float]:
    runtime = VenueRuntime(work / "feed", limits=RuntimeLimits(checkpoint_every=10**9)).start()
    _submit_all(runtime, [*setup_commands(), _market("FEED-JPY"),
                          Deposit(BUYER, QUOTE_ASSET.code, 10**15, "bench")])
    start_seq = runtime.status().last_seq
    served = Served(runtime)
    adapter = AdapterVenueControl(load_adapter(ADAPTER_FILE, {"base_url": served.url,
                                                              "admin_token": TOKEN}))
    received: list[int] = []  # seq of each order_accepted, in arrival order
    lock = threading.Lock()

    def take(events: list[FeedEvent]) -> None:
        with lock:
            received.extend(e.seq for e in events if e.kind == "order_accepted")

    def produce(count: int, rate_per_s: float) -> None:
        batch, sent, began = 500, 0, time.perf_counter()
        while sent < count:
            size = min(batch, count - sent)
            futures = [runtime.submit(PlaceOrder("FEED-JPY", BUYER, Side.BUY, 1,
                                                 1 + (sent + i) % 1000)) for i in range(size)]
            for future in futures:
                future.result(60)
            sent += size
            ahead = sent / rate_per_s - (time.perf_counter() - began) if rate_per_s else 0
            if ahead > 0:
                time.sleep(ahead)

    result: dict[str, float] = {}
    try:
        produce(backlog, 0)
        follower = EventFollower(adapter, take, after_seq=start_seq)
        began = time.perf_counter()
        follower.start()
        while True:
            with lock:
                if len(received) >= backlog:
                    break
            time.sleep(0.005)
        result["backlog_events"] = backlog
        result["backlog_events_per_s"] = backlog / (time.perf_counter() - began)
        live = int(events_per_s * live_s)
        lag_max = 0
        producer = threading.Thread(target=produce, args=(live, events_per_s))
        began = time.perf_counter()
        producer.start()
        while producer.is_alive():
            time.sleep(0.1)
            produced = runtime.status().last_seq - start_seq
            with lock:
                lag_max = max(lag_max, produced - len(received))
        produce_s = time.perf_counter() - began
        drain_began = time.perf_counter()
        while True:
            with lock:
                if len(received) >= backlog + live:
                    break
            if time.perf_counter() - drain_began > 30:
                break
            time.sleep(0.002)
        follower.stop()
        with lock:
            ordered = received == sorted(set(received))
            result.update({
                "live_events": live, "live_produced_per_s": live / produce_s,
                "live_lag_max_events": lag_max,
                "drain_ms": (time.perf_counter() - drain_began) * 1000,
                "delivered": len(received), "once_in_order": float(ordered),
                "reconnects": follower.reconnects,
            })
    finally:
        adapter.close()
        served.stop()
        runtime.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="halts per mode")
    parser.add_argument("--demo-rate", type=float, default=200,
                        help="the demo's synthetic orders/s on both venues while halts are "
                        "timed (0: none)")
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--events-per-s", type=float, default=10_000)
    parser.add_argument("--live-s", type=float, default=5.0)
    parser.add_argument("--data-parent", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-adapter-", dir=args.data_parent))
    try:
        halts = signal_to_halt(work, args.trials, args.demo_rate)
        feed = event_feed(work, args.backlog, args.events_per_s, args.live_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print()
    print("| path | n | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    titles = {"in_process": "signal-to-halt, in process (brake lane)",
              "adapter": "signal-to-halt, through the HTTP adapter (venue process)",
              "call_in_process": "halt call, in process", "call_adapter":
              "halt call through the adapter (sent + confirmed)"}
    for name, row in halts.items():
        print(f"| {titles[name]} | {row['n']:.0f} | {row['p50']:.2f} | {row['p99']:.2f} "
              f"| {row['max']:.2f} |")
    if "in_process" in halts and "adapter" in halts:
        print(f"\np99 ratio adapter / in process: "
              f"{halts['adapter']['p99'] / halts['in_process']['p99']:.2f}")
    print()
    print("| event feed through the adapter | value |")
    print("|---|---:|")
    for name, value in feed.items():
        print(f"| {name} | {value:,.1f} |")


if __name__ == "__main__":
    main()
