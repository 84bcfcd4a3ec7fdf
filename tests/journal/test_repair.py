"""``haltguard venue repair``: cuts damage after the commit mark on an operator's decision,
keeps the cut bytes aside and records the repair; refuses everything below the mark."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from haltguard.journal import JournalCorruptionError, JournalError, recover, verify
from haltguard.journal.repair import apply_repair, list_repairs, plan_repair, repairs_dir
from haltguard.journal.segments import COMMIT_MARK_NAME, segment_name, segments_dir

from .support import (
    flip,
    newest_segment,
    record_offsets,
    replay,
    unsync_last_records,
    workload,
    write_journal,
)

COMMANDS = workload(120)
N = len(COMMANDS)
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
GARBAGE = b"\x00\x00\x00\x7f" + bytes(range(37))  # a length no record has: never torn


@pytest.fixture
def journal_dir(data_dir: Path) -> Path:
    write_journal(data_dir, COMMANDS, checkpoint_at=(60,), batch=16)
    return data_dir


def _files(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes()
            for p in sorted(data_dir.rglob("*")) if p.is_file()}


def test_repair_cuts_garbage_appended_after_the_commit_mark_and_keeps_it_aside(
    journal_dir: Path,
) -> None:
    segment = newest_segment(journal_dir)
    intact = segment.read_bytes()
    with segment.open("ab") as file:
        file.write(GARBAGE)
    with pytest.raises(JournalCorruptionError):
        recover(journal_dir)  # refused safely: recovery does not guess

    plan = plan_repair(journal_dir)
    assert plan is not None
    assert (plan.segment, plan.offset, plan.cut_bytes) == (segment.name, len(intact), len(GARBAGE))
    assert (plan.last_seq_kept, plan.mark_seq) == (N, N)
    record = apply_repair(journal_dir, plan, actor="alice", reason="garbage after a disk fault",
                          now=NOW)

    assert segment.read_bytes() == intact
    kept = repairs_dir(journal_dir) / record.cut_file
    assert kept.read_bytes() == GARBAGE
    assert record.cut_sha256 == hashlib.sha256(GARBAGE).hexdigest()
    assert list_repairs(journal_dir) == [record]
    venue, report = recover(journal_dir)
    assert report.last_seq == N
    assert venue.state_hash() == replay(COMMANDS).state_hash()
    verdict = verify(journal_dir)
    assert verdict.ok, verdict.problems
    assert "by alice (garbage after a disk fault)" in verdict.describe()


def test_repair_cuts_a_hole_in_the_last_unsynced_batch_from_the_damaged_record_on(
    journal_dir: Path,
) -> None:
    segment = newest_segment(journal_dir)
    unsync_last_records(journal_dir, 5)
    damaged_at = record_offsets(segment)[-3]
    flip(segment, damaged_at + 20)
    with pytest.raises(JournalCorruptionError, match="with records after it"):
        recover(journal_dir)
    plan = plan_repair(journal_dir)
    assert plan is not None
    assert (plan.offset, plan.claimed_seq, plan.last_seq_kept) == (damaged_at, N - 2, N - 3)
    apply_repair(journal_dir, plan, actor="alice", reason="power loss", now=NOW)
    venue, report = recover(journal_dir)
    assert report.last_seq == N - 3
    assert venue.state_hash() == replay(COMMANDS[:-3]).state_hash()


def test_repair_refuses_damage_below_the_commit_mark_and_changes_nothing(
    journal_dir: Path,
) -> None:
    segment = newest_segment(journal_dir)
    flip(segment, record_offsets(segment)[-3] + 20)  # synced: may have been acknowledged
    before = _files(journal_dir)
    with pytest.raises(JournalCorruptionError, match="repair will not cut them"):
        plan_repair(journal_dir)
    assert _files(journal_dir) == before


def test_repair_refuses_without_a_readable_commit_mark(journal_dir: Path) -> None:
    with newest_segment(journal_dir).open("ab") as file:
        file.write(GARBAGE)
    (segments_dir(journal_dir) / COMMIT_MARK_NAME).write_bytes(b"torn")
    with pytest.raises(JournalError, match="no readable commit mark"):
        plan_repair(journal_dir)


def test_repair_refuses_when_the_history_before_the_newest_segment_is_damaged(
    journal_dir: Path,
) -> None:
    with newest_segment(journal_dir).open("ab") as file:
        file.write(GARBAGE)
    older = segments_dir(journal_dir) / segment_name(1)
    flip(older, record_offsets(older)[10] + 20)
    with pytest.raises(JournalError, match="damaged too"):
        plan_repair(journal_dir)


def test_an_intact_journal_needs_no_repair(journal_dir: Path) -> None:
    assert plan_repair(journal_dir) is None


def test_a_repair_needs_a_person_and_a_reason_and_a_plan_that_still_holds(
    journal_dir: Path,
) -> None:
    segment = newest_segment(journal_dir)
    with segment.open("ab") as file:
        file.write(GARBAGE)
    plan = plan_repair(journal_dir)
    assert plan is not None
    with pytest.raises(JournalError, match="actor"):
        apply_repair(journal_dir, plan, actor="alice", reason=" ", now=NOW)
    with segment.open("ab") as file:
        file.write(b"more")
    with pytest.raises(JournalError, match="changed since the repair was planned"):
        apply_repair(journal_dir, plan, actor="alice", reason="disk fault", now=NOW)
    assert not repairs_dir(journal_dir).exists()
