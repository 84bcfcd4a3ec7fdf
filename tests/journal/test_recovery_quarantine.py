"""Recovery and quarantined commands: skipped as heartbeats, reported, never guessed at."""

from __future__ import annotations

from pathlib import Path

import pytest

from haltguard.journal import JournalError, recover
from haltguard.journal.quarantine import (
    QuarantinedCommand,
    add_to_quarantine,
    load_quarantine,
    quarantine_path,
)
from haltguard.venue.commands import Command, Heartbeat

from .support import replay, workload, write_journal


def _skipping(commands: list[Command], seq: int) -> list[Command]:
    return [Heartbeat() if index == seq else c for index, c in enumerate(commands, 1)]


def test_recovery_replays_a_quarantined_command_as_a_heartbeat_and_reports_it(
    data_dir: Path,
) -> None:
    commands = workload(300)
    write_journal(data_dir, commands)
    full = replay(commands).state_hash()
    seq = next(seq for seq in range(len(commands) - 100, len(commands))  # one that matters
               if replay(_skipping(commands, seq)).state_hash() != full)
    add_to_quarantine(data_dir, QuarantinedCommand(seq, 0, "PlaceOrder", "SIM-JPY", "boom"))

    venue, report = recover(data_dir)

    assert report.quarantined_skipped == [seq]
    assert f"quarantined command(s) skipped: seq {seq}" in report.describe()
    assert venue.state_hash() == replay(_skipping(commands, seq)).state_hash()


def test_recovery_through_a_seq_stops_there_and_changes_nothing(data_dir: Path) -> None:
    commands = workload(200)
    write_journal(data_dir, commands, checkpoint_at=(100,))
    venue, report = recover(data_dir, repair=False, through_seq=150)
    assert venue.last_seq == report.last_seq == 150
    assert venue.state_hash() == replay(commands[:150]).state_hash()
    with pytest.raises(ValueError, match="repair=False"):
        recover(data_dir, through_seq=150)


def test_an_unreadable_quarantine_list_stops_recovery_with_what_to_do(data_dir: Path) -> None:
    write_journal(data_dir, workload(50))
    quarantine_path(data_dir).write_text("{not json")
    with pytest.raises(JournalError, match="quarantined commands"):
        recover(data_dir)


def test_the_quarantine_list_is_rewritten_whole_and_kept_in_seq_order(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    for seq in (9, 4, 9):
        add_to_quarantine(data_dir, QuarantinedCommand(seq, seq, "PlaceOrder", "", f"e{seq}"))
    assert [entry.seq for entry in load_quarantine(data_dir)] == [4, 9]
    assert not quarantine_path(data_dir).with_suffix(".json.tmp").exists()
