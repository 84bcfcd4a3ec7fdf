"""The retained history a restart does not replay: segments before the snapshot it starts
from, and older snapshots. Recovery checks them cheaply and reports damage (the venue's
state does not depend on them); verify decodes all of them and fails on any damage."""

from __future__ import annotations

from pathlib import Path

import pytest

from haltguard.journal import Journal, JournalCorruptionError, JournalReader, recover, verify
from haltguard.journal.codec import RECORD_V1
from haltguard.journal.segments import list_segments, segment_name, segments_dir
from haltguard.journal.snapshots import list_snapshots, snapshot_name, snapshots_dir

from .support import (
    flip,
    record_offsets,
    replay,
    ts_of,
    workload,
    write_journal,
    write_raw_segment,
)

COMMANDS = workload(300)
N = len(COMMANDS)
MIDDLE = segment_name(101)  # seq 101..200, between the snapshots at 100 and 200


def _journal_with_history(data_dir: Path) -> Path:
    """Segments 1..100, 101..200 and 201..N; snapshots at 100 and 200 (a restart starts
    from 200, so the first two segments are history it does not replay)."""
    write_journal(data_dir, COMMANDS, checkpoint_at=(100, 200), batch=10)
    assert [first for first, _ in list_segments(data_dir)] == [1, 101, 201]
    return segments_dir(data_dir) / MIDDLE


def _recovers_the_live_state_but_reports(data_dir: Path, *fragments: str) -> None:
    venue, report = recover(data_dir, repair=False)
    assert venue.state_hash() == replay(COMMANDS).state_hash()
    assert report.snapshot_seq == 200
    assert report.history_damage, report.describe()
    for fragment in fragments:
        assert fragment in " ".join(report.history_damage)
    assert "RETAINED HISTORY DAMAGED" in report.describe()


def _verify_fails_with(data_dir: Path, *fragments: str) -> None:
    report = verify(data_dir)
    assert not report.ok
    for fragment in fragments:
        assert any(fragment in problem for problem in report.problems), report.problems


def test_an_intact_history_passes_recovery_and_verify_which_says_the_range_retained(
    data_dir: Path,
) -> None:
    _journal_with_history(data_dir)
    _, report = recover(data_dir, repair=False)
    assert (report.history_damage, report.retained_from_seq) == ([], 1)
    verdict = verify(data_dir)
    assert verdict.ok, verdict.problems
    assert verdict.retained_from_seq == 1
    assert f"the journal retains seq 1 to {N}" in verdict.describe()


def test_a_flipped_byte_in_a_segment_before_the_snapshot_is_reported_and_fails_verify(
    data_dir: Path,
) -> None:
    middle = _journal_with_history(data_dir)
    damaged_at = record_offsets(middle)[40]
    flip(middle, damaged_at + 20)
    _recovers_the_live_state_but_reports(data_dir, MIDDLE)
    _verify_fails_with(data_dir, f"{MIDDLE} at byte offset {damaged_at}")


def test_a_segment_before_the_snapshot_cut_inside_a_record_is_reported_and_fails_verify(
    data_dir: Path,
) -> None:
    middle = _journal_with_history(data_dir)
    middle.write_bytes(middle.read_bytes()[:-9])
    _recovers_the_live_state_but_reports(data_dir, MIDDLE)
    _verify_fails_with(data_dir, MIDDLE)


def test_a_segment_before_the_snapshot_cut_at_a_record_boundary_is_reported_as_missing_seqs(
    data_dir: Path,
) -> None:
    middle = _journal_with_history(data_dir)
    middle.write_bytes(middle.read_bytes()[: record_offsets(middle)[-2]])  # seq 199, 200 gone
    _recovers_the_live_state_but_reports(data_dir, "seq 199 to 200 are missing")
    _verify_fails_with(data_dir, "seq 199 to 200 are missing")


def test_a_deleted_segment_before_the_snapshot_is_reported_and_fails_verify(
    data_dir: Path,
) -> None:
    _journal_with_history(data_dir).unlink()
    _recovers_the_live_state_but_reports(data_dir, "seq 101 to 200 are missing")
    _verify_fails_with(data_dir, "seq 101 to 200 are missing")


def test_a_damaged_older_snapshot_is_no_fallback_and_is_reported(data_dir: Path) -> None:
    _journal_with_history(data_dir)
    older = snapshots_dir(data_dir) / snapshot_name(100)
    flip(older, older.stat().st_size // 2)
    _recovers_the_live_state_but_reports(data_dir, older.name, "no fallback")
    _verify_fails_with(data_dir, older.name)


def test_a_newest_snapshot_that_fails_its_check_fails_verify_although_recovery_falls_back(
    data_dir: Path,
) -> None:
    _journal_with_history(data_dir)
    newest = list_snapshots(data_dir)[-1][1]
    flip(newest, newest.stat().st_size // 2)
    venue, report = recover(data_dir, repair=False)
    assert report.snapshot_seq == 100
    assert venue.state_hash() == replay(COMMANDS).state_hash()
    _verify_fails_with(data_dir, f"snapshot fails its check: {newest.name}")


def test_verify_states_the_range_left_after_retention_removed_old_segments(
    data_dir: Path,
) -> None:
    write_journal(data_dir, COMMANDS, checkpoint_at=(100, 200, 300), snapshots_keep=2)
    verdict = verify(data_dir)
    assert verdict.ok, verdict.problems
    assert verdict.retained_from_seq == 201
    assert f"the journal retains seq 201 to {N}" in verdict.describe()


def test_a_first_format_segment_before_the_snapshot_is_checked_record_by_record(
    data_dir: Path,
) -> None:
    old = write_raw_segment(data_dir, 1, list(enumerate(COMMANDS[:100], 1)), version=RECORD_V1)
    venue, _ = recover(data_dir)
    journal = Journal(data_dir, unsafe_skip_fsync=True)
    for seq in range(101, N + 1):
        journal.append(seq, ts_of(seq), COMMANDS[seq - 1])
        venue.apply(seq, ts_of(seq), COMMANDS[seq - 1])
        if seq == 200:
            journal.sync()
            journal.checkpoint(venue, ts_of(seq))
    journal.close()
    assert recover(data_dir, repair=False)[1].history_damage == []
    flip(old, record_offsets(old)[60] + 20)
    _, report = recover(data_dir, repair=False)
    assert old.name in " ".join(report.history_damage)


def test_a_reader_following_through_damaged_history_stops_at_it_instead_of_skipping(
    data_dir: Path,
) -> None:
    middle = _journal_with_history(data_dir)
    flip(middle, record_offsets(middle)[40] + 20)
    reader = JournalReader(data_dir)
    try:
        reader.seek(1)
        with pytest.raises(JournalCorruptionError, match=MIDDLE):
            while reader.read_available():
                pass
    finally:
        reader.close()


def test_a_reader_following_across_a_deleted_segment_stops_at_the_gap(data_dir: Path) -> None:
    _journal_with_history(data_dir).unlink()
    reader = JournalReader(data_dir)
    try:
        reader.seek(1)
        with pytest.raises(JournalCorruptionError, match="segment is missing"):
            while reader.read_available():
                pass
    finally:
        reader.close()
