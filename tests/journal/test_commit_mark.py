"""The commit mark separates what may be a torn tail (after it: never synced, never
acknowledged) from corruption (at or below it: synced, perhaps acknowledged), which is
refused and never cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from haltguard.journal import JournalCorruptionError, recover, verify
from haltguard.journal.segments import list_segments

from .support import (
    flip,
    newest_segment,
    record_offsets,
    replay,
    unsync_last_records,
    workload,
    write_journal,
)

COMMANDS = workload(60)
N = len(COMMANDS)


@pytest.fixture
def journal_dir(data_dir: Path) -> Path:
    write_journal(data_dir, COMMANDS, batch=16)
    return data_dir


def _refused_unchanged(data_dir: Path, match: str) -> None:
    files = {path: path.read_bytes() for _, path in list_segments(data_dir)}
    with pytest.raises(JournalCorruptionError, match=match):
        recover(data_dir)
    assert {path: path.read_bytes() for _, path in list_segments(data_dir)} == files
    assert not verify(data_dir).ok


def test_a_flipped_byte_in_the_last_synced_record_is_corruption_not_a_torn_tail(
    journal_dir: Path,
) -> None:
    segment = newest_segment(journal_dir)
    last = record_offsets(segment)[-1]
    flip(segment, last + 20)
    _refused_unchanged(journal_dir, "below the commit mark")
    with pytest.raises(JournalCorruptionError) as caught:
        recover(journal_dir, repair=False)
    assert caught.value.offset == last


def test_the_same_flipped_byte_in_a_record_never_synced_is_a_torn_tail(
    journal_dir: Path,
) -> None:
    segment = newest_segment(journal_dir)
    last = unsync_last_records(journal_dir, 1)
    flip(segment, last + 20)
    venue, report = recover(journal_dir)
    assert report.torn_tail is not None
    assert report.torn_tail.offset == last
    assert venue.state_hash() == replay(COMMANDS[:-1]).state_hash()


def test_a_synced_record_cut_short_is_refused(journal_dir: Path) -> None:
    segment = newest_segment(journal_dir)
    segment.write_bytes(segment.read_bytes()[:-5])
    _refused_unchanged(journal_dir, "below the commit mark")


def test_synced_records_cut_off_at_a_record_boundary_are_refused(journal_dir: Path) -> None:
    segment = newest_segment(journal_dir)
    segment.write_bytes(segment.read_bytes()[: record_offsets(segment)[-3]])
    _refused_unchanged(journal_dir, f"records through seq {N} were synced")


def test_a_deleted_newest_segment_is_refused(data_dir: Path) -> None:
    write_journal(data_dir, COMMANDS, checkpoint_at=(30,))
    newest = newest_segment(data_dir)
    assert newest.name != list_segments(data_dir)[0][1].name
    newest.unlink()
    _refused_unchanged(data_dir, "synced, perhaps acknowledged records are missing")
