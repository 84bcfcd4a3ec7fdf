"""Checking a data directory without changing it: ``haltguard venue verify DIR``.

Recovery in read-only mode (nothing truncated, no commit mark written), then the venue's own
invariants (funds conserved, no negative balance, books not crossed, ...). The report says
what a restart would do: which snapshot it would start from, how many records it would
replay, and which torn tail it would cut.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from haltguard.journal.errors import JournalCorruptionError
from haltguard.journal.recovery import recover
from haltguard.journal.segments import TornTail, list_segments
from haltguard.journal.snapshots import RejectedSnapshot, list_snapshots


class VerifyReport(msgspec.Struct, frozen=True):
    """The verdict on a data directory; ``ok`` is False if anything needs a person."""

    data_dir: str
    ok: bool
    problems: list[str]  # corruption or broken invariants; empty when ok
    last_seq: int
    last_ts: int
    state_hash: str
    snapshot_seq: int
    records_replayed: int
    segments: int
    snapshots: int
    torn_tail: TornTail | None  # would be cut off at the next start; not a problem by itself
    rejected_snapshots: list[RejectedSnapshot]
    elapsed_ms: float

    def describe(self) -> str:
        lines = [
            f"{self.data_dir}: {'OK' if self.ok else 'PROBLEMS FOUND'}",
            f"  last seq {self.last_seq}, state hash {self.state_hash or '-'}",
            f"  {self.segments} segment(s), {self.snapshots} snapshot(s); a restart would "
            f"start from the snapshot at seq {self.snapshot_seq} and replay "
            f"{self.records_replayed} record(s)",
        ]
        if self.torn_tail is not None:
            lines.append(f"  torn tail (cut at the next start): {self.torn_tail.describe()}")
        lines.extend(
            f"  snapshot refused: {r.file}: {r.reason}" for r in self.rejected_snapshots
        )
        lines.extend(f"  problem: {problem}" for problem in self.problems)
        return "\n".join(lines)


def verify(data_dir: Path | str) -> VerifyReport:
    """Recover ``data_dir`` read-only and check the venue's invariants. Writes nothing."""
    started = time.perf_counter()
    data_dir = Path(data_dir)
    segments, snapshots = len(list_segments(data_dir)), len(list_snapshots(data_dir))
    try:
        venue, report = recover(data_dir, repair=False)
    except JournalCorruptionError as exc:
        return VerifyReport(
            str(data_dir), False, [str(exc)], 0, 0, "", 0, 0, segments, snapshots, None, [],
            (time.perf_counter() - started) * 1000,
        )
    problems = [f"venue invariant broken: {problem}" for problem in venue.check_invariants()]
    return VerifyReport(
        data_dir=str(data_dir),
        ok=not problems,
        problems=problems,
        last_seq=report.last_seq,
        last_ts=report.last_ts,
        state_hash=venue.state_hash(),
        snapshot_seq=report.snapshot_seq,
        records_replayed=report.records_replayed,
        segments=segments,
        snapshots=snapshots,
        torn_tail=report.torn_tail,
        rejected_snapshots=report.rejected_snapshots,
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )
