"""A checkpoint prunes history only after its new snapshot has been proven to load.

Pruning deletes segments for good, so a snapshot that recovery would refuse must never be
what pruning relies on. The faults are injected where the disk would cause them: the bytes
that reach the snapshot file are damaged, or are a snapshot of some other state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import haltguard.journal.log as journal_log
from haltguard.journal import Journal, JournalError, recover
from haltguard.journal.segments import list_segments
from haltguard.journal.snapshots import encode_snapshot, list_snapshots
from haltguard.venue.commands import Heartbeat
from haltguard.venue.engine import Venue

from .support import replay, ts_of, workload

COMMANDS = workload(300)


def _flip_a_body_byte(blob: bytes) -> bytes:
    middle = len(blob) // 2
    return blob[:middle] + bytes((blob[middle] ^ 0x40,)) + blob[middle + 1 :]


def _snapshot_of_another_state(blob: bytes) -> bytes:
    other = replay(COMMANDS[:149])  # at seq 150 too, but without the 150th order
    other.apply(150, ts_of(150), Heartbeat())
    return encode_snapshot(other, ts_of(150))[1]


def _run(journal: Journal, venue: Venue, first: int, last: int) -> None:
    for seq in range(first, last + 1):
        journal.append(seq, ts_of(seq), COMMANDS[seq - 1])
        venue.apply(seq, ts_of(seq), COMMANDS[seq - 1])
    journal.sync()


@pytest.mark.parametrize("fault", [_flip_a_body_byte, _snapshot_of_another_state])
def test_a_snapshot_that_does_not_load_back_prunes_nothing(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, fault: Callable[[bytes], bytes]
) -> None:
    journal = Journal(data_dir, snapshots_keep=1, unsafe_skip_fsync=True)
    venue = Venue()
    _run(journal, venue, 1, 100)
    journal.checkpoint(venue, ts_of(100))  # a good one: prunes the segment before it
    _run(journal, venue, 101, 150)
    segments_before = list_segments(data_dir)
    real_write = journal_log.write_snapshot_bytes

    def faulty_disk_write(data_dir: Path, seq: int, blob: bytes, **options: bool) -> Path:
        return real_write(data_dir, seq, fault(blob), **options)

    monkeypatch.setattr(journal_log, "write_snapshot_bytes", faulty_disk_write)
    with pytest.raises(JournalError, match="does not load back"):
        journal.checkpoint(venue, ts_of(150))
    assert list_segments(data_dir) == segments_before
    assert [seq for seq, _ in list_snapshots(data_dir)] == [100]
    monkeypatch.undo()
    _run(journal, venue, 151, len(COMMANDS))
    journal.close()
    recovered, report = recover(data_dir)
    assert (report.snapshot_seq, report.last_seq) == (100, len(COMMANDS))
    assert recovered.state_hash() == venue.state_hash()


def test_a_good_checkpoint_still_prunes_to_the_kept_snapshots(data_dir: Path) -> None:
    journal = Journal(data_dir, snapshots_keep=1, unsafe_skip_fsync=True)
    venue = Venue()
    _run(journal, venue, 1, 100)
    journal.checkpoint(venue, ts_of(100))
    _run(journal, venue, 101, 200)
    journal.checkpoint(venue, ts_of(200))
    journal.close()
    assert [seq for seq, _ in list_snapshots(data_dir)] == [200]
    assert [first for first, _ in list_segments(data_dir)] == [201]
    assert recover(data_dir)[0].state_hash() == venue.state_hash()
