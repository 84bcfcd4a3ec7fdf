"""Orders through ``haltguard serve``'s public port, signed (``customers.auth = keys``) vs
open, in the same run, with ``wrk``.

Starts ``haltguard serve --demo`` twice on temporary data directories, with the order
capacity and flood limits out of reach as ``bench_public_port.py`` does: once with
``HALTGUARD_CUSTOMERS_AUTH=keys`` (the public port's front door runs
``CustomerGateway.judge`` on every order: signature, receive window, replay guard, key,
permission, account bound) and once ``open`` (the ``account`` field as sent). The keyed
leg signs with about 400 read-and-trade keys of the funded demo accounts 1-20 (20 each, the
most an account may hold), made in the keyed server's database before the run: every key is
held to the public port's per-key request limit (50/s, burst 100), so one key, or the demo's
three, would measure that limit, not the check. The first (warm-up) requests make the
server read the new keys; some of those are refused as unknown.

wrk's Lua cannot compute HMAC-SHA256, so before every wrk run this script signs the run's
requests in Python, each with its own timestamp, spread evenly over the run, and writes
them to a file the Lua script formats once at start (the open leg reads a file of the same
bodies without the three headers, so wrk does the same work in both). The receive window is
widened for the run with the existing setting ``HALTGUARD_CUSTOMERS_RECEIVE_WINDOW_MS``
(30 s instead of 5 s; ``--receive-window-ms``): the spread timestamps then stay within the
window whatever the rate. Every request is unique, so the replay guard refuses none; a
run that uses more requests than were signed starts over and its replays show as
"not 201".

The bodies are identical in both legs, name their account (the gateway checks it is the
key's) and carry a unique ``client_order_id``. The legs alternate, open first, in each
round; orders/s counts acknowledged orders only (wrk's rate less the refusals); each figure
is the median over the rounds, the ratio is per round, then the median.

Usage::

    .venv/bin/python benchmarks/bench_signed_public_port.py [--duration 5] [--rounds 3]
        [--connections 64] [--threads 1]

Needs ``wrk``. Prints a Markdown table and writes ``benchmarks/results/signed_public_port.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench_public_port import OUT_OF_REACH, START_S_MAX, free_port, wait_for
from haltguard.app.config import load_config
from haltguard.customers import service
from haltguard.customers.models import KEYS_PER_ACCOUNT_MAX, Customer
from haltguard.customers.signing import sign
from haltguard.db.keys import Keyring
from haltguard.db.session import make_engine, make_session_factory, session_scope

RESULTS = Path(__file__).with_name("results") / "signed_public_port.json"
TARGET_RATIO = 0.9
RECEIVE_WINDOW_MS = 30_000
REQUESTS_PER_S_SIGNED = 30_000
"""Requests signed per second of a run: more than the public port answers here."""
REQUESTS_MIN = 40_000
PATH = "/v1/markets/BTC-JPY/orders"
ACCOUNTS = tuple(range(1, 21))
"""Funded demo accounts whose customers sign the keyed leg's orders."""
KEY_REFRESH_S = 0.5

REQUESTS_LUA = """
local requests = {}
local n = 0
init = function(args)
   for line in io.lines(args[1]) do
      local key, stamp, signature, body = line:match("^([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t(.*)$")
      local headers = {["Content-Type"] = "application/json"}
      if key ~= "" then
         headers["X-API-Key"] = key
         headers["X-API-Timestamp"] = stamp
         headers["X-API-Signature"] = signature
      end
      requests[#requests + 1] = wrk.format("POST", "/v1/markets/BTC-JPY/orders", headers, body)
   end
end
request = function()
   n = n + 1
   return requests[((n - 1) % #requests) + 1]
end
local statuses = {}
response = function(status, headers, body)
   if status ~= 201 and statuses[status] == nil then
      statuses[status] = true
      io.stderr:write("answer " .. status .. ": " .. body .. "\\n")
   end
end
"""

_LATENCY = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Run:
    mode: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    not_201: int


def start_serve(data_dir: Path, port: int, auth: str,
                window_ms: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HALTGUARD_ORDER_CAPACITY_PER_S": OUT_OF_REACH,
           "HALTGUARD_VENUE_QUEUE_DEPTH_MAX": "100000", "HALTGUARD_CUSTOMERS_AUTH": auth,
           "HALTGUARD_CUSTOMERS_RECEIVE_WINDOW_MS": str(window_ms),
           "HALTGUARD_CUSTOMERS_KEY_REFRESH_S": str(KEY_REFRESH_S)}
    serve = subprocess.Popen(
        [sys.executable, "-m", "haltguard.cli.main", "serve", "--demo", "--data-dir",
         str(data_dir), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_S_MAX
    while not (data_dir / "serve.json").exists():
        if time.monotonic() > deadline or serve.poll() is not None:
            serve.kill()
            raise SystemExit(f"haltguard serve ({auth}) did not start; run it by hand to see why")
        time.sleep(0.3)
    return serve


def create_keys(data_dir: Path) -> list[tuple[int, str, bytes]]:
    """Trading keys for the customers of ``ACCOUNTS`` (the most each account may hold),
    made in the keyed serve's database as support's route makes them. Each key is held to
    the per-key request limit (50/s, burst 100, ``gateway.limits.FloodSettings``) like any
    customer's, so the run spreads its orders over many keys, as many customers would."""
    config = load_config(None, overrides={"data_dir": str(data_dir)})
    engine = make_engine(config.database_url, keyring=Keyring(config.keys))
    made: list[tuple[int, str, bytes]] = []
    try:
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            now = datetime.now(UTC)
            for account in ACCOUNTS:
                if session.get(Customer, account) is None:
                    service.create_customer(session, account=account,
                                            email=f"bench{account}@example.com",
                                            phrase=f"bench {account}", actor="system:bench",
                                            now=now)
                held = len(service.keys_of(session, account))
                for _ in range(KEYS_PER_ACCOUNT_MAX - held):
                    key, secret = service.create_key(
                        session, account, label="bench", permissions=["read", "trade"],
                        networks=[], expires_in_days=0, code="", actor="system:bench", now=now)
                    made.append((account, key.key_id, secret.encode()))
    finally:
        engine.dispose()
    return made


def write_requests(path: Path, keys: list[tuple[int, str, bytes]] | None, count: int,
                   duration_s: float) -> None:
    """``count`` orders resting far from each other (buys low, sells high), from the keys'
    accounts in turn; signed with timestamps spread over ``duration_s`` from now when
    ``keys`` is given, else with no headers (the open leg: the same bodies)."""
    owners = keys or [(account, "", b"") for account in ACCOUNTS]
    start_ms = int(time.time() * 1000)
    step_ms = duration_s * 1000 / count
    lines = []
    for n in range(count):
        account, key_id, secret = owners[n % len(owners)]
        side, price = ("buy", "1000") if n % 2 == 0 else ("sell", "90000000")
        body = (f'{{"account":{account},"side":"{side}","qty":"0.0001","price":"{price}",'
                f'"client_order_id":"b{start_ms}-{n}"}}')
        if keys is None:
            lines.append(f"\t\t\t{body}")
            continue
        stamp = start_ms + int(n * step_ms)
        signature = sign(secret, stamp, "POST", PATH, body.encode())
        lines.append(f"{key_id}\t{stamp}\t{signature}\t{body}")
    path.write_text("\n".join(lines) + "\n")


def run_wrk(base_url: str, script: Path, requests: Path, *, connections: int, threads: int,
            duration_s: int) -> tuple[float, float, float, int]:
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency",
         "--timeout", "5s", "-s", str(script), base_url + PATH, "--", str(requests)],
        check=True, capture_output=True, text=True)
    output = done.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        raise SystemExit(f"wrk printed no rate:\n{output}\n{done.stderr}")
    latency = {int(p): float(v) * _UNIT_MS[u] for p, v, u in _LATENCY.findall(output)}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if done.stderr.strip():
        print(done.stderr.strip(), file=sys.stderr)
    not_201 = int(non_2xx.group(1)) if non_2xx else 0
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", output)
    answered_s = (float(total.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[total.group(3)]
                  if total else float(duration_s))
    acknowledged_per_s = float(found.group(1)) - not_201 / answered_s  # refusals not counted
    return acknowledged_per_s, latency[50], latency[99], not_201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--receive-window-ms", type=int, default=RECEIVE_WINDOW_MS,
                        help="customers.receive_window_ms of both servers")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    count = max(REQUESTS_MIN, REQUESTS_PER_S_SIGNED * args.duration)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="haltguard-bench-signed-") as temp:
        root = Path(temp)
        script = root / "requests.lua"
        script.write_text(REQUESTS_LUA)
        ports = {"open": free_port(), "keys": free_port()}
        servers = {mode: start_serve(root / mode, port, mode, args.receive_window_ms)
                   for mode, port in ports.items()}
        try:
            for port in ports.values():
                wait_for(f"http://127.0.0.1:{port}/v1/health", START_S_MAX)
            keys = create_keys(root / "keys")
            time.sleep(KEY_REFRESH_S * 4)  # the keyed serve has read the new keys
            print(f"{len(keys)} keys over {len(ACCOUNTS)} accounts", file=sys.stderr)
            requests = root / "requests.txt"
            for mode in ("open", "keys"):  # warm-up, 1 s each
                write_requests(requests, keys if mode == "keys" else None, REQUESTS_MIN, 1)
                run_wrk(f"http://127.0.0.1:{ports[mode]}", script, requests,
                        connections=args.connections, threads=args.threads, duration_s=1)
            for round_number in range(1, args.rounds + 1):
                for mode in ("open", "keys"):
                    write_requests(requests, keys if mode == "keys" else None, count,
                                   args.duration)
                    rps, p50, p99, not_201 = run_wrk(
                        f"http://127.0.0.1:{ports[mode]}", script, requests,
                        connections=args.connections, threads=args.threads,
                        duration_s=args.duration)
                    runs.append(Run(mode, round_number, rps, p50, p99, not_201))
                    print(f"round {round_number} {mode}: {rps:,.0f}/s p50 {p50:.2f} ms "
                          f"p99 {p99:.2f} ms, not 201: {not_201}", file=sys.stderr, flush=True)
        finally:
            for server in servers.values():
                os.killpg(server.pid, signal.SIGINT)
            for server in servers.values():
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
    print_table(runs, args.connections)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps([asdict(run) for run in runs], indent=2) + "\n")


def print_table(runs: list[Run], connections: int) -> None:
    def median(mode: str, figure: str) -> float:
        return statistics.median(getattr(r, figure) for r in runs if r.mode == mode)

    open_by_round = {r.round: r.rps for r in runs if r.mode == "open"}
    ratios = [r.rps / open_by_round[r.round] for r in runs if r.mode == "keys"]
    print(f"load average {os.getloadavg()[0]:.1f}; {connections} connections; median of "
          f"{len(ratios)} rounds")
    print("| mode | acknowledged orders/s | p50 ms | p99 ms | not 201 |")
    print("|---|---:|---:|---:|---:|")
    for mode in ("open", "keys"):
        print(f"| {mode} | {median(mode, 'rps'):,.0f} | {median(mode, 'p50_ms'):.2f} | "
              f"{median(mode, 'p99_ms'):.2f} | "
              f"{max(r.not_201 for r in runs if r.mode == mode):,} |")
    print(f"\nkeys / open acknowledged orders/s, same run: {statistics.median(ratios):.2f} "
          f"(rounds: {', '.join(f'{ratio:.2f}' for ratio in ratios)}); target >= "
          f"{TARGET_RATIO:g}")


if __name__ == "__main__":
    main()
