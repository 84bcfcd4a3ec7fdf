"""Recovery: rebuild the venue from disk after a restart or a crash.

The newest snapshot that verifies (older ones if it does not), then every later record
replayed in order through :meth:`Venue.replay` (the same code as :meth:`Venue.apply`,
without building events), with sequence numbers checked gap-free within and across
segments. A torn tail of the newest segment is cut off (only with
``repair``) and reported; anything else wrong stops recovery with
:class:`JournalCorruptionError`. With ``repair=False`` nothing on disk changes, which is what
``haltguard venue verify`` needs.

Quarantined commands (:mod:`haltguard.journal.quarantine`) are replayed as a heartbeat at
their ts, as the live venue did after setting them aside, and listed in the report.

Speed matters here: each segment is read with one ``read``, and plain orders and cancels are
decoded straight into ``Venue.replay_order`` / ``Venue.replay_cancel`` arguments, with no
command or event objects.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from haltguard.journal import codec
from haltguard.journal.errors import JournalCorruptionError
from haltguard.journal.quarantine import quarantined_seqs
from haltguard.journal.segments import (
    CommitMark,
    TornTail,
    fsync_directory,
    list_segments,
    scan_segment,
    segments_dir,
    write_commit_mark,
)
from haltguard.journal.snapshots import RejectedSnapshot, load_newest_snapshot, snapshots_dir
from haltguard.venue.commands import Command, Heartbeat
from haltguard.venue.engine import Venue

_HEARTBEAT = Heartbeat()


class RecoveryReport(msgspec.Struct, frozen=True):
    """What recovery found and did; the runtime logs it and the status page shows it."""

    data_dir: str
    snapshot_seq: int  # 0: no snapshot, replay started from an empty venue
    snapshot_file: str
    records_replayed: int
    segments_read: int
    last_seq: int
    last_ts: int
    torn_tail: TornTail | None  # the incomplete last write, if any
    torn_tail_cut: bool  # True when repair removed it; False in verify mode
    rejected_snapshots: list[RejectedSnapshot]
    elapsed_ms: float
    quarantined_skipped: list[int] = []  # quarantined seqs replayed as heartbeats

    def summary(self) -> dict[str, object]:
        """Plain values for logs, status endpoints and JSON."""
        data: dict[str, object] = msgspec.to_builtins(self)
        return data

    def describe(self) -> str:
        """One paragraph an operator can read."""
        base = (
            f"recovered to seq {self.last_seq} in {self.elapsed_ms:.0f} ms: snapshot at seq "
            f"{self.snapshot_seq}, {self.records_replayed} records replayed from "
            f"{self.segments_read} segment(s)"
        )
        if self.rejected_snapshots:
            names = ", ".join(f"{r.file} ({r.reason})" for r in self.rejected_snapshots)
            base += f"; snapshots refused: {names}"
        if self.torn_tail is not None:
            action = "cut off" if self.torn_tail_cut else "left in place (verify mode)"
            base += f"; torn tail {action}: {self.torn_tail.describe()}"
        if self.quarantined_skipped:
            seqs = ", ".join(str(seq) for seq in self.quarantined_skipped)
            base += f"; quarantined command(s) skipped: seq {seqs}"
        return base


def recover(
    data_dir: Path | str, repair: bool = True, *, through_seq: int | None = None
) -> tuple[Venue, RecoveryReport]:
    """Rebuild the venue from ``data_dir``: newest valid snapshot plus the journal's tail.

    With ``repair`` a torn tail is truncated away (and the newest segment fsynced) so the
    journal can be appended to, and the commit mark is rewritten; without it nothing on
    disk is touched. ``through_seq`` stops the replay after that seq (no repair then): the
    runtime rebuilds its venue that way when it quarantines a command. Raises
    :class:`JournalCorruptionError` if history is damaged.
    """
    started = time.perf_counter()
    data_dir = Path(data_dir)
    if through_seq is not None and repair:
        raise ValueError("recover(through_seq=...) reads only; call it with repair=False")
    if repair:
        segments_dir(data_dir).mkdir(parents=True, exist_ok=True)
        snapshots_dir(data_dir).mkdir(parents=True, exist_ok=True)
    with gc_paused():
        return _recover(data_dir, repair, started, through_seq)


class _ReachedEndError(Exception):
    """Raised by a sink at the first record after ``through_seq`` to end the replay."""


class _Sinks:
    """Replay sinks that set quarantined seqs aside and stop after ``through_seq``."""

    def __init__(self, venue: Venue, skip: frozenset[int], through_seq: int | None) -> None:
        self.venue = venue
        self.skip = skip
        self.through_seq = through_seq if through_seq is not None else -1
        self.skipped: list[int] = []

    def _take(self, seq: int, ts: int) -> bool:
        """False when the record is to be replayed as a heartbeat (it was done here)."""
        if 0 <= self.through_seq < seq:
            raise _ReachedEndError
        if seq in self.skip:
            self.skipped.append(seq)
            self.venue.replay(seq, ts, _HEARTBEAT)
            return False
        return True

    def replay(self, seq: int, ts: int, command: Command) -> None:
        if self._take(seq, ts):
            self.venue.replay(seq, ts, command)

    def replay_order(self, seq: int, ts: int, *fields: object) -> None:
        if self._take(seq, ts):
            self.venue.replay_order(seq, ts, *fields)  # type: ignore[arg-type]

    def replay_cancel(self, seq: int, ts: int, *fields: object) -> None:
        if self._take(seq, ts):
            self.venue.replay_cancel(seq, ts, *fields)  # type: ignore[arg-type]


def _recover(
    data_dir: Path, repair: bool, started: float, through_seq: int | None
) -> tuple[Venue, RecoveryReport]:
    venue, snapshot, rejected = load_newest_snapshot(data_dir, seq_max=through_seq)
    if venue is None:
        venue = Venue()
    snapshot_seq = venue.last_seq
    last_ts = snapshot.last_ts if snapshot is not None else 0
    segments = list_segments(data_dir)
    start = replay_start_index(segments, snapshot_seq, rejected)
    torn: TornTail | None = None
    newest_end = 0  # where the newest segment's valid records end
    skip = frozenset(seq for seq in quarantined_seqs(data_dir) if seq > snapshot_seq)
    sinks = _Sinks(venue, skip, through_seq)
    replay: codec.Sink = venue.replay
    replay_order: codec.OrderSink = venue.replay_order
    replay_cancel: codec.CancelSink = venue.replay_cancel
    replay_batch: codec.BatchSink | None = venue.replay_batch
    if skip or through_seq is not None:
        replay, replay_order, replay_cancel = sinks.replay, sinks.replay_order, sinks.replay_cancel
        replay_batch = None  # record by record, so the sinks see each seq
    segments_read = 0
    for index in range(start, len(segments)):
        first_seq, path = segments[index]
        expected = venue.last_seq + 1 if index > start else first_seq
        if first_seq != expected:
            raise JournalCorruptionError(
                path, 0,
                f"segment starts at seq {first_seq} but the previous one ended at seq "
                f"{expected - 1}: a segment is missing",
            )
        with path.open("rb") as file:
            data = file.read()
        is_newest = index == len(segments) - 1
        segments_read += 1
        try:
            end = scan_segment(
                path, data, first_seq, replay, is_newest=is_newest, order_sink=replay_order,
                cancel_sink=replay_cancel, batch_sink=replay_batch,
                skip_through_seq=snapshot_seq if index == start else 0,
            )
        except _ReachedEndError:
            break
        if venue.last_seq != end.next_seq - 1 and end.next_seq - 1 > snapshot_seq:
            raise JournalCorruptionError(
                path, end.valid_end,
                f"the venue is at seq {venue.last_seq} after replay, the log at {end.next_seq - 1}",
            )
        torn, newest_end = end.torn, end.valid_end
    last_ts = max(last_ts, venue.last_ts)
    if repair:
        _repair(data_dir, segments[-1][1] if segments else None, torn, newest_end)
        remaining = list_segments(data_dir)
        newest_first_seq, newest_size = 0, 0
        if remaining:
            newest_first_seq, newest_size = remaining[-1][0], remaining[-1][1].stat().st_size
        write_commit_mark(
            data_dir, CommitMark(newest_first_seq, newest_size, venue.last_seq, last_ts)
        )
    report = RecoveryReport(
        data_dir=str(data_dir),
        snapshot_seq=snapshot_seq,
        snapshot_file=snapshot.file if snapshot is not None else "",
        records_replayed=venue.last_seq - snapshot_seq,
        segments_read=segments_read,
        last_seq=venue.last_seq,
        last_ts=last_ts,
        torn_tail=torn,
        torn_tail_cut=repair and torn is not None,
        rejected_snapshots=rejected,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        quarantined_skipped=sinks.skipped,
    )
    return venue, report


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a replay builds the venue.

    A replay creates hundreds of thousands of long-lived objects (resting orders, price
    levels); generational collections rescan them again and again while they accumulate,
    which more than doubled the replay time of 1M records. Reference counting still frees
    everything else at once; the collector resumes (as it was) afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def replay_start_index(
    segments: list[tuple[int, Path]], after_seq: int, rejected: list[RejectedSnapshot]
) -> int:
    """Index of the segment holding ``after_seq + 1``; raise if that history is gone."""
    start = 0
    for index, (first_seq, _) in enumerate(segments):
        if first_seq <= after_seq + 1:
            start = index
    if segments and segments[start][0] > after_seq + 1:
        refused = f" ({len(rejected)} snapshot(s) refused)" if rejected else ""
        raise JournalCorruptionError(
            segments[0][1], 0,
            f"the log starts at seq {segments[0][0]} but state is only known up to seq "
            f"{after_seq}{refused}: the history in between is missing",
        )
    return start


def _repair(data_dir: Path, newest: Path | None, torn: TornTail | None, valid_end: int) -> None:
    """Cut a torn tail and make the newest segment durable before anything is appended."""
    if newest is None:
        return
    if torn is not None and valid_end == 0:
        newest.unlink()  # not even its header was complete: it never held a record
        fsync_directory(segments_dir(data_dir))
        return
    with newest.open("r+b") as file:
        if torn is not None:
            file.truncate(valid_end)
        file.flush()
        os.fsync(file.fileno())
