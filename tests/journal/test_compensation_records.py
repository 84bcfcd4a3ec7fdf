"""Compensation credits in the journal: a full batch fits one record, and what was paid is
recovered from snapshot + log exactly, so a restarted venue still refuses a paid line."""

from __future__ import annotations

from pathlib import Path

from haltguard.journal import recover
from haltguard.journal.codec import (
    HEAD_BYTES,
    RECORD_PAYLOAD_BYTES_MAX,
    decode_record,
    encode_record,
)
from haltguard.venue.commands import (
    COMPENSATION_LINES_MAX,
    LINE_NO_MAX,
    RUN_ID_MAX,
    Command,
    CompensationLine,
    CreditCompensation,
)
from haltguard.venue.events import CompensationRefused
from haltguard.venue.types import INT64_MAX, RejectReason

from .support import ts_of, workload, write_journal


def credits(run_id: int, first_line: int, count: int) -> CreditCompensation:
    lines = [CompensationLine(1 + n % 5, "JPY", 1_000 + n, run_id, first_line + n)
             for n in range(count)]
    return CreditCompensation(lines, "payout", f"run {run_id}")


def test_a_full_batch_of_the_widest_lines_fits_one_record_and_round_trips() -> None:
    widest = CompensationLine(INT64_MAX, "ABCDEFGHIJKL", INT64_MAX, RUN_ID_MAX, LINE_NO_MAX)
    command = CreditCompensation([widest] * COMPENSATION_LINES_MAX, "a" * 128, "r" * 1_000)

    record = encode_record(9, 10, command, {})

    assert len(record) - 8 - HEAD_BYTES < RECORD_PAYLOAD_BYTES_MAX // 2
    assert decode_record(record) == (9, 10, command)


def test_recovery_from_snapshot_and_log_remembers_every_credited_line(tmp_path: Path) -> None:
    flow: list[Command] = workload(250)
    commands = [*flow[:-50], credits(3, 0, 500), credits(3, 500, 500), credits(4, 0, 10)]
    snapshot_after = len(commands) - 1  # the snapshot holds the first two credits only
    commands += flow[-50:]

    written = write_journal(tmp_path, commands, checkpoint_at=(snapshot_after,))
    recovered, _ = recover(tmp_path)

    assert recovered.state_hash() == written.state_hash()
    assert recovered.credited_line_ranges(3) == [(0, 999)]
    assert recovered.credited_line_ranges(4) == [(0, 9)]
    seq = recovered.last_seq + 1
    again = recovered.apply(seq, ts_of(seq), credits(3, 998, 4))
    assert [e.reason for e in again if type(e) is CompensationRefused] == [
        RejectReason.ALREADY_CREDITED, RejectReason.ALREADY_CREDITED,
    ]
