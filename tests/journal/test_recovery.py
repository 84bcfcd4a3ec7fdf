"""Recovery: snapshot + tail rebuilds exactly the venue a full replay does, and says how."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from crc32c import crc32c

from haltguard.journal import (
    Journal,
    JournalError,
    JournalSequenceError,
    recover,
)
from haltguard.journal.codec import encode_record
from haltguard.journal.segments import list_segments
from haltguard.journal.snapshots import (
    SnapshotBody,
    encode_snapshot,
    list_snapshots,
    snapshots_dir,
)
from haltguard.venue.commands import (
    AddMarket,
    CancelAll,
    CancelOrder,
    Command,
    Heartbeat,
    KillSwitch,
    PlaceOrder,
    SetMarketState,
    Withdraw,
)
from haltguard.venue.engine import Venue

from .support import newest_segment, replay, ts_of, workload, write_journal

COMMANDS = workload(400)
N = len(COMMANDS)


def test_snapshot_plus_tail_equals_a_full_replay(data_dir: Path) -> None:
    live = write_journal(data_dir, COMMANDS, checkpoint_at=(200,))
    venue, report = recover(data_dir)
    assert (report.snapshot_seq, report.records_replayed, report.last_seq) == (200, N - 200, N)
    assert report.snapshot_file == "00000000000000000200.snap"
    assert report.last_ts == ts_of(N)
    assert venue.state_hash() == replay(COMMANDS).state_hash() == live.state_hash()


def test_the_same_journal_replays_to_the_same_state_every_time(data_dir: Path) -> None:
    write_journal(data_dir, COMMANDS)
    hashes = {recover(data_dir, repair=False)[0].state_hash() for _ in range(3)}
    assert hashes == {replay(COMMANDS).state_hash()}


def test_a_damaged_newest_snapshot_falls_back_to_an_older_one(data_dir: Path) -> None:
    write_journal(data_dir, COMMANDS, checkpoint_at=(150, 300))
    newest = list_snapshots(data_dir)[-1][1]
    damaged = bytearray(newest.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    newest.write_bytes(bytes(damaged))
    venue, report = recover(data_dir)
    assert report.snapshot_seq == 150
    assert [r.file for r in report.rejected_snapshots] == [newest.name]
    assert "checksum mismatch" in report.rejected_snapshots[0].reason
    assert "snapshots refused" in report.describe()
    assert venue.state_hash() == replay(COMMANDS).state_hash()


def test_a_snapshot_that_rebuilds_a_different_state_is_refused(data_dir: Path) -> None:
    write_journal(data_dir, COMMANDS, checkpoint_at=(150, 300))
    newest = list_snapshots(data_dir)[-1][1]
    _, blob = encode_snapshot(replay(COMMANDS[:300]), ts_of(300))
    header, body = blob[:40], msgspec.msgpack.decode(blob[40:], type=SnapshotBody)
    forged = msgspec.msgpack.encode(SnapshotBody("0" * 64, body.state))
    crc = crc32c(forged, crc32c(header[8:36])).to_bytes(4, "little")
    newest.write_bytes(header[:28] + len(forged).to_bytes(8, "little") + crc + forged)
    _, report = recover(data_dir)
    assert report.snapshot_seq == 150
    assert "differs from the recorded" in report.rejected_snapshots[0].reason


def test_retention_keeps_k_snapshots_and_the_segments_they_need(data_dir: Path) -> None:
    write_journal(
        data_dir, COMMANDS, checkpoint_at=(100, 200, 300), snapshots_keep=2, batch=10
    )
    assert [seq for seq, _ in list_snapshots(data_dir)] == [200, 300]
    assert [first for first, _ in list_segments(data_dir)] == [201, 301]
    venue, report = recover(data_dir)
    assert report.snapshot_seq == 300
    assert venue.state_hash() == replay(COMMANDS).state_hash()
    (snapshots_dir(data_dir) / "00000000000000000300.snap").unlink()
    assert recover(data_dir)[0].state_hash() == venue.state_hash()  # the older one suffices


def test_recovery_without_a_usable_snapshot_refuses_when_early_history_is_gone(
    data_dir: Path,
) -> None:
    write_journal(data_dir, COMMANDS, checkpoint_at=(100, 200), snapshots_keep=1)
    (snapshots_dir(data_dir) / "00000000000000000200.snap").unlink()
    with pytest.raises(JournalError, match="the history in between is missing"):
        recover(data_dir)


def test_the_journal_continues_after_recovery_and_a_second_recovery_sees_everything(
    data_dir: Path,
) -> None:
    write_journal(data_dir, COMMANDS[:250])
    venue, report = recover(data_dir)
    journal = Journal(data_dir)
    for seq in range(report.last_seq + 1, N + 1):
        journal.append(seq, ts_of(seq), COMMANDS[seq - 1])
        venue.apply(seq, ts_of(seq), COMMANDS[seq - 1])
    journal.sync()
    journal.checkpoint(venue, ts_of(N))
    journal.close()
    again, report = recover(data_dir)
    assert report.last_seq == N
    assert again.state_hash() == replay(COMMANDS).state_hash()


def test_opening_a_crashed_journal_without_recovery_is_refused(data_dir: Path) -> None:
    write_journal(data_dir, COMMANDS[:50])
    with newest_segment(data_dir).open("ab") as file:  # written, but never marked synced
        file.write(encode_record(51, ts_of(51), COMMANDS[50], {}))
    with pytest.raises(JournalError, match=r"run haltguard\.journal\.recover"):
        Journal(data_dir)
    _, report = recover(data_dir)
    assert report.last_seq == 51  # complete records after the mark are kept
    Journal(data_dir).close()


def test_appends_must_be_gap_free_and_never_go_back_in_time(data_dir: Path) -> None:
    journal = Journal(data_dir, unsafe_skip_fsync=True)
    journal.append(1, 100, Heartbeat())
    with pytest.raises(JournalSequenceError, match="gap-free"):
        journal.append(3, 100, Heartbeat())
    with pytest.raises(JournalSequenceError, match="before the last ts"):
        journal.append(2, 99, Heartbeat())
    journal.append(2, 100, Heartbeat())
    journal.sync()
    assert (journal.last_seq, journal.durable_seq) == (2, 2)
    journal.close()


def test_a_checkpoint_needs_every_record_synced_and_applied(data_dir: Path) -> None:
    journal = Journal(data_dir, unsafe_skip_fsync=True)
    venue = Venue()
    journal.append(1, 100, Heartbeat())
    with pytest.raises(JournalError, match="unsynced"):
        journal.checkpoint(venue, 100)
    journal.sync()
    with pytest.raises(JournalError, match="apply every synced command"):
        journal.checkpoint(venue, 100)
    venue.apply(1, 100, Heartbeat())
    assert journal.checkpoint(venue, 100).name == "00000000000000000001.snap"
    journal.close()


def _varied_flow() -> list[Command]:
    """Orders with client ids in two markets, halts, a kill switch, withdrawals, heartbeats."""
    from haltguard.venue.markets import Asset, make_market
    from haltguard.venue.types import MarketState, Side

    commands = workload(150)
    other = make_market(
        "ALT-JPY", Asset("SIM", 0), Asset("JPY", 0), tick_size="1", lot_size="1",
        min_qty="1", max_qty="1000",
    )
    commands += [AddMarket(other, MarketState.OPEN)]
    for index in range(60):
        market = "ALT-JPY" if index % 2 else "SIM-JPY"
        side = Side.BUY if index % 3 else Side.SELL
        commands.append(
            PlaceOrder(market, 1 + index % 5, side, 1 + index % 4, 100_000 + index % 9 - 4,
                       client_order_id=f"c-{index}")
        )
        if index % 7 == 0:
            commands.append(CancelOrder(market, 1 + index % 5, client_order_id=f"c-{index}"))
        if index == 20:
            commands.append(SetMarketState("SIM-JPY", MarketState.HALTED, "ops", "test"))
        if index == 30:
            commands.append(KillSwitch(True, "ops", "drill", "INC-1"))
            commands.append(KillSwitch(False, "ops", "drill over", "INC-1"))
        if index == 40:
            commands.append(CancelAll(account=2, actor="ops", reason="test"))
            commands.append(Withdraw(3, "JPY", 1_000, "bank", "w-1"))
            commands.append(Heartbeat())
    return commands


def test_a_varied_flow_across_segment_rolls_recovers_to_the_live_state(data_dir: Path) -> None:
    commands = _varied_flow()
    live = write_journal(data_dir, commands, batch=5, segment_bytes_max=4096,
                         checkpoint_at=(100, 220))
    assert len(list_segments(data_dir)) > 3
    venue, report = recover(data_dir)
    assert report.last_seq == len(commands)
    assert venue.state_hash() == live.state_hash() == replay(commands).state_hash()
    assert venue.check_invariants() == []
