"""Running one drill: on a thread with progress lines, against a given system, ending in a
judged result and its report files; and the parts of a system of the drill's own (its
server on an ephemeral port, the local receiver of its notices).

The result is judged twice over: the scenario's own checks, and one check per figure that
has a target in the configuration (a figure that does not apply is not judged). Whatever
goes wrong inside a scenario ends the drill as failed with the reason, never as a crash.
"""

from __future__ import annotations

import http.server
import logging
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from haltguard.common.clock import utc_now
from haltguard.drill.report import figure_rows, write_files
from haltguard.drill.scenario import (
    DRILL_ACTOR,
    Check,
    DrillContext,
    DrillResult,
    Measurements,
    Progress,
    Scale,
    Scenario,
    Targets,
)
from haltguard.drill.surface import DrillSurface, database
from haltguard.drill.waiting import DrillError
from haltguard.notify import service as notify
from haltguard.notify.models import ChannelCreate
from haltguard.status.texts import Bilingual

log = logging.getLogger(__name__)

SERVER_START_TIMEOUT_S = 15.0
PROGRESS_LINES_MAX = 10_000


def judge(result: DrillResult, targets: Targets) -> None:
    """Add one check per figure that has a target and applies to this scenario."""
    for row in figure_rows(result.measurements, targets):
        if row.passed is None:
            continue
        result.checks.append(Check(
            name=f"target: {row.label.en.lower()}", passed=row.passed,
            expected=row.target.en, seen=row.measured.en,
            name_ja=f"目標: {row.label.ja}", expected_ja=row.target.ja, seen_ja=row.measured.ja,
        ))


def failed_result(scenario: str, reason: str) -> DrillResult:
    return DrillResult(
        scenario=scenario, incident_id=None, measurements=Measurements(), completed=False,
        checks=[Check("drill completed", False, "every step of the scenario done", reason,
                      name_ja="訓練の完了", expected_ja="シナリオの全手順を完了",
                      seen_ja=reason)],
    )


def run_scenario(
    system: DrillSurface,
    scenario: Scenario,
    *,
    scale: Scale,
    progress: Progress,
    report_dir: Path | None,
    targets: Targets | None = None,
) -> DrillResult:
    """Run ``scenario`` on ``system`` here and now; never raises for the scenario's faults:
    a step that could not be done fails the drill with its reason. The drill's report and
    the incident's reports go to ``report_dir/drill-<scenario>-<start time>/``."""
    chosen = targets or system.drill_targets
    started = utc_now()
    run_dir = None if report_dir is None else \
        report_dir / f"drill-{scenario.name}-{started:%Y%m%dT%H%M%SZ}"
    context = DrillContext(system=system, targets=chosen, scale=scale, progress=progress,
                           report_dir=run_dir)
    progress(f"drill {scenario.name}: {scenario.title_en} / {scenario.title_ja}")
    completed = False
    try:
        result = scenario.run(context)
        completed = True
    except DrillError as exc:
        progress(f"drill step failed: {exc}")
        result = failed_result(scenario.name, str(exc))
    except Exception as exc:
        log.exception("drill %s failed unexpectedly", scenario.name)
        progress(f"drill failed unexpectedly: {exc!r}")
        result = failed_result(scenario.name, f"unexpected error: {exc!r}")
    result.started_at, result.finished_at = started, utc_now()
    if completed:  # figures of a drill that stopped midway prove nothing either way
        judge(result, chosen)
    if run_dir is not None:
        title = Bilingual(scenario.title_ja, scenario.title_en)
        paths = write_files(result, chosen, title, run_dir)
        result.report_paths.extend(str(path) for path in paths)
    progress(f"drill {scenario.name} {'passed' if result.passed else 'FAILED'}")
    return result


@dataclass
class DrillRun:
    """One drill running on its own thread; progress lines accumulate for whoever polls."""

    id: str
    scenario: Scenario
    scale_name: str
    lines: list[str] = field(default_factory=list)
    result: DrillResult | None = None
    done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def progress(self, line: str) -> None:
        log.info("drill %s: %s", self.id, line)
        with self._lock:
            if len(self.lines) < PROGRESS_LINES_MAX:
                self.lines.append(line)

    def lines_since(self, index: int) -> list[str]:
        with self._lock:
            return self.lines[max(index, 0):]


def start_run(
    system: DrillSurface, scenario: Scenario, *, scale_name: str, scale: Scale,
    report_dir: Path | None,
) -> DrillRun:
    """Run ``scenario`` on a daemon thread; the returned run shows its progress and result."""
    run = DrillRun(id=secrets.token_hex(6), scenario=scenario, scale_name=scale_name)

    def work() -> None:
        try:
            run.result = run_scenario(system, scenario, scale=scale, progress=run.progress,
                                      report_dir=report_dir)
        finally:
            run.done.set()

    threading.Thread(target=work, name=f"drill-{run.id}", daemon=True).start()
    return run


# --- a system of the drill's own ------------------------------------------------------------


class ServerThread:
    """uvicorn serving a system's ``app`` on an ephemeral loopback port, on a thread, so the
    drill's HTTP paths (orders, admin, status page) are the real ones."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", **options: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://{host}:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(
            app, host=host, port=self.port, log_level="warning", lifespan="on", **options,
        ))
        self._thread = threading.Thread(target=self._serve, name="drill-server", daemon=True)

    def _serve(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise DrillError(f"the drill's own server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(SERVER_START_TIMEOUT_S)
        self._socket.close()


class NoticeObserver:
    """A local HTTP receiver subscribed to the status page's notices as an operator's channel
    (apprise ``json://``), so a drill on its own system sees notices really delivered."""

    LABEL = "drill observer"

    def __init__(self) -> None:
        self.received: list[bytes] = []
        received = self.received

        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(self.rfile.read(length))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self.url = f"json://127.0.0.1:{self._server.server_address[1]}/drill-observer"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="drill-notice-observer", daemon=True)

    def start(self, system: DrillSurface) -> NoticeObserver:
        self._thread.start()
        with database(system) as session:
            notify.add_channel(session, ChannelCreate(url=self.url, label=self.LABEL),
                               actor=DRILL_ACTOR, now=utc_now())
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def fresh_data_dir(chosen: Path | None) -> Iterator[Path]:
    """``chosen`` as given, or a new temporary directory removed afterwards."""
    if chosen is not None:
        yield chosen
        return
    with tempfile.TemporaryDirectory(prefix="haltguard-drill-system-") as temp:
        yield Path(temp)
