"""Load detection and shedding: the token-bucket arithmetic, fair shares, the load signals,
the middleware in front of a real venue, and the flood test against a real venue process."""

from __future__ import annotations

import hashlib
import os
import signal as os_signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from haltguard.app.venue_app import create_venue_app
from haltguard.common.units import NS_PER_S
from haltguard.detection.load import LoadDetector
from haltguard.detection.monitors import SignalOutbox
from haltguard.detection.signals import Signal
from haltguard.gateway.context import venue_context_of
from haltguard.gateway.limits import (
    ClientLimiter,
    FloodSettings,
    RateLimit,
    SheddingSettings,
    gcra_charge,
    gcra_wait_ns,
    retry_after_s,
)
from haltguard.gateway.load_signals import LoadWindow
from haltguard.gateway.runtime import RuntimeLimits, VenueRuntime
from haltguard.gateway.shedding import FairShareShedder, InFlightBound, LoadGuard
from haltguard.venue.commands import Heartbeat, PlaceOrder
from haltguard.venue.events import OrderAccepted, OrderRepeated
from haltguard.venue.types import Side
from haltguard.venue.workload import WORKLOAD_MARKET, setup_commands

TOKEN = "load-test-admin-token"
T0 = 1_767_225_600 * NS_PER_S
MS = 1_000_000
ORDERS = f"/v1/markets/{WORKLOAD_MARKET}/orders"


def order(account: int, client_order_id: str, price: int = 99_000) -> dict[str, Any]:
    return {"account": account, "side": "buy", "qty": "1", "price": str(price),
            "client_order_id": client_order_id}


class ManualClock:
    def __init__(self, start_ns: int = T0) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance_ms(self, ms: int) -> None:
        self.now_ns += ms * MS


# --- token buckets -------------------------------------------------------------------


def test_a_token_bucket_admits_its_burst_then_its_steady_rate() -> None:
    limit = RateLimit(rate_per_s=10, burst=5)
    tat, admitted = 0, 0
    for step in range(200):  # 2 s, one request every 10 ms
        now = T0 + step * 10 * MS
        if gcra_wait_ns(tat, now, limit.tolerance_ns) == 0:
            tat = gcra_charge(tat, now, limit.interval_ns, limit.tolerance_ns + limit.interval_ns)
            admitted += 1
    assert 5 + 19 <= admitted <= 5 + 21  # the burst, then 10 a second


def test_retry_after_is_whole_seconds_rounded_up_and_bounded() -> None:
    assert retry_after_s(1, 30) == 1
    assert retry_after_s(NS_PER_S, 30) == 1
    assert retry_after_s(NS_PER_S + 1, 30) == 2
    assert retry_after_s(3_600 * NS_PER_S, 30) == 30


def test_client_limiter_blocks_until_expiry_and_forgets_the_least_recent_client() -> None:
    limiter = ClientLimiter(RateLimit(1, 1), clients_max=2)
    assert limiter.take("a", T0) == 0
    assert limiter.take("a", T0) > 0
    limiter.block("a", T0 + 5 * NS_PER_S, "flood")
    assert limiter.blocked("a", T0 + 4 * NS_PER_S) is not None
    assert limiter.blocked("a", T0 + 5 * NS_PER_S) is None
    assert [key for key, _ in limiter.expire_blocks(T0 + 5 * NS_PER_S)] == ["a"]
    limiter.take("b", T0)
    limiter.take("c", T0)  # "a" is forgotten: it starts again with a full bucket
    assert limiter.take("a", T0) == 0


def test_a_per_client_limit_applies_until_it_expires() -> None:
    limiter = ClientLimiter(RateLimit(1_000, 1_000))
    limiter.set_limit("k", RateLimit(1, 1), until_ns=T0 + NS_PER_S)
    assert limiter.take("k", T0) == 0
    assert limiter.take("k", T0 + 1) > 0
    assert limiter.take("k", T0 + NS_PER_S) == 0
    assert limiter.take("k", T0 + NS_PER_S + 1) == 0  # back to the default limit


# --- fair shares ---------------------------------------------------------------------


def run_clients(shedder: FairShareShedder, rates_per_s: dict[str, int], seconds: int,
                queue: tuple[int, int] = (0, 10_000)) -> Counter[str]:
    """Each client sends evenly at its rate; how many of each were admitted."""
    admitted: Counter[str] = Counter()
    arrivals = sorted(
        (T0 + index * NS_PER_S // rate, client)
        for client, rate in rates_per_s.items() for index in range(rate * seconds)
    )
    for now, client in arrivals:
        if shedder.admit_order(client, now, *queue).admitted:
            admitted[client] += 1
    return admitted


def test_a_modest_client_keeps_its_orders_while_a_greedy_one_is_cut() -> None:
    shedder = FairShareShedder(SheddingSettings(order_capacity_per_s=100, client_burst=5))
    admitted = run_clients(shedder, {"account:1": 1_000, "account:2": 20}, seconds=5)
    assert admitted["account:2"] == 100  # within its share: every order admitted
    bursts = 100 * 500 // 1_000 + 5  # the venue's and one client's burst allowance
    assert 5 * (100 - 20) - 5 <= admitted["account:1"] <= 5 * (100 - 20) + bursts  # the rest


def test_spare_capacity_is_not_wasted_on_a_single_busy_client() -> None:
    shedder = FairShareShedder(SheddingSettings(order_capacity_per_s=100))
    assert run_clients(shedder, {"api_key:x": 90}, seconds=3)["api_key:x"] == 270


def test_equal_greedy_clients_get_equal_shares_of_capacity() -> None:
    shedder = FairShareShedder(SheddingSettings(order_capacity_per_s=300, client_burst=5))
    admitted = run_clients(shedder, {f"account:{n}": 500 for n in range(1, 4)}, seconds=4)
    assert sum(admitted.values()) <= 4 * 300 + 300 * 500 // 1_000 + 3 * 5  # + bursts
    assert max(admitted.values()) - min(admitted.values()) <= 10


def test_a_nearly_full_queue_answers_503_with_retry_after_before_the_hard_bound() -> None:
    shedder = FairShareShedder(SheddingSettings(order_capacity_per_s=100, queue_shed_bps=8_000))
    assert shedder.admit_order("a", T0, 7_999, 10_000).admitted
    refused = shedder.admit_order("a", T0, 8_000, 10_000)
    assert (refused.status, refused.code) == (503, "overloaded")
    assert refused.retry_after_s == 30  # 8000 queued at 100/s, capped at the bound
    assert "nothing was queued" in refused.message


# --- load signals --------------------------------------------------------------------


def test_load_detector_fires_on_rate_queue_latency_and_shedding_then_resolves() -> None:
    settings = SheddingSettings(order_capacity_per_s=100, windows_to_clear=2,
                                ack_p99_ms_max=100)
    detector = LoadDetector(settings)
    busy = LoadWindow(T0, offered=300, admitted=100, shed_429=200)
    for _ in range(50):
        busy.observe_latency(250 * MS)
    fired = detector.evaluate(busy, T0 + NS_PER_S, queue_depth=6_000, queue_depth_max=10_000)
    assert {s.name: s.value for s in fired} == {
        "load.order_rate": 300, "load.queue_depth": 6_000, "load.order_ack_p99_ms": 300,
        "load.shedding": 200,
    }
    assert all(not s.resolved and s.labels == {"component": "venue"} for s in fired)
    assert fired[0].details["threshold"] == ">= 90 orders/s (9000 bps of capacity)"
    quiet = LoadWindow(T0 + NS_PER_S, offered=10, admitted=10)
    assert detector.evaluate(quiet, T0 + 2 * NS_PER_S, 0, 10_000) == []
    resolved = detector.evaluate(LoadWindow(T0 + 2 * NS_PER_S), T0 + 3 * NS_PER_S, 0, 10_000)
    assert sorted(s.name for s in resolved if s.resolved) == sorted(s.name for s in fired)


def test_normal_traffic_raises_no_load_signal() -> None:
    detector = LoadDetector(SheddingSettings(order_capacity_per_s=1_000))
    for second in range(60):
        window = LoadWindow(T0 + second * NS_PER_S, offered=400, admitted=400)
        for _ in range(400):
            window.observe_latency(4 * MS)
        assert detector.evaluate(window, T0 + (second + 1) * NS_PER_S, 30, 10_000) == []


# --- the middleware in front of a real venue ----------------------------------------


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[VenueRuntime]:
    runtime = VenueRuntime(tmp_path / "venue", limits=RuntimeLimits(queue_depth_max=10)).start()
    for command in setup_commands(accounts=5):
        runtime.submit_and_wait(command)
    yield runtime
    runtime.stop()


def guard_of(client: TestClient) -> LoadGuard:
    """The load guard of the venue app behind ``client``."""
    app = client.app
    assert isinstance(app, FastAPI)
    guard = venue_context_of(app).load_guard
    assert isinstance(guard, LoadGuard)
    return guard


def venue_client(runtime: VenueRuntime, settings: SheddingSettings,
                 signals: list[Signal] | None = None,
                 clock: ManualClock | None = None) -> TestClient:
    app = create_venue_app(runtime, TOKEN, load_shedding=settings)
    guard = venue_context_of(app).load_guard
    guard.outbox = SignalOutbox(signals.append) if signals is not None else None
    if clock is not None:
        guard.clock = clock
    return TestClient(app)


def test_orders_over_the_fair_share_get_429_and_never_reach_the_journal(
    runtime: VenueRuntime,
) -> None:
    settings = SheddingSettings(order_capacity_per_s=5, client_burst=2, capacity_burst_ms=100)
    clock = ManualClock()
    with venue_client(runtime, settings, clock=clock) as client:
        answers = [client.post(ORDERS, json=order(1, f"c{n}")) for n in range(10)]
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) >= 1 and statuses.count(429) >= 5
    for answer in answers:
        if answer.status_code == 429:
            assert answer.json()["error"]["code"] == "over_fair_share"
            assert int(answer.headers["Retry-After"]) >= 1
    refused = [f"c{n}" for n, a in enumerate(answers) if a.status_code == 429]
    for client_order_id in refused:  # placing it now is new, not a repeat: it never got in
        result = runtime.submit_and_wait(PlaceOrder(WORKLOAD_MARKET, 1, Side.BUY, 1, 99_000,
                                                    client_order_id=client_order_id))
        assert any(type(e) is OrderAccepted for e in result.events)


def test_a_stalled_venue_gets_503_with_retry_after_while_health_still_answers(
    runtime: VenueRuntime,
) -> None:
    gate, holding = threading.Event(), threading.Event()

    def hold(_: object) -> None:
        holding.set()
        gate.wait(10)

    reader = threading.Thread(target=runtime.read, args=(hold,))
    with venue_client(runtime, SheddingSettings(queue_shed_bps=5_000)) as client:
        reader.start()
        holding.wait(5)
        stuck = [runtime.submit(Heartbeat())]  # the venue thread takes it, then waits
        deadline = time.monotonic() + 5
        while runtime.status().queue_depth:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        stuck += [runtime.submit(Heartbeat()) for _ in range(6)]  # 6 of 10 stay queued
        try:
            refused = client.post(ORDERS, json=order(2, "while-stalled"))
            health = client.get("/v1/health")
        finally:
            gate.set()
            reader.join(5)
        for future in stuck:
            future.result(5)
        assert client.post(ORDERS, json=order(2, "after-stall")).status_code == 201
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"
    assert health.status_code == 200


def test_a_flooding_api_key_is_rate_limited_then_blocked_until_the_block_expires(
    runtime: VenueRuntime,
) -> None:
    settings = SheddingSettings(flood=FloodSettings(rate_per_s=1, burst=3, refusals_to_block=4,
                                                    window_s=10, block_s=60))
    signals: list[Signal] = []
    clock = ManualClock()
    key = {"X-API-Key": "flooding-key"}
    with venue_client(runtime, settings, signals, clock) as client:
        codes = [client.get("/v1/markets", headers=key).status_code for _ in range(7)]
        blocked = client.get("/v1/markets", headers=key)
        other = client.get("/v1/markets", headers={"X-API-Key": "polite-key"})
        health = client.get("/v1/health", headers=key)
        clock.advance_ms(61_000)
        guard_of(client).close_window()
        after = client.get("/v1/markets", headers=key)
        outbox = guard_of(client).outbox
        assert outbox is not None
        outbox.flush()
    assert codes == [200, 200, 200, 429, 429, 429, 429]
    assert blocked.status_code == 429 and blocked.json()["error"]["code"] == "client_blocked"
    assert blocked.headers["Retry-After"] == "60"
    assert other.status_code == 200 and health.status_code == 200
    assert after.status_code == 200
    flood = [s for s in signals if s.name == "security.request_flood"]
    assert [s.resolved for s in flood] == [False, True]
    assert flood[0].labels["client"].startswith("api_key:")
    assert "flooding-key" not in repr(flood[0])  # the key itself is never written down
    assert flood[0].details["block_s"] == "60"


def test_admin_brakes_pass_even_for_a_blocked_client(runtime: VenueRuntime) -> None:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with venue_client(runtime, SheddingSettings()) as client:
        guard = guard_of(client)
        key = "api_key:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:16]
        assert guard.flood is not None
        guard.flood.block(key, 60, "drill", guard.clock())
        read = client.get("/v1/markets", headers=admin)
        halt = client.post(f"/v1/admin/markets/{WORKLOAD_MARKET}/state", headers=admin,
                           json={"state": "halted", "actor": "ops", "reason": "flood drill"})
    assert read.status_code == 429 and read.json()["error"]["code"] == "client_blocked"
    assert halt.status_code == 200


# --- the flood test: a real venue process at several times its capacity --------------

SERVER = textwrap.dedent("""
    import sys
    import uvicorn
    from haltguard.gateway.limits import SheddingSettings
    from haltguard.app.venue_app import create_venue_app
    from haltguard.gateway.runtime import RuntimeLimits, VenueRuntime
    from haltguard.venue.workload import setup_commands

    data_dir, port, capacity, accounts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
        int(sys.argv[4])
    runtime = VenueRuntime(data_dir, limits=RuntimeLimits(queue_depth_max=2_000)).start()
    for future in [runtime.submit(c) for c in setup_commands(accounts=accounts)]:
        future.result()
    settings = SheddingSettings(order_capacity_per_s=capacity, client_burst=5)
    app = create_venue_app(runtime, "flood-admin", load_shedding=settings)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
""")

CAPACITY_PER_S = 80
MODEST_ACCOUNTS = 8
GREEDY_ACCOUNT = MODEST_ACCOUNTS + 1
GREEDY_THREADS = 6
FLOOD_S = 3.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class FloodRecord:
    acked: list[tuple[int, str]] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    admitted_by_account: Counter[int] = field(default_factory=Counter)
    offered_by_account: Counter[int] = field(default_factory=Counter)
    bad_shed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    health_failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def flood_client(url: str, account: int, thread: int, stop_at: float, record: FloodRecord) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for n in range(1_000_000):
            if time.monotonic() >= stop_at:
                return
            client_order_id = f"{account}-{thread}-{n}"
            try:
                answer = client.post(ORDERS, json=order(account, client_order_id))
            except httpx.HTTPError as exc:
                with record.lock:
                    record.errors.append(repr(exc))
                return
            with record.lock:
                record.statuses[answer.status_code] += 1
                record.offered_by_account[account] += 1
                if answer.status_code == 201:
                    record.acked.append((account, client_order_id))
                    record.admitted_by_account[account] += 1
                elif answer.status_code in (429, 503):
                    if int(answer.headers.get("Retry-After", "0")) < 1:
                        record.bad_shed.append(answer.text)
                else:
                    record.bad_shed.append(f"{answer.status_code} {answer.text}")


def health_prober(url: str, stop_at: float, record: FloodRecord) -> None:
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            try:
                answer = client.get("/v1/health")
            except httpx.HTTPError as exc:
                record.health_failures.append(repr(exc))
                continue
            record.health_ms.append((time.perf_counter() - start) * 1000)
            if answer.status_code != 200:
                record.health_failures.append(str(answer.status_code))
            time.sleep(0.05)


@pytest.mark.slow
def test_a_flood_at_several_times_capacity_is_shed_fairly_and_loses_no_acked_order(
    tmp_path: Path,
) -> None:
    data_dir, port = tmp_path / "venue", free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(data_dir), str(port), str(CAPACITY_PER_S),
         str(GREEDY_ACCOUNT)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    record = FloodRecord()
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the venue did not start within 30 s"
            time.sleep(0.05)
        start = time.monotonic()
        stop_at = start + FLOOD_S
        threads = [threading.Thread(target=flood_client, args=(url, a, 0, stop_at, record))
                   for a in range(1, MODEST_ACCOUNTS + 1)]
        threads += [threading.Thread(target=flood_client,
                                     args=(url, GREEDY_ACCOUNT, t, stop_at, record))
                    for t in range(GREEDY_THREADS)]
        threads.append(threading.Thread(target=health_prober, args=(url, stop_at, record)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(FLOOD_S + 15)
        elapsed = time.monotonic() - start
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
    finally:
        process.send_signal(os_signal.SIGKILL)  # no clean shutdown: acks must already be durable
        process.wait(10)

    offered = sum(record.statuses.values())
    admitted = len(record.acked)
    assert record.errors == [] and record.bad_shed == []
    assert offered >= 3 * CAPACITY_PER_S * FLOOD_S, f"only {offered} requests offered"
    assert record.statuses[429] > 0
    bursts = CAPACITY_PER_S // 2 + (MODEST_ACCOUNTS + 1) * 5  # venue's and clients' bursts
    assert admitted <= CAPACITY_PER_S * elapsed + bursts + 20
    # Fairness: every client that asked for more than its share got at least most of it,
    # and the greedy account (six threads) was refused more often than any modest one.
    share = CAPACITY_PER_S / (MODEST_ACCOUNTS + 1) * FLOOD_S
    ratios = {}
    for account in range(1, GREEDY_ACCOUNT + 1):
        asked, got = record.offered_by_account[account], record.admitted_by_account[account]
        assert got >= 0.7 * min(asked, share), (account, asked, got, share)
        ratios[account] = got / asked
    assert ratios[GREEDY_ACCOUNT] < min(ratios[a] for a in range(1, MODEST_ACCOUNTS + 1))
    assert record.health_failures == [] and len(record.health_ms) >= 10
    assert max(record.health_ms) < 1_000
    assert "haltguard_venue_requests_shed_total" in metrics

    restarted = VenueRuntime(data_dir).start()
    try:
        for account, client_order_id in record.acked:
            retry = PlaceOrder(WORKLOAD_MARKET, account, Side.BUY, 1, 99_000,
                               client_order_id=client_order_id)
            events = restarted.submit_and_wait(retry).events
            assert [type(e) for e in events] == [OrderRepeated], client_order_id
    finally:
        restarted.stop()


# --- the in-flight bound ---------------------------------------------------------------


def test_a_slow_window_shrinks_the_in_flight_bound_to_what_the_venue_answers_in_time() -> None:
    bound = InFlightBound(SheddingSettings(order_capacity_per_s=1_000, ack_p99_ms_max=500,
                                           orders_in_flight_min=32))
    assert bound.limit == 500  # capacity x the latency bound
    # answered in the window x half the bound: the p99 of what waits stays within it
    assert bound.adapt(answered=240, span_ns=NS_PER_S, p99_ms=2_000, hit_limit=False) == 60
    assert bound.adapt(answered=10, span_ns=NS_PER_S, p99_ms=3_000, hit_limit=True) == 32
    assert bound.adapt(answered=200, span_ns=NS_PER_S, p99_ms=300, hit_limit=True) == 32


def test_a_backlog_the_venue_cannot_answer_in_time_shrinks_the_bound_before_latency_shows(
) -> None:
    bound = InFlightBound(SheddingSettings(order_capacity_per_s=1_000, ack_p99_ms_max=500,
                                           orders_in_flight_min=32))
    assert bound.adapt(answered=200, span_ns=NS_PER_S, p99_ms=20, hit_limit=False,
                       in_flight=400) == 50
    assert bound.adapt(answered=3, span_ns=NS_PER_S, p99_ms=None, hit_limit=False,
                       in_flight=20) == 50  # a few honest orders in flight: no change


def test_a_fast_window_that_hit_the_bound_doubles_it_up_to_capacity_times_the_bound() -> None:
    bound = InFlightBound(SheddingSettings(order_capacity_per_s=1_000, ack_p99_ms_max=500,
                                           orders_in_flight_min=32))
    bound.adapt(answered=10, span_ns=NS_PER_S, p99_ms=5_000, hit_limit=False)
    assert bound.limit == 32
    assert bound.adapt(answered=400, span_ns=NS_PER_S, p99_ms=100, hit_limit=False) == 32
    limits = [bound.adapt(answered=400, span_ns=NS_PER_S, p99_ms=100, hit_limit=True)
              for _ in range(6)]
    assert limits == [64, 128, 256, 500, 500, 500]


def test_orders_beyond_the_in_flight_bound_get_503_until_one_is_answered() -> None:
    settings = SheddingSettings(order_capacity_per_s=1_000, ack_p99_ms_max=1_000,
                                orders_in_flight_min=3)
    guard = LoadGuard(settings, lambda: (0, 1_000), clock=ManualClock())
    assert guard.in_flight.adapt(answered=3, span_ns=NS_PER_S, p99_ms=2_000,
                                 hit_limit=False) == 3  # a venue answering 3 orders a second
    admitted = [guard.admit_order(f"account:{n}") for n in range(4)]
    assert [a.status for a in admitted] == [0, 0, 0, 503]
    assert admitted[-1].code == "overloaded" and admitted[-1].retry_after_s == 1
    guard.order_answered(5 * 1_000_000)
    assert guard.admit_order("account:9").admitted
    assert guard.window.in_flight_refused == 1 and guard.window.shed_503 == 1
