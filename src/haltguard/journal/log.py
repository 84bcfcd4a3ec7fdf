"""The journal as the runtime uses it: append, sync (group commit), checkpoint, close.

Fsync policy. A command is acknowledged only after :meth:`Journal.sync` returned, and sync
returns only after the batch was written with one ``write`` and made durable with one
``fsync`` (and, when that batch filled the segment, after the next segment was created and
the directory fsynced). Group commit without a timer: the runtime takes whatever queued up
while the previous sync ran, appends each command, then calls ``sync`` once; under light
load a batch is one command, under heavy load it grows by itself, and nobody waits for a
timer to fire. The only way to skip fsync is ``unsafe_skip_fsync=True``, for tests that
measure something else; it can lose acknowledged commands on a power loss.

Use after recovery::

    venue, report = recover(data_dir)          # cuts a torn tail, rewrites the commit mark
    journal = Journal(data_dir)                # continues after report.last_seq
    journal.append(seq, ts, command) ...       # for each command of the batch
    journal.sync()                             # then acknowledge the batch
    journal.checkpoint(venue, last_ts)         # every N commands: snapshot + prune
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from haltguard.journal.errors import JournalError, SnapshotError
from haltguard.journal.segments import (
    SEGMENT_BYTES_MAX_DEFAULT,
    SegmentWriter,
    fsync_directory,
    list_segments,
    read_commit_mark,
)
from haltguard.journal.snapshots import (
    SNAPSHOTS_KEEP_DEFAULT,
    encode_state_snapshot,
    list_snapshots,
    prune,
    read_snapshot,
    write_snapshot_bytes,
)
from haltguard.venue.commands import Command
from haltguard.venue.engine import Venue, hash_state


class Journal:
    """The append side of a data directory. One per directory; not thread-safe.

    Opening continues after the last durable record, in a new segment. It refuses a
    directory whose log does not end where the commit mark says (recovery did not run
    after a crash): run :func:`haltguard.journal.recover` with ``repair=True`` first.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT,
        snapshots_keep: int = SNAPSHOTS_KEEP_DEFAULT,
        unsafe_skip_fsync: bool = False,
    ) -> None:
        if snapshots_keep < 1:
            raise ValueError("snapshots_keep must be at least 1")
        self.data_dir = Path(data_dir)
        self.snapshots_keep = snapshots_keep
        self.unsafe_skip_fsync = unsafe_skip_fsync
        last_seq, last_ts = _durable_end(self.data_dir)
        self._writer = SegmentWriter(
            self.data_dir, last_seq + 1, last_ts,
            segment_bytes_max=segment_bytes_max, unsafe_skip_fsync=unsafe_skip_fsync,
        )
        self.append = self._writer.append

    # ``append(seq, ts, command)``: buffer one command; ``seq`` must be the next one and
    # ``ts`` must not go back. Bound straight to the writer: it runs once per command.
    append: Callable[[int, int, Command], None]

    @classmethod
    def open(
        cls,
        data_dir: Path | str,
        *,
        segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT,
        snapshots_keep: int = SNAPSHOTS_KEEP_DEFAULT,
        unsafe_skip_fsync: bool = False,
    ) -> Journal:
        """Same as the constructor; reads well at call sites (``Journal.open(data_dir)``)."""
        return cls(
            data_dir, segment_bytes_max=segment_bytes_max, snapshots_keep=snapshots_keep,
            unsafe_skip_fsync=unsafe_skip_fsync,
        )

    @property
    def last_seq(self) -> int:
        """The last appended seq (durable or not)."""
        return self._writer.last_seq

    @property
    def durable_seq(self) -> int:
        """The last seq that survives a crash: everything up to it may be acknowledged."""
        return self._writer.durable_seq

    @property
    def pending(self) -> int:
        """Commands appended since the last sync (not durable, not to be acknowledged)."""
        return self._writer.pending

    def append_many(self, items: Iterable[tuple[int, int, Command]]) -> None:
        self._writer.append_many(items)

    def sync(self) -> None:
        """Group commit: make every appended command durable with one write + one fsync."""
        self._writer.sync()

    def checkpoint(self, venue: Venue, last_ts: int) -> Path:
        """Snapshot ``venue``, prove the snapshot loads, start a new segment, and prune what
        no snapshot needs.

        ``venue`` must have applied exactly what the journal holds, all of it synced.
        Returns the snapshot file. Pruning deletes history, so it only happens after the
        new snapshot was read back from disk, rebuilt into a venue and found to have the
        live venue's state hash; if it does not, the file is removed, nothing is pruned
        and :class:`JournalError` says why (the log still holds every record).
        """
        if self._writer.pending:
            raise JournalError("checkpoint with unsynced records; sync() and apply them first")
        if venue.last_seq != self._writer.durable_seq:
            raise JournalError(
                f"checkpoint of a venue at seq {venue.last_seq} but the journal is at seq "
                f"{self._writer.durable_seq}; apply every synced command first"
            )
        state = venue.export_state()
        state_hash = hash_state(state)
        blob = encode_state_snapshot(state, state_hash, last_ts)
        path = write_snapshot_bytes(
            self.data_dir, state.last_seq, blob, unsafe_skip_fsync=self.unsafe_skip_fsync
        )
        self._check_loads(path, state_hash)
        self._writer.roll()
        prune(self.data_dir, self.snapshots_keep)
        return path

    def _check_loads(self, path: Path, state_hash: str) -> None:
        """Read the snapshot back as recovery would; remove it and raise if it differs."""
        try:
            _, info = read_snapshot(path)
        except SnapshotError as exc:
            problem = str(exc)
        else:
            if info.state_hash == state_hash:
                return
            problem = (
                f"it loads to state hash {info.state_hash[:16]}..., the venue's is "
                f"{state_hash[:16]}..."
            )
        path.unlink(missing_ok=True)
        if not self.unsafe_skip_fsync:
            fsync_directory(path.parent)
        raise JournalError(
            f"the snapshot {path.name} does not load back to the venue's state ({problem}); "
            "it was removed and nothing was pruned, so recovery still replays the full log. "
            "Keep the data directory and report this"
        )

    def close(self) -> None:
        """Sync anything pending and close. Safe to call twice."""
        self._writer.close()


def _durable_end(data_dir: Path) -> tuple[int, int]:
    """``(last_seq, last_ts)`` of the log's durable end, as recovery left it."""
    mark = read_commit_mark(data_dir)
    segments = list_segments(data_dir)
    if mark is None:
        if segments or list_snapshots(data_dir):
            raise JournalError(
                f"{data_dir} holds a journal but no readable commit mark; run "
                "haltguard.journal.recover(data_dir, repair=True) before opening it"
            )
        return 0, 0
    if segments:
        first_seq, path = segments[-1]
        size = path.stat().st_size
        if (first_seq, size) != (mark.segment_first_seq, mark.end_offset):
            raise JournalError(
                f"the log in {data_dir} does not end where its commit mark says ({path.name} "
                f"has {size} bytes, the mark says segment {mark.segment_first_seq} at "
                f"{mark.end_offset}); it was not recovered after a crash: run "
                "haltguard.journal.recover(data_dir, repair=True) first"
            )
    return mark.last_seq, mark.last_ts
