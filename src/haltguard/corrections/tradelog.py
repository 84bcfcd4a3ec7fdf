"""A compact trade log beside the journal, so the erroneous-trade review reads 10,000,000
trades without replaying the journal.

The journal stays the only truth: this log is derived from it and rebuilt from it. It lives in
``<data dir>/tradelog/``: ``trades.bin`` holds one fixed-size record per trade, in seq order
(:data:`RECORD`: seq, ts, trade id, price, qty, both orders and accounts, both fees, the
taker's side, the market), and ``covered`` names the seqs ``first..through`` whose trades it
holds. Before each review :func:`catch_up` brings it level with the journal's durable end by
replaying only the records after ``through`` (a fresh data directory, or one from before this
log existed, is read once from its oldest state); records past ``through`` (a catch-up cut
short) are cut off, and a log ahead of the journal (the directory was restored from an older
backup) is rebuilt whole. Readers take a shared lock, a catch-up an exclusive one.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from haltguard.journal import JournalError, JournalReader
from haltguard.journal.recovery import gc_paused
from haltguard.venue.events import Trade
from haltguard.venue.types import Side

DIR_NAME: Final = "tradelog"
RECORD: Final = struct.Struct("<11qB32s7x")
"""seq, ts, trade_id, price, qty, taker_order_id, taker_account, maker_order_id,
maker_account, taker_fee, maker_fee, taker side (0 buy, 1 sell), market (UTF-8, NUL-padded)."""
RECORD_BYTES: Final = RECORD.size
CHUNK_RECORDS: Final = 65_536
READ_RECORDS_MAX: Final = 10_000
_SIDES: Final = (Side.BUY, Side.SELL)


def pack(seq: int, ts: int, trade: Trade) -> bytes:
    return RECORD.pack(
        seq, ts, trade.trade_id, trade.price, trade.qty, trade.taker_order_id,
        trade.taker_account, trade.maker_order_id, trade.maker_account, trade.taker_fee,
        trade.maker_fee, 0 if trade.taker_side is Side.BUY else 1, trade.market.encode(),
    )


def unpack(record: tuple[Any, ...]) -> tuple[int, int, Trade]:
    """``(seq, ts, Trade)`` of one record as :data:`RECORD` unpacks it."""
    (seq, ts, trade_id, price, qty, taker_order_id, taker_account, maker_order_id,
     maker_account, taker_fee, maker_fee, side, market) = record
    return seq, ts, Trade(
        market.rstrip(b"\0").decode(), trade_id, price, qty, _SIDES[side], taker_order_id,
        taker_account, maker_order_id, maker_account, taker_fee, maker_fee,
    )


def _paths(data_dir: Path) -> tuple[Path, Path, Path]:
    folder = data_dir / DIR_NAME
    return folder / "trades.bin", folder / "covered", folder / "lock"


def _read_covered(path: Path) -> tuple[int, int] | None:
    try:
        first, through = path.read_text().split()
        return int(first), int(through)
    except (OSError, ValueError):
        return None


def _write_covered(path: Path, first: int, through: int) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as out:
        out.write(f"{first} {through}\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@contextmanager
def _locked(data_dir: Path, exclusive: bool) -> Iterator[None]:
    _, _, lock_path = _paths(data_dir)
    lock_path.parent.mkdir(exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _seq_at(handle: int, index: int) -> int:
    value: int = struct.unpack("<q", os.pread(handle, 8, index * RECORD_BYTES))[0]
    return value


def _first_index_after(handle: int, count: int, seq: int) -> int:
    """The index of the first of ``count`` records whose seq is above ``seq``."""
    low, high = 0, count
    while low < high:
        middle = (low + high) // 2
        if _seq_at(handle, middle) <= seq:
            low = middle + 1
        else:
            high = middle
    return low


def catch_up(data_dir: Path, first_seq: int, last_seq: int) -> int:
    """Make the log hold the trades of seqs ``first_seq..last_seq`` (the journal's durable
    range); returns how many records it appended."""
    data_dir = Path(data_dir)
    trades_path, covered_path, _ = _paths(data_dir)
    with _locked(data_dir, exclusive=True):
        covered = _read_covered(covered_path)
        if covered is None or covered[0] > first_seq or covered[1] > last_seq:
            trades_path.unlink(missing_ok=True)  # none, not from early enough, or from a
            covered = (first_seq, first_seq - 1)  # longer journal than this one: rebuild
            _write_covered(covered_path, *covered)
        log_first, through = covered
        with open(trades_path, "a+b") as out:
            handle = out.fileno()
            count = os.fstat(handle).st_size // RECORD_BYTES
            keep = _first_index_after(handle, count, through)
            os.truncate(handle, keep * RECORD_BYTES)  # a cut-short catch-up's tail
            if through >= last_seq:
                return 0
            appended = _append_from_journal(data_dir, out, through + 1, last_seq)
            out.flush()
            os.fsync(handle)
        _write_covered(covered_path, log_first, last_seq)
    return appended


def _append_from_journal(data_dir: Path, out: object, from_seq: int, last_seq: int) -> int:
    write = out.write  # type: ignore[attr-defined]
    appended = 0
    reader = JournalReader(data_dir)
    try:
        with gc_paused():
            reader.seek(from_seq)
            while reader.venue.last_seq < last_seq:
                before = reader.venue.last_seq
                entries = reader.read_available(READ_RECORDS_MAX, through_seq=last_seq)
                if reader.venue.last_seq == before:
                    raise JournalError(f"the journal stops at seq {before}, before seq "
                                       f"{last_seq} it said was durable")
                packed = [pack(sequenced.seq, sequenced.ts, event)
                          for sequenced, events in entries
                          for event in events if type(event) is Trade]
                write(b"".join(packed))
                appended += len(packed)
    finally:
        reader.close()
    return appended


def chunks(data_dir: Path, from_seq: int, to_seq: int) -> Iterator[bytes]:
    """The records of seqs ``from_seq..to_seq``, in blocks of whole records (for
    ``RECORD.iter_unpack``); the log must cover them (:func:`catch_up`)."""
    trades_path, covered_path, _ = _paths(Path(data_dir))
    with _locked(Path(data_dir), exclusive=False):
        covered = _read_covered(covered_path)
        if covered is None or covered[0] > from_seq or covered[1] < to_seq:
            raise JournalError(f"the trade log does not cover seqs {from_seq}..{to_seq}")
        with open(trades_path, "rb") as source:
            handle = source.fileno()
            count = os.fstat(handle).st_size // RECORD_BYTES
            start = _first_index_after(handle, count, from_seq - 1)
            stop = _first_index_after(handle, count, to_seq)
            source.seek(start * RECORD_BYTES)
            for index in range(start, stop, CHUNK_RECORDS):
                yield source.read(min(CHUNK_RECORDS, stop - index) * RECORD_BYTES)
