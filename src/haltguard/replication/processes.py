"""Venue node processes on one machine, and which of them is the primary now.

``serve`` with ``continuity.replication = "jetstream"`` runs two nodes
(``python -m haltguard.cli.venue_standby``) on their own data directories, ports and
request-channel ports, and a local nats-server unless ``continuity.nats_url`` names one.
:class:`NodeProcess` restarts a node after any exit it did not ask for (it comes back as a
standby: the other took the lease). :class:`PrimaryWatch` asks every node's ``/v1/health``
every ``HEALTH_POLL_S`` and says which one serves (200) and since when, so the forwarder and
the operations side follow it; :class:`PrimaryTransport` sends an HTTP client's requests to
it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from haltguard.replication.models import ReplicationSettings

log = logging.getLogger(__name__)

HEALTH_POLL_S = 0.05
HEALTH_TIMEOUT_S = 0.5
STOP_WAIT_S = 30.0
START_S_MAX = 60.0  # a node replaying a long journal before it answers
RESTART_WAIT_S = 0.5
RESTARTS_PER_MINUTE_MAX = 5
NODE_HOST = "127.0.0.1"


@dataclass
class NodeProcess:
    """One ``haltguard venue standby`` process; restarted after an exit nobody asked for."""

    name: str
    data_dir: Path
    port: int
    nats_url: str
    replication: ReplicationSettings
    channel_port: int = 0
    env: dict[str, str] | None = None  # the child's environment (its admin token); None: ours
    demo_rate_per_s: float = 0.0  # > 0: the demo once primary
    allow_fault_injection: bool = False
    checkpoint_every: int = 100_000
    log_path: Path | None = None
    host: str = NODE_HOST
    on_exit: Callable[[NodeProcess, int], None] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    exits: list[int] = field(default_factory=list, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _restarts: list[float] = field(default_factory=list, init=False)
    last_seq: int = field(default=0, init=False)  # from its last /v1/health (0: not yet)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        process = self.process
        return process.pid if process is not None and process.poll() is None else None

    def command(self) -> list[str]:
        settings = self.replication
        command = [
            sys.executable, "-m", "haltguard.cli.venue_standby",
            "--data-dir", str(self.data_dir), "--host", self.host, "--port", str(self.port),
            "--nats-url", self.nats_url, "--stream", settings.stream,
            "--replicas", str(settings.replicas), "--lease-ttl-ms", str(settings.lease_ttl_ms),
            "--markets-after-failover", settings.markets_after_failover.value,
            "--checkpoint-every", str(self.checkpoint_every), "--stop-with-parent",
        ]
        if self.channel_port:
            command += ["--channel-port", str(self.channel_port)]
        if self.demo_rate_per_s > 0:
            command += ["--demo", "--demo-rate", repr(self.demo_rate_per_s)]
        if self.allow_fault_injection:
            command.append("--allow-fault-injection")
        return command

    def start(self, *, watch: bool = False) -> NodeProcess:
        """Start the process; with ``watch``, restart it after each exit not asked for."""
        self._spawn()
        if watch:
            threading.Thread(target=self._watch, name=f"node-{self.name}", daemon=True).start()
        return self

    def _spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path or self.data_dir.parent / f"{self.name}.log"
        with log_path.open("ab") as output:
            self.process = subprocess.Popen(self.command(), stdout=output,
                                            stderr=subprocess.STDOUT, env=self.env)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self.process
            assert process is not None
            code = process.wait()
            if self._stopping.is_set():
                return
            self.exits.append(code)
            log.error("venue node %s (pid %d) exited with %d; restarting it as a standby",
                      self.name, process.pid, code)
            if self.on_exit is not None:
                self.on_exit(self, code)
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < 60] + [now]
            if len(self._restarts) > RESTARTS_PER_MINUTE_MAX:
                log.error("venue node %s exited %d times within a minute; not restarting it",
                          self.name, len(self._restarts))
                return
            if self._stopping.wait(RESTART_WAIT_S):
                return
            self._spawn()

    def health(self, client: httpx.Client | None = None) -> int:
        """The node's ``/v1/health`` status: 200 primary, 503 standby (or stopped), 0 none.
        Remembers the seq it reports (``last_seq`` serving, ``applied_seq`` following), the
        figure a failover's record gives for each node."""
        try:
            if client is not None:
                response = client.get(f"{self.url}/v1/health")
            else:
                response = httpx.get(f"{self.url}/v1/health", timeout=HEALTH_TIMEOUT_S)
        except httpx.HTTPError:
            return 0
        self._remember_seq(response)
        return response.status_code

    def _remember_seq(self, response: httpx.Response) -> None:
        try:
            answer = response.json()
        except ValueError:
            return
        if isinstance(answer, dict):
            seq = answer.get("last_seq", answer.get("applied_seq"))
            if isinstance(seq, int):
                self.last_seq = seq

    def wait_until(self, wanted: str, timeout_s: float = START_S_MAX) -> None:
        """Until this node serves (``primary``) or follows (``standby``); TimeoutError."""
        deadline = time.monotonic() + timeout_s
        status_wanted = 200 if wanted == "primary" else 503
        while time.monotonic() < deadline:
            if self.health() == status_wanted:
                return
            if self.process is not None and self.process.poll() is not None \
                    and not self._restarting():
                raise RuntimeError(f"venue node {self.name} exited with "
                                   f"{self.process.returncode}; see {self.log_file()}")
            time.sleep(HEALTH_POLL_S)
        raise TimeoutError(f"venue node {self.name} is not {wanted} after {timeout_s:g} s; "
                           f"see {self.log_file()}")

    def _restarting(self) -> bool:
        return bool(self.exits) and not self._stopping.is_set()

    def log_file(self) -> Path:
        return self.log_path or self.data_dir.parent / f"{self.name}.log"

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM (after SIGCONT, in case a drill paused it) and wait; SIGKILL if stuck."""
        self._stopping.set()
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass(frozen=True)
class PrimaryChange:
    """The primary changed: from ``previous`` ("" at start) to ``current`` ("": none now)."""

    previous: str
    current: str
    at_ns: int
    without_primary_s: float  # since the previous primary last answered
    last_seqs: dict[str, int] = field(default_factory=dict)  # each node's, as last reported


class PrimaryWatch:
    """Which node serves now, from polling every node's ``/v1/health``."""

    def __init__(self, nodes: list[NodeProcess], *,
                 on_change: Callable[[PrimaryChange], None] | None = None) -> None:
        self.nodes = nodes
        self.on_change = on_change
        self.changes: list[PrimaryChange] = []
        self._primary: NodeProcess | None = None
        self._last_seen = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="primary-watch", daemon=True)

    def start(self) -> PrimaryWatch:
        self.poll_once()
        self._thread.start()
        return self

    def primary(self) -> NodeProcess | None:
        return self._primary

    def down_reason(self) -> str:
        if self._primary is not None:
            return ""
        return ("no venue node serves right now: a standby takes over once the primary's "
                "lease runs out")

    def poll_once(self, client: httpx.Client | None = None) -> NodeProcess | None:
        serving = [node for node in self.nodes if node.health(client) == 200]
        current = self._primary if self._primary in serving else (
            serving[0] if serving else None)
        now = time.monotonic()
        if current is not self._primary:
            change = PrimaryChange(
                self._primary.name if self._primary is not None else "",
                current.name if current is not None else "", time.time_ns(),
                now - self._last_seen, {node.name: node.last_seq for node in self.nodes})
            self._primary = current
            self.changes.append(change)
            log.warning("venue primary: %s -> %s", change.previous or "none",
                        change.current or "none")
            if self.on_change is not None:
                self.on_change(change)
        if current is not None:
            self._last_seen = now
        return current

    def _poll(self) -> None:
        with httpx.Client(timeout=HEALTH_TIMEOUT_S) as client:
            while not self._stop.wait(HEALTH_POLL_S):
                try:
                    self.poll_once(client)
                except Exception:
                    log.exception("watching the venue nodes failed; trying again")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)


class PrimaryTransport(httpx.BaseTransport):
    """An httpx transport that sends each request to the node serving now."""

    def __init__(self, watch: PrimaryWatch) -> None:
        self.watch = watch
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        primary = self.watch.primary()
        if primary is None:
            raise httpx.ConnectError(self.watch.down_reason(), request=request)
        request.url = request.url.copy_with(host=primary.host, port=primary.port)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()
