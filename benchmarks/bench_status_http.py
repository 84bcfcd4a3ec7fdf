"""The public status page under load: requests/s and latency with 500 connections, measured
with ``wrk`` against the same exported files served by Debian's ``nginx`` as the baseline.

Servers measured, each in its own process(es) on a loopback port:

* ``nginx``: the exported directory, ``worker_processes`` as given, access log off;
* ``haltguard status serve``: the dedicated static server (``haltguard.status.server``) with
  1 and 2 workers, serving the same directory from memory;
* the operations app itself under uvicorn (httptools, uvloop), serving the page from its
  in-memory cache: through the app's routes only (1 worker), and with
  ``StatusPagesMiddleware`` in front of the routing (2 workers).

Documents: ``/api/v2/summary.json`` and the Japanese page ``/`` (``/status/`` on the app),
plain (no gzip), keep-alive. Each is measured twice: at saturation (every connection sends
its next request as soon as the answer arrives: the most requests/s the server gives) and
paced (each connection waits so the 500 together offer about 12,500 requests/s: the latency
at the target load). The page is built from a real database: the demo markets, a
halted market with a published update, a resolved incident and a scheduled maintenance.

Usage::

    .venv/bin/python benchmarks/bench_status_http.py [--duration 10] [--connections 500]
        [--threads 2] [--nginx-workers 2] [--rounds 3]

Needs ``wrk`` and ``nginx`` (Debian: ``apt-get install -y wrk nginx``). The load generator
shares the machine's cores with the server, as it would on a 2-core box; figures move with
whatever else runs, so each figure is the median of several interleaved rounds. Prints a
Markdown table and writes ``benchmarks/results/status_http.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy.orm import Session

from haltguard.app.operations import create_app
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory, session_scope
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import IncidentCreate
from haltguard.incidents.rules import Category, IncidentStatus, Severity
from haltguard.responders.service import ManualClock
from haltguard.status import service
from haltguard.status.models import IncidentDraftRequest, MaintenanceCreate
from haltguard.status.rules import UpdateStatus
from haltguard.status.settings import StatusSettings
from haltguard.status.site import build_site, export_site
from haltguard.status.views import StatusPagesMiddleware
from haltguard.venue.types import MarketState
from haltguard.web.settings import Settings

RESULTS = Path(__file__).with_name("results") / "status_http.json"
START_S_MAX = 20.0
TARGET_RPS = 10_000
TARGET_P99_MS = 50.0
MARKETS = {"BTC-JPY": MarketState.OPEN, "ETH-JPY": MarketState.OPEN,
           "XRP-JPY": MarketState.OPEN}
SETTINGS = StatusSettings(url="https://status.example.test/")

PACED_RPS = 12_500  # offered load of the paced runs: the target with a margin
# Each connection waits between requests so 500 of them offer about PACED_RPS requests/s;
# wrk measures latency from sending to the answer, without the wait.
PACING_LUA = """
function delay()
   return {delay_ms}
end
"""
DATABASE_ENV = "HALTGUARD_BENCH_DATABASE_URL"
MIDDLEWARE_ENV = "HALTGUARD_BENCH_STATUS_MIDDLEWARE"


def app_factory() -> FastAPI:
    """The operations app on the benchmark's database (for ``uvicorn --factory``)."""
    app = create_app(Settings(database_url=os.environ[DATABASE_ENV], migrate_on_start=False),
                     escalation_interval_s=None, status_settings=SETTINGS)
    if os.environ.get(MIDDLEWARE_ENV) == "1":
        app.add_middleware(StatusPagesMiddleware)
    return app


NGINX_CONF = """
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
    types {{ text/html html; application/json json; application/atom+xml atom;
             application/rss+xml rss; text/plain txt; }}
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {site};
        index index.html;
        add_header cache-control "public, max-age=5";
    }}
}}
"""


@dataclass(frozen=True)
class Result:
    server: str
    mode: str
    document: str
    bytes: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: float
    socket_errors: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def build_database(directory: Path) -> str:
    """A database with a realistic page: markets, an outage with updates, history."""
    url = f"sqlite:///{directory / 'haltguard.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    clock = ManualClock(datetime.now(UTC) - timedelta(hours=2))
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        service.ensure_components(session, MARKETS, now=clock.now())
        service.refresh_statuses(session, now=clock.now(), market_states=MARKETS)
        old = incident_flows.open_incident(session, IncidentCreate(
            title="CDN errors", category=Category.NETWORK, severity=Severity.SEV3,
            affected_components=["website"]), actor="bench", clock=clock)
        _publish(session, old.id, UpdateStatus.INVESTIGATING, clock)
        clock.advance(timedelta(minutes=20))
        incidents.transition(session, old, IncidentStatus.RESOLVED, actor="bench",
                             now=clock.now(), market_states=MARKETS)
        _publish(session, old.id, UpdateStatus.RESOLVED, clock)
        clock.advance(timedelta(minutes=40))
        halted = {**MARKETS, "BTC-JPY": MarketState.HALTED}
        outage = incident_flows.open_incident(session, IncidentCreate(
            title="Order database unreachable", category=Category.DATABASE,
            severity=Severity.SEV2, affected_markets=["BTC-JPY"]), actor="bench", clock=clock)
        service.refresh_statuses(session, now=clock.now(), market_states=halted)
        clock.advance(timedelta(minutes=5))
        _publish(session, outage.id, UpdateStatus.INVESTIGATING, clock)
        _maintenance, draft = service.schedule_maintenance(session, MaintenanceCreate(
            scheduled_for=clock.now() + timedelta(days=1),
            scheduled_until=clock.now() + timedelta(days=1, hours=2),
            components=["withdrawals:BTC"]), actor="bench", now=clock.now())
        service.publish(session, draft.id, actor="bench", now=clock.now(), settings=SETTINGS)
    engine.dispose()
    return url


def _publish(session: Session, incident_id: int, status: UpdateStatus,
             clock: ManualClock) -> None:
    draft = service.draft_incident_update(session, incident_id,
                                          IncidentDraftRequest(status=status), actor="bench",
                                          now=clock.now(), settings=SETTINGS)
    service.publish(session, draft.id, actor="bench", now=clock.now(), settings=SETTINGS)


def export(url: str, target: Path) -> None:
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        snapshot = service.build_snapshot(session, now=datetime.now(UTC), settings=SETTINGS)
    engine.dispose()
    export_site(build_site(snapshot), target)


def wait_for(url: str) -> None:
    deadline = time.monotonic() + START_S_MAX
    while True:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {START_S_MAX} s")
        time.sleep(0.1)


@contextmanager
def process(command: list[str], ready_url: str, env: dict[str, str]) -> Iterator[None]:
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True, env={**os.environ, **env})
    try:
        try:
            wait_for(ready_url)
        except RuntimeError:
            child.kill()
            _, error = child.communicate(timeout=10)
            raise RuntimeError(f"{command[0]} did not start: {error.decode()[-2000:]}") from None
        yield
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(10)


_LATENCY = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, *, duration_s: int, connections: int, threads: int,
            script: Path | None = None) -> dict[str, float]:
    """One wrk run after a short warm-up; requests/s, p50/p99 ms and errors. With
    ``script`` (the pacing script) each connection waits between requests."""
    base = ["wrk", f"-t{threads}", f"-c{connections}", "--latency", "--timeout", "5s"]
    if script is not None:
        base += ["-s", str(script)]
    subprocess.run([*base, "-d2s", url], check=True, capture_output=True)
    output = subprocess.run([*base, f"-d{duration_s}s", url], check=True, capture_output=True,
                            text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = {int(p): float(v) * _UNIT_MS[u] for p, v, u in _LATENCY.findall(output)}
    errors = re.search(r"Socket errors: (.*)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = sum(int(n) for n in re.findall(r"\d+", errors.group(1))) if errors else 0
    return {"rps": rps, "p50_ms": latency[50], "p99_ms": latency[99],
            "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
            "socket_errors": float(socket_errors)}


def medians(results: list[Result]) -> list[Result]:
    """One result per (server, load, document): the median of each figure over the rounds."""
    groups: dict[tuple[str, str, str], list[Result]] = {}
    for result in results:
        groups.setdefault((result.server, result.mode, result.document), []).append(result)
    return [
        Result(server, mode, document, runs[0].bytes,
               statistics.median(r.rps for r in runs),
               statistics.median(r.p50_ms for r in runs),
               statistics.median(r.p99_ms for r in runs),
               max(r.non_2xx for r in runs), max(r.socket_errors for r in runs))
        for (server, mode, document), runs in groups.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nginx-workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3,
                        help="Rounds over all servers; the table shows each figure's median.")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is missing: apt-get install -y {tool}")
    root = Path(tempfile.mkdtemp(prefix="bench-status-"))
    root.chmod(0o755)  # nginx workers run as an unprivileged user and must read the site
    try:
        url = build_database(root)
        site = root / "site"
        export(url, site)
        (root / "tmp").mkdir()
        pacing = root / "pace.lua"
        pacing.write_text(PACING_LUA.format(delay_ms=args.connections * 1000 // PACED_RPS))
        results: list[Result] = []
        servers: list[tuple[str, int, str, list[str], dict[str, str]]] = []
        nginx_port = free_port()
        (root / "nginx.conf").write_text(NGINX_CONF.format(
            workers=args.nginx_workers, root=root, port=nginx_port, site=site))
        servers.append((f"nginx ({args.nginx_workers} workers)", nginx_port, "",
                        [shutil.which("nginx") or "/usr/sbin/nginx", "-c",
                         str(root / "nginx.conf"), "-g", "daemon off;"], {}))
        for workers in (1, 2):
            port = free_port()
            servers.append((f"haltguard status serve ({workers} worker{'s' * (workers > 1)})",
                            port, "", [sys.executable, "-m", "haltguard.cli.main", "status",
                                       "serve", str(site), "--port", str(port),
                                       "--workers", str(workers)], {}))
        for middleware, workers in ((False, 1), (True, 2)):
            port = free_port()
            label = ("app + StatusPagesMiddleware" if middleware else "app (routes only)")
            servers.append((f"{label}, uvicorn {workers} worker{'s' * (workers > 1)}", port,
                            "/status", [
                                sys.executable, "-m", "uvicorn", "bench_status_http:app_factory",
                                "--factory", "--app-dir", str(Path(__file__).parent),
                                "--host", "127.0.0.1", "--port", str(port), "--workers",
                                str(workers), "--log-level", "warning", "--no-access-log"],
                            {DATABASE_ENV: url, MIDDLEWARE_ENV: "1" if middleware else "0"}))
        # Rounds interleave the servers, so a burst of other work on the machine lands on
        # one round of each rather than on all runs of one server.
        for _round, (name, port, prefix, command, env) in itertools.product(
            range(args.rounds), servers
        ):
            base = f"http://127.0.0.1:{port}{prefix}"
            with process(command, f"{base}/api/v2/summary.json", env):
                for document in ("/api/v2/summary.json", "/"):
                    size = len(httpx.get(base + document).content)
                    for mode, script in (("saturation", None), ("paced", pacing)):
                        figures = run_wrk(base + document, duration_s=args.duration,
                                          connections=args.connections, threads=args.threads,
                                          script=script)
                        results.append(Result(name, mode, document, size, **figures))
                        print(f"{name:45} {mode:10} {document:22} {figures['rps']:>9.0f} req/s"
                              f"  p50 {figures['p50_ms']:.2f} ms  p99 {figures['p99_ms']:.2f} ms",
                              file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = medians(results)
    baseline = {(r.mode, r.document): r.rps for r in results if r.server.startswith("nginx")}
    print(f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s, median of "
          f"{args.rounds} rounds, on "
          f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
          f"target >= {TARGET_RPS} req/s with p99 < {TARGET_P99_MS} ms\n")
    print("| server | load | document | bytes | req/s | vs nginx | p50 ms | p99 ms | target |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        met = r.rps >= TARGET_RPS and r.p99_ms < TARGET_P99_MS and not r.socket_errors
        print(f"| {r.server} | {r.mode} | `{r.document}` | {r.bytes} | {r.rps:,.0f} | "
              f"{r.rps / baseline[(r.mode, r.document)]:.2f} | {r.p50_ms:.2f} | "
              f"{r.p99_ms:.2f} | {'met' if met else 'missed'} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "results": [asdict(r) for r in results]},
                                  indent=2) + "\n")


if __name__ == "__main__":
    main()
