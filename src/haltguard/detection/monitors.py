"""Health monitors: is each component (venue, journal, database, HTTP APIs, status page) up?

A :class:`Monitor` runs one :class:`Check` (HTTP, TCP or in-process) every ``interval_ms``
with a ``timeout_ms``, and turns results into ``health.failed`` signals with hysteresis:
the signal (value: consecutive failures) fires after ``failures_to_fail`` failures in a row
and resolves (``resolved=True``) after ``successes_to_recover`` successes in a row, so one
lost packet opens nothing and a flapping check opens one incident, not fifty.

:class:`MonitorScheduler` is one thread that starts due checks on a small bounded pool and
collects their results; a check that hangs past its timeout counts as a failure and is never
started twice at once. Signals go to a sink (normally ``haltguard.detection.service.submit``).

Besides reachability, the in-process checks here watch what stops a venue before it falls
over: the journal's fsync latency, how far a journal consumer lags, the input queue's depth
and the share of commands refused as overload (from :meth:`VenueRuntime.status`).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx
import yaml
from sqlalchemy import Engine, text

from haltguard.common.clock import NsClock
from haltguard.common.units import NS_PER_MS
from haltguard.detection import service
from haltguard.detection.service import DetectionUnavailableError
from haltguard.detection.signals import Signal
from haltguard.gateway.load_signals import RuntimeStatusLike

if TYPE_CHECKING:
    from haltguard.detection.metrics import DetectionMetrics

log = logging.getLogger(__name__)


SignalSink = Callable[[Signal], object]
"""Where signals go; normally :func:`haltguard.detection.service.submit`."""

HEALTH_FAILED = "health.failed"
MONITORS_MAX = 64
WORKERS_MAX = 4
TICK_S_MAX = 0.5  # the scheduler looks at its monitors at least this often


def service_sink(signal: Signal) -> object:
    """Deliver to the detection service."""
    return service.submit(signal)


def deliver(sink: SignalSink, signal: Signal) -> None:
    """Hand ``signal`` to ``sink``; a failing sink is logged, never allowed to stop a
    monitor or a detector (the next observation tries again)."""
    try:
        sink(signal)
    except Exception as exc:
        if isinstance(exc, DetectionUnavailableError):
            log.warning("signal %s %s not delivered: %s", signal.name, signal.labels, exc)
        else:
            log.exception("could not deliver signal %s %s", signal.name, signal.labels)


class Transition(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


class Hysteresis:
    """Raise after ``to_raise`` bad observations in a row, clear after ``to_clear`` good ones.

    Pure and tiny so every detector uses the same rule and the tests check it once.
    """

    def __init__(self, to_raise: int, to_clear: int) -> None:
        if to_raise < 1 or to_clear < 1:
            raise ValueError("to_raise and to_clear must be at least 1")
        self.to_raise = to_raise
        self.to_clear = to_clear
        self.raised = False
        self.bad_in_row = 0
        self.good_in_row = 0

    def observe(self, bad: bool) -> Transition | None:
        if bad:
            self.bad_in_row += 1
            self.good_in_row = 0
            if not self.raised and self.bad_in_row >= self.to_raise:
                self.raised = True
                return Transition.RAISED
            return None
        self.good_in_row += 1
        self.bad_in_row = 0
        if self.raised and self.good_in_row >= self.to_clear:
            self.raised = False
            return Transition.CLEARED
        return None


# --- checks --------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """One run of a check. ``value`` is what was measured (latency in ms, lag in commands,
    depth in basis points ...) and ``threshold`` what it was compared with, both as text a
    person reads in the incident timeline."""

    ok: bool
    detail: str
    value: Decimal = Decimal(0)
    threshold: str = ""


class Check(Protocol):
    """Something a monitor runs: ``kind`` is ``http``, ``tcp`` or ``process``."""

    @property
    def kind(self) -> str: ...

    def run(self, timeout_s: float) -> CheckResult: ...


def _elapsed_ms(start_ns: int) -> Decimal:
    return Decimal(time.perf_counter_ns() - start_ns) / NS_PER_MS


@dataclass(eq=True)
class HttpCheck:
    """GET ``url``; healthy if the status is in ``status_ok`` and the answer came within
    ``latency_ms_max`` (0: any time within the timeout).

    Each run opens a new connection (no keep-alive), so a server that stopped accepting
    connections fails the check; the HTTP client itself is built once, since building one
    costs tens of milliseconds of CPU.
    """

    url: str
    status_ok: frozenset[int] = frozenset(range(200, 300))
    latency_ms_max: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    kind: str = "http"
    _client: httpx.Client | None = field(default=None, init=False, repr=False, compare=False)

    def run(self, timeout_s: float) -> CheckResult:
        if self._client is None:
            self._client = httpx.Client(
                headers=dict(self.headers), limits=httpx.Limits(max_keepalive_connections=0)
            )
        start = time.perf_counter_ns()
        try:
            response = self._client.get(self.url, timeout=timeout_s)
        except httpx.HTTPError as exc:
            return CheckResult(False, f"GET {self.url} failed: {exc!r}", _elapsed_ms(start))
        latency_ms = _elapsed_ms(start).quantize(Decimal("0.1"))
        if response.status_code not in self.status_ok:
            return CheckResult(
                False, f"GET {self.url} answered {response.status_code}", latency_ms,
                "a 2xx status" if self.status_ok == frozenset(range(200, 300)) else "",
            )
        if self.latency_ms_max and latency_ms > self.latency_ms_max:
            return CheckResult(
                False, f"GET {self.url} took {latency_ms} ms", latency_ms,
                f"<= {self.latency_ms_max} ms",
            )
        return CheckResult(True, f"GET {self.url} answered {response.status_code}", latency_ms)


@dataclass(frozen=True)
class TcpCheck:
    """Open a TCP connection to ``host:port`` and close it."""

    host: str
    port: int
    kind: str = "tcp"

    def run(self, timeout_s: float) -> CheckResult:
        start = time.perf_counter_ns()
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout_s):
                pass
        except OSError as exc:
            return CheckResult(
                False, f"TCP {self.host}:{self.port} refused: {exc}", _elapsed_ms(start)
            )
        latency_ms = _elapsed_ms(start).quantize(Decimal("0.1"))
        return CheckResult(True, f"TCP {self.host}:{self.port} accepted", latency_ms)


@dataclass(frozen=True)
class ProcessCheck:
    """An in-process check: ``probe`` returns a result (an exception is a failure)."""

    probe: Callable[[], CheckResult]
    kind: str = "process"

    def run(self, timeout_s: float) -> CheckResult:
        try:
            return self.probe()
        except Exception as exc:
            return CheckResult(False, f"the check raised {exc!r}")


StatusSource = Callable[[], RuntimeStatusLike]


def venue_running_probe(status: StatusSource) -> Callable[[], CheckResult]:
    """Healthy while the venue thread runs and has not fail-stopped."""

    def probe() -> CheckResult:
        state = status()
        if state.failure:
            return CheckResult(False, f"the venue fail-stopped: {state.failure}")
        if not state.running:
            return CheckResult(False, "the venue runtime is not running")
        return CheckResult(True, "the venue runtime is running")

    return probe


def queue_depth_probe(status: StatusSource, depth_bps_max: int) -> Callable[[], CheckResult]:
    """Healthy while the input queue is below ``depth_bps_max`` basis points of its bound."""
    if not 0 < depth_bps_max <= 10_000:
        raise ValueError(f"depth_bps_max must be 1..10000, got {depth_bps_max}")

    def probe() -> CheckResult:
        state = status()
        depth_bps = state.queue_depth * 10_000 // max(1, state.queue_depth_max)
        detail = f"{state.queue_depth} of {state.queue_depth_max} queued ({depth_bps} bps)"
        return CheckResult(depth_bps < depth_bps_max, detail, Decimal(depth_bps),
                           f"< {depth_bps_max} bps of the queue bound")

    return probe


class RejectRateProbe:
    """Healthy while the share of commands refused as overload since the previous run stays
    below ``reject_bps_max``. Rates over fewer than ``attempts_min`` attempts are not judged:
    two refusals out of three tries say nothing."""

    def __init__(self, status: StatusSource, reject_bps_max: int, attempts_min: int = 100):
        if not 0 < reject_bps_max <= 10_000:
            raise ValueError(f"reject_bps_max must be 1..10000, got {reject_bps_max}")
        self.status = status
        self.reject_bps_max = reject_bps_max
        self.attempts_min = attempts_min
        first = status()
        self._last = (first.commands, first.overloads)

    def __call__(self) -> CheckResult:
        state = self.status()
        commands = state.commands - self._last[0]
        overloads = state.overloads - self._last[1]
        self._last = (state.commands, state.overloads)
        attempts = commands + overloads
        threshold = f"< {self.reject_bps_max} bps of attempts"
        if attempts < self.attempts_min:
            return CheckResult(True, f"{attempts} attempts since the last check", Decimal(0),
                               threshold)
        reject_bps = overloads * 10_000 // attempts
        detail = f"{overloads} of {attempts} commands refused as overload ({reject_bps} bps)"
        return CheckResult(reject_bps < self.reject_bps_max, detail, Decimal(reject_bps),
                           threshold)


def fsync_latency_probe(directory: Path, latency_ms_max: int) -> Callable[[], CheckResult]:
    """Write and fsync a small probe file next to the journal and time it.

    The journal's own fsyncs happen on the venue thread; timing a probe on the same disk
    measures what the next group commit would wait for without touching the journal.
    """
    probe_path = Path(directory) / ".health-fsync-probe"
    payload = b"haltguard fsync probe\n" * 8

    def probe() -> CheckResult:
        start = time.perf_counter_ns()
        fd = os.open(probe_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        latency_ms = _elapsed_ms(start).quantize(Decimal("0.01"))
        return CheckResult(
            latency_ms <= latency_ms_max, f"fsync in {directory} took {latency_ms} ms",
            latency_ms, f"<= {latency_ms_max} ms",
        )

    return probe


def consumer_lag_probe(
    durable_seq: Callable[[], int], consumer_seq: Callable[[], int], lag_max: int
) -> Callable[[], CheckResult]:
    """Healthy while a journal consumer (status page, incidents, a replica) is at most
    ``lag_max`` commands behind the journal's durable end."""

    def probe() -> CheckResult:
        durable, consumed = durable_seq(), consumer_seq()
        lag = max(0, durable - consumed)
        detail = f"consumer at seq {consumed}, journal at seq {durable}: {lag} behind"
        return CheckResult(lag <= lag_max, detail, Decimal(lag), f"<= {lag_max} commands")

    return probe


def database_probe(engine: Engine) -> Callable[[], CheckResult]:
    """Healthy while the operations database answers ``SELECT 1``."""

    def probe() -> CheckResult:
        start = time.perf_counter_ns()
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        latency_ms = _elapsed_ms(start).quantize(Decimal("0.1"))
        return CheckResult(True, f"{engine.dialect.name} answered in {latency_ms} ms",
                           latency_ms)

    return probe


# --- monitors ------------------------------------------------------------------------


@dataclass(frozen=True)
class MonitorSettings:
    """How often, how patiently and how sure before a component counts as down (or up)."""

    interval_ms: int = 5_000
    timeout_ms: int = 2_000
    failures_to_fail: int = 3
    successes_to_recover: int = 2

    def __post_init__(self) -> None:
        if not 10 <= self.interval_ms <= 3_600_000:
            raise ValueError(f"interval_ms must be 10..3600000, got {self.interval_ms}")
        if not 1 <= self.timeout_ms <= self.interval_ms:
            raise ValueError(
                f"timeout_ms must be 1..interval_ms ({self.interval_ms}), got {self.timeout_ms}"
            )
        if not 1 <= self.failures_to_fail <= 100 or not 1 <= self.successes_to_recover <= 100:
            raise ValueError("failures_to_fail and successes_to_recover must be 1..100")


@dataclass
class Monitor:
    """One check of one component and its failure state; :meth:`record` is pure."""

    component: str
    name: str
    check: Check
    settings: MonitorSettings = field(default_factory=MonitorSettings)
    state: Hysteresis = field(init=False)
    last: CheckResult | None = None
    runs: int = 0
    failures: int = 0

    def __post_init__(self) -> None:
        self.state = Hysteresis(self.settings.failures_to_fail, self.settings.successes_to_recover)

    @property
    def healthy(self) -> bool:
        return not self.state.raised

    def record(self, result: CheckResult, now_ns: int) -> Signal | None:
        """Count ``result``; the signal to emit, if any.

        ``health.failed`` carries the number of consecutive failures as its value: it is
        emitted when that number reaches ``failures_to_fail`` and again on every further
        failure (so a rule with a higher threshold still sees it), and once with
        ``resolved=True`` when ``successes_to_recover`` successes in a row end it. What was
        measured (latency, lag, depth) and against what are in the details.
        """
        self.runs += 1
        self.failures += 0 if result.ok else 1
        self.last = result
        transition = self.state.observe(not result.ok)
        still_failing = self.state.raised and not result.ok
        if transition is None and not still_failing:
            return None
        settings = self.settings
        details = {
            "detail": result.detail,
            "measured": str(result.value),
            "failures_to_fail": str(settings.failures_to_fail),
            "successes_to_recover": str(settings.successes_to_recover),
            "interval_ms": str(settings.interval_ms),
            "timeout_ms": str(settings.timeout_ms),
        }
        if result.threshold:
            details["threshold"] = result.threshold
        resolved = transition is Transition.CLEARED
        if resolved:
            details["consecutive_successes"] = str(self.state.good_in_row)
        return Signal(
            source="monitor",
            name=HEALTH_FAILED,
            value=Decimal(0 if resolved else self.state.bad_in_row),
            ts_ns=now_ns,
            labels={"component": self.component, "check": self.name, "kind": self.check.kind},
            details=details,
            resolved=resolved,
        )


@dataclass
class _Slot:
    monitor: Monitor
    due_s: float
    running: bool = False
    started_s: float = 0.0
    timed_out: bool = False


_Done = tuple[_Slot, CheckResult, float]  # the slot, its result, how long it took (s)


class MonitorScheduler:
    """One thread that runs every monitor on its interval, on ``workers_max`` workers.

    Each monitor has at most one run outstanding; a run past its timeout is recorded as a
    failure and its late result ignored. While a timed-out run still occupies a worker the
    monitor is not started again (it keeps failing), so a hung check cannot pile up work.
    Workers are daemon threads: a check hung for good never keeps the process from exiting.
    """

    def __init__(
        self,
        sink: SignalSink = service_sink,
        *,
        clock: NsClock = time.time_ns,
        workers_max: int = WORKERS_MAX,
        monitors_max: int = MONITORS_MAX,
        metrics: DetectionMetrics | None = None,
    ) -> None:
        if not 1 <= workers_max <= 32:
            raise ValueError(f"workers_max must be 1..32, got {workers_max}")
        self.sink = sink
        self.clock = clock
        self.workers_max = workers_max
        self.monitors_max = monitors_max
        self.metrics = metrics
        self._slots: list[_Slot] = []
        self._jobs: queue.Queue[_Slot | None] = queue.Queue()  # None: a worker stops
        self._done: queue.Queue[_Done | None] = queue.Queue()  # None: wake up to stop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.signals_emitted = 0

    def add(
        self, component: str, name: str, check: Check, settings: MonitorSettings | None = None
    ) -> Monitor:
        if self._thread is not None:
            raise RuntimeError("add monitors before start()")
        if len(self._slots) >= self.monitors_max:
            raise ValueError(f"at most {self.monitors_max} monitors per scheduler")
        if any(s.monitor.component == component and s.monitor.name == name for s in self._slots):
            raise ValueError(f"a monitor {component}/{name} already exists")
        monitor = Monitor(component, name, check, settings or MonitorSettings())
        self._slots.append(_Slot(monitor, due_s=time.monotonic()))
        return monitor

    @property
    def monitors(self) -> list[Monitor]:
        return [slot.monitor for slot in self._slots]

    def start(self) -> MonitorScheduler:
        if self._thread is not None:
            raise RuntimeError("the monitor scheduler was already started")
        for index in range(min(self.workers_max, max(1, len(self._slots)))):
            threading.Thread(target=self._work, name=f"monitor-check-{index}",
                             daemon=True).start()
        self._thread = threading.Thread(target=self._run, name="monitor-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._done.put_nowait(None)
        for _ in range(self.workers_max):
            self._jobs.put_nowait(None)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> MonitorScheduler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _work(self) -> None:
        while True:
            slot = self._jobs.get()
            if slot is None:
                return
            timeout_s = slot.monitor.settings.timeout_ms / 1000
            began = time.monotonic()
            try:
                result = slot.monitor.check.run(timeout_s)
            except Exception as exc:
                result = CheckResult(False, f"the check raised {exc!r}")
            self._done.put_nowait((slot, result, time.monotonic() - began))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._start_due()
            try:
                finished = self._done.get(timeout=self._wait_s())
            except queue.Empty:
                finished = None
            if self._stop.is_set():
                return
            if finished is not None:
                self._collect(*finished)
            self._expire_overdue()

    def _wait_s(self) -> float:
        now = time.monotonic()
        deadlines = [
            slot.started_s + slot.monitor.settings.timeout_ms / 1000
            if slot.running and not slot.timed_out else slot.due_s
            for slot in self._slots
        ]
        return min([TICK_S_MAX, *(max(0.0, d - now) for d in deadlines)])

    def _start_due(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.running or now < slot.due_s:
                continue
            slot.running = True
            slot.started_s = now
            slot.timed_out = False
            slot.due_s = now + slot.monitor.settings.interval_ms / 1000
            self._jobs.put_nowait(slot)

    def _collect(self, slot: _Slot, result: CheckResult, took_s: float) -> None:
        slot.running = False
        if slot.timed_out:
            return  # already recorded as a failure when it ran out of time
        if self.metrics is not None:
            self.metrics.check_duration.labels(slot.monitor.component, slot.monitor.name).observe(
                took_s
            )
        self._record(slot.monitor, result)

    def _expire_overdue(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if not slot.running:
                continue
            settings = slot.monitor.settings
            timeout_s = settings.timeout_ms / 1000
            if not slot.timed_out and now - slot.started_s > timeout_s:
                slot.timed_out = True
                self._record(slot.monitor, CheckResult(
                    False, f"no answer within {settings.timeout_ms} ms",
                    Decimal(settings.timeout_ms), f"<= {settings.timeout_ms} ms",
                ))
            elif slot.timed_out and now >= slot.due_s:
                slot.due_s = now + settings.interval_ms / 1000
                self._record(slot.monitor, CheckResult(
                    False, "the previous run is still hanging past its timeout",
                    Decimal(int((now - slot.started_s) * 1000)), f"<= {settings.timeout_ms} ms",
                ))

    def _record(self, monitor: Monitor, result: CheckResult) -> None:
        signal = monitor.record(result, self.clock())
        if self.metrics is not None:
            self.metrics.check_up.labels(monitor.component, monitor.name).set(int(result.ok))
        if signal is not None:
            self.signals_emitted += 1
            if self.metrics is not None:
                self.metrics.count_signal(signal)
            deliver(self.sink, signal)


def add_venue_monitors(
    scheduler: MonitorScheduler,
    status: StatusSource,
    data_dir: Path,
    *,
    settings: MonitorSettings | None = None,
    queue_depth_bps_max: int = 5_000,
    reject_bps_max: int = 100,
    fsync_ms_max: int = 50,
) -> list[Monitor]:
    """The in-process monitors of a venue running in this process: its thread, its queue,
    its overload refusals and the fsync latency of its journal's disk."""
    every = settings or MonitorSettings(interval_ms=1_000, timeout_ms=1_000)
    return [
        scheduler.add("venue", "runtime", ProcessCheck(venue_running_probe(status)), every),
        scheduler.add("venue", "queue_depth",
                      ProcessCheck(queue_depth_probe(status, queue_depth_bps_max)), every),
        scheduler.add("venue", "reject_rate",
                      ProcessCheck(RejectRateProbe(status, reject_bps_max)), every),
        scheduler.add("journal", "fsync_latency",
                      ProcessCheck(fsync_latency_probe(data_dir, fsync_ms_max)), every),
    ]


# --- configuration -------------------------------------------------------------------


class ConfigError(ValueError):
    """A configuration file refused as a whole, naming the line and what to change."""


class LinedDict(dict[str, object]):
    """A YAML mapping that remembers the line it started on, for error messages."""

    line = 0


class _LinedLoader(yaml.SafeLoader):
    pass


def _construct_lined(loader: yaml.SafeLoader, node: yaml.MappingNode) -> LinedDict:
    mapping = LinedDict({str(k): v for k, v in loader.construct_mapping(node, deep=True).items()})
    mapping.line = node.start_mark.line + 1
    return mapping


_LinedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_lined)


def load_yaml(text: str, what: str) -> object:
    """Parse ``text``; every mapping is a :class:`LinedDict`. Syntax errors name the line."""
    try:
        return yaml.load(text, Loader=_LinedLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what}{where}: {exc.problem or exc}; fix the YAML syntax") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: not valid YAML: {exc}") from None


def at_line(mapping: object, what: str) -> str:
    line = getattr(mapping, "line", 0)
    return f"{what}, line {line}" if line else what


def check_keys(mapping: LinedDict, allowed: set[str], what: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise ConfigError(
            f"{at_line(mapping, what)}: unknown key {unknown[0]!r}; allowed keys are "
            f"{', '.join(sorted(allowed))}"
        )


def mapping_at(value: object, what: str, description: str) -> LinedDict:
    if not isinstance(value, LinedDict):
        raise ConfigError(f"{what}: {description} must be a mapping (key: value lines)")
    return value


def text_at(mapping: LinedDict, key: str, what: str, *, default: str | None = None) -> str:
    value = mapping.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{at_line(mapping, what)}: {key!r} must be non-empty text")
    return value


def int_at(mapping: LinedDict, key: str, what: str, default: int) -> int:
    value = mapping.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{at_line(mapping, what)}: {key!r} must be a whole number")
    return value


def list_at(mapping: LinedDict, key: str, what: str) -> list[object]:
    value = mapping.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{at_line(mapping, what)}: {key!r} must be a list")
    return value


@dataclass(frozen=True)
class MonitorSpec:
    component: str
    name: str
    check: Check
    settings: MonitorSettings


_MONITOR_KEYS = {"component", "name", "http", "tcp", "interval_ms", "timeout_ms",
                 "failures_to_fail", "successes_to_recover"}
_DEFAULT_SETTINGS = MonitorSettings()


def load_monitor_config(text: str, what: str = "monitors file") -> list[MonitorSpec]:
    """HTTP and TCP monitors from YAML; in-process ones are added in code. Example::

        monitors:
          - component: status_page
            name: http
            http: {url: "https://status.example.com/", latency_ms_max: 2000}
            interval_ms: 10000
            timeout_ms: 3000
            failures_to_fail: 3
            successes_to_recover: 2
          - component: database
            name: tcp
            tcp: {host: db.internal, port: 5432}

    The whole file is refused at the first problem, with its line.
    """
    document = mapping_at(load_yaml(text, what), what, "the file")
    check_keys(document, {"monitors"}, what)
    items = list_at(document, "monitors", what)
    if len(items) > MONITORS_MAX:
        raise ConfigError(f"{what}: {len(items)} monitors, at most {MONITORS_MAX}")
    specs: list[MonitorSpec] = []
    seen: set[tuple[str, str]] = set()
    for item in items:
        spec = _monitor_spec(mapping_at(item, what, "each monitor"), what)
        if (spec.component, spec.name) in seen:
            raise ConfigError(
                f"{at_line(item, what)}: a second monitor {spec.component}/{spec.name}; "
                "give each one its own name"
            )
        seen.add((spec.component, spec.name))
        specs.append(spec)
    return specs


def _monitor_spec(item: LinedDict, what: str) -> MonitorSpec:
    where = at_line(item, what)
    check_keys(item, _MONITOR_KEYS, what)
    component, name = text_at(item, "component", what), text_at(item, "name", what)
    if ("http" in item) == ("tcp" in item):
        raise ConfigError(f"{where}: give exactly one check, 'http' or 'tcp'")
    check: Check
    if "http" in item:
        http = mapping_at(item["http"], where, "'http'")
        check_keys(http, {"url", "latency_ms_max", "status_ok"}, what)
        status_ok = list_at(http, "status_ok", what)
        if not all(isinstance(code, int) and 100 <= code <= 599 for code in status_ok):
            raise ConfigError(f"{at_line(http, what)}: 'status_ok' lists HTTP status codes")
        check = HttpCheck(
            url=text_at(http, "url", what),
            latency_ms_max=int_at(http, "latency_ms_max", what, 0),
            status_ok=frozenset(int(str(code)) for code in status_ok) or frozenset(range(200, 300)),
        )
    else:
        tcp = mapping_at(item["tcp"], where, "'tcp'")
        check_keys(tcp, {"host", "port"}, what)
        port = int_at(tcp, "port", what, 0)
        if not 1 <= port <= 65_535:
            raise ConfigError(f"{at_line(tcp, what)}: 'port' must be 1..65535")
        check = TcpCheck(text_at(tcp, "host", what), port)
    defaults = _DEFAULT_SETTINGS
    try:
        settings = MonitorSettings(
            interval_ms=int_at(item, "interval_ms", what, defaults.interval_ms),
            timeout_ms=int_at(item, "timeout_ms", what, defaults.timeout_ms),
            failures_to_fail=int_at(item, "failures_to_fail", what, defaults.failures_to_fail),
            successes_to_recover=int_at(
                item, "successes_to_recover", what, defaults.successes_to_recover
            ),
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return MonitorSpec(component, name, check, settings)


# --- delivery off the hot path -------------------------------------------------------


class SignalOutbox:
    """A bounded queue of signals delivered to ``sink`` by one background thread.

    Code on a hot path (the HTTP event loop, the load shedder) must never wait for a
    database; it puts signals here instead. When the outbox is full the oldest signal is
    dropped and counted in ``dropped``: detection keeps working under the very floods it
    reports.
    """

    def __init__(self, sink: SignalSink = service_sink, *, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.sink = sink
        self._pending: deque[Signal] = deque(maxlen=capacity)
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._busy = False
        self.dropped = 0
        self.delivered = 0

    def put(self, signal: Signal) -> None:
        with self._wake:
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
            self._pending.append(signal)
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="signal-outbox", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything queued so far was handed to the sink."""
        deadline = time.monotonic() + timeout_s
        with self._wake:
            while self._pending or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.wait(min(remaining, 0.05))
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if not self._pending:
                    return
                signal = self._pending.popleft()
                self._busy = True
            deliver(self.sink, signal)
            with self._wake:
                self._busy = False
                self.delivered += 1
                self._wake.notify_all()
