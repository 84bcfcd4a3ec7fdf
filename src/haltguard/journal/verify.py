"""Checking a data directory without changing it: ``haltguard venue verify DIR``.

Recovery in read-only mode (nothing truncated, no commit mark written), then the venue's own
invariants (funds conserved, no negative balance, books not crossed, ...). Unlike a start,
verify checks the whole retained journal: every segment, also those before the snapshot a
restart would use, is decoded record by record, and every snapshot is rebuilt. The report
says which range of seqs the directory retains and what a restart would do: which snapshot
it would start from, how many records it would replay, and which torn tail it would cut.
Any damage, a snapshot that fails its check included, makes the verdict "problems found".
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from haltguard.journal.errors import JournalError
from haltguard.journal.recovery import recover
from haltguard.journal.repair import list_repairs
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
    retained_from_seq: int = 0  # the journal holds seq retained_from_seq..last_seq
    repairs: list[str] = []  # cuts made by `haltguard venue repair`, oldest first

    def describe(self) -> str:
        retained = (
            f"  the journal retains seq {self.retained_from_seq} to {self.last_seq}"
            if self.retained_from_seq else "  the journal holds no segment"
        )
        lines = [
            f"{self.data_dir}: {'OK' if self.ok else 'PROBLEMS FOUND'}",
            f"  last seq {self.last_seq}, state hash {self.state_hash or '-'}",
            retained,
            f"  {self.segments} segment(s), {self.snapshots} snapshot(s); a restart would "
            f"start from the snapshot at seq {self.snapshot_seq} and replay "
            f"{self.records_replayed} record(s)",
        ]
        if self.torn_tail is not None:
            lines.append(f"  torn tail (cut at the next start): {self.torn_tail.describe()}")
        lines.extend(
            f"  snapshot refused: {r.file}: {r.reason}" for r in self.rejected_snapshots
        )
        lines.extend(f"  repaired earlier: {repair}" for repair in self.repairs)
        lines.extend(f"  problem: {problem}" for problem in self.problems)
        return "\n".join(lines)


def verify(data_dir: Path | str) -> VerifyReport:
    """Recover ``data_dir`` read-only, check the whole retained journal and every snapshot,
    and check the venue's invariants. Writes nothing."""
    started = time.perf_counter()
    data_dir = Path(data_dir)
    listed = list_segments(data_dir)
    segments, snapshots = len(listed), len(list_snapshots(data_dir))
    retained_from_seq = listed[0][0] if listed else 0
    try:
        repairs = [repair.describe() for repair in list_repairs(data_dir)]
        venue, report = recover(data_dir, repair=False, decode_history=True)
    except JournalError as exc:
        return VerifyReport(
            str(data_dir), False, [str(exc)], 0, 0, "", 0, 0, segments, snapshots, None, [],
            (time.perf_counter() - started) * 1000, retained_from_seq,
        )
    problems = [f"damaged history: {damage}" for damage in report.history_damage]
    problems += [
        f"snapshot fails its check: {rejected.reason}" for rejected in report.rejected_snapshots
    ]
    problems += [f"venue invariant broken: {problem}" for problem in venue.check_invariants()]
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
        retained_from_seq=report.retained_from_seq,
        repairs=repairs,
    )
