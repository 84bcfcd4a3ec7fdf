"""Segment files: the append-only log on disk, how it is written, and how its end is judged.

Layout of a data directory::

    <data_dir>/segments/00000000000000000001.seg   named by the first seq inside
    <data_dir>/segments/00000000000000500001.seg
    <data_dir>/segments/committed                  the commit mark (see below)
    <data_dir>/snapshots/00000000000000500000.snap

A segment is a 24-byte header (magic, format version, first seq, header CRC32C) followed by
records (:mod:`haltguard.journal.codec`). Writing is group commit: :meth:`SegmentWriter.append`
encodes and buffers; :meth:`SegmentWriter.sync` makes the whole batch durable with one
``write`` and one ``fsync``. A segment that reached ``segment_bytes_max`` is sealed (it is
already fsynced) before the next one is created, and the directory is fsynced after each
creation, so a crash can only ever damage the newest segment.

How the end of a segment is judged (:func:`scan_segment`):

* torn tail, cut off by recovery: the last record runs past the end of the file, its header
  is incomplete, or it fails its CRC with nothing but zeros or end-of-file after it, or the
  file ends in zeros. Only unsynced, hence unacknowledged, records can be there.
* corruption, refused with :class:`JournalCorruptionError` naming file and offset: a bad
  record with valid data after it, a bad length, a CRC-valid record that does not decode, a
  gap in sequence numbers, any damage inside a sealed (not newest) segment.

The commit mark is a tiny file the writer updates after every fsync with the durable end
(segment, offset, seq). Readers never read past it, so they never see a record that a power
loss could still take away. It is not itself fsynced: after a power loss it may lag behind,
and recovery rewrites it. It never runs ahead of the durable log, so recovery also uses it
to overrule the judgement above: a torn-looking end at or below the mark is corruption
(those records were synced and may have been acknowledged), never cut.

:func:`sealed_segment_last_seq` checks a sealed segment recovery does not replay (one
before the snapshot it starts from) without decoding it.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

import msgspec
from crc32c import crc32c

from haltguard.journal import codec
from haltguard.journal.codec import BatchEncoder
from haltguard.journal.errors import JournalCorruptionError, JournalError
from haltguard.venue.commands import Command

SEGMENTS_DIR: Final = "segments"
SEGMENT_SUFFIX: Final = ".seg"
COMMIT_MARK_NAME: Final = "committed"

SEGMENT_MAGIC: Final = b"HGJSEG\r\n"
SEGMENT_VERSION: Final = codec.RECORD_VERSION  # a segment of version N holds format N records
SEGMENT_VERSIONS_READ: Final = codec.RECORD_VERSIONS
_HEADER: Final = struct.Struct("<8sIQ")  # magic, version, first seq; then crc32c of these
SEGMENT_HEADER_BYTES: Final = _HEADER.size + 4

SEGMENT_BYTES_MAX_DEFAULT: Final = 64 << 20
SEGMENT_BYTES_MIN: Final = 4096

_LENGTH: Final = struct.Struct("<I")
_SEQ: Final = struct.Struct("<Q")
_COMMIT_MARK: Final = struct.Struct("<QQQq")  # segment first seq, end offset, last seq, ts
_COMMIT_MARK_BYTES: Final = _COMMIT_MARK.size + 4


class TornTail(msgspec.Struct, frozen=True):
    """An incomplete last write found at the end of the newest segment.

    ``seq`` is the sequence number the first dropped record claims, when enough of it
    survived to read one (unverified: its checksum failed or it was cut short).
    """

    segment: str
    offset: int  # where the valid log ends and the dropped bytes begin
    dropped_bytes: int
    reason: str
    seq: int | None = None

    def describe(self) -> str:
        claimed = f", first dropped record claims seq {self.seq}" if self.seq else ""
        return (
            f"{self.segment}: dropped {self.dropped_bytes} bytes from offset {self.offset} "
            f"({self.reason}{claimed})"
        )


class SegmentEnd(msgspec.Struct, frozen=True):
    """How scanning one segment ended: the clean end offset, next seq, and any torn tail."""

    valid_end: int
    next_seq: int
    records: int
    torn: TornTail | None = None


def segments_dir(data_dir: Path) -> Path:
    return data_dir / SEGMENTS_DIR


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def list_segments(data_dir: Path) -> list[tuple[int, Path]]:
    """Segment files as ``(first_seq, path)``, oldest first."""
    directory = segments_dir(data_dir)
    if not directory.is_dir():
        return []
    found = [
        (int(path.stem), path)
        for path in directory.iterdir()
        if path.suffix == SEGMENT_SUFFIX and path.stem.isdigit()
    ]
    return sorted(found)


def segment_header(first_seq: int, version: int = SEGMENT_VERSION) -> bytes:
    head = _HEADER.pack(SEGMENT_MAGIC, version, first_seq)
    return head + struct.pack("<I", crc32c(head))


def check_segment_header(path: Path, data: bytes, first_seq: int) -> int:
    """Refuse a segment whose header is damaged or names another first seq than its file;
    return its format version (that of its records)."""
    magic, version, header_seq = _HEADER.unpack_from(data, 0)
    (crc,) = struct.unpack_from("<I", data, _HEADER.size)
    if magic != SEGMENT_MAGIC:
        raise JournalCorruptionError(path, 0, "not a journal segment (bad magic)")
    if crc != crc32c(data[: _HEADER.size]):
        raise JournalCorruptionError(path, 0, "segment header fails its checksum")
    if version not in SEGMENT_VERSIONS_READ:
        raise JournalCorruptionError(
            path, 0,
            f"segment format version {version}; this haltguard reads versions "
            f"{', '.join(map(str, SEGMENT_VERSIONS_READ))}",
        )
    if header_seq != first_seq:
        raise JournalCorruptionError(
            path, 0, f"header says first seq {header_seq} but the file name says {first_seq}"
        )
    return int(version)


def _is_blank(data: bytes, start: int) -> bool:
    """True if only zero bytes (or nothing) follow ``start``.

    A crash can leave the file extended with zeros before the data landed.
    """
    return not data[start:].strip(b"\0")


def _valid_record_after(data: bytes, start: int, version: int) -> int | None:
    """Offset of the first CRC-valid record frame starting at or after ``start``, if any.

    Tells a record that runs past end-of-file because it was torn (nothing valid after it)
    from one whose length field was damaged (valid records follow).
    """
    last = len(data) - codec.FRAME_BYTES - codec.HEAD_BYTES
    unpack = codec.FRAME.unpack_from
    for offset in range(start, last + 1):
        length = unpack(data, offset)[0]
        if (
            codec.HEAD_BYTES <= length <= codec.RECORD_PAYLOAD_BYTES_MAX
            and offset + codec.FRAME_BYTES + length <= len(data)
            and codec.record_intact(data, offset, length, version)
        ):
            return offset
    return None


def scan_segment(
    path: Path,
    data: bytes,
    first_seq: int,
    sink: codec.Sink,
    *,
    is_newest: bool,
    order_sink: codec.OrderSink | None = None,
    cancel_sink: codec.CancelSink | None = None,
    batch_sink: codec.BatchSink | None = None,
    skip_through_seq: int = 0,
) -> SegmentEnd:
    """Decode every record of one segment into ``sink`` and judge how the segment ends.

    Raises :class:`JournalCorruptionError` for anything that is not a torn tail of the
    newest segment. Records up to ``skip_through_seq`` are verified but not passed on;
    ``order_sink``, ``cancel_sink`` and ``batch_sink`` are as in
    :meth:`codec.RecordDecoder.decode_span`.
    """
    if len(data) < SEGMENT_HEADER_BYTES:
        if not is_newest:
            raise JournalCorruptionError(path, 0, "sealed segment has an incomplete header")
        torn = TornTail(path.name, 0, len(data), "incomplete segment header")
        return SegmentEnd(0, first_seq, 0, torn)
    version = check_segment_header(path, data, first_seq)
    decoder = codec.RecordDecoder(version)
    end, next_seq, stop = decoder.decode_span(
        data, SEGMENT_HEADER_BYTES, first_seq, sink=sink, order_sink=order_sink,
        cancel_sink=cancel_sink, batch_sink=batch_sink, skip_through_seq=skip_through_seq,
    )
    records = next_seq - first_seq
    if stop is None:
        return SegmentEnd(end, next_seq, records)
    torn_reason = judge_stop(path, data, stop, version)
    if not is_newest:
        raise JournalCorruptionError(
            path, stop.offset, f"torn record inside a sealed segment ({torn_reason})"
        )
    torn = TornTail(
        path.name, stop.offset, len(data) - stop.offset, torn_reason,
        codec.peek_seq(data, stop.offset, version),
    )
    return SegmentEnd(end, next_seq, records, torn)


def _ignore(*_record: object) -> None:
    """A sink that takes any record (or run of records) and does nothing with it."""


def sealed_segment_last_seq(path: Path, first_seq: int, *, decode: bool) -> int:
    """Check a sealed (not newest) segment file without replaying it; return its last seq.

    With ``decode`` every record is decoded and checked (CRC, seq, content), as recovery
    would. Without it the check is cheap enough for every start, with no Python work per
    record and no copy of the file (it is mapped): the header, one CRC32C call over all the
    records (for format 2 an intact run of records always CRCs to ``CHAIN_SEED``, ADR 0001)
    and the last record, found from the end of the file, whose seq says where the segment
    ends. A flipped byte or a cut inside a record fails the CRC; a cut at a record boundary
    or a lost segment shows as a last seq that does not meet the next segment's first seq.
    Raises :class:`JournalCorruptionError` naming the offset (found by decoding, once
    something is known to be wrong) and :class:`OSError` if the file cannot be read.
    """
    if not decode and path.stat().st_size > SEGMENT_HEADER_BYTES:
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            version = check_segment_header(path, data[:SEGMENT_HEADER_BYTES], first_seq)
            if version != codec.RECORD_V1:  # the first format has no chained CRC
                last_seq = _chained_last_seq(data)
                if last_seq is not None:
                    return last_seq
    data_bytes = path.read_bytes()  # damaged, or asked to decode: decoding names the problem
    end = scan_segment(path, data_bytes, first_seq, _ignore, is_newest=False, batch_sink=_ignore)
    return end.next_seq - 1


def _chained_last_seq(data: mmap.mmap) -> int | None:
    """The seq of the last record of a format 2 segment whose records are intact as a whole
    (one CRC call), or None if they are not or no intact record ends the file exactly.

    A format 2 record ends with its CRC, so its start is found by trying each payload length
    from the shortest: the length field it would have must say so and the record must pass
    its CRC. Real records are short, so this takes a few tries.
    """
    end = len(data)
    with memoryview(data) as view:
        if crc32c(view[SEGMENT_HEADER_BYTES:], codec.CHAIN_SEED) != codec.CHAIN_SEED:
            return None
    unpack = _LENGTH.unpack_from
    longest = min(codec.RECORD_PAYLOAD_BYTES_MAX, end - SEGMENT_HEADER_BYTES - codec.FRAME_BYTES)
    for length in range(codec.HEAD_BYTES, longest + 1):
        pos = end - codec.FRAME_BYTES - length
        if unpack(data, pos)[0] == length and (
            crc32c(data[pos:end], codec.CHAIN_SEED) == codec.CHAIN_SEED
        ):
            seq: int = _SEQ.unpack_from(data, pos + codec.seq_offset(codec.RECORD_V2))[0]
            return seq
    return None


def judge_stop(
    path: Path, data: bytes, stop: codec.DecodeStop, version: int = SEGMENT_VERSION
) -> str:
    """Why decoding stopped, if that is a torn tail; raise if it is corruption."""
    offset, reason = stop.offset, stop.reason
    detail = f"{reason} ({stop.detail})" if stop.detail else reason
    if reason in (codec.STOP_SEQ_GAP, codec.STOP_BAD_CONTENT):
        raise JournalCorruptionError(path, offset, detail)
    if reason == codec.STOP_INCOMPLETE_FRAME:
        return "zero-filled tail" if _is_blank(data, offset) else reason
    if reason == codec.STOP_BAD_LENGTH:
        if _is_blank(data, offset):
            return "zero-filled tail"
        raise JournalCorruptionError(path, offset, f"{detail} with data after it")
    if reason == codec.STOP_PAST_END:
        found = _valid_record_after(data, offset + codec.FRAME_BYTES, version)
        if found is not None:
            raise JournalCorruptionError(
                path, offset,
                f"{detail}, yet a valid record starts at offset {found}: a damaged length",
            )
        return "incomplete record (runs past the end of the file)"
    length: int = codec.FRAME.unpack_from(data, offset)[0]
    if _is_blank(data, offset + codec.FRAME_BYTES + length):
        return "checksum mismatch in the last record"
    raise JournalCorruptionError(path, offset, f"{detail} with records after it")


class CommitMark(msgspec.Struct, frozen=True):
    """The durable end of the log as the writer last saw it after an fsync."""

    segment_first_seq: int  # 0: no segment yet
    end_offset: int
    last_seq: int
    last_ts: int


def encode_commit_mark(mark: CommitMark) -> bytes:
    body = _COMMIT_MARK.pack(mark.segment_first_seq, mark.end_offset, mark.last_seq, mark.last_ts)
    return body + struct.pack("<I", crc32c(body))


def read_commit_mark(data_dir: Path) -> CommitMark | None:
    """The commit mark, or None if there is none or it is unreadable (a torn update)."""
    try:
        data = (segments_dir(data_dir) / COMMIT_MARK_NAME).read_bytes()
    except FileNotFoundError:
        return None
    if len(data) < _COMMIT_MARK_BYTES:
        return None
    (crc,) = struct.unpack_from("<I", data, _COMMIT_MARK.size)
    if crc != crc32c(data[: _COMMIT_MARK.size]):
        return None
    return CommitMark(*_COMMIT_MARK.unpack_from(data, 0))


def open_commit_mark(data_dir: Path) -> int:
    """A file descriptor to update the commit mark with :func:`update_commit_mark`."""
    return os.open(segments_dir(data_dir) / COMMIT_MARK_NAME, os.O_WRONLY | os.O_CREAT, 0o644)


def update_commit_mark(fd: int, mark: CommitMark) -> None:
    """Replace the commit mark in place: one small write; readers check its CRC."""
    os.pwrite(fd, encode_commit_mark(mark), 0)


def write_commit_mark(data_dir: Path, mark: CommitMark) -> None:
    fd = open_commit_mark(data_dir)
    try:
        update_commit_mark(fd, mark)
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    """Make a created, renamed or removed directory entry durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class SegmentWriter:
    """Appends records to the newest segment; group commit; rolls at ``segment_bytes_max``.

    The roll happens at a batch boundary: the sync that takes a segment to (or past)
    ``segment_bytes_max`` seals it and creates the next one, so a segment exceeds the
    bound by at most one batch, and a batch never spans two files (one write, one fsync).

    ``unsafe_skip_fsync`` exists for tests that measure something else; with it, a power
    loss can lose acknowledged commands. Production never sets it.
    """

    def __init__(
        self,
        data_dir: Path,
        first_seq: int,
        last_ts: int,
        *,
        segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT,
        unsafe_skip_fsync: bool = False,
    ) -> None:
        if segment_bytes_max < SEGMENT_BYTES_MIN:
            raise ValueError(f"segment_bytes_max must be at least {SEGMENT_BYTES_MIN} bytes")
        if first_seq < 1:
            raise ValueError(f"the first seq of a segment must be at least 1, not {first_seq}")
        self.data_dir = data_dir
        self.directory = segments_dir(data_dir)
        self.segment_bytes_max = segment_bytes_max
        self.unsafe_skip_fsync = unsafe_skip_fsync
        self.durable_seq = first_seq - 1
        self.durable_ts = last_ts
        self._fd = -1
        self._mark_fd = -1
        self._failed = ""
        self._encoder = BatchEncoder(first_seq - 1, last_ts)
        # Runs once per command: bound straight to the encoder, no extra call in between.
        self.append = self._encoder.append
        self._segment_first_seq = first_seq
        self._segment_bytes = SEGMENT_HEADER_BYTES  # of the newest segment, on disk
        self.directory.mkdir(parents=True, exist_ok=True)
        self._mark_fd = open_commit_mark(data_dir)
        try:
            self._open_segment(first_seq)
        except BaseException:
            self.close()
            raise

    # -- appending -------------------------------------------------------------------------

    # ``append(seq, ts, command)``: encode and buffer one record (see BatchEncoder.append).
    # Nothing is durable until :meth:`sync` returns.
    append: Callable[[int, int, Command], None]

    @property
    def last_seq(self) -> int:
        """The last appended seq, durable or not."""
        return self._encoder.last_seq

    @property
    def last_ts(self) -> int:
        return self._encoder.last_ts

    @property
    def pending(self) -> int:
        """Records appended since the last sync."""
        return self._encoder.last_seq - self.durable_seq

    @property
    def segment_first_seq(self) -> int:
        return self._segment_first_seq

    def append_many(self, items: Iterable[tuple[int, int, Command]]) -> None:
        for seq, ts, command in items:
            self.append(seq, ts, command)

    def sync(self) -> None:
        """Make every appended record durable: one write and one fsync for the batch.

        After it returns, every record appended so far survives a crash or power loss.
        """
        self._check_usable()
        if self.durable_seq == self.last_seq:
            return
        try:
            last_seq, last_ts = self.last_seq, self.last_ts
            batch = self._encoder.take()
            _write_all(self._fd, batch)
            if not self.unsafe_skip_fsync:
                os.fsync(self._fd)
            self._segment_bytes += len(batch)
            self.durable_seq, self.durable_ts = last_seq, last_ts
            if self._segment_bytes >= self.segment_bytes_max:
                self._close_fd()
                self._open_segment(self.last_seq + 1)  # publishes the commit mark too
            else:
                update_commit_mark(
                    self._mark_fd,
                    CommitMark(
                        self._segment_first_seq, self._segment_bytes, last_seq, last_ts
                    ),
                )
        except OSError as exc:
            self._failed = f"writing the journal failed: {exc}"
            raise JournalError(
                f"{self._failed}; the records after seq {self.durable_seq} are not durable. "
                "Stop the venue, fix the disk, and restart: recovery keeps every synced record"
            ) from exc

    def roll(self) -> None:
        """Seal the current segment now; the next record starts a new segment file.

        Used at a snapshot so segment boundaries line up with snapshots and old history can
        be removed a whole file at a time. Call only with nothing pending.
        """
        self._check_usable()
        if self.pending:
            raise JournalError("roll() with unsynced records; sync() first")
        if self._segment_first_seq > self.last_seq:
            return  # the current segment holds no record yet
        self._close_fd()
        self._open_segment(self.last_seq + 1)

    def close(self) -> None:
        """Sync what is pending and close the files. The writer cannot be used afterwards."""
        if not self._failed and self.pending:
            self.sync()
        self._close_fd()
        if self._mark_fd >= 0:
            os.close(self._mark_fd)
            self._mark_fd = -1
        self._failed = self._failed or "the journal was closed"

    # -- files -----------------------------------------------------------------------------

    def _open_segment(self, first_seq: int) -> None:
        """Start (or resume an empty) segment for ``first_seq`` and publish the commit mark.

        The previous segment is already fsynced, so it is complete before this file exists;
        the directory is fsynced so the new file survives a power loss.
        """
        path = self.directory / segment_name(first_seq)
        if path.exists():
            data = path.read_bytes()
            if len(data) != SEGMENT_HEADER_BYTES:
                raise JournalError(
                    f"{path} already exists and holds records; run recovery before opening "
                    "the journal for writing"
                )
            if check_segment_header(path, data, first_seq) != SEGMENT_VERSION:
                # Empty, written by an older release: start it again in today's format.
                self._fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_APPEND)
                _write_all(self._fd, segment_header(first_seq))
                if not self.unsafe_skip_fsync:
                    os.fsync(self._fd)
            else:
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        else:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            _write_all(self._fd, segment_header(first_seq))
            if not self.unsafe_skip_fsync:
                os.fsync(self._fd)
                fsync_directory(self.directory)
        self._segment_first_seq = first_seq
        self._segment_bytes = SEGMENT_HEADER_BYTES
        self._encoder.new_segment()
        update_commit_mark(
            self._mark_fd,
            CommitMark(first_seq, SEGMENT_HEADER_BYTES, self.durable_seq, self.durable_ts),
        )

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _check_usable(self) -> None:
        if self._failed:
            raise JournalError(f"the journal writer is unusable: {self._failed}")
