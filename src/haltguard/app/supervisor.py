"""Keep the venue process running: start it, restart it after any exit nobody asked for.

The venue recovers from its snapshot and journal at every start, so a restart loses nothing
it acknowledged. The supervisor waits a little longer before each restart in a row (from
``backoff_s_initial`` doubling up to ``backoff_s_max``) and stops trying after
``restarts_per_minute_max`` restarts within a minute: a venue that dies that often has a
problem a restart does not fix, and a person must look (the reason is logged and kept in
:attr:`VenueSupervisor.gave_up`). Each unasked exit is logged and reported through
``on_exit`` (``haltguard serve`` turns it into the detection signal ``venue.process_exited``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

log = logging.getLogger(__name__)

HEALTH_PATH = "/v1/health"
HEALTH_POLL_S = 0.05
HEALTH_TIMEOUT_S = 1.0
RESTART_WINDOW_S = 60.0
LOG_TAIL_BYTES = 4_096
LOG_TAIL_LINES = 2


@dataclass(frozen=True)
class SupervisorSettings:
    restarts_per_minute_max: int = 5
    backoff_s_initial: float = 0.05
    backoff_s_max: float = 5.0
    ready_timeout_s: float = 60.0  # a start that replays a long journal takes a while
    stop_timeout_s: float = 30.0  # SIGTERM to exit: the venue writes its snapshot

    def __post_init__(self) -> None:
        if self.restarts_per_minute_max < 1:
            raise ValueError("restarts_per_minute_max must be at least 1")
        if not 0 <= self.backoff_s_initial <= self.backoff_s_max:
            raise ValueError("backoff_s_initial must be 0..backoff_s_max")
        if self.ready_timeout_s <= 0 or self.stop_timeout_s <= 0:
            raise ValueError("ready_timeout_s and stop_timeout_s must be positive")


@dataclass(frozen=True)
class ProcessExit:
    """One exit the supervisor did not ask for."""

    pid: int
    returncode: int  # negative: killed by that signal
    restarts: int  # restarts before this exit
    uptime_s: float

    def describe(self) -> str:
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return f"killed by {name}"
        return f"exited with code {self.returncode}"


ExitListener = Callable[[ProcessExit], None]
RestartArguments = Callable[[ProcessExit], list[str]]


class VenueSupervisor:
    """Runs ``command`` (a venue serving ``url``) and keeps it running until :meth:`stop`."""

    def __init__(
        self,
        command: Sequence[str],
        url: str,
        *,
        settings: SupervisorSettings | None = None,
        on_exit: ExitListener | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        restart_arguments: RestartArguments | None = None,
        channel_port: int = 0,
    ) -> None:
        """``restart_arguments`` gives what to add to ``command`` when restarting after an
        exit (``haltguard serve``: halt the markets, naming the exit); ``channel_port`` is
        where the child answers the request channel on the ``url``'s host (0: it does not)."""
        self.command = list(command)
        self.channel_port = channel_port
        self.restart_arguments = restart_arguments
        self.url = url.rstrip("/")
        self.settings = settings or SupervisorSettings()
        self.on_exit = on_exit
        self.log_path = log_path
        self.env = env
        self.restarts = 0
        self.exits: list[ProcessExit] = []
        self.restart_seconds: list[float] = []  # from each unasked exit to ready again
        self.gave_up = ""  # why the supervisor stopped restarting, once it has
        self.stopped_returncode: int | None = None  # the child's exit code after stop()
        self._process: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._recent_restarts: deque[float] = deque()
        self._watcher: threading.Thread | None = None
        self._log_file: IO[bytes] | None = None
        self._exited_at: float | None = None  # the last unasked exit, until ready again

    # -- what others read -----------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the child is up and has answered its health check since it started."""
        return self.pid is not None and self._ready.is_set()

    def down_reason(self) -> str:
        """Why the venue cannot be reached now, or "" while it runs."""
        if self.running:
            return ""
        if self.gave_up:
            return f"the venue process is down and not being restarted: {self.gave_up}"
        if self._stopping.is_set():
            return "the venue is stopping"
        return (f"the venue process is restarting (restart {self.restarts}); it recovers "
                "from its journal and answers again in a moment")

    # -- control ----------------------------------------------------------------------------

    def start(self) -> VenueSupervisor:
        """Start the child and wait until it answers; raises TimeoutError (the child is
        stopped) if it does not within ``ready_timeout_s``."""
        if self.log_path is not None:
            self._log_file = self.log_path.open("ab")
        self._spawn()
        try:
            self.wait_ready(self.settings.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        self._watcher = threading.Thread(target=self._watch, name="venue-supervisor",
                                         daemon=True)
        self._watcher.start()
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the child, as a crash would: the supervisor restarts it."""
        process = self._process
        if process is None or process.poll() is not None:
            raise ProcessLookupError("the venue process is not running")
        self._ready.clear()
        os.kill(process.pid, sig)

    def wait_ready(self, timeout_s: float) -> None:
        """Return once the current child answers its health check; TimeoutError with the
        reason otherwise."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=HEALTH_TIMEOUT_S) as client:
            while time.monotonic() < deadline:
                process = self._process
                if self.gave_up:
                    raise TimeoutError(self.down_reason())
                if process is not None and process.poll() is None:
                    if self._ready.is_set():
                        return
                    if _healthy(client, self.url):
                        self._mark_ready()
                        return
                elif process is not None and (
                    self._watcher is None or threading.current_thread() is self._watcher
                ):
                    raise TimeoutError(
                        f"the venue process {_describe(process.returncode)} before it answered"
                        f"{self._log_hint()}"
                    )
                time.sleep(HEALTH_POLL_S)
        raise TimeoutError(f"the venue at {self.url} did not answer {HEALTH_PATH} within "
                           f"{timeout_s:g} s ({self.down_reason()}){self._log_hint()}")

    def stop(self) -> None:
        """Stop the child cleanly (SIGTERM, then wait: it writes its snapshot); SIGKILL only
        if it does not exit within ``stop_timeout_s``. Safe to call twice."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(self.settings.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.error("the venue process %d did not stop within %g s; killing it",
                          process.pid, self.settings.stop_timeout_s)
                process.kill()
                process.wait()
        if process is not None:
            self.stopped_returncode = process.returncode
        self._ready.clear()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(self.settings.stop_timeout_s)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -- inside ---------------------------------------------------------------------------

    def _mark_ready(self) -> None:
        """The current child answered: note how long the restart took, if it was one."""
        with self._lock:
            if not self._ready.is_set() and self._exited_at is not None:
                self.restart_seconds.append(round(time.monotonic() - self._exited_at, 3))
                self._exited_at = None
            self._ready.set()

    def _spawn(self, after: ProcessExit | None = None) -> None:
        output = self._log_file if self._log_file is not None else subprocess.DEVNULL
        command = list(self.command)
        if after is not None and self.restart_arguments is not None:
            command += self.restart_arguments(after)
        with self._lock:
            self._ready.clear()
            self._process = subprocess.Popen(
                command, stdout=output, stderr=output, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True,
            )
            self._started_at = time.monotonic()
        log.info("venue process %d started: %s", self._process.pid, self.url)

    def _watch(self) -> None:
        """Wait for the child to exit; unless asked to stop, report it and restart."""
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            returncode = process.wait()
            if self._stopping.is_set():
                return
            exited_at = time.monotonic()
            self._ready.clear()
            self._exited_at = exited_at
            gone = ProcessExit(process.pid, returncode, self.restarts,
                               round(exited_at - self._started_at, 3))
            self.exits.append(gone)
            log.error("venue process %d %s after %.1f s; restarting it from its journal",
                      gone.pid, gone.describe(), gone.uptime_s)
            if not self._restart_allowed(exited_at):
                self._report(gone)
                return
            self._report(gone)
            if self._stopping.wait(self._backoff_s()):
                return
            self.restarts += 1
            self._spawn(gone)
            try:
                self.wait_ready(self.settings.ready_timeout_s)
            except TimeoutError as exc:
                if not self._stopping.is_set():
                    log.error("restarted venue process is not answering: %s", exc)
                continue
            log.warning("venue process restarted (restart %d, pid %s) in %.2f s",
                        self.restarts, self.pid, time.monotonic() - exited_at)

    def _restart_allowed(self, now: float) -> bool:
        recent = self._recent_restarts
        while recent and now - recent[0] > RESTART_WINDOW_S:
            recent.popleft()
        if len(recent) >= self.settings.restarts_per_minute_max:
            self.gave_up = (
                f"it exited {len(recent) + 1} times within a minute (limit "
                f"{self.settings.restarts_per_minute_max} restarts a minute); look at "
                f"{self.log_path or 'its output'}, fix the cause and restart haltguard serve"
            )
            log.critical("not restarting the venue: %s", self.gave_up)
            return False
        recent.append(now)
        return True

    def _backoff_s(self) -> float:
        in_a_row = len(self._recent_restarts) - 1
        return float(min(self.settings.backoff_s_max,
                         self.settings.backoff_s_initial * (2 ** max(0, in_a_row))))

    def _report(self, gone: ProcessExit) -> None:
        if self.on_exit is None:
            return
        try:
            self.on_exit(gone)
        except Exception:
            log.exception("reporting the venue process exit failed; restarting anyway")

    def _log_hint(self) -> str:
        """Where the child's output is, with its last lines (why a start failed)."""
        if self.log_path is None:
            return ""
        if self._log_file is not None:
            self._log_file.flush()
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(max(0, self.log_path.stat().st_size - LOG_TAIL_BYTES))
                tail = handle.read().decode(errors="replace")
        except OSError:
            return f"; see {self.log_path}"
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        said = " | ".join(lines[-LOG_TAIL_LINES:])
        return f"; see {self.log_path}" + (f" (it said: {said})" if said else "")


def _healthy(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url + HEALTH_PATH).status_code == 200
    except httpx.HTTPError:
        return False


def _describe(returncode: int | None) -> str:
    if returncode is None:
        return "is still running"
    return ProcessExit(0, returncode, 0, 0.0).describe()
