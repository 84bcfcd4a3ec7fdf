"""Health monitors: thresholds and recovery, real HTTP/TCP targets, the scheduler's bounds,
and the venue-side checks against a real runtime and journal."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from haltguard.detection.monitors import (
    HEALTH_FAILED,
    CheckResult,
    ConfigError,
    HttpCheck,
    Hysteresis,
    Monitor,
    MonitorScheduler,
    MonitorSettings,
    ProcessCheck,
    RejectRateProbe,
    TcpCheck,
    Transition,
    add_venue_monitors,
    consumer_lag_probe,
    fsync_latency_probe,
    load_monitor_config,
    queue_depth_probe,
    venue_running_probe,
)
from haltguard.detection.signals import Signal
from haltguard.gateway.runtime import OverloadedError, RuntimeLimits, VenueRuntime
from haltguard.journal import JournalReader
from haltguard.venue.commands import AddAsset, Heartbeat
from haltguard.venue.markets import Asset

NOW_NS = 1_767_225_600 * 1_000_000_000


class Target:
    """A real HTTP server on loopback whose answer the test switches."""

    def __init__(self) -> None:
        self.status = 200
        self.delay_s = 0.0
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(target.delay_s)
                self.send_response(target.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/health"

    def __enter__(self) -> Target:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[Target]:
    with Target() as server:
        yield server


def scripted(results: list[bool]) -> ProcessCheck:
    remaining = list(results)
    return ProcessCheck(lambda: CheckResult(remaining.pop(0), "scripted", Decimal(7)))


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --- thresholds ----------------------------------------------------------------------


def test_hysteresis_raises_after_bad_in_a_row_and_clears_after_good_in_a_row() -> None:
    state = Hysteresis(to_raise=3, to_clear=2)
    seen = [state.observe(bad) for bad in (True, True, False, True, True, True, True, False,
                                           True, False, False)]
    assert seen == [None, None, None, None, None, Transition.RAISED, None, None, None, None,
                    Transition.CLEARED]


def test_monitor_fires_at_the_failure_threshold_keeps_counting_and_resolves_once() -> None:
    monitor = Monitor("venue", "http", scripted([True, False, False, False, False, True, True]),
                      MonitorSettings(interval_ms=1_000, timeout_ms=500, failures_to_fail=3,
                                      successes_to_recover=2))
    signals = [monitor.record(monitor.check.run(1), NOW_NS + i) for i in range(7)]
    emitted = [s for s in signals if s is not None]
    assert [(s.value, s.resolved) for s in emitted] == [
        (Decimal(3), False), (Decimal(4), False), (Decimal(0), True),
    ]
    first = emitted[0]
    assert first.name == HEALTH_FAILED
    assert first.labels == {"component": "venue", "check": "http", "kind": "process"}
    assert first.details["failures_to_fail"] == "3"
    assert first.details["measured"] == "7"
    assert monitor.healthy


def test_isolated_failures_between_successes_raise_nothing() -> None:
    pattern = [True, False, True, False, False, True, False, True] * 3
    monitor = Monitor("journal", "fsync", scripted(pattern),
                      MonitorSettings(failures_to_fail=3))
    assert all(monitor.record(monitor.check.run(1), NOW_NS) is None for _ in pattern)
    assert monitor.failures == 12


# --- real targets --------------------------------------------------------------------


def test_http_check_passes_on_2xx_and_fails_on_5xx_and_on_slowness(target: Target) -> None:
    assert HttpCheck(target.url).run(2).ok
    target.status = 503
    failed = HttpCheck(target.url).run(2)
    assert not failed.ok and "answered 503" in failed.detail
    target.status = 200
    target.delay_s = 0.05
    slow = HttpCheck(target.url, latency_ms_max=10).run(2)
    assert not slow.ok and slow.value >= 10 and slow.threshold == "<= 10 ms"


def test_http_check_fails_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = HttpCheck(f"http://127.0.0.1:{port}/").run(0.5)
    assert not result.ok and "failed" in result.detail


def test_tcp_check_accepts_a_listening_port_and_refuses_a_closed_one() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert TcpCheck("127.0.0.1", port).run(1).ok
    refused = TcpCheck("127.0.0.1", port).run(0.5)
    assert not refused.ok and "refused" in refused.detail


# --- the scheduler -------------------------------------------------------------------


def test_scheduler_reports_a_component_down_then_recovered(target: Target) -> None:
    signals: list[Signal] = []
    settings = MonitorSettings(interval_ms=300, timeout_ms=300, failures_to_fail=2,
                               successes_to_recover=2)
    scheduler = MonitorScheduler(signals.append)
    monitor = scheduler.add("status_page", "http", HttpCheck(target.url), settings)
    with scheduler:
        wait_for(lambda: monitor.runs >= 2)
        assert signals == []
        target.status = 500
        wait_for(lambda: any(not s.resolved for s in signals))
        target.status = 200
        wait_for(lambda: any(s.resolved for s in signals))
    failed = next(s for s in signals if not s.resolved)
    assert failed.labels["component"] == "status_page"
    assert "answered 500" in failed.details["detail"]
    assert signals[-1].resolved and signals[-1].labels == failed.labels


def test_a_hanging_check_times_out_counts_as_failure_and_never_runs_twice() -> None:
    release = threading.Event()
    running = []
    concurrent_max = [0]
    lock = threading.Lock()

    def hang() -> CheckResult:
        with lock:
            running.append(1)
            concurrent_max[0] = max(concurrent_max[0], len(running))
        release.wait(5)
        with lock:
            running.pop()
        return CheckResult(True, "late")

    signals: list[Signal] = []
    settings = MonitorSettings(interval_ms=20, timeout_ms=10, failures_to_fail=3)
    scheduler = MonitorScheduler(signals.append, workers_max=2)
    scheduler.add("database", "select-1", ProcessCheck(hang), settings)
    with scheduler:
        wait_for(lambda: len(signals) >= 2)
        release.set()
    assert concurrent_max[0] == 1
    assert signals[0].value == 3
    assert signals[0].details["detail"] in {"no answer within 10 ms",
                                            "the previous run is still hanging past its timeout"}


def test_scheduler_refuses_duplicates_and_more_monitors_than_its_bound() -> None:
    scheduler = MonitorScheduler(lambda _: None, monitors_max=2)
    check = ProcessCheck(lambda: CheckResult(True, ""))
    scheduler.add("venue", "a", check)
    with pytest.raises(ValueError, match="already exists"):
        scheduler.add("venue", "a", check)
    scheduler.add("venue", "b", check)
    with pytest.raises(ValueError, match="at most 2"):
        scheduler.add("venue", "c", check)


# --- the venue side ------------------------------------------------------------------


def test_venue_running_probe_fails_once_the_runtime_stops(tmp_path: Path) -> None:
    runtime = VenueRuntime(tmp_path / "venue").start()
    probe = venue_running_probe(runtime.status)
    assert probe().ok
    runtime.stop()
    stopped = probe()
    assert not stopped.ok and "not running" in stopped.detail


def _hold_venue_thread(runtime: VenueRuntime) -> tuple[threading.Event, threading.Thread]:
    """Block the venue thread inside a read so commands stay queued (no mock: the real lock)."""
    gate, holding = threading.Event(), threading.Event()

    def hold(_: object) -> None:
        holding.set()
        gate.wait(10)

    reader = threading.Thread(target=runtime.read, args=(hold,))
    reader.start()
    holding.wait(5)
    runtime.submit(Heartbeat())  # the venue thread takes it and waits for the state lock
    wait_for(lambda: runtime.status().queue_depth == 0)
    return gate, reader


def test_queue_depth_and_reject_rate_probes_see_a_stalled_venue(tmp_path: Path) -> None:
    runtime = VenueRuntime(tmp_path / "venue", limits=RuntimeLimits(queue_depth_max=4)).start()
    depth = queue_depth_probe(runtime.status, depth_bps_max=5_000)
    rejects = RejectRateProbe(runtime.status, reject_bps_max=1_000, attempts_min=5)
    gate, reader = _hold_venue_thread(runtime)
    try:
        futures = [runtime.submit(Heartbeat()) for _ in range(4)]
        refused = 0
        for _ in range(6):
            try:
                runtime.submit(Heartbeat())
            except OverloadedError:
                refused += 1
        full = depth()
        assert not full.ok and full.value == 10_000
        assert full.detail == "4 of 4 queued (10000 bps)"
        rate = rejects()
        assert refused == 6
        assert not rate.ok and rate.value == 10_000
        assert rate.detail.startswith("6 of 6 commands refused as overload")
    finally:
        gate.set()
        reader.join(5)
    for future in futures:
        future.result(5)
    assert depth().ok
    runtime.stop()


def test_fsync_probe_times_a_real_fsync_and_fails_on_a_missing_directory(tmp_path: Path) -> None:
    result = fsync_latency_probe(tmp_path, latency_ms_max=5_000)()
    assert result.ok and result.threshold == "<= 5000 ms"
    assert (tmp_path / ".health-fsync-probe").exists()
    missing = ProcessCheck(fsync_latency_probe(tmp_path / "gone", 5_000)).run(1)
    assert not missing.ok and "raised" in missing.detail


def test_consumer_lag_probe_follows_a_real_journal_reader(tmp_path: Path) -> None:
    runtime = VenueRuntime(tmp_path / "venue").start()
    for index in range(30):
        runtime.submit_and_wait(AddAsset(Asset(f"A{index}", 2)))
    reader = JournalReader(tmp_path / "venue")
    probe = consumer_lag_probe(lambda: runtime.status().last_seq,
                               lambda: reader.next_seq - 1, lag_max=10)
    behind = probe()
    assert not behind.ok and behind.value == 30 and behind.threshold == "<= 10 commands"
    while reader.read_available():
        pass
    assert probe().ok and probe().value == 0
    reader.close()
    runtime.stop()


# --- configuration -------------------------------------------------------------------


def test_monitor_config_builds_http_and_tcp_monitors() -> None:
    specs = load_monitor_config(
        "monitors:\n"
        "  - component: status_page\n"
        "    name: http\n"
        "    http: {url: 'https://status.example.com/', latency_ms_max: 2000}\n"
        "    interval_ms: 10000\n"
        "    timeout_ms: 3000\n"
        "  - component: database\n"
        "    name: tcp\n"
        "    tcp: {host: db.internal, port: 5432}\n"
        "    failures_to_fail: 5\n"
    )
    assert [(s.component, s.name) for s in specs] == [("status_page", "http"),
                                                      ("database", "tcp")]
    assert specs[0].check == HttpCheck("https://status.example.com/", latency_ms_max=2000)
    assert specs[0].settings.interval_ms == 10_000
    assert specs[1].check == TcpCheck("db.internal", 5432)
    assert specs[1].settings.failures_to_fail == 5


@pytest.mark.parametrize(("text", "message"), [
    ("monitors:\n  - component: db\n    name: tcp\n    tcp: {host: x, port: 99999}\n",
     "line 4: 'port' must be 1..65535"),
    ("monitors:\n  - component: db\n    name: x\n    http: {url: u}\n    tcp: {host: x}\n",
     "line 2: give exactly one check"),
    ("monitors:\n  - component: db\n    name: x\n    http: {url: u}\n    timeout_ms: 9999\n"
     "    interval_ms: 1000\n", "line 2: timeout_ms must be 1..interval_ms"),
    ("monitors:\n  - component: db\n    nmae: x\n", "line 2: unknown key 'nmae'"),
    ("monitors: [\n", "line 2"),
])
def test_a_bad_monitor_config_is_refused_naming_line_and_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_monitor_config(text)


def test_the_standard_venue_monitors_stay_quiet_on_a_healthy_venue_and_catch_a_stop(
    tmp_path: Path,
) -> None:
    runtime = VenueRuntime(tmp_path / "venue").start()
    signals: list[Signal] = []
    scheduler = MonitorScheduler(signals.append)
    # Fast checks, but limits a loaded CI machine's fsync cannot trip: this test is about the
    # venue stopping, not about disk latency.
    fast = MonitorSettings(interval_ms=200, timeout_ms=200, failures_to_fail=2)
    monitors = add_venue_monitors(
        scheduler, runtime.status, tmp_path / "venue", settings=fast, fsync_ms_max=5_000
    )
    with scheduler:
        wait_for(lambda: all(m.runs >= 3 for m in monitors), timeout_s=15.0)
        assert signals == [] and all(m.healthy for m in monitors)
        runtime.stop()
        wait_for(lambda: bool(signals), timeout_s=15.0)
    assert (signals[0].labels["component"], signals[0].labels["check"]) == ("venue", "runtime")
