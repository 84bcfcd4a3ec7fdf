"""Helpers for journal tests: a small funded workload, journals written to disk, replays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from haltguard.journal import Journal
from haltguard.journal.codec import RECORD_VERSION, encode_record
from haltguard.journal.segments import (
    CommitMark,
    list_segments,
    segment_header,
    segment_name,
    segments_dir,
    write_commit_mark,
)
from haltguard.venue.commands import Command
from haltguard.venue.engine import Venue
from haltguard.venue.workload import order_flow, setup_commands

ACCOUNTS = 20
TS_START = 1_700_000_000_000_000_000
TS_STEP = 1_000_000  # 1 ms between commands


def workload(orders: int, seed: int = 7) -> list[Command]:
    """Setup (assets, market, funded accounts) followed by ``orders`` order commands."""
    commands = setup_commands(accounts=ACCOUNTS)
    commands.extend(order_flow(seed, orders, first_seq=len(commands) + 1, accounts=ACCOUNTS))
    return commands


def command_stream(seed: int = 7) -> Iterator[Command]:
    """The same commands as :func:`workload`, generated lazily and practically endless."""
    setup = setup_commands(accounts=ACCOUNTS)
    yield from setup
    yield from order_flow(seed, 10**9, first_seq=len(setup) + 1, accounts=ACCOUNTS)


def ts_of(seq: int) -> int:
    return TS_START + seq * TS_STEP


def write_journal(
    data_dir: Path,
    commands: list[Command],
    *,
    batch: int = 50,
    segment_bytes_max: int = 64 << 20,
    checkpoint_at: tuple[int, ...] = (),
    snapshots_keep: int = 3,
) -> Venue:
    """Journal ``commands`` (seq 1..n) with group commits of ``batch``; return the venue.

    ``checkpoint_at`` lists seqs after which a snapshot is taken.
    """
    journal = Journal(
        data_dir, segment_bytes_max=segment_bytes_max, snapshots_keep=snapshots_keep,
        unsafe_skip_fsync=True,
    )
    venue = Venue()
    for seq, command in enumerate(commands, 1):
        journal.append(seq, ts_of(seq), command)
        venue.apply(seq, ts_of(seq), command)
        if seq % batch == 0 or seq == len(commands) or seq in checkpoint_at:
            journal.sync()
        if seq in checkpoint_at:
            journal.checkpoint(venue, ts_of(seq))
    journal.close()
    return venue


def replay(commands: list[Command]) -> Venue:
    venue = Venue()
    for seq, command in enumerate(commands, 1):
        venue.apply(seq, ts_of(seq), command)
    return venue


def write_raw_segment(
    data_dir: Path, first_seq: int, records: list[tuple[int, Command]],
    version: int = RECORD_VERSION,
) -> Path:
    """A segment file holding exactly ``records`` (seq, command), seqs as given (gaps too),
    in record format ``version``."""
    directory = segments_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    symbols: dict[str, int] = {}
    body = b"".join(
        encode_record(seq, ts_of(seq), command, symbols, version) for seq, command in records
    )
    path = directory / segment_name(first_seq)
    path.write_bytes(segment_header(first_seq, version) + body)
    return path


def newest_segment(data_dir: Path) -> Path:
    return sorted(segments_dir(data_dir).glob("*.seg"))[-1]


def record_offsets(path: Path) -> list[int]:
    """Byte offset of every record in a segment (walking the length fields)."""
    from haltguard.journal.codec import FRAME
    from haltguard.journal.segments import SEGMENT_HEADER_BYTES

    data = path.read_bytes()
    offsets, offset = [], SEGMENT_HEADER_BYTES
    while offset < len(data):
        offsets.append(offset)
        offset += FRAME.size + FRAME.unpack_from(data, offset)[0]
    return offsets


def flip(path: Path, offset: int, mask: int = 0x40) -> None:
    """Damage one byte of ``path`` in place."""
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def unsync_last_records(data_dir: Path, records: int) -> int:
    """Move the commit mark back before the newest segment's last ``records`` records, as if
    the sync covering them never returned (a crash between write and fsync): they were never
    acknowledged. Returns the offset of the first of them."""
    first_seq, segment = list_segments(data_dir)[-1]
    offsets = record_offsets(segment)
    last_synced = first_seq + len(offsets) - records - 1
    write_commit_mark(
        data_dir, CommitMark(first_seq, offsets[-records], last_synced, ts_of(last_synced))
    )
    return offsets[-records]
