"""Recovery: rebuild the venue from disk after a restart or a crash.

The newest snapshot that verifies (older ones if it does not), then every later record
replayed in order through :meth:`Venue.replay` (the same code as :meth:`Venue.apply`,
without building events), with sequence numbers checked gap-free within and across
segments. A torn tail of the newest segment is cut off (only with
``repair``) and reported; anything else wrong stops recovery with
:class:`JournalCorruptionError`. With ``repair=False`` nothing on disk changes, which is what
``haltguard venue verify`` needs.

The commit mark (:mod:`haltguard.journal.segments`) decides what may be a torn tail: only
bytes after it. A record at or below it was fsynced and may have been acknowledged, so a
record there that fails its check, or a log that ends before it (a truncated or deleted
segment), is corruption and is never cut.

The history recovery does not replay (the segments before the snapshot's, the snapshots
older than the one used) is checked too, cheaply (:func:`check_retained_history`): damage
there does not change the venue's state, so it does not stop the start, but the report
lists it (``history_damage``), since that journal is what audit, detection and
compensation read. ``haltguard venue verify`` checks the same history by decoding it all.

Quarantined commands (:mod:`haltguard.journal.quarantine`) are replayed as a heartbeat at
their ts, as the live venue did after setting them aside, and listed in the report.

Speed matters here: each segment is read with one ``read``, and plain orders and cancels are
decoded straight into ``Venue.replay_order`` / ``Venue.replay_cancel`` arguments, with no
command or event objects.
"""

from __future__ import annotations

import gc
import itertools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from haltguard.journal import codec
from haltguard.journal.errors import JournalCorruptionError, JournalError, SnapshotError
from haltguard.journal.quarantine import QUARANTINE_FILE, quarantined_seqs
from haltguard.journal.segments import (
    CommitMark,
    TornTail,
    fsync_directory,
    list_segments,
    read_commit_mark,
    scan_segment,
    sealed_segment_last_seq,
    segment_name,
    segments_dir,
    write_commit_mark,
)
from haltguard.journal.snapshots import (
    RejectedSnapshot,
    check_snapshot_file,
    list_snapshots,
    load_newest_snapshot,
    read_snapshot,
    snapshots_dir,
)
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
    retained_from_seq: int = 0  # the first seq the retained log holds; 0: no segment
    history_damage: list[str] = []  # damage outside the replayed part (see the module doc)

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
        if self.history_damage:
            base += (
                "; RETAINED HISTORY DAMAGED (the venue's state is intact, the journal before "
                f"it is not; run `haltguard venue verify`): {'; '.join(self.history_damage)}"
            )
        return base


def recover(
    data_dir: Path | str,
    repair: bool = True,
    *,
    through_seq: int | None = None,
    decode_history: bool = False,
) -> tuple[Venue, RecoveryReport]:
    """Rebuild the venue from ``data_dir``: newest valid snapshot plus the journal's tail.

    With ``repair`` a torn tail is truncated away (and the newest segment fsynced) so the
    journal can be appended to, and the commit mark is rewritten; without it nothing on
    disk is touched. ``through_seq`` stops the replay after that seq (no repair then, and
    neither the commit mark nor the older history is checked): the runtime rebuilds its
    venue that way when it quarantines a command. ``decode_history`` checks the history
    that is not replayed by decoding every record and rebuilding every snapshot (verify)
    instead of cheaply. Raises :class:`JournalCorruptionError` if the log a restart needs
    is damaged, :class:`JournalError` if ``quarantine.json`` is unreadable or the engine
    raises on a journaled command.
    """
    started = time.perf_counter()
    data_dir = Path(data_dir)
    if through_seq is not None and repair:
        raise ValueError("recover(through_seq=...) reads only; call it with repair=False")
    if repair:
        segments_dir(data_dir).mkdir(parents=True, exist_ok=True)
        snapshots_dir(data_dir).mkdir(parents=True, exist_ok=True)
    with gc_paused():
        return _recover(data_dir, repair, started, through_seq, decode_history)


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
    data_dir: Path, repair: bool, started: float, through_seq: int | None,
    decode_history: bool,
) -> tuple[Venue, RecoveryReport]:
    mark = read_commit_mark(data_dir) if through_seq is None else None  # before the files
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
        except JournalError:
            raise
        except Exception as exc:  # the engine raised: a bug or a lost quarantine entry
            raise JournalError(
                f"replaying the record after seq {venue.last_seq} in {path.name} raised "
                f"{exc!r}. If the venue quarantined that command, {QUARANTINE_FILE} no longer "
                "lists it: restore that file from a backup; otherwise keep the data directory "
                "as it is and report this"
            ) from exc
        if venue.last_seq != end.next_seq - 1 and end.next_seq - 1 > snapshot_seq:
            raise JournalCorruptionError(
                path, end.valid_end,
                f"the venue is at seq {venue.last_seq} after replay, the log at {end.next_seq - 1}",
            )
        torn, newest_end = end.torn, end.valid_end
    history_damage: list[str] = []
    if through_seq is None:
        if mark is not None:
            check_against_commit_mark(data_dir, mark, segments, torn, venue.last_seq)
        history_damage = check_retained_history(
            data_dir, segments[:start + 1], snapshot_seq, decode=decode_history
        )
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
        retained_from_seq=segments[0][0] if segments else 0,
        history_damage=history_damage,
    )
    return venue, report


def check_against_commit_mark(
    data_dir: Path, mark: CommitMark, segments: list[tuple[int, Path]], torn: TornTail | None,
    last_seq: int,
) -> None:
    """Refuse a log that ends before its commit mark: what is at or below the mark was
    fsynced and may have been acknowledged, so it is never a torn tail."""
    newest_first_seq = segments[-1][0] if segments else 0
    below_the_mark = torn is not None and newest_first_seq == mark.segment_first_seq and (
        torn.offset < mark.end_offset
    )
    if torn is not None and below_the_mark:
        raise JournalCorruptionError(
            segments[-1][1], torn.offset,
            f"{torn.reason} below the commit mark (records through seq {mark.last_seq}, "
            f"up to byte {mark.end_offset} of this segment, were synced): the record may "
            "have been acknowledged, so it is corruption, not a torn tail",
        )
    if mark.last_seq > last_seq:
        raise JournalCorruptionError(
            segments_dir(data_dir) / segment_name(mark.segment_first_seq), mark.end_offset,
            f"the commit mark says records through seq {mark.last_seq} were synced, but the "
            f"log ends at seq {last_seq}: synced, perhaps acknowledged records are missing "
            "(a truncated or deleted segment)",
        )


def check_retained_history(
    data_dir: Path, segments: list[tuple[int, Path]], snapshot_seq: int, *, decode: bool
) -> list[str]:
    """Damage in the history recovery does not replay; one line per finding.

    ``segments`` runs up to and including the first replayed one: every segment before it
    must be intact and end where the next one starts. Snapshots older than the one used
    (``snapshot_seq``) must pass their check, since they are the fallbacks. Cheap by
    default (CRC runs, no decoding, no rebuilt venue); ``decode`` checks everything.
    """
    damage: list[str] = []
    for (first_seq, path), (next_first_seq, next_path) in itertools.pairwise(segments):
        try:
            last_seq = sealed_segment_last_seq(path, first_seq, decode=decode)
        except JournalCorruptionError as exc:
            damage.append(f"{path.name} at byte offset {exc.offset}: {exc.problem}")
            continue
        except OSError as exc:
            damage.append(f"{path.name} cannot be read ({exc.strerror})")
            continue
        if last_seq + 1 < next_first_seq:
            damage.append(
                f"{path.name} ends at seq {last_seq} but {next_path.name} starts at seq "
                f"{next_first_seq}: seq {last_seq + 1} to {next_first_seq - 1} are missing"
            )
        elif last_seq + 1 > next_first_seq:
            damage.append(
                f"{path.name} ends at seq {last_seq} but {next_path.name} starts at seq "
                f"{next_first_seq}: the segments overlap"
            )
    for seq, path in list_snapshots(data_dir):
        if seq >= snapshot_seq:
            continue  # the one used was rebuilt and checked; newer ones are in the report
        try:
            if decode:
                read_snapshot(path)
            else:
                check_snapshot_file(path)
        except SnapshotError as exc:
            damage.append(f"older snapshot {exc}: it is no fallback")
    return damage


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
