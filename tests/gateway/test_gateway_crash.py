"""THE crash test: a real venue process taking orders over HTTP is SIGKILLed mid-load.

Afterwards every acknowledged command must be recovered, and the venue recovered from the
newest snapshot plus the journal's tail must equal an independent in-memory replay of the
journal from the oldest snapshot it keeps.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from haltguard.journal import JournalReader, recover
from haltguard.journal.snapshots import list_snapshots, read_snapshot
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.engine import Venue
from haltguard.venue.events import OrderRepeated
from haltguard.venue.types import Side

TOKEN = "crash-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SUBMITTERS = 6
ACKED_BEFORE_KILL = 600
CHECKPOINT_EVERY = 150


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_venue(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        # The venue's own process (what `serve` supervises), so SIGKILL hits the journal
        # writer itself.
        [sys.executable, "-m", "haltguard.cli.main", "venue", "run", "--data-dir",
         str(data_dir), "--port", str(port), "--checkpoint-every", str(CHECKPOINT_EVERY),
         "--order-capacity-per-s", "1000000"],
        env={**os.environ, "HALTGUARD_VENUE_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def wait_until_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the venue process exited during start-up"
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("the venue did not become healthy within 30 s")


def set_up_market(client: httpx.Client) -> None:
    for code, decimals in (("JPY", 4), ("BTC", 8)):
        client.post("/v1/admin/assets", json={"code": code, "decimals": decimals},
                    headers=ADMIN).raise_for_status()
    client.post("/v1/admin/markets", headers=ADMIN, json={
        "symbol": "BTC-JPY", "base": "BTC", "quote": "JPY", "tick_size": "1",
        "lot_size": "0.0001", "min_qty": "0.0001", "max_qty": "100", "taker_fee_bps": 10,
        "state": "open",
    }).raise_for_status()
    for account in range(1, SUBMITTERS + 1):
        for asset, amount in (("JPY", "1000000000"), ("BTC", "100")):
            client.post("/v1/admin/deposits", headers=ADMIN, json={
                "account": account, "asset": asset, "amount": amount,
            }).raise_for_status()


class Load:
    """Submitters sending orders until the venue dies; they record every acknowledgement."""

    def __init__(self, url: str) -> None:
        self.url = url
        # seq, account, client id, order id, and the side and price to retry it with
        self.accepted: list[tuple[int, int, str, int, str, str]] = []
        self.refused_seqs: list[int] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self.submit, args=(account,), daemon=True)
            for account in range(1, SUBMITTERS + 1)
        ]

    def acked(self) -> int:
        with self.lock:
            return len(self.accepted) + len(self.refused_seqs)

    def submit(self, account: int) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            for n in range(1_000_000):
                client_order_id = f"a{account}-{n}"
                side = "buy" if (n + account) % 2 else "sell"
                body: dict[str, Any] = {
                    "account": account, "side": side, "qty": "0.001",
                    "price": str(15_000_000 + (n % 7 - 3) * 100),
                    "client_order_id": client_order_id,
                }
                try:
                    response = client.post("/v1/markets/BTC-JPY/orders", json=body)
                except httpx.HTTPError:
                    return  # the venue is gone
                data = response.json()
                with self.lock:
                    if response.status_code == 201:
                        order_id = data["order"]["order_id"]
                        self.accepted.append(
                            (data["seq"], account, client_order_id, order_id, side, body["price"])
                        )
                    elif "seq" in data.get("error", {}):
                        self.refused_seqs.append(data["error"]["seq"])


def replay_from_oldest_snapshot(data_dir: Path) -> Venue:
    """An independent in-memory replay: oldest kept snapshot, then every journal record."""
    snapshots = list_snapshots(data_dir)
    venue = read_snapshot(snapshots[0][1])[0] if snapshots else Venue()
    reader = JournalReader(data_dir)
    try:
        reader.seek(venue.last_seq + 1)
        while entries := reader.read_available():
            for sequenced, _ in entries:
                venue.apply(sequenced.seq, sequenced.ts, sequenced.command)
    finally:
        reader.close()
    return venue


@pytest.mark.slow
def test_sigkill_mid_load_loses_no_acknowledged_command(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "venue", free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_venue(data_dir, port)
    try:
        wait_until_healthy(url, process)
        with httpx.Client(base_url=url, timeout=10) as client:
            set_up_market(client)
        load = Load(url)
        for thread in load.threads:
            thread.start()
        deadline = time.monotonic() + 60
        while load.acked() < ACKED_BEFORE_KILL:
            assert time.monotonic() < deadline, f"only {load.acked()} acks in 60 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)  # mid-load: the submitters are still sending
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    for thread in load.threads:
        thread.join(10)

    recovered, report = recover(data_dir, repair=True)
    replayed = replay_from_oldest_snapshot(data_dir)

    acked_seqs = [seq for seq, *_ in load.accepted] + load.refused_seqs
    assert report.snapshot_seq > 0, "the run was long enough to write snapshots"
    assert recovered.last_seq >= max(acked_seqs)
    assert recovered.check_invariants() == []
    assert replayed.last_seq == recovered.last_seq
    assert replayed.state_hash() == recovered.state_hash()
    # Every acknowledged order is known to the recovered venue under its client order id.
    seq = recovered.last_seq
    for _, account, client_order_id, order_id, side, price in load.accepted:
        seq += 1
        retry = PlaceOrder("BTC-JPY", account, Side(side), 10, int(price),  # the same terms
                           client_order_id=client_order_id)
        events = recovered.apply(seq, recovered.last_ts, retry)
        assert events == [OrderRepeated("BTC-JPY", account, client_order_id, order_id)]
