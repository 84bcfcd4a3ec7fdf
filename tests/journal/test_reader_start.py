"""Seeking the reader from a venue the caller rebuilt (``seek(from_seq, start=...)``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from haltguard.journal import JournalReader, recover

from .support import workload, write_journal

COMMANDS = workload(300)


def test_a_start_venue_gives_the_same_records_and_events_as_the_snapshot(
    data_dir: Path,
) -> None:
    write_journal(data_dir, COMMANDS, checkpoint_at=(100,))
    from_seq = 180
    by_snapshot = JournalReader(data_dir)
    by_snapshot.seek(from_seq)
    expected = by_snapshot.read_available()
    start, _ = recover(data_dir, repair=False, through_seq=from_seq - 1)
    by_start = JournalReader(data_dir)
    by_start.seek(from_seq, start=start)
    assert by_start.read_available() == expected
    assert expected[0][0].seq == from_seq
    assert by_start.venue.state_hash() == by_snapshot.venue.state_hash()


def test_a_start_venue_at_or_past_the_seq_is_refused(data_dir: Path) -> None:
    write_journal(data_dir, COMMANDS)
    start, _ = recover(data_dir, repair=False, through_seq=50)
    with pytest.raises(ValueError, match="start is at seq 50, not before seq 50"):
        JournalReader(data_dir).seek(50, start=start)
