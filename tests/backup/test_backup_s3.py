"""The S3-compatible target against a real server (SeaweedFS): the same backup, verify and
restore as on a directory, damage named, bad credentials and a missing bucket refused."""

from __future__ import annotations

import io
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backup_support import S3_BUCKET, workload, write_journal
from minio import Minio

from haltguard.backup import archive
from haltguard.backup.errors import TargetUnreachableError
from haltguard.backup.flows import (
    BackupSources,
    complete_backups,
    create_backup,
    prune_backups,
    restore_backup,
    verify_backup,
)
from haltguard.backup.settings import BackupSettings, S3Credentials
from haltguard.backup.targets import open_target
from haltguard.journal import recover

NOW = datetime(2026, 12, 8, 1, 30, tzinfo=UTC)


def _settings(prefix: str, s3: S3Credentials, **changes: object) -> BackupSettings:
    values: dict[str, object] = {"target_url": f"s3://{S3_BUCKET}/{prefix}", "s3": s3,
                                 "chunk_bytes": 64 << 10}
    values.update(changes)
    return BackupSettings(**values)  # type: ignore[arg-type]


def test_backup_wipe_restore_through_s3_gives_the_same_state_and_rows(
    tmp_path: Path, s3_server: S3Credentials, database_url: str,
    request: pytest.FixtureRequest,
) -> None:
    venue_dir = tmp_path / "venue"
    write_journal(venue_dir, workload(2_000), checkpoint_every=1_000, segment_bytes_max=64 << 10)
    live, _ = recover(venue_dir, repair=False)
    key_file = tmp_path / "backup.key"
    archive.generate_key_file(key_file)
    settings = _settings(f"roundtrip-{tmp_path.name}", s3_server, key_file=key_file)

    manifest = create_backup(settings, BackupSources(venue_dir, database_url), now=NOW)
    shutil.rmtree(venue_dir)
    assert manifest.database is not None
    pg_server = (request.getfixturevalue("postgres_server_url")
                 if manifest.database.kind == "postgresql" else "")
    verified = verify_backup(settings, None, pg_server_url=pg_server)
    outcome = restore_backup(settings, None, venue_dir)

    assert verified.ok, verified.problems
    assert verified.state_hash == outcome.state_hash == live.state_hash()
    assert complete_backups(open_target(settings.target_url, s3_server)) == [manifest.backup_id]


def test_verify_names_a_corrupted_object_in_the_bucket(
    tmp_path: Path, s3_server: S3Credentials
) -> None:
    venue_dir = tmp_path / "venue"
    write_journal(venue_dir, workload(1_000), checkpoint_every=500)
    prefix = f"damage-{tmp_path.name}"
    settings = _settings(prefix, s3_server)
    manifest = create_backup(settings, BackupSources(venue_dir), now=NOW)
    segment = next(entry.path for entry in manifest.files if entry.path.endswith(".seg"))
    client = Minio(s3_server.endpoint, access_key=s3_server.access_key,
                   secret_key=s3_server.secret_key, secure=False)
    client.put_object(S3_BUCKET, f"{prefix}/{manifest.backup_id}/files/{segment}",
                      io.BytesIO(b"not the segment"), 15)

    outcome = verify_backup(settings, manifest.backup_id)

    assert not outcome.ok
    assert any(problem.startswith(f"{segment}: truncated") for problem in outcome.problems)


def test_wrong_credentials_and_a_missing_bucket_are_clear_errors(
    tmp_path: Path, s3_server: S3Credentials
) -> None:
    venue_dir = tmp_path / "venue"
    write_journal(venue_dir, workload(100))
    wrong = S3Credentials(endpoint=s3_server.endpoint, access_key=s3_server.access_key,
                          secret_key="not-the-secret", secure=False)
    with pytest.raises(TargetUnreachableError, match=r"SignatureDoesNotMatch|Access"):
        create_backup(_settings("wrong", wrong), BackupSources(venue_dir), now=NOW)
    missing = BackupSettings(target_url="s3://no-such-bucket/x", s3=s3_server)
    with pytest.raises(TargetUnreachableError, match="does not exist"):
        create_backup(missing, BackupSources(venue_dir), now=NOW)
    nobody = S3Credentials(endpoint="127.0.0.1:9", secure=False)
    with pytest.raises(TargetUnreachableError, match="cannot be used"):
        create_backup(_settings("x", nobody), BackupSources(venue_dir), now=NOW)


def test_retention_prunes_old_backups_in_the_bucket(
    tmp_path: Path, s3_server: S3Credentials
) -> None:
    venue_dir = tmp_path / "venue"
    write_journal(venue_dir, workload(100))
    settings = _settings(f"retention-{tmp_path.name}", s3_server, keep_hourly=2, keep_daily=0,
                         keep_weekly=0)
    taken = [create_backup(settings, BackupSources(venue_dir),
                           now=datetime(2026, 12, 8, hour, tzinfo=UTC)).backup_id
             for hour in (1, 2, 3)]

    removed = prune_backups(settings, now=datetime(2026, 12, 8, 4, tzinfo=UTC))

    assert removed == [taken[0]]
    assert complete_backups(open_target(settings.target_url, s3_server)) == taken[1:]
