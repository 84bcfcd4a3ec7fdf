"""Following the journal: commands from any seq with the events they caused, nothing unsynced."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from haltguard.journal import Journal, JournalError, JournalReader
from haltguard.journal.codec import encode_record
from haltguard.venue.commands import Command, Sequenced
from haltguard.venue.engine import Venue
from haltguard.venue.events import Event

from .support import newest_segment, ts_of, workload

COMMANDS = workload(500)
N = len(COMMANDS)


class LiveVenue:
    """A journal and a venue driven the way the runtime drives them; keeps every event."""

    def __init__(
        self, data_dir: Path, segment_bytes_max: int = 64 << 20, snapshots_keep: int = 3
    ) -> None:
        self.journal = Journal(
            data_dir, unsafe_skip_fsync=True, segment_bytes_max=segment_bytes_max,
            snapshots_keep=snapshots_keep,
        )
        self.venue = Venue()
        self.events: dict[int, list[Event]] = {}

    def run(self, commands: list[Command], *, sync: bool = True) -> None:
        for command in commands:
            seq = self.journal.last_seq + 1
            self.journal.append(seq, ts_of(seq), command)
            self.events[seq] = self.venue.apply(seq, ts_of(seq), command)
        if sync:
            self.journal.sync()

    def checkpoint(self) -> None:
        self.journal.checkpoint(self.venue, self.venue.last_ts)


def _expected(live: LiveVenue, first: int, last: int) -> list[tuple[Sequenced, list[Event]]]:
    return [
        (Sequenced(seq, ts_of(seq), COMMANDS[seq - 1]), live.events[seq])
        for seq in range(first, last + 1)
    ]


def test_reading_from_a_seq_returns_each_command_with_the_events_it_caused(
    data_dir: Path,
) -> None:
    live = LiveVenue(data_dir, segment_bytes_max=4096)
    live.run(COMMANDS[:200])
    live.checkpoint()
    live.run(COMMANDS[200:])
    reader = JournalReader(data_dir)
    reader.seek(120)
    assert reader.read_available() == _expected(live, 120, N)
    reader.seek(350)  # after the snapshot: starts from it
    assert reader.read_available() == _expected(live, 350, N)
    assert reader.venue.state_hash() == live.venue.state_hash()


def test_the_reader_sees_later_appends_and_never_an_unsynced_record(data_dir: Path) -> None:
    live = LiveVenue(data_dir, segment_bytes_max=4096)
    live.run(COMMANDS[:100])
    reader = JournalReader(data_dir)
    reader.seek(90)
    assert reader.read_available() == _expected(live, 90, 100)
    live.run(COMMANDS[100:150], sync=False)
    assert reader.read_available() == []  # written to the page cache maybe, but not durable
    live.journal.sync()
    assert reader.read_available() == _expected(live, 101, 150)
    live.checkpoint()  # rolls to a new segment
    live.run(COMMANDS[150:])
    assert reader.read_available() == _expected(live, 151, N)
    assert reader.read_available() == []


def test_a_torn_write_past_the_commit_mark_is_never_read(data_dir: Path) -> None:
    live = LiveVenue(data_dir)
    live.run(COMMANDS[:60])
    reader = JournalReader(data_dir)
    reader.seek(1)
    assert len(reader.read_available()) == 60
    live.journal.close()
    record = encode_record(61, ts_of(61), COMMANDS[60], {})
    with newest_segment(data_dir).open("ab") as file:
        file.write(record[: len(record) // 2])  # a crash in the middle of a write
    assert reader.read_available() == []
    assert reader.next_seq == 61


def test_follow_yields_appends_as_they_become_durable_until_stopped(data_dir: Path) -> None:
    live = LiveVenue(data_dir)
    live.run(COMMANDS[:50])
    reader = JournalReader(data_dir, poll_interval_s=0.005)
    stop = threading.Event()
    seen: list[int] = []
    done = threading.Event()

    def consume() -> None:
        for entry, _ in reader.follow(40, stop=stop):
            seen.append(entry.seq)
            if entry.seq == N:
                done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    for start in range(50, N, 37):
        live.run(COMMANDS[start : start + 37])
    assert done.wait(10)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert seen == list(range(40, N + 1))


def test_seeking_before_the_retained_history_is_refused_with_advice(data_dir: Path) -> None:
    live = LiveVenue(data_dir, snapshots_keep=1)
    live.run(COMMANDS[:100])
    live.checkpoint()
    live.run(COMMANDS[100:])
    live.checkpoint()
    live.journal.close()
    with pytest.raises(JournalError, match="seek to a later seq"):
        JournalReader(data_dir).seek(N - 10)
    reader = JournalReader(data_dir)
    reader.seek(N + 1)  # what comes next is always available
    assert reader.read_available() == []
    assert reader.venue.state_hash() == live.venue.state_hash()
