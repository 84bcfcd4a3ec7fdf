"""The streaming order entry's crash test: a real venue process taking pipelined orders on its
stream port is SIGKILLed mid-stream, restarted, and must hold every order it acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_gateway_crash import ADMIN, TOKEN, free_port, set_up_market, wait_until_healthy

from haltguard.gateway.stream_client import StreamClient, StreamClosedError
from haltguard.journal import recover

ACKED_BEFORE_KILL = 3_000
CHUNK = 400  # orders per place_many call; the window keeps 200 of them in flight


def start_venue(data_dir: Path, port: int, stream_port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "haltguard.cli.main", "venue", "run", "--data-dir",
         str(data_dir), "--port", str(port), "--stream-port", str(stream_port),
         "--checkpoint-every", "1000"],
        env={**os.environ, "HALTGUARD_VENUE_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


class Streamer:
    """One connection streaming resting orders until the venue dies; it keeps every answer."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.stream, daemon=True)

    def acked(self) -> int:
        with self.lock:
            return len(self.answers)

    def stream(self) -> None:
        with StreamClient("127.0.0.1", self.port, timeout_s=10) as client:
            for start in range(0, 10_000_000, CHUNK):
                orders = [_resting(n) for n in range(start, start + CHUNK)]
                try:
                    answers = client.place_many(orders, window=CHUNK // 2)
                except StreamClosedError as exc:
                    answers = exc.answers
                except OSError:
                    return  # the venue is gone; answers not read are not acknowledged
                with self.lock:
                    self.answers += answers
                if len(answers) < len(orders):
                    return


def _resting(n: int) -> dict[str, Any]:
    side = "buy" if n % 2 else "sell"
    price = 14_000_000 - n % 100 if side == "buy" else 16_000_000 + n % 100
    return {"market": "BTC-JPY", "account": 1 + n % 6, "side": side, "qty": "0.0001",
            "price": str(price), "client_order_id": f"s{n}"}


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_acknowledged_order(tmp_path: Path) -> None:
    data_dir, port, stream_port = tmp_path / "venue", free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_venue(data_dir, port, stream_port)
    try:
        wait_until_healthy(url, process)
        with httpx.Client(base_url=url, timeout=10, headers=ADMIN) as client:
            set_up_market(client)
        streamer = Streamer(stream_port)
        streamer.thread.start()
        deadline = time.monotonic() + 60
        while streamer.acked() < ACKED_BEFORE_KILL:
            assert time.monotonic() < deadline, f"only {streamer.acked()} answers in 60 s"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)  # mid-stream: orders are still in flight
        process.wait(10)
        streamer.thread.join(20)
        assert not streamer.thread.is_alive()
        process = start_venue(data_dir, port, stream_port)  # the restart
        wait_until_healthy(url, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    answers = streamer.answers
    assert all("order" in answer for answer in answers), [a for a in answers if "error" in a][:1]
    recovered, _ = recover(data_dir, repair=False)
    assert recovered.check_invariants() == []
    assert recovered.last_seq >= max(answer["seq"] for answer in answers)
    for answer in answers:  # every acknowledged order rests in the recovered venue
        view = recovered.order("BTC-JPY", answer["order"]["order_id"])
        assert view is not None, answer
        assert view.client_order_id == answer["order"]["client_order_id"]
