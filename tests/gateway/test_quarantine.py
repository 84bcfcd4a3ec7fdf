"""Software-bug quarantine: an engine exception halts the command's market, not the venue."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from gateway_support import ADMIN, TOKEN, start_runtime

from haltguard.app.venue_app import create_venue_app
from haltguard.gateway.runtime import (
    CommandQuarantinedError,
    CommandResult,
    VenueRuntime,
    VenueUnavailableError,
)
from haltguard.journal import JournalReader, recover
from haltguard.journal.quarantine import quarantine_path
from haltguard.venue.commands import Command, Heartbeat, PlaceOrder
from haltguard.venue.engine import Venue
from haltguard.venue.types import MarketState, Side

MARKET = "BTC-JPY"
PRICE_JPY = 14_000_000


def order(account: int, client_order_id: str, side: Side = Side.BUY) -> PlaceOrder:
    price = PRICE_JPY if side is Side.BUY else PRICE_JPY * 2  # never crosses
    return PlaceOrder(MARKET, account, side, 1, price, client_order_id=client_order_id)


@pytest.fixture
def drill_runtime(tmp_path: Path) -> Iterator[VenueRuntime]:
    runtime = start_runtime(tmp_path / "venue", fault_injection=True)
    yield runtime
    runtime.stop()


def submit_as_one_batch(runtime: VenueRuntime, commands: Sequence[Command]) -> list[
        Future[CommandResult]]:
    """Hold the venue thread in a listener while ``commands`` queue, so they share a batch."""
    hold, held = threading.Event(), threading.Event()

    def stall_once(_venue: Venue, _applied: Sequence[CommandResult]) -> None:
        if not held.is_set():
            held.set()
            hold.wait(10)

    runtime.add_listener(stall_once)
    runtime.submit(Heartbeat())
    assert held.wait(10)
    futures = [runtime.submit(command) for command in commands]
    hold.set()
    return futures


def wait_for_halt(runtime: VenueRuntime) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        entries = runtime.quarantined()
        if entries and str(entries[-1]["halt"]).startswith("halted at seq"):
            return entries[-1]
        time.sleep(0.01)
    raise AssertionError(f"no halt was engaged: {runtime.quarantined()}")


def test_an_engine_exception_quarantines_the_command_and_halts_only_its_market(
    drill_runtime: VenueRuntime,
) -> None:
    runtime = drill_runtime
    runtime.arm_fault("engine_raise", "bug-")
    before, faulty, after = submit_as_one_batch(
        runtime, [order(1, "fine-1"), order(2, "bug-1"), order(3, "fine-2", Side.SELL)]
    )

    with pytest.raises(CommandQuarantinedError, match="quarantined"):
        faulty.result(10)
    assert before.result(10).seq + 2 == after.result(10).seq  # the same batch, both applied
    entry = wait_for_halt(runtime)
    assert entry["seq"] == before.result().seq + 1
    assert entry["market"] == MARKET and entry["client_order_id"] == "bug-1"
    assert "injected fault" in str(entry["error"])
    assert runtime.failure == "" and runtime.status().running
    states = runtime.read(lambda venue: venue.market_states())
    assert states[MARKET] is MarketState.HALTED
    assert states["ETH-JPY"] is MarketState.OPEN
    assert runtime.read(lambda venue: venue.open_orders(2)) == []
    assert [o.account for o in runtime.read(lambda venue: venue.open_orders(1))] == [1]
    on_disk = json.loads(quarantine_path(runtime.data_dir).read_text())
    assert [c["seq"] for c in on_disk["commands"]] == [entry["seq"]]


def test_a_quarantined_command_stays_skipped_after_a_restart(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path / "venue", fault_injection=True)
    runtime.arm_fault("engine_raise", "bug-")
    futures = submit_as_one_batch(runtime, [order(1, "a"), order(2, "bug-2"), order(3, "b")])
    with pytest.raises(CommandQuarantinedError):
        futures[1].result(10)
    seq = int(wait_for_halt(runtime)["seq"])  # type: ignore[call-overload]
    live_hash = runtime.read(lambda venue: venue.state_hash())
    crashed = tmp_path / "crashed"  # the directory as a crash would leave it: no snapshot
    shutil.copytree(runtime.data_dir, crashed)
    runtime.stop()

    venue, report = recover(crashed, repair=False)
    assert report.quarantined_skipped == [seq]
    assert venue.state_hash() == live_hash
    assert venue.state_hash() == replay_skipping(crashed, {seq}).state_hash()
    unaware = tmp_path / "unaware"  # the same journal without its quarantine list
    shutil.copytree(crashed, unaware)
    quarantine_path(unaware).unlink()
    assert venue.state_hash() != replay_skipping(unaware, set()).state_hash()

    restarted = start_runtime(crashed, set_up=False)
    try:
        assert [entry["seq"] for entry in restarted.quarantined()] == [seq]
        assert restarted.status().recovery["quarantined_skipped"] == [seq]
        assert restarted.read(lambda v: v.market_states())[MARKET] is MarketState.HALTED
    finally:
        restarted.stop()


def replay_skipping(data_dir: Path, skipped: set[int]) -> Venue:
    """Every journaled command applied to a fresh venue, a heartbeat in place of ``skipped``."""
    reader = JournalReader(data_dir)
    venue = Venue()
    reader.seek(1)
    while entries := reader.read_available():
        for sequenced, _ in entries:
            command = Heartbeat() if sequenced.seq in skipped else sequenced.command
            venue.apply(sequenced.seq, sequenced.ts, command)
    reader.close()
    return venue


def test_repeated_engine_exceptions_stop_the_venue(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path / "venue", fault_injection=True, quarantines_max=1)
    try:
        runtime.arm_fault("engine_raise", "bug-")
        with pytest.raises(CommandQuarantinedError):
            runtime.submit_and_wait(order(1, "bug-1"))
        assert runtime.failure == ""
        with pytest.raises(VenueUnavailableError, match="keeps raising"):
            runtime.submit_and_wait(order(1, "bug-2"))
        assert "keeps raising" in runtime.failure
        with pytest.raises(VenueUnavailableError):
            runtime.submit(order(1, "after"))
    finally:
        runtime.stop()


def test_a_disarmed_fault_no_longer_raises(drill_runtime: VenueRuntime) -> None:
    drill_runtime.arm_fault("engine_raise", "bug-")
    drill_runtime.disarm_fault()
    result = drill_runtime.submit_and_wait(order(1, "bug-3"))
    assert result.seq > 0 and drill_runtime.quarantined() == []


def test_faults_are_refused_over_http_unless_the_venue_allows_them(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path / "venue")
    try:
        with TestClient(create_venue_app(runtime, TOKEN)) as client:
            body = {"kind": "engine_raise", "client_order_id_prefix": "bug-"}
            response = client.post("/v1/admin/faults", json=body, headers=ADMIN)
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "fault_injection_not_allowed"
            assert "--allow-fault-injection" in response.json()["error"]["message"]
            assert client.post("/v1/admin/faults", json=body).status_code in (401, 403)
    finally:
        runtime.stop()


def test_an_armed_fault_over_http_quarantines_and_is_listed(drill_runtime: VenueRuntime) -> None:
    with TestClient(create_venue_app(drill_runtime, TOKEN)) as client:
        body = {"kind": "engine_raise", "client_order_id_prefix": "drill-"}
        assert client.post("/v1/admin/faults", json=body, headers=ADMIN).status_code == 200
        refused = client.post(f"/v1/markets/{MARKET}/orders", json={
            "account": 1, "side": "buy", "qty": "0.001", "price": "14000000",
            "client_order_id": "drill-1"})
        assert refused.status_code == 500
        assert refused.json()["error"]["code"] == "command_quarantined"
        wait_for_halt(drill_runtime)
        listed = client.get("/v1/admin/quarantine", headers=ADMIN).json()["quarantined"]
        assert [entry["client_order_id"] for entry in listed] == ["drill-1"]
        assert client.get("/v1/admin/quarantine").status_code in (401, 403)
        assert client.delete("/v1/admin/faults", headers=ADMIN).json()["disarmed"] == {
            "kind": "engine_raise", "client_order_id_prefix": "drill-"}
        bad = client.post("/v1/admin/faults", json={"kind": "disk_full",
                                                    "client_order_id_prefix": "x"}, headers=ADMIN)
        assert bad.status_code == 422


def test_a_halt_through_the_admin_api_takes_the_brake_lane(drill_runtime: VenueRuntime) -> None:
    with TestClient(create_venue_app(drill_runtime, TOKEN)) as client:
        response = client.post(f"/v1/admin/markets/{MARKET}/state", headers=ADMIN, json={
            "state": "halted", "actor": "operator:carol", "reason": "drill"})
        assert response.status_code == 200, response.text
    assert drill_runtime.status().brakes == 1
    assert drill_runtime.read(lambda v: v.market_states())[MARKET] is MarketState.HALTED
