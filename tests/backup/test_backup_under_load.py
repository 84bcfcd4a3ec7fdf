"""A backup taken while the venue journals and the database records restores to one
consistent moment: the venue exactly as some prefix of the journal, and nothing in the
database that the venue copy lacks."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from backup_support import ts_of, workload

from haltguard.backup.flows import BackupSources, create_backup, restore_backup
from haltguard.backup.settings import BackupSettings
from haltguard.journal import Journal, recover
from haltguard.venue.commands import Command
from haltguard.venue.engine import Venue

NOW = datetime(2026, 12, 8, 2, 0, tzinfo=UTC)
BACKUPS = 4


def _write_under_load(
    data_dir: Path, database: Path, commands: list[Command], events: dict[str, threading.Event]
) -> None:
    """Journal batches, checkpoint (which prunes) often, roll small segments, and after each
    durable batch record its last seq in the database, as an acknowledgement would be."""
    journal = Journal(data_dir, segment_bytes_max=16 << 10, snapshots_keep=1,
                      unsafe_skip_fsync=True)
    venue = Venue()
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE acks (seq INTEGER PRIMARY KEY)")
    try:
        for seq, command in enumerate(commands, 1):
            journal.append(seq, ts_of(seq), command)
            venue.apply(seq, ts_of(seq), command)
            if seq % 20 == 0:
                journal.sync()
                connection.execute("INSERT INTO acks VALUES (?)", (seq,))
                events["ready"].set()
                if seq % 400 == 0:
                    journal.checkpoint(venue, ts_of(seq))
            if events["stop"].is_set():
                break
    finally:
        journal.close()
        connection.close()
        events["done"].set()


def test_a_backup_under_load_restores_to_a_consistent_state(tmp_path: Path) -> None:
    data_dir, database = tmp_path / "venue", tmp_path / "ops.sqlite3"
    commands = workload(30_000)
    events = {name: threading.Event() for name in ("ready", "stop", "done")}
    writer = threading.Thread(target=_write_under_load, args=(data_dir, database, commands,
                                                              events))
    writer.start()
    settings = BackupSettings(target_url=(tmp_path / "backups").as_uri())
    manifests = []
    try:
        events["ready"].wait(30)
        while len(manifests) < BACKUPS and not events["done"].is_set():
            manifests.append(create_backup(
                settings, BackupSources(data_dir, f"sqlite:///{database}"), now=NOW))
    finally:
        events["stop"].set()
        writer.join()
    assert len(manifests) == BACKUPS, "the writer finished before the backups were taken"
    assert len({manifest.venue.last_seq for manifest in manifests if manifest.venue}) > 1

    expected = Venue()  # the journal's commands applied in order, up to each backup's seq
    for index, manifest in enumerate(manifests):  # taken one after another: seqs ascend
        assert manifest.venue is not None
        outcome = restore_backup(settings, manifest.backup_id, tmp_path / f"restored-{index}")
        restored, _ = recover(outcome.destination, repair=False)
        for seq in range(expected.last_seq + 1, manifest.venue.last_seq + 1):
            expected.apply(seq, ts_of(seq), commands[seq - 1])
        assert restored.last_seq == manifest.venue.last_seq
        assert restored.state_hash() == expected.state_hash()
        assert restored.check_invariants() == []
        acks = sqlite3.connect(outcome.destination / "haltguard.sqlite3")
        (newest_ack,) = acks.execute("SELECT coalesce(max(seq), 0) FROM acks").fetchone()
        acks.close()
        assert newest_ack <= restored.last_seq, "the database holds an order the venue lacks"
