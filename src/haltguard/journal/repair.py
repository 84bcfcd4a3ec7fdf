"""Cutting damage after the commit mark, on an operator's decision: ``haltguard venue repair``.

Recovery cuts a torn tail by itself and refuses everything else, such as garbage appended
after the last record or a hole in the last unsynced batch after a power loss (ADR 0001).
When that damage lies entirely after the commit mark, no record from it on was ever
synced, so none was acknowledged: a person may decide to cut the log there. Repair

* finds the first record of the newest segment that fails its check, and refuses unless
  it lies after the commit mark (at or below it, records may have been acknowledged:
  restore from a replica or backup instead), unless the mark is unreadable, and unless the
  rest of the retained log decodes cleanly;
* keeps the cut bytes aside in ``<data_dir>/repairs/<segment>-at-<offset>-<hash>.cut``;
* records who decided, why, when and exactly what was cut in a ``.json`` beside them,
  before it cuts (a crash in between leaves the record and an uncut log; running repair
  again cuts the same bytes under the same names);
* truncates the segment and fsyncs it. The next start's recovery rewrites the commit mark.

``haltguard venue verify`` lists the repairs a data directory went through.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import Final

import msgspec

from haltguard.journal import codec
from haltguard.journal.errors import JournalCorruptionError, JournalError
from haltguard.journal.recovery import check_retained_history
from haltguard.journal.segments import (
    SEGMENT_HEADER_BYTES,
    CommitMark,
    check_segment_header,
    fsync_directory,
    list_segments,
    read_commit_mark,
    segment_name,
    segments_dir,
)

REPAIRS_DIR: Final = "repairs"


class RepairPlan(msgspec.Struct, frozen=True):
    """What a repair would cut: the end of the newest segment from ``offset`` on."""

    segment: str  # the newest segment's file name
    offset: int  # the first byte cut: where the first record that fails its check starts
    cut_bytes: int
    problem: str  # why that record fails
    claimed_seq: int | None  # the seq the first cut record claims (unverified), if readable
    last_seq_kept: int  # the log ends at this seq after the cut
    mark_seq: int  # the commit mark: synced through this seq ...
    mark_segment: str  # ... up to this byte of this segment
    mark_offset: int

    def describe(self) -> str:
        claimed = f", the first cut record claims seq {self.claimed_seq}" if (
            self.claimed_seq is not None
        ) else ""
        return (
            f"cut {self.cut_bytes} byte(s) from {self.segment} at offset {self.offset} "
            f"({self.problem}{claimed}); the log then ends at seq {self.last_seq_kept}. The "
            f"commit mark says seq {self.mark_seq} was the last synced (byte "
            f"{self.mark_offset} of {self.mark_segment}), so nothing cut was acknowledged"
        )


class RepairRecord(msgspec.Struct, frozen=True):
    """One repair as recorded in ``repairs/``: the decision and exactly what was cut."""

    repaired_at: str  # ISO 8601, UTC
    actor: str
    reason: str
    plan: RepairPlan
    cut_file: str  # under repairs/: the bytes that were cut
    cut_sha256: str

    def describe(self) -> str:
        return (
            f"{self.repaired_at} by {self.actor} ({self.reason}): cut {self.plan.cut_bytes} "
            f"byte(s) from {self.plan.segment} at offset {self.plan.offset} "
            f"({self.plan.problem}), kept in {REPAIRS_DIR}/{self.cut_file}"
        )


_record_decoder = msgspec.json.Decoder(RepairRecord)


def repairs_dir(data_dir: Path | str) -> Path:
    return Path(data_dir) / REPAIRS_DIR


def _ignore(*_record: object) -> None:
    """A sink that takes any record (or run of records) and does nothing with it."""


def plan_repair(data_dir: Path | str) -> RepairPlan | None:
    """What :func:`apply_repair` would cut, or None when the log ends with an intact record.

    Raises :class:`JournalError` (:class:`JournalCorruptionError` for damage below the mark)
    saying why when repair must not cut: nothing on disk is changed.
    """
    data_dir = Path(data_dir)
    segments = list_segments(data_dir)
    if not segments:
        return None
    mark = read_commit_mark(data_dir)
    if mark is None:
        raise JournalError(
            f"{data_dir} has no readable commit mark, so which records were synced (and maybe "
            "acknowledged) cannot be told; repair cuts only after the mark and changed "
            "nothing. Restore the data directory from a replica or backup"
        )
    damage = check_retained_history(data_dir, segments, 0, decode=True)
    if damage:
        raise JournalError(
            f"the log before the newest segment is damaged too ({'; '.join(damage)}); repair "
            "cuts only the end of the newest segment and changed nothing. Restore the data "
            "directory from a replica or backup"
        )
    first_seq, path = segments[-1]
    data = path.read_bytes()
    offset, last_seq_kept, problem = _first_bad_record(path, data, first_seq)
    if offset is None:
        return None
    _refuse_at_or_below_the_mark(path, first_seq, offset, problem, mark)
    version = codec.RECORD_VERSION
    if len(data) >= SEGMENT_HEADER_BYTES and offset >= SEGMENT_HEADER_BYTES:
        version = check_segment_header(path, data, first_seq)
    return RepairPlan(
        segment=path.name, offset=offset, cut_bytes=len(data) - offset, problem=problem,
        claimed_seq=codec.peek_seq(data, offset, version) if offset else None,
        last_seq_kept=last_seq_kept, mark_seq=mark.last_seq,
        mark_segment=segment_name(mark.segment_first_seq), mark_offset=mark.end_offset,
    )


def _first_bad_record(path: Path, data: bytes, first_seq: int) -> tuple[int | None, int, str]:
    """``(offset, last good seq, problem)`` of the first thing in the newest segment that
    fails its check (offset 0: the header itself); offset None when all of it is intact."""
    if len(data) < SEGMENT_HEADER_BYTES:
        return 0, first_seq - 1, "incomplete segment header"
    try:
        version = check_segment_header(path, data, first_seq)
    except JournalCorruptionError as exc:
        return 0, first_seq - 1, exc.problem
    end, next_seq, stop = codec.RecordDecoder(version).decode_span(
        data, SEGMENT_HEADER_BYTES, first_seq, sink=_ignore, batch_sink=_ignore
    )
    if stop is None:
        return None, next_seq - 1, ""
    problem = f"{stop.reason} ({stop.detail})" if stop.detail else stop.reason
    return end, next_seq - 1, problem


def _refuse_at_or_below_the_mark(
    path: Path, first_seq: int, offset: int, problem: str, mark: CommitMark
) -> None:
    below = mark.segment_first_seq > first_seq or (
        mark.segment_first_seq == first_seq and offset < mark.end_offset
    )
    if below:
        raise JournalCorruptionError(
            path, offset,
            f"{problem}, at or below the commit mark (records through seq {mark.last_seq} "
            f"were synced, up to byte {mark.end_offset} of "
            f"{segment_name(mark.segment_first_seq)}); they may have been acknowledged, so "
            "repair will not cut them",
        )


def apply_repair(
    data_dir: Path | str, plan: RepairPlan, *, actor: str, reason: str, now: datetime
) -> RepairRecord:
    """Cut the newest segment as ``plan`` says, keeping the cut bytes and a record aside.

    Refuses (:class:`JournalError`, nothing changed) without an actor and a reason, or when
    the segment no longer matches the plan. ``now`` is when the decision was carried out.
    """
    data_dir = Path(data_dir)
    if not actor.strip() or not reason.strip():
        raise JournalError("a repair needs the deciding person (actor) and a reason")
    path = segments_dir(data_dir) / plan.segment
    data = path.read_bytes() if path.exists() else b""
    if len(data) != plan.offset + plan.cut_bytes or plan != plan_repair(data_dir):
        raise JournalError(
            f"{plan.segment} changed since the repair was planned; nothing was cut. Stop the "
            "venue and plan the repair again"
        )
    cut = data[plan.offset :]
    digest = hashlib.sha256(cut).hexdigest()
    stem = f"{Path(plan.segment).stem}-at-{plan.offset}-{digest[:12]}"
    record = RepairRecord(
        repaired_at=now.isoformat(), actor=actor.strip(), reason=reason.strip(), plan=plan,
        cut_file=f"{stem}.cut", cut_sha256=digest,
    )
    directory = repairs_dir(data_dir)
    directory.mkdir(exist_ok=True)
    _write_durably(directory / record.cut_file, cut)
    _write_durably(directory / f"{stem}.json", msgspec.json.format(msgspec.json.encode(record)))
    fsync_directory(directory)
    fsync_directory(data_dir)
    if plan.offset < SEGMENT_HEADER_BYTES:
        path.unlink()
        fsync_directory(path.parent)
    else:
        with path.open("r+b") as file:
            file.truncate(plan.offset)
            file.flush()
            os.fsync(file.fileno())
    return record


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)


def list_repairs(data_dir: Path | str) -> list[RepairRecord]:
    """The repairs recorded in ``data_dir``, oldest first. Raises :class:`JournalError` for
    a record that cannot be read."""
    directory = repairs_dir(data_dir)
    if not directory.is_dir():
        return []
    records: list[RepairRecord] = []
    for path in directory.glob("*.json"):
        try:
            records.append(_record_decoder.decode(path.read_bytes()))
        except (OSError, msgspec.DecodeError) as exc:
            raise JournalError(
                f"the repair record {path} cannot be read ({exc}); it is the only account of "
                "what was cut from the journal: restore it from a backup"
            ) from None
    return sorted(records, key=lambda record: record.repaired_at)
