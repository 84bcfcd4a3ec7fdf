"""New orders through ``haltguard serve``'s public port with ``wrk``, as a customer sends them.

Starts ``haltguard serve --demo`` (the venue in its own supervised process, every order
journaled and fsynced before its answer) on a temporary data directory with the order
capacity and flood limits out of reach, then runs ``wrk`` with kept-alive HTTP/1.1
connections against three targets, one after another, in rounds:

* ``public port``: ``POST /v1/markets/BTC-JPY/orders`` on serve's one public port (its front
  door reads the plain orders, admits them with the load guard and sends each as a frame on
  the request channel; the venue process answers them without the ASGI round);
* ``venue process``: the same requests straight to the venue process's own HTTP port (the
  cost of the public port is the difference);
* ``minimal ASGI``: an app that reads the body and answers 201 with a fixed JSON body and
  does nothing else, under the same server (uvicorn, httptools, uvloop): the ceiling of the
  HTTP layer on this machine.

Orders are limit orders from the eight funded demo accounts (11-18), buys and sells priced
far from each other so every order rests (the answer is the full acknowledgement). Each
figure is the median over the rounds; ratios are per round, then the median.

Usage::

    .venv/bin/python benchmarks/bench_public_port.py [--duration 5] [--rounds 3]
        [--connections 64,1] [--threads 1]

Needs ``wrk`` (Debian: ``apt-get install -y wrk``). wrk runs on the same cores as the server,
as it would on a 2-core box. Prints a Markdown table and writes
``benchmarks/results/public_port.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

RESULTS = Path(__file__).with_name("results") / "public_port.json"
START_S_MAX = 90.0
OUT_OF_REACH = "10000000"
TARGET_RPS = 10_000
TARGET_P99_MS = 25.0
TARGET_SINGLE_P50_MS = 1.0

ORDER_LUA = """
local n = 0
request = function()
   n = n + 1
   local account = 11 + (n % 8)
   local body
   if n % 2 == 0 then
      body = '{"account":' .. account .. ',"side":"buy","qty":"0.0001","price":"1000"}'
   else
      body = '{"account":' .. account .. ',"side":"sell","qty":"0.0001","price":"90000000"}'
   end
   return wrk.format("POST", "/v1/markets/BTC-JPY/orders",
                     {["Content-Type"] = "application/json"}, body)
end
local statuses = {}
response = function(status, headers, body)
   if status ~= 201 and statuses[status] == nil then
      statuses[status] = true
      io.stderr:write("answer " .. status .. ": " .. body .. "\\n")
   end
end
"""

MINIMAL_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"seq":1,"status":"resting"}'
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''

_LATENCY = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Run:
    target: str
    connections: int
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    not_201: int


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"nothing answered on {url} within {timeout_s:g} s")


def start_serve(data_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    """serve --demo with nothing shed; its public URL and the venue process's URL."""
    env = {**os.environ, "HALTGUARD_ORDER_CAPACITY_PER_S": OUT_OF_REACH,
           "HALTGUARD_VENUE_QUEUE_DEPTH_MAX": "100000"}
    serve = subprocess.Popen(
        [sys.executable, "-m", "haltguard.cli.main", "serve", "--demo", "--data-dir",
         str(data_dir), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    serve_file = data_dir / "serve.json"
    deadline = time.monotonic() + START_S_MAX
    while not serve_file.exists():
        if time.monotonic() > deadline or serve.poll() is not None:
            serve.kill()
            raise SystemExit("haltguard serve did not start; run it by hand to see why")
        time.sleep(0.3)
    venue_url = str(json.loads(serve_file.read_text())["venue_process_url"])
    return serve, venue_url


def start_minimal(root: Path, port: int) -> subprocess.Popen[bytes]:
    (root / "minimal_app.py").write_text(MINIMAL_APP)
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "minimal_app:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log", "--http", "httptools",
         "--loop", "uvloop"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def run_wrk(base_url: str, script: Path, *, connections: int, threads: int,
            duration_s: int) -> tuple[float, float, float, int]:
    command = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", "--latency",
               "--timeout", "5s", "-s", str(script)]
    url = base_url + "/v1/markets/BTC-JPY/orders"
    subprocess.run([*command, "-d1s", url], check=True, capture_output=True)  # warm-up
    done = subprocess.run([*command, f"-d{duration_s}s", url], check=True, capture_output=True,
                          text=True)
    output = done.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        raise SystemExit(f"wrk printed no rate:\n{output}\n{done.stderr}")
    latency = {int(p): float(v) * _UNIT_MS[u] for p, v, u in _LATENCY.findall(output)}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return (float(found.group(1)), latency[50], latency[99],
            int(non_2xx.group(1)) if non_2xx else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="64,1")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    levels = [int(level) for level in args.connections.split(",")]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="haltguard-bench-public-") as temp:
        root = Path(temp)
        script = root / "orders.lua"
        script.write_text(ORDER_LUA)
        public_port, minimal_port = free_port(), free_port()
        serve, venue_url = start_serve(root / "data", public_port)
        minimal = start_minimal(root, minimal_port)
        try:
            public_url = f"http://127.0.0.1:{public_port}"
            minimal_url = f"http://127.0.0.1:{minimal_port}"
            wait_for(public_url + "/v1/health", START_S_MAX)
            wait_for(minimal_url, START_S_MAX)
            targets = {"public port": public_url, "venue process": venue_url,
                       "minimal ASGI": minimal_url}
            for round_number in range(1, args.rounds + 1):
                for connections in levels:
                    for target, url in targets.items():
                        rps, p50, p99, not_201 = run_wrk(
                            url, script, connections=connections, threads=args.threads,
                            duration_s=args.duration)
                        runs.append(Run(target, connections, round_number, rps, p50, p99,
                                        not_201))
                        print(f"round {round_number} {target} c={connections}: {rps:,.0f}/s "
                              f"p50 {p50:.2f} ms p99 {p99:.2f} ms, not 201: {not_201}",
                              file=sys.stderr, flush=True)
        finally:
            for process in (serve, minimal):
                os.killpg(process.pid, signal.SIGINT)
            for process in (serve, minimal):
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
    print_table(runs, levels)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps([asdict(run) for run in runs], indent=2) + "\n")


def print_table(runs: list[Run], levels: list[int]) -> None:
    def median(target: str, connections: int, figure: str) -> float:
        return statistics.median(getattr(r, figure) for r in runs
                                 if r.target == target and r.connections == connections)

    def ratio(target: str, baseline: str, connections: int) -> float:
        by_round = {r.round: r.rps for r in runs
                    if r.target == baseline and r.connections == connections}
        return statistics.median(r.rps / by_round[r.round] for r in runs
                                 if r.target == target and r.connections == connections)

    print(f"load average {os.getloadavg()[0]:.1f}; median of "
          f"{max(r.round for r in runs)} rounds")
    print("| connections | target | orders/s | p50 ms | p99 ms | not 201 | "
          "public port / this |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for connections in levels:
        for target in ("public port", "venue process", "minimal ASGI"):
            share = ("-" if target == "public port"
                     else f"{ratio('public port', target, connections):.2f}x")
            print(f"| {connections} | {target} | {median(target, connections, 'rps'):,.0f} | "
                  f"{median(target, connections, 'p50_ms'):.2f} | "
                  f"{median(target, connections, 'p99_ms'):.2f} | "
                  f"{max(r.not_201 for r in runs if r.target == target):,} | {share} |")
    top = max(levels)
    print(f"\ntargets: public port >= {TARGET_RPS:,}/s at {top} connections with p99 < "
          f"{TARGET_P99_MS:g} ms: {median('public port', top, 'rps'):,.0f}/s, p99 "
          f"{median('public port', top, 'p99_ms'):.1f} ms; one connection p50 < "
          f"{TARGET_SINGLE_P50_MS:g} ms: "
          f"{median('public port', min(levels), 'p50_ms'):.2f} ms")


if __name__ == "__main__":
    main()
