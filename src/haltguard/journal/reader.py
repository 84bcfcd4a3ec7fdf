"""Following the journal: every command from a given seq on, with the events it caused.

Consumers (incidents, the status page, compensation) need both what was asked and what
happened. Events are not stored: the engine is deterministic, so the reader keeps its own
:class:`Venue`, rebuilt from the newest snapshot at or before the starting point, and
replays each command through it to regenerate exactly the events the live venue produced.

The reader only reads up to the commit mark the writer publishes after each fsync, so it
never hands out a record a power loss could still take back (an unsynced or torn tail);
at the mark it stops and waits for the next sync. It runs in any process, next to a live
writer or on a stopped venue's directory, and changes nothing on disk.

Quarantined commands (``quarantine.json``) are replayed as heartbeats, as the live venue
did. The venue lists a command only after the engine raised on it, which may be after the
reader already read it: a newly listed seq the reader has passed makes it rebuild its
venue from the snapshot (the records it returned stay returned).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from haltguard.journal import codec
from haltguard.journal.errors import JournalCorruptionError, JournalError
from haltguard.journal.quarantine import quarantine_path, quarantined_seqs
from haltguard.journal.recovery import gc_paused, replay_start_index
from haltguard.journal.segments import (
    SEGMENT_HEADER_BYTES,
    CommitMark,
    check_segment_header,
    list_segments,
    read_commit_mark,
    segment_name,
    segments_dir,
)
from haltguard.journal.snapshots import load_newest_snapshot
from haltguard.venue.commands import Command, Heartbeat, Sequenced
from haltguard.venue.engine import Venue
from haltguard.venue.events import Event

POLL_INTERVAL_S_DEFAULT: Final = 0.05
POLL_INTERVAL_S_MAX: Final = 1.0
READ_BYTES_MAX: Final = 4 << 20  # per read; always more than one record can be
RECORDS_PER_READ_MAX_DEFAULT: Final = 10_000

Entry = tuple[Sequenced, list[Event]]
_HEARTBEAT = Heartbeat()


class JournalReader:
    """Reads a data directory's journal from any seq, then keeps up with new records."""

    def __init__(
        self, data_dir: Path | str, *, poll_interval_s: float = POLL_INTERVAL_S_DEFAULT
    ) -> None:
        if not 0 < poll_interval_s <= POLL_INTERVAL_S_MAX:
            raise ValueError(f"poll_interval_s must be in (0, {POLL_INTERVAL_S_MAX}] seconds")
        self.data_dir = Path(data_dir)
        self.poll_interval_s = poll_interval_s
        self._venue = Venue()
        self._emit_from_seq = 1
        self._segment_first_seq = 0  # 0: no segment open yet
        self._offset = 0
        self._next_seq_in_segment = 0
        self._fd = -1
        self._decoder = codec.RecordDecoder()
        self._decoded: list[tuple[int, int, Command]] = []
        self._positioned = False
        self._quarantined: frozenset[int] = frozenset()
        self._quarantine_stamp: tuple[int, int] | None = None

    @property
    def venue(self) -> Venue:
        """The reader's own venue, as of the last record read. Do not apply commands to it."""
        return self._venue

    @property
    def next_seq(self) -> int:
        """The seq of the next record the reader will return."""
        return max(self._venue.last_seq + 1, self._emit_from_seq)

    def seek(self, from_seq: int, *, start: Venue | None = None) -> None:
        """Position the reader so the next record returned is ``from_seq``.

        State comes from ``start`` where given (a venue already rebuilt to a seq before
        ``from_seq``, e.g. by ``recover(through_seq=...)``, which replays faster; the reader
        then owns it), else from the newest snapshot before ``from_seq`` (or an empty
        venue); the records between it and ``from_seq`` are replayed silently.
        """
        if from_seq < 1:
            raise ValueError(f"from_seq must be at least 1, not {from_seq}")
        if start is not None and start.last_seq >= from_seq:
            raise ValueError(f"start is at seq {start.last_seq}, not before seq {from_seq}")
        self._close_segment()
        self._refresh_quarantine()
        venue = start
        if venue is None:
            venue, _, _ = load_newest_snapshot(self.data_dir, seq_max=from_seq - 1)
        self._venue = venue if venue is not None else Venue()
        self._emit_from_seq = from_seq
        segments = list_segments(self.data_dir)
        if segments and segments[0][0] > self._venue.last_seq + 1:
            raise JournalError(
                f"seq {from_seq} is older than the retained history of {self.data_dir} (the "
                f"log starts at seq {segments[0][0]}, no snapshot at or before it is kept); "
                "seek to a later seq"
            )
        if segments:
            first_seq = segments[replay_start_index(segments, self._venue.last_seq, [])][0]
            self._open_segment(first_seq)
        self._positioned = True

    def read_available(
        self, records_max: int = RECORDS_PER_READ_MAX_DEFAULT, *, through_seq: int | None = None
    ) -> list[Entry]:
        """The durable records not yet returned, without waiting.

        Reads in chunks of at most 4 MiB of log and stops starting new chunks once
        ``records_max`` entries are collected; the rest comes with the next call. With
        ``through_seq`` nothing past that seq is applied, so :attr:`venue` is then exactly
        the state after it (a reader of a point in time mid-stream: the cut-off of a
        compensation run); the rest of the chunk is decoded again by the next call.
        """
        if not self._positioned:
            self.seek(1)
        if any(seq <= self._venue.last_seq for seq in self._refresh_quarantine()):
            self.seek(self.next_seq)  # it was replayed as if fine: rebuild without it
        mark = read_commit_mark(self.data_dir)
        entries: list[Entry] = []
        if mark is None:
            return entries
        while len(entries) < records_max:
            if through_seq is not None and self._venue.last_seq >= through_seq:
                break
            if not self._segment_first_seq and not self._open_next_segment(mark):
                break
            if mark.segment_first_seq == self._segment_first_seq:
                limit, sealed = mark.end_offset, False
            elif mark.segment_first_seq > self._segment_first_seq:
                limit, sealed = os.fstat(self._fd).st_size, True
            else:
                break  # the mark lags behind the files (recovery rewrites it): wait
            if self._offset < limit:
                self._read_records(limit, entries, through_seq)
                continue
            if not sealed or not self._open_next_segment(mark):
                break
        return entries

    def follow(
        self, from_seq: int, *, stop: threading.Event | None = None
    ) -> Iterator[Entry]:
        """Yield ``(command, events)`` from ``from_seq`` on, waiting for new records forever.

        Waits ``poll_interval_s`` between empty polls; ends when ``stop`` is set.
        """
        self.seek(from_seq)
        stop = stop or threading.Event()
        while not stop.is_set():
            entries = self.read_available()
            yield from entries
            if not entries:
                stop.wait(self.poll_interval_s)

    def close(self) -> None:
        self._close_segment()

    # -- internals -------------------------------------------------------------------------

    def _read_records(
        self, limit: int, entries: list[Entry], through_seq: int | None = None
    ) -> None:
        """Decode durable records from the current offset towards ``limit`` (one chunk).
        Stopping at ``through_seq`` leaves the offset where it was: the next call decodes
        the chunk again and skips what the venue already holds."""
        wanted = min(limit - self._offset, READ_BYTES_MAX)
        data = os.pread(self._fd, wanted, self._offset)
        decoded = self._decoded
        decoded.clear()
        end, next_seq, stop = self._decoder.decode_span(
            data, 0, self._next_seq_in_segment,
            sink=lambda seq, ts, command: decoded.append((seq, ts, command)),
            skip_through_seq=self._venue.last_seq,
        )
        cut_by_chunk = len(data) < limit - self._offset and end > 0
        if stop is not None and not (
            cut_by_chunk and stop.reason in (codec.STOP_INCOMPLETE_FRAME, codec.STOP_PAST_END)
        ):
            path = segments_dir(self.data_dir) / segment_name(self._segment_first_seq)
            raise JournalCorruptionError(
                path, self._offset + stop.offset,
                f"{stop.reason} {stop.detail} inside the durable part of the log",
            )
        apply, replay, emit_from = self._venue.apply, self._venue.replay, self._emit_from_seq
        quarantined = self._quarantined
        with gc_paused():
            for seq, ts, command in decoded:
                if through_seq is not None and seq > through_seq:
                    decoded.clear()
                    return
                if seq in quarantined:
                    command = _HEARTBEAT  # noqa: PLW2901 - replayed as the venue did
                try:
                    if seq >= emit_from:
                        entries.append((Sequenced(seq, ts, command), apply(seq, ts, command)))
                    else:  # catching up to the requested seq: the state is enough
                        replay(seq, ts, command)
                except Exception as exc:
                    decoded.clear()
                    if seq not in self._refresh_quarantine():
                        raise JournalError(
                            f"replaying seq {seq} raised {exc!r} and the venue has not "
                            "quarantined it (yet); read again in a moment"
                        ) from exc
                    self.seek(seq)  # the reader's venue may be half-changed: rebuild it
                    return
        decoded.clear()
        self._offset += end
        self._next_seq_in_segment = next_seq

    def _refresh_quarantine(self) -> frozenset[int]:
        """Reread ``quarantine.json`` when it changed; returns the seqs newly listed."""
        try:
            info = quarantine_path(self.data_dir).stat()
        except FileNotFoundError:
            return frozenset()
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._quarantine_stamp:
            return frozenset()
        seqs = quarantined_seqs(self.data_dir)
        new, self._quarantined, self._quarantine_stamp = seqs - self._quarantined, seqs, stamp
        return new

    def _open_segment(self, first_seq: int) -> None:
        """Open a segment at its first record (records the venue has are skipped on read)."""
        self._close_segment()
        path = segments_dir(self.data_dir) / segment_name(first_seq)
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise JournalError(
                f"{path.name} is gone (removed by snapshot retention?): the reader fell behind "
                "the retained history; seek to a later seq"
            ) from None
        header = os.pread(self._fd, SEGMENT_HEADER_BYTES, 0)
        if len(header) < SEGMENT_HEADER_BYTES:
            self._close_segment()
            raise JournalError(f"{path.name} is still being created; try again")
        version = check_segment_header(path, header, first_seq)
        self._segment_first_seq = first_seq
        self._next_seq_in_segment = first_seq
        self._offset = SEGMENT_HEADER_BYTES
        self._decoder = codec.RecordDecoder(version)

    def _open_next_segment(self, mark: CommitMark) -> bool:
        """Move on to the segment that starts at the next seq, once the mark has reached it.

        The writer publishes a new segment in the mark only after its header is durable,
        so a segment still being created is never opened.
        """
        next_first_seq = self._next_seq_in_segment if self._segment_first_seq else (
            self._venue.last_seq + 1
        )
        if mark.segment_first_seq < next_first_seq:
            return False
        if not (segments_dir(self.data_dir) / segment_name(next_first_seq)).exists():
            path = segments_dir(self.data_dir) / segment_name(next_first_seq)
            raise JournalCorruptionError(
                path, 0, f"the log continues at seq {next_first_seq} but this segment is missing"
            )
        if self._segment_first_seq:
            self._check_sealed_end()
        self._open_segment(next_first_seq)
        return True

    def _check_sealed_end(self) -> None:
        size = os.fstat(self._fd).st_size
        if self._offset != size:
            path = segments_dir(self.data_dir) / segment_name(self._segment_first_seq)
            raise JournalCorruptionError(
                path, self._offset, "a sealed segment has bytes after its last record"
            )

    def _close_segment(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
        self._segment_first_seq = 0
