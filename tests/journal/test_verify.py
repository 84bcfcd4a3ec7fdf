"""``haltguard venue verify``: a verdict on a data directory that never changes it."""

from __future__ import annotations

from pathlib import Path

from haltguard.journal import verify
from haltguard.journal.quarantine import quarantine_path
from haltguard.journal.snapshots import encode_snapshot, snapshots_dir, write_snapshot_bytes
from haltguard.venue.engine import Venue

from .support import (
    newest_segment,
    record_offsets,
    replay,
    ts_of,
    unsync_last_records,
    workload,
    write_journal,
)

COMMANDS = workload(300)


def _files(data_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every path under ``data_dir`` with its bytes (files) and modification time."""
    return {
        str(path.relative_to(data_dir)): (
            path.read_bytes() if path.is_file() else b"", path.stat().st_mtime_ns
        )
        for path in sorted(data_dir.rglob("*"))
    }


def test_verify_reports_the_state_and_a_torn_tail_and_changes_nothing(data_dir: Path) -> None:
    write_journal(data_dir, COMMANDS, checkpoint_at=(100,))
    segment = newest_segment(data_dir)
    unsync_last_records(data_dir, 1)  # its sync never returned ...
    segment.write_bytes(segment.read_bytes()[:-7])  # ... and the write was torn
    before = _files(data_dir)
    report = verify(data_dir)
    assert _files(data_dir) == before
    assert report.ok
    assert report.problems == []
    assert (report.last_seq, report.snapshot_seq) == (len(COMMANDS) - 1, 100)
    assert report.state_hash == replay(COMMANDS[:-1]).state_hash()
    assert report.torn_tail is not None
    assert "torn tail (cut at the next start)" in report.describe()


def test_verify_reports_corruption_as_a_problem_naming_the_offset(data_dir: Path) -> None:
    write_journal(data_dir, COMMANDS)
    segment = newest_segment(data_dir)
    offset = record_offsets(segment)[10]
    damaged = bytearray(segment.read_bytes())
    damaged[offset + 12] ^= 0xFF
    segment.write_bytes(bytes(damaged))
    before = _files(data_dir)
    report = verify(data_dir)
    assert _files(data_dir) == before
    assert not report.ok
    assert f"{segment.name} at byte offset {offset}" in report.problems[0]
    assert "PROBLEMS FOUND" in report.describe()


def test_verify_reports_a_venue_that_breaks_conservation_of_funds(data_dir: Path) -> None:
    """A snapshot can be internally consistent (CRC, hash) yet hold an impossible ledger."""
    write_journal(data_dir, COMMANDS[:100], checkpoint_at=(100,))
    state = replay(COMMANDS[:100]).export_state()
    first = state.balances[0]
    forged_balances = [
        type(first)(first.asset, first.account, first.available + 1, first.held),
        *state.balances[1:],
    ]
    forged = Venue.restore(
        type(state)(**{**{f: getattr(state, f) for f in state.__struct_fields__},
                       "balances": forged_balances})
    )
    (snapshots_dir(data_dir) / "00000000000000000100.snap").unlink()
    seq, blob = encode_snapshot(forged, ts_of(100))
    write_snapshot_bytes(data_dir, seq, blob, unsafe_skip_fsync=True)
    report = verify(data_dir)
    assert not report.ok
    assert any("venue invariant broken" in problem for problem in report.problems)


def test_verify_reports_an_unreadable_quarantine_list_as_a_problem(data_dir: Path) -> None:
    write_journal(data_dir, COMMANDS[:80])
    quarantine_path(data_dir).write_text('{"version": 1, "commands": [{"seq": ')
    report = verify(data_dir)
    assert not report.ok
    assert "quarantine.json cannot be read" in report.problems[0]
