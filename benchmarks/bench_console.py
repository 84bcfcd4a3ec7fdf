"""The operator console under a large outage: render time, live-update latency, idle cost.

Builds, in one process: a real venue (``VenueRuntime`` on a temporary journal) with 100 open
markets, an operations database (SQLite) with 50 open incidents and 10,000 timeline entries
(one incident holds half of them), and the operations app with the console. Then:

1. **Render time**: ``GET /console/overview`` (and the incident page of the incident with
   5,000 entries) in-process, ``--renders`` times each; the baseline in the same run is the
   API's ``GET /api/incidents?open_only=true`` (the JSON list of the same incidents), so the
   ratio says what the page costs over the data it shows.
2. **Live-update latency**: the app served by uvicorn; one browser-like client holds
   ``/console/events`` open; each sample posts a comment through the API and times until
   the ``change`` event has arrived and the incident's live fragment (which then shows the
   comment) has been fetched.
3. **Idle cost**: ``--clients`` live connections held open with nothing changing; the
   process's CPU time over ``--idle-s`` seconds, against the same window with no connection
   (the venue, the journal follower and the server idling). The clients run in the same
   process, so their own cost is counted too (the figure is an upper bound).

Usage::

    .venv/bin/python benchmarks/bench_console.py [--renders 30] [--samples 20]
        [--clients 50] [--idle-s 10]

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyotp
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from haltguard.app.operations import create_app
from haltguard.common.clock import SystemClock
from haltguard.console.views import stop as stop_console
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory, session_scope
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.demo import set_up_demo
from haltguard.gateway.runtime import VenueRuntime
from haltguard.incidents import flows, service
from haltguard.incidents.models import IncidentCreate
from haltguard.incidents.rules import Category, Severity
from haltguard.security.permissions import Role
from haltguard.security.testing import ProvisionedOperator, fast_test_settings, provision_operator
from haltguard.venue.commands import AddAsset, AddMarket
from haltguard.venue.markets import DEMO_ASSETS, Asset, make_market
from haltguard.venue.types import MarketState
from haltguard.web.settings import Settings

MARKETS = 100
INCIDENTS = 50
TIMELINE_ENTRIES = 10_000
BIG_INCIDENT_ENTRIES = 5_000


def add_markets(runtime: VenueRuntime) -> None:
    """The three demo markets and 97 more, all open."""
    set_up_demo(runtime)
    jpy = DEMO_ASSETS[0]
    futures = []
    for index in range(MARKETS - 3):
        asset = Asset(f"C{index:02d}", 8)
        futures.append(runtime.submit(AddAsset(asset)))
        spec = make_market(f"C{index:02d}-JPY", asset, jpy, tick_size="1", lot_size="0.0001",
                           min_qty="0.0001", max_qty="100")
        futures.append(runtime.submit(AddMarket(spec, MarketState.OPEN)))
    for future in futures:
        future.result(30)


def add_incidents(session_factory: object) -> int:
    """50 open incidents, 10,000 timeline entries in all; returns the big incident's id."""
    clock = SystemClock()
    severities = [Severity.SEV2, Severity.SEV3, Severity.SEV4]
    big_id = 0
    for number in range(INCIDENTS):
        with session_scope(session_factory) as session:  # type: ignore[arg-type]
            incident = flows.open_incident(session, IncidentCreate(
                title=f"Incident {number}: order gateway errors", category=Category.NETWORK,
                severity=severities[number % 3], affected_markets=[f"C{number:02d}-JPY"]),
                actor="bench", clock=clock)
            session.flush()
            big_id = big_id or incident.id
            entries = (BIG_INCIDENT_ENTRIES if number == 0 else
                       (TIMELINE_ENTRIES - BIG_INCIDENT_ENTRIES) // (INCIDENTS - 1))
            existing = len(list(session.scalars(service.timeline_query(incident.id))))
            for entry in range(max(0, entries - existing)):
                service.comment(session, incident, f"observation {entry}: error rate steady",
                                actor="bench", now=clock.now())
    return big_id


def log_in(client: TestClient, operator: ProvisionedOperator) -> None:
    page = client.get("/console/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/console/login", data={
        "csrf_token": token, "username": operator.username, "password": operator.password,
        "totp_code": pyotp.TOTP(operator.totp_secret).at(datetime.now(UTC))},
        follow_redirects=False)
    assert answer.status_code == 303, answer.text


def timed_ms(call: Callable[[], httpx.Response], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        answer = call()
        samples.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text[:300]
    return samples


def serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def live_latency_ms(url: str, cookie: str, token: str, incident_id: int,
                    samples: int) -> list[float]:
    results: list[float] = []
    changed = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=url, cookies={"haltguard_session": cookie},
                          timeout=30) as browser, browser.stream("GET", "/console/events") as s:
            for line in s.iter_lines():
                if line == "event: change":
                    changed.set()
                if stop.is_set():
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1.0)
    with httpx.Client(base_url=url, timeout=30) as api, httpx.Client(
            base_url=url, cookies={"haltguard_session": cookie}, timeout=30) as browser:
        for number in range(samples):
            changed.clear()
            text = f"live sample {number}"
            started = time.perf_counter()
            api.post(f"/api/incidents/{incident_id}/comments", json={"text": text},
                     headers={"Authorization": f"Bearer {token}"}).raise_for_status()
            assert changed.wait(10), "no change event within 10 s"
            fragment = browser.get(f"/console/live/incidents/{incident_id}")
            assert text in fragment.text
            results.append((time.perf_counter() - started) * 1000)
            time.sleep(0.3)
    stop.set()
    return results


def idle_cpu_percent(url: str, cookie: str, clients: int, seconds: float) -> float:
    """Percent of one core this process used over ``seconds`` with ``clients`` connected."""

    async def hold() -> float:
        async with httpx.AsyncClient(base_url=url, cookies={"haltguard_session": cookie},
                                     timeout=None) as client:
            streams = []
            for _ in range(clients):
                request = client.build_request("GET", "/console/events")
                response = await client.send(request, stream=True)
                assert response.status_code == 200
                streams.append(response)
            await asyncio.sleep(2.0)  # connected and settled
            cpu_before, wall_before = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            used = time.process_time() - cpu_before
            wall = time.perf_counter() - wall_before
            for response in streams:
                await response.aclose()
            return 100 * used / wall

    if clients == 0:
        time.sleep(2.0)
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        return 100 * (time.process_time() - cpu_before) / (time.perf_counter() - wall_before)
    return asyncio.run(hold())


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return (f"{statistics.median(ordered):.1f} ms (p95 {p95:.1f}, "
            f"{ordered[0]:.1f}-{ordered[-1]:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", type=int, default=30)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--idle-s", type=float, default=10.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-console-") as temp:
        root = Path(temp)
        runtime = VenueRuntime(root / "venue").start()
        try:
            add_markets(runtime)
            engine = make_engine(f"sqlite:///{root / 'ops.sqlite3'}")
            upgrade(engine)
            session_factory = make_session_factory(engine)
            started = time.perf_counter()
            big_id = add_incidents(session_factory)
            print(f"set-up: {MARKETS} markets, {INCIDENTS} incidents, {TIMELINE_ENTRIES:,} "
                  f"timeline entries in {time.perf_counter() - started:.1f} s")
            operator = provision_operator(session_factory, Role.INCIDENT_COMMANDER,
                                          username="carol")
            app = create_app(Settings(database_url=str(engine.url), migrate_on_start=False,
                                      data_dir=root / "venue"),
                             venue_control=InProcessVenueControl(runtime), engine=engine,
                             security_settings=fast_test_settings(), escalation_interval_s=None)
            with TestClient(app, base_url="https://testserver") as client:
                log_in(client, operator)
                client.get("/console/overview")  # warm: templates, the journal follower
                overview = timed_ms(lambda: client.get("/console/overview"), args.renders)
                incident = timed_ms(lambda: client.get(f"/console/incidents/{big_id}"),
                                    args.renders)
                api = timed_ms(lambda: client.get(
                    "/api/incidents?open_only=true&limit=50",
                    headers={"Authorization": f"Bearer {operator.api_token}"}), args.renders)
                cookie = client.cookies["haltguard_session"]
            server, thread, url = serve(app)
            try:
                latency = live_latency_ms(url, cookie, operator.api_token, big_id, args.samples)
                idle_none = idle_cpu_percent(url, cookie, 0, args.idle_s)
                idle_many = idle_cpu_percent(url, cookie, args.clients, args.idle_s)
            finally:
                server.should_exit = True
                thread.join(10)
                stop_console(app)
        finally:
            runtime.stop()

    ratio = statistics.median(overview) / statistics.median(api)
    print()
    print("| Figure | Measured | Target |")
    print("|---|---|---|")
    print(f"| Overview render, {MARKETS} markets, {INCIDENTS} open incidents | "
          f"{summary(overview)} | < 200 ms |")
    print(f"| Incident page, {BIG_INCIDENT_ENTRIES:,} timeline entries (newest 200 shown) | "
          f"{summary(incident)} | - |")
    print(f"| Baseline: `GET /api/incidents?open_only=true` (JSON) | {summary(api)} | - |")
    print(f"| Overview / baseline | {ratio:.1f}x | - |")
    print(f"| Live update: change to fragment fetched | {summary(latency)} | < 1,000 ms |")
    print(f"| Idle CPU, 0 live connections | {idle_none:.2f}% of one core | - |")
    print(f"| Idle CPU, {args.clients} live connections | {idle_many:.2f}% of one core "
          f"(+{idle_many - idle_none:.2f}) | < 5% |")


if __name__ == "__main__":
    main()
