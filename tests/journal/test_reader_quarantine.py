"""The journal reader replays quarantined commands as the venue did: as heartbeats."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from haltguard.gateway.runtime import CommandQuarantinedError, RuntimeLimits, VenueRuntime
from haltguard.journal import JournalReader
from haltguard.journal.quarantine import quarantine_path
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.types import Side
from haltguard.venue.workload import WORKLOAD_MARKET, setup_commands


def _quarantined_copy(tmp_path: Path) -> tuple[Path, str]:
    """A data directory (as a crash leaves it) holding one quarantined order; and the live
    venue's state hash."""
    runtime = VenueRuntime(tmp_path / "venue", limits=RuntimeLimits(fault_injection=True)).start()
    for future in [runtime.submit(c) for c in setup_commands(accounts=3)]:
        future.result(10)
    runtime.arm_fault("engine_raise", "bug-")
    with pytest.raises(CommandQuarantinedError):
        runtime.submit_and_wait(PlaceOrder(WORKLOAD_MARKET, 1, Side.BUY, 1, 90_000,
                                           client_order_id="bug-1"))
    runtime.submit_and_wait(PlaceOrder(WORKLOAD_MARKET, 2, Side.BUY, 1, 90_000))
    deadline = time.monotonic() + 10
    while not str(runtime.quarantined()[0]["halt"]).startswith("halted"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    live = runtime.read(lambda venue: venue.state_hash())
    copy = tmp_path / "copy"
    shutil.copytree(runtime.data_dir, copy)
    runtime.stop()
    return copy, live


def _read_all(reader: JournalReader) -> None:
    while reader.read_available():
        pass


def test_the_reader_skips_a_quarantined_command(tmp_path: Path) -> None:
    data_dir, live = _quarantined_copy(tmp_path)
    reader = JournalReader(data_dir)
    reader.seek(1)
    _read_all(reader)
    assert reader.venue.state_hash() == live
    reader.close()


def test_a_reader_that_passed_a_command_before_it_was_quarantined_rebuilds(
    tmp_path: Path,
) -> None:
    data_dir, live = _quarantined_copy(tmp_path)
    listed = quarantine_path(data_dir)
    aside = tmp_path / "quarantine.json"
    listed.rename(aside)
    reader = JournalReader(data_dir)
    reader.seek(1)
    _read_all(reader)
    assert reader.venue.state_hash() != live  # it applied the command as if fine
    aside.rename(listed)
    _read_all(reader)
    assert reader.venue.state_hash() == live
    reader.close()
