"""The supervisor's own rules, on a small real child process that answers the venue's health
check and exits when told: restarts with backoff up to a limit a minute, then stays down
saying why; a stop it asked for is not a crash. (The real venue under the supervisor is
tested in test_app_supervised.py.)"""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from haltguard.app.supervisor import ProcessExit, SupervisorSettings, VenueSupervisor

CHILD = """\
import os, signal, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer

port, life_s, code = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/v1/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
server = HTTPServer(("127.0.0.1", port), Health)
if life_s > 0:
    threading.Timer(life_s, lambda: os._exit(code)).start()
server.serve_forever()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def supervise(tmp_path: Path, life_s: float, code: int, exits: list[ProcessExit],
              **settings: float) -> VenueSupervisor:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    port = free_port()
    return VenueSupervisor(
        [sys.executable, str(script), str(port), str(life_s), str(code)],
        f"http://127.0.0.1:{port}",
        settings=SupervisorSettings(**settings),  # type: ignore[arg-type]
        on_exit=exits.append, log_path=tmp_path / "child.log",
    )


def test_a_child_that_keeps_dying_is_restarted_until_the_limit_then_left_down_saying_why(
    tmp_path: Path,
) -> None:
    exits: list[ProcessExit] = []
    supervisor = supervise(tmp_path, 0.3, 3, exits, restarts_per_minute_max=2,
                           backoff_s_initial=0.05).start()
    try:
        deadline = time.monotonic() + 20
        while not supervisor.gave_up:
            assert time.monotonic() < deadline, f"still restarting: {exits}"
            time.sleep(0.05)

        assert supervisor.restarts == 2
        assert [gone.describe() for gone in exits] == ["exited with code 3"] * 3
        assert [gone.restarts for gone in exits] == [0, 1, 2]
        assert "3 times within a minute" in supervisor.gave_up
        assert not supervisor.running and supervisor.pid is None
        assert "not being restarted" in supervisor.down_reason()
        with pytest.raises(TimeoutError, match="not being restarted"):
            supervisor.wait_ready(1)
    finally:
        supervisor.stop()


def test_a_killed_child_is_restarted_and_reported_with_its_signal(tmp_path: Path) -> None:
    exits: list[ProcessExit] = []
    supervisor = supervise(tmp_path, 0, 0, exits).start()
    try:
        first = supervisor.pid
        supervisor.kill(signal.SIGKILL)
        supervisor.wait_ready(10)

        assert supervisor.pid not in (None, first)
        assert supervisor.restarts == 1 and supervisor.running
        assert [gone.describe() for gone in exits] == ["killed by SIGKILL"]
        assert len(supervisor.restart_seconds) == 1
    finally:
        supervisor.stop()


def test_a_stop_it_asked_for_is_not_a_crash(tmp_path: Path) -> None:
    exits: list[ProcessExit] = []
    supervisor = supervise(tmp_path, 0, 0, exits).start()
    pid = supervisor.pid

    supervisor.stop()

    assert supervisor.stopped_returncode == 0
    assert supervisor.pid is None and not supervisor.running and pid is not None
    assert exits == [] and supervisor.restarts == 0
