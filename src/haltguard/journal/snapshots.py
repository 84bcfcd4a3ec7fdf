"""Snapshots: the venue's whole state at one seq, so recovery replays a tail, not a history.

File layout (``<data_dir>/snapshots/<seq:020d>.snap``)::

    magic:8 | version:u32 | seq:u64 | last_ts:i64 | body_length:u64 | crc:u32 | body
    crc  = CRC32C(version .. body_length || body)
    body = MessagePack(SnapshotBody: state hash + VenueState)

Written atomically: a temporary file is written and fsynced, renamed into place, and the
directory fsynced, so a crash leaves the old set of snapshots or the new one, never half a
file under a final name. Reading checks the CRC, rebuilds the venue, and re-computes the
state hash: a snapshot that decodes but rebuilds a different venue is refused too, and
recovery falls back to an older one.

Retention keeps ``snapshots_keep`` snapshots and removes the segments none of them needs.
"""

from __future__ import annotations

import itertools
import os
import struct
from pathlib import Path
from typing import Final

import msgspec
from crc32c import crc32c

from haltguard.journal.errors import SnapshotError
from haltguard.journal.segments import fsync_directory, list_segments
from haltguard.venue.engine import Venue, VenueState, hash_state

SNAPSHOTS_DIR: Final = "snapshots"
SNAPSHOT_SUFFIX: Final = ".snap"
SNAPSHOT_MAGIC: Final = b"HGJSNAP\n"
SNAPSHOT_VERSION: Final = 1
_HEADER: Final = struct.Struct("<8sIQqQI")  # magic, version, seq, last_ts, body_length, crc
SNAPSHOTS_KEEP_DEFAULT: Final = 3


class SnapshotBody(msgspec.Struct, frozen=True):
    state_hash: str
    state: VenueState


class SnapshotInfo(msgspec.Struct, frozen=True):
    """What a snapshot file says about itself (after it verified)."""

    file: str
    seq: int
    last_ts: int
    state_hash: str
    size_bytes: int


class RejectedSnapshot(msgspec.Struct, frozen=True):
    file: str
    reason: str


def snapshots_dir(data_dir: Path) -> Path:
    return data_dir / SNAPSHOTS_DIR


def snapshot_name(seq: int) -> str:
    return f"{seq:020d}{SNAPSHOT_SUFFIX}"


def list_snapshots(data_dir: Path) -> list[tuple[int, Path]]:
    """Snapshot files as ``(seq, path)``, oldest first."""
    directory = snapshots_dir(data_dir)
    if not directory.is_dir():
        return []
    found = [
        (int(path.stem), path)
        for path in directory.iterdir()
        if path.suffix == SNAPSHOT_SUFFIX and path.stem.isdigit()
    ]
    return sorted(found)


def encode_snapshot(venue: Venue, last_ts: int) -> tuple[int, bytes]:
    """The snapshot of ``venue`` as ``(seq, file bytes)``. Run it while nothing applies."""
    state = venue.export_state()
    return venue.last_seq, encode_state_snapshot(state, hash_state(state), last_ts)


def encode_state_snapshot(state: VenueState, state_hash: str, last_ts: int) -> bytes:
    """The snapshot file's bytes for an exported ``state`` whose hash is ``state_hash``."""
    seq = state.last_seq
    body = msgspec.msgpack.encode(SnapshotBody(state_hash, state))
    header_without_crc = _HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, seq, last_ts, len(body), 0)
    crc = crc32c(body, crc32c(header_without_crc[8:-4]))
    return _HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, seq, last_ts, len(body), crc) + body


def write_snapshot_bytes(
    data_dir: Path, seq: int, blob: bytes, *, unsafe_skip_fsync: bool = False
) -> Path:
    """Place an encoded snapshot durably and atomically. Needs no venue: can run off-thread."""
    directory = snapshots_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / snapshot_name(seq)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(blob)
        file.flush()
        if not unsafe_skip_fsync:
            os.fsync(file.fileno())
    temporary.replace(path)
    if not unsafe_skip_fsync:
        fsync_directory(directory)
    return path


def write_snapshot(
    data_dir: Path, venue: Venue, last_ts: int, *, unsafe_skip_fsync: bool = False
) -> Path:
    """Snapshot ``venue`` (state after ``venue.last_seq``) into ``data_dir``; return the file.

    ``last_ts`` is the sequencer's last timestamp, so after a restart time never goes back.
    """
    seq, blob = encode_snapshot(venue, last_ts)
    return write_snapshot_bytes(data_dir, seq, blob, unsafe_skip_fsync=unsafe_skip_fsync)


def check_snapshot_file(path: Path) -> None:
    """The cheap check of a snapshot kept as a fallback: header, length and CRC, without
    rebuilding the venue (:func:`read_snapshot` does that too). Raises :class:`SnapshotError`."""
    _checked_body(path, _read(path))


def read_snapshot(path: Path) -> tuple[Venue, SnapshotInfo]:
    """Load and fully verify one snapshot, or raise :class:`SnapshotError` saying why."""
    data = _read(path)
    seq, last_ts, body = _checked_body(path, data)
    try:
        snapshot = msgspec.msgpack.decode(body, type=SnapshotBody)
        venue = Venue.restore(snapshot.state)
    except Exception as exc:  # any failure to rebuild makes this snapshot unusable
        raise SnapshotError(f"{path.name}: does not rebuild a venue ({exc!r})") from exc
    if venue.last_seq != seq:
        raise SnapshotError(f"{path.name}: rebuilt venue is at seq {venue.last_seq}, not {seq}")
    rebuilt_hash = venue.state_hash()
    if rebuilt_hash != snapshot.state_hash:
        raise SnapshotError(
            f"{path.name}: rebuilt state hash {rebuilt_hash[:16]}... differs from the recorded "
            f"{snapshot.state_hash[:16]}..."
        )
    return venue, SnapshotInfo(path.name, seq, last_ts, rebuilt_hash, len(data))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path.name}: cannot be read ({exc})") from exc


def _checked_body(path: Path, data: bytes) -> tuple[int, int, bytes]:
    """``(seq, last_ts, body)`` of a snapshot file whose header, length and CRC check out."""
    if len(data) < _HEADER.size:
        raise SnapshotError(f"{path.name}: shorter than a snapshot header")
    magic, version, seq, last_ts, length, crc = _HEADER.unpack_from(data, 0)
    if magic != SNAPSHOT_MAGIC:
        raise SnapshotError(f"{path.name}: not a snapshot (bad magic)")
    if len(data) != _HEADER.size + length:
        raise SnapshotError(
            f"{path.name}: {len(data) - _HEADER.size} body bytes, the header says {length}"
        )
    body = data[_HEADER.size :]
    if crc32c(body, crc32c(data[8 : _HEADER.size - 4])) != crc:
        raise SnapshotError(f"{path.name}: checksum mismatch")
    if version != SNAPSHOT_VERSION:
        raise SnapshotError(f"{path.name}: format version {version}, expected {SNAPSHOT_VERSION}")
    if path.stem.isdigit() and int(path.stem) != seq:
        raise SnapshotError(f"{path.name}: holds seq {seq}, not the seq in its name")
    return int(seq), int(last_ts), body


def load_newest_snapshot(
    data_dir: Path, *, seq_max: int | None = None
) -> tuple[Venue | None, SnapshotInfo | None, list[RejectedSnapshot]]:
    """The newest snapshot that verifies (at or below ``seq_max``), and those refused on the way."""
    rejected: list[RejectedSnapshot] = []
    for seq, path in reversed(list_snapshots(data_dir)):
        if seq_max is not None and seq > seq_max:
            continue
        try:
            venue, info = read_snapshot(path)
        except SnapshotError as exc:
            rejected.append(RejectedSnapshot(path.name, str(exc)))
            continue
        return venue, info, rejected
    return None, None, rejected


def prune(data_dir: Path, snapshots_keep: int) -> list[Path]:
    """Keep the newest ``snapshots_keep`` snapshots and the segments they need; return removed.

    A segment is needed while it may hold a record after the oldest kept snapshot; until
    ``snapshots_keep`` snapshots exist nothing is removed, so a venue whose snapshots all
    fail can still replay from the start. The newest segment is always kept. Temporary
    files a crash left behind are removed too.
    """
    if snapshots_keep < 1:
        raise ValueError("keep at least one snapshot")
    removed: list[Path] = []
    directory = snapshots_dir(data_dir)
    if directory.is_dir():
        for leftover in directory.glob("*.tmp"):
            leftover.unlink()
            removed.append(leftover)
    snapshots = list_snapshots(data_dir)
    if len(snapshots) < snapshots_keep:
        return removed  # until K snapshots exist, all history is kept as the fallback
    for _, path in snapshots[:-snapshots_keep]:
        path.unlink()
        removed.append(path)
    oldest_kept_seq = snapshots[-snapshots_keep:][0][0]
    segments = list_segments(data_dir)
    for (_, path), (next_first_seq, _) in itertools.pairwise(segments):
        if next_first_seq - 1 <= oldest_kept_seq:
            path.unlink()
            removed.append(path)
    return removed
