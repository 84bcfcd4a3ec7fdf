"""The end of the log: torn tails are cut and reported, anything else is refused loudly."""

from __future__ import annotations

import itertools
import shutil
import struct
from pathlib import Path

import pytest

from haltguard.journal import Journal, JournalCorruptionError, JournalReader, recover
from haltguard.journal.codec import FRAME, RECORD_V1, RECORD_VERSION, seq_offset
from haltguard.journal.segments import (
    SEGMENT_HEADER_BYTES,
    list_segments,
    segment_header,
    segment_name,
    segments_dir,
)
from haltguard.venue.commands import Heartbeat

from .support import (
    newest_segment,
    record_offsets,
    replay,
    ts_of,
    unsync_last_records,
    workload,
    write_journal,
    write_raw_segment,
)

COMMANDS = workload(60)  # 43 setup commands, then orders
LONGER = workload(300)  # spans several 4 KiB segments


@pytest.fixture
def journal_dir(data_dir: Path) -> Path:
    write_journal(data_dir, COMMANDS, batch=16)
    return data_dir


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_cutting_the_last_record_at_any_byte_recovers_everything_before_it(
    journal_dir: Path, tmp_path: Path
) -> None:
    segment = newest_segment(journal_dir)
    intact = segment.read_bytes()
    last = unsync_last_records(journal_dir, 1)  # written, its sync never returned
    expected_hash = replay(COMMANDS[:-1]).state_hash()
    for cut in range(last + 1, len(intact)):
        trial = tmp_path / f"cut-{cut}"
        shutil.copytree(journal_dir, trial)
        (segments_dir(trial) / segment.name).write_bytes(intact[:cut])
        venue, report = recover(trial)
        assert report.last_seq == len(COMMANDS) - 1, cut
        assert venue.state_hash() == expected_hash
        torn = report.torn_tail
        assert torn is not None
        assert (torn.segment, torn.offset, torn.dropped_bytes) == (segment.name, last, cut - last)
        seq_readable = cut >= last + seq_offset(RECORD_VERSION) + 8
        assert torn.seq == (len(COMMANDS) if seq_readable else None)
        assert report.torn_tail_cut
        assert (segments_dir(trial) / segment.name).stat().st_size == last
        shutil.rmtree(trial)


def test_a_zero_filled_tail_is_cut_and_every_record_kept(journal_dir: Path) -> None:
    segment = newest_segment(journal_dir)
    size = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(bytes(4096))
    _, report = recover(journal_dir)
    assert report.last_seq == len(COMMANDS)
    assert report.torn_tail is not None
    assert report.torn_tail.reason == "zero-filled tail"
    assert (report.torn_tail.offset, report.torn_tail.dropped_bytes) == (size, 4096)
    assert segment.stat().st_size == size


@pytest.mark.parametrize("zeros_after", [0, 512])
def test_a_checksum_failure_in_the_last_unsynced_record_is_a_torn_tail(
    journal_dir: Path, zeros_after: int
) -> None:
    segment = newest_segment(journal_dir)
    last = unsync_last_records(journal_dir, 1)
    _flip(segment, last + FRAME.size + 20)
    with segment.open("ab") as file:
        file.write(bytes(zeros_after))
    _, report = recover(journal_dir)
    assert report.last_seq == len(COMMANDS) - 1
    assert report.torn_tail is not None
    assert report.torn_tail.reason == "checksum mismatch in the last record"
    assert report.torn_tail.offset == last


def test_a_flipped_byte_in_an_early_record_is_refused_naming_segment_and_offset(
    journal_dir: Path,
) -> None:
    segment = newest_segment(journal_dir)
    fifth = record_offsets(segment)[4]
    _flip(segment, fifth + FRAME.size + 12)
    damaged = segment.read_bytes()
    with pytest.raises(JournalCorruptionError) as caught:
        recover(journal_dir)
    assert caught.value.segment == str(segment)
    assert caught.value.offset == fifth
    assert "checksum mismatch with records after it" in str(caught.value)
    assert f"{segment.name} at byte offset {fifth}" in str(caught.value)
    assert segment.read_bytes() == damaged  # repair never touches corruption


@pytest.mark.parametrize(
    ("new_length", "problem"),
    [
        (0, "bad record length"),
        (5 << 20, "bad record length"),
        (60_000, "a damaged length"),  # would run past the end, yet valid records follow
    ],
)
def test_a_damaged_length_in_the_middle_is_refused(
    journal_dir: Path, new_length: int, problem: str
) -> None:
    segment = newest_segment(journal_dir)
    fifth = record_offsets(segment)[4]
    data = bytearray(segment.read_bytes())
    struct.pack_into("<I", data, fifth, new_length)
    segment.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptionError, match=problem) as caught:
        recover(journal_dir)
    assert caught.value.offset == fifth


def test_a_gap_in_sequence_numbers_is_refused(data_dir: Path) -> None:
    path = write_raw_segment(
        data_dir, 1, [(1, COMMANDS[0]), (2, COMMANDS[1]), (4, COMMANDS[2]), (5, Heartbeat())]
    )
    with pytest.raises(JournalCorruptionError, match="expected seq 3, found 4") as caught:
        recover(data_dir)
    assert caught.value.offset == record_offsets(path)[2]


def test_a_segment_whose_name_disagrees_with_its_header_is_refused(data_dir: Path) -> None:
    write_raw_segment(data_dir, 1, [(1, COMMANDS[0])])
    path = write_raw_segment(data_dir, 3, [(2, COMMANDS[1])])
    path.rename(path.with_name(segment_name(2)))
    with pytest.raises(JournalCorruptionError, match="header says first seq 3"):
        recover(data_dir, repair=False)


def _rolled_journal(data_dir: Path) -> list[tuple[int, Path]]:
    write_journal(data_dir, LONGER, batch=7, segment_bytes_max=4096)
    segments = list_segments(data_dir)
    assert len(segments) >= 3
    return segments


def test_the_writer_rolls_segments_at_the_first_sync_past_the_size_limit(
    data_dir: Path,
) -> None:
    segments = _rolled_journal(data_dir)
    for (first_seq, path), (next_first_seq, _) in itertools.pairwise(segments):
        offsets = record_offsets(path)
        assert len(offsets) == next_first_seq - first_seq
        assert (next_first_seq - 1) % 7 == 0  # sealed at a batch boundary
        assert offsets[-7] < 4096 <= path.stat().st_size  # the last batch crossed the limit
    venue, report = recover(data_dir)
    assert report.segments_read == len(segments)
    assert venue.state_hash() == replay(LONGER).state_hash()


def test_a_missing_segment_is_refused(data_dir: Path) -> None:
    segments = _rolled_journal(data_dir)
    segments[1][1].unlink()
    with pytest.raises(JournalCorruptionError, match="a segment is missing") as caught:
        recover(data_dir)
    assert caught.value.segment == str(segments[2][1])


def test_a_torn_record_inside_a_sealed_segment_is_refused(data_dir: Path) -> None:
    segments = _rolled_journal(data_dir)
    sealed = segments[0][1]
    sealed.write_bytes(sealed.read_bytes()[:-3])
    with pytest.raises(JournalCorruptionError, match="torn record inside a sealed segment"):
        recover(data_dir)


def test_an_incomplete_header_of_the_newest_segment_is_removed(journal_dir: Path) -> None:
    half = segments_dir(journal_dir) / segment_name(len(COMMANDS) + 1)
    half.write_bytes(segment_header(len(COMMANDS) + 1)[:10])
    _, report = recover(journal_dir)
    assert report.last_seq == len(COMMANDS)
    assert report.torn_tail is not None
    assert report.torn_tail.reason == "incomplete segment header"
    assert not half.exists()
    journal = Journal(journal_dir)  # and the journal continues where the log ends
    journal.append(len(COMMANDS) + 1, 2**62, Heartbeat())
    journal.sync()
    journal.close()
    assert recover(journal_dir)[1].last_seq == len(COMMANDS) + 1


def test_verify_mode_reports_a_torn_tail_without_cutting_it(journal_dir: Path) -> None:
    segment = newest_segment(journal_dir)
    unsync_last_records(journal_dir, 1)
    torn = segment.read_bytes()[:-5]
    segment.write_bytes(torn)
    _, report = recover(journal_dir, repair=False)
    assert report.torn_tail is not None
    assert not report.torn_tail_cut
    assert segment.read_bytes() == torn
    assert SEGMENT_HEADER_BYTES < report.torn_tail.offset < len(torn)


def test_a_log_in_the_first_record_format_recovers_and_continues_in_the_current_one(
    data_dir: Path,
) -> None:
    head, tail = COMMANDS[:50], COMMANDS[50:]
    write_raw_segment(data_dir, 1, list(enumerate(head, 1)), version=RECORD_V1)
    venue, _ = recover(data_dir)
    assert venue.state_hash() == replay(head).state_hash()
    journal = Journal(data_dir, unsafe_skip_fsync=True)
    for seq, command in enumerate(tail, len(head) + 1):
        journal.append(seq, ts_of(seq), command)
    journal.sync()
    journal.close()
    versions = [
        struct.unpack_from("<I", path.read_bytes(), 8)[0] for _, path in list_segments(data_dir)
    ]
    assert versions == [RECORD_V1, RECORD_VERSION]
    venue, report = recover(data_dir)
    assert report.last_seq == len(COMMANDS)
    assert venue.state_hash() == replay(COMMANDS).state_hash()


def test_a_reader_hands_out_a_first_format_segment_record_by_record(data_dir: Path) -> None:
    """Readers take plain records one at a time through the same decoding loop recovery
    uses in batches; an old segment reads back command for command."""
    write_raw_segment(data_dir, 1, list(enumerate(COMMANDS, 1)), version=RECORD_V1)
    recover(data_dir)  # as a venue starting on it would: it writes the commit mark
    reader = JournalReader(data_dir)
    try:
        reader.seek(1)
        read = []
        while entries := reader.read_available():
            read += [(sequenced.seq, sequenced.command) for sequenced, _ in entries]
    finally:
        reader.close()
    assert read == list(enumerate(COMMANDS, 1))


def test_a_damaged_record_in_a_first_format_segment_is_refused_naming_its_offset(
    data_dir: Path,
) -> None:
    path = write_raw_segment(data_dir, 1, list(enumerate(COMMANDS, 1)), version=RECORD_V1)
    fifth = record_offsets(path)[4]
    _flip(path, fifth + FRAME.size + 12)
    with pytest.raises(JournalCorruptionError) as caught:
        recover(data_dir)
    assert caught.value.offset == fifth
    assert path.name in str(caught.value)


def test_a_flipped_byte_in_a_run_of_plain_orders_is_refused_naming_that_record(
    journal_dir: Path,
) -> None:
    """Runs of plain orders and cancels are checked with one CRC call; damage inside one is
    still located at its record, and nothing from that record on is replayed."""
    segment = newest_segment(journal_dir)
    damaged_at = record_offsets(segment)[-10]  # an order among the last ones
    _flip(segment, damaged_at + FRAME.size + 20)
    with pytest.raises(JournalCorruptionError) as caught:
        recover(journal_dir)
    assert caught.value.offset == damaged_at
    assert "checksum mismatch with records after it" in str(caught.value)
