"""Backup -> wipe -> restore gives the same venue and database; damage is found and named;
bad input (a wrong key, an unreachable target, a live destination) changes nothing."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backup_support import workload, write_journal
from sqlalchemy.orm import Session, sessionmaker

from haltguard.backup import archive
from haltguard.backup.capture import sqlite_describe
from haltguard.backup.errors import (
    DamagedBackupError,
    RestoreRefusedError,
    TargetUnreachableError,
    WrongKeyError,
)
from haltguard.backup.flows import (
    BackupSources,
    create_backup,
    restore_backup,
    verify_backup,
)
from haltguard.backup.manifest import Manifest
from haltguard.backup.service import record_backup, record_backup_failure
from haltguard.backup.settings import BackupSettings
from haltguard.journal import recover

NOW = datetime(2026, 12, 8, 1, 30, tzinfo=UTC)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "backup.key"
    archive.generate_key_file(path)
    return path


@pytest.fixture
def venue_dir(tmp_path: Path) -> Path:
    """A venue journal with a snapshot part-way and a tail after it, over several segments."""
    data_dir = tmp_path / "venue"
    write_journal(data_dir, workload(3_000), checkpoint_every=1_500, segment_bytes_max=64 << 10)
    return data_dir


def _settings(tmp_path: Path, key_file: Path | None, **changes: object) -> BackupSettings:
    values: dict[str, object] = {"target_url": (tmp_path / "backups").as_uri(),
                                 "key_file": key_file, "chunk_bytes": 64 << 10}
    values.update(changes)
    return BackupSettings(**values)  # type: ignore[arg-type]


def _add_rows(session_factory: sessionmaker[Session]) -> None:
    """Rows in the operations database so row counts are worth comparing."""
    with session_factory() as session:
        for index in range(3):
            record_backup_failure(session, f"file:///nowhere/{index}", "disk missing",
                                  started_at=NOW, finished_at=NOW)
        session.commit()


def test_backup_wipe_restore_gives_the_same_state_hash_and_row_counts(  # noqa: PLR0917
    tmp_path: Path, venue_dir: Path, key_file: Path, database_url: str,
    session_factory: sessionmaker[Session], request: pytest.FixtureRequest,
) -> None:
    _add_rows(session_factory)
    live, _ = recover(venue_dir, repair=False)
    settings = _settings(tmp_path, key_file)
    manifest = create_backup(settings, BackupSources(venue_dir, database_url), now=NOW)
    assert manifest.venue is not None and manifest.venue.last_seq == live.last_seq
    assert manifest.database is not None and manifest.database.row_counts["backup_records"] == 3
    shutil.rmtree(venue_dir)

    pg_server = ""
    if manifest.database.kind == "postgresql":
        pg_server = request.getfixturevalue("postgres_server_url")
    verified = verify_backup(settings, None, pg_server_url=pg_server)
    assert verified.ok, verified.problems
    assert verified.state_hash == live.state_hash()

    outcome = restore_backup(settings, None, venue_dir)
    restored, _ = recover(venue_dir, repair=False)
    assert restored.state_hash() == live.state_hash() == outcome.state_hash
    assert restored.last_seq == live.last_seq
    if manifest.database.kind == "sqlite":
        _, counts = sqlite_describe(venue_dir / manifest.database.file)
        assert counts == manifest.database.row_counts


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_every_compression_restores_the_venue_exactly(
    tmp_path: Path, venue_dir: Path, compression: str
) -> None:
    live, _ = recover(venue_dir, repair=False)
    settings = _settings(tmp_path, None, compression=compression)
    create_backup(settings, BackupSources(venue_dir), now=NOW)
    outcome = restore_backup(settings, None, tmp_path / "restored")
    assert outcome.state_hash == live.state_hash()


def _backup_with_files(tmp_path: Path, venue_dir: Path, key_file: Path | None) -> tuple[
    BackupSettings, Manifest, Path
]:
    settings = _settings(tmp_path, key_file)
    manifest = create_backup(settings, BackupSources(venue_dir), now=NOW)
    return settings, manifest, tmp_path / "backups" / manifest.backup_id / "files"


@pytest.mark.parametrize("encrypted", [True, False])
def test_verify_names_a_corrupted_segment(
    tmp_path: Path, venue_dir: Path, key_file: Path, encrypted: bool
) -> None:
    settings, manifest, files = _backup_with_files(tmp_path, venue_dir,
                                                   key_file if encrypted else None)
    segment = next(entry.path for entry in manifest.files if entry.path.endswith(".seg"))
    stored = files / segment
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))

    outcome = verify_backup(settings, manifest.backup_id)

    assert not outcome.ok
    assert any(problem.startswith(f"{segment}: corrupted") for problem in outcome.problems)


def test_verify_names_a_truncated_file(tmp_path: Path, venue_dir: Path, key_file: Path) -> None:
    settings, manifest, files = _backup_with_files(tmp_path, venue_dir, key_file)
    snapshot = next(entry.path for entry in manifest.files if entry.path.endswith(".snap"))
    stored = files / snapshot
    stored.write_bytes(stored.read_bytes()[:100])

    outcome = verify_backup(settings, manifest.backup_id)

    assert not outcome.ok
    assert any(problem.startswith(f"{snapshot}: truncated") for problem in outcome.problems)


def test_verify_names_a_missing_file(tmp_path: Path, venue_dir: Path) -> None:
    settings, manifest, files = _backup_with_files(tmp_path, venue_dir, None)
    (files / "segments" / "committed").unlink()

    outcome = verify_backup(settings, manifest.backup_id)

    assert not outcome.ok
    assert any(problem.startswith("segments/committed: missing") for problem in
               outcome.problems)


def test_restore_of_a_damaged_backup_leaves_nothing_behind(
    tmp_path: Path, venue_dir: Path
) -> None:
    settings, manifest, files = _backup_with_files(tmp_path, venue_dir, None)
    segment = next(entry.path for entry in manifest.files if entry.path.endswith(".seg"))
    (files / segment).write_bytes(b"garbage")
    destination = tmp_path / "restored"

    with pytest.raises(DamagedBackupError, match=segment):
        restore_backup(settings, manifest.backup_id, destination)

    assert not destination.exists()
    assert [path.name for path in tmp_path.iterdir() if "restoring" in path.name] == []


def test_a_wrong_key_is_refused_before_anything_is_written(
    tmp_path: Path, venue_dir: Path, key_file: Path
) -> None:
    _, manifest, _ = _backup_with_files(tmp_path, venue_dir, key_file)
    other = tmp_path / "other.key"
    archive.generate_key_file(other)
    destination = tmp_path / "restored"

    with pytest.raises(WrongKeyError, match="not the key"):
        restore_backup(_settings(tmp_path, other), manifest.backup_id, destination)
    with pytest.raises(WrongKeyError, match="no key file"):
        verify_backup(_settings(tmp_path, None), manifest.backup_id)
    assert not destination.exists()


def test_an_unreachable_target_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, venue_dir: Path
) -> None:
    settings = BackupSettings(target_url=(tmp_path / "unmounted" / "backups").as_uri())

    with pytest.raises(TargetUnreachableError, match="does not exist") as raised:
        create_backup(settings, BackupSources(venue_dir), now=NOW)

    assert raised.value.next_step and raised.value.message_ja
    assert not (tmp_path / "unmounted").exists()


def test_restore_refuses_a_data_directory_that_is_in_use(
    tmp_path: Path, venue_dir: Path
) -> None:
    settings, manifest, _ = _backup_with_files(tmp_path, venue_dir, None)
    before = sorted(path.name for path in (venue_dir / "segments").iterdir())

    with pytest.raises(RestoreRefusedError, match="not empty"):
        restore_backup(settings, manifest.backup_id, venue_dir)

    assert sorted(path.name for path in (venue_dir / "segments").iterdir()) == before


def test_an_encrypted_backup_holds_no_plaintext(
    tmp_path: Path, venue_dir: Path, key_file: Path
) -> None:
    _, manifest, files = _backup_with_files(tmp_path, venue_dir, key_file)
    snapshot = next(entry.path for entry in manifest.files if entry.path.endswith(".snap"))
    assert b"HGJSNAP" not in (files / snapshot).read_bytes()
    assert b"HGJSNAP" in (venue_dir / snapshot).read_bytes()


def test_a_completed_backup_is_recorded_with_its_seq(
    tmp_path: Path, venue_dir: Path, session: Session
) -> None:
    settings, manifest, _ = _backup_with_files(tmp_path, venue_dir, None)
    record = record_backup(session, manifest, settings.target_url, started_at=NOW,
                           finished_at=NOW)
    assert manifest.venue is not None
    assert (record.status, record.venue_seq) == ("ok", manifest.venue.last_seq)


def test_a_key_file_that_holds_no_key_is_refused_and_keygen_never_overwrites(
    tmp_path: Path, venue_dir: Path, key_file: Path
) -> None:
    broken = tmp_path / "broken.key"
    broken.write_text("not a key\n")

    with pytest.raises(WrongKeyError, match="does not hold a base64 32-byte key"):
        create_backup(_settings(tmp_path, broken), BackupSources(venue_dir), now=NOW)
    with pytest.raises(FileExistsError):
        archive.generate_key_file(key_file)
    assert not (tmp_path / "backups").exists() or not any((tmp_path / "backups").iterdir())
