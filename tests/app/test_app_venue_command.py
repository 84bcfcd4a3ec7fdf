"""The venue process ``serve`` starts keeps the configured request limits."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from haltguard.app.config import load_config
from haltguard.app.system import venue_command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_supervised_venue_answers_a_slow_body_within_the_configured_time(
    tmp_path: Path,
) -> None:
    config = load_config(None, environ={"HALTGUARD_DATA_DIR": str(tmp_path / "data")},
                         overrides={"server.body_receive_s_max": 1.0})
    port = _free_port()
    command = venue_command(config, port, demo=False, drills=False)
    assert command[command.index("--body-receive-s-max") + 1] == "1.0"
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert "ready" in child.stdout.readline()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"POST /v1/admin/markets/BTC-JPY/state HTTP/1.1\r\n"
                              b"Host: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 100\r\n\r\n{\"st")
            started = time.monotonic()
            answer = connection.recv(4096)
            waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert waited < 5, f"the body deadline was {waited:.1f} s, configured 1 s"
    finally:
        child.terminate()
        child.wait(timeout=30)
