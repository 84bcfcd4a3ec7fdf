"""The backup workflows: create, verify, restore, and retention.

``create`` reads the system consistently (``capture.py``), stores every file in its stored
form (``archive.py``) at the target (``targets.py``) and writes the manifest last.
``verify`` restores into a scratch directory and proves the copy: every file's size and
SHA-256, the journal replayed (``haltguard.journal.verify``: the whole copied journal, the
snapshot rebuilt, the venue's invariants, the ledger's among them) to the manifest's seq,
the database opened, its migrations equal to the code's heads and its row counts equal to the
manifest's. ``restore`` builds a data directory beside the destination and renames it into
place only once it is complete and recovers, so a failed restore leaves nothing behind and a
directory in use is never overwritten.

These functions do files only; recording what happened is ``service.py``'s, and the callers
(CLI, the schedule in ``serve``, the ``disk-loss`` drill) do both.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Final

import msgspec
import psycopg
from sqlalchemy import make_url

from haltguard import __version__
from haltguard.backup import archive
from haltguard.backup.capture import (
    PG_DUMP_FILE,
    SQLITE_FILE,
    CapturedFile,
    libpq_url,
    pg_describe,
    pg_dump,
    pg_tool,
    pin_sqlite,
    sqlite_copy,
    sqlite_describe,
    tool_uri,
    venue_files,
)
from haltguard.backup.errors import (
    BackupError,
    BackupNotFoundError,
    DamagedBackupError,
    RestoreRefusedError,
    WrongKeyError,
)
from haltguard.backup.manifest import (
    MANIFEST_FORMAT,
    DatabasePart,
    FileEntry,
    Manifest,
    VenuePart,
    decode_manifest,
)
from haltguard.backup.settings import BackupSettings, BackupSources
from haltguard.backup.targets import MANIFEST_NAME, Target, open_target
from haltguard.db.migrate import head_revisions
from haltguard.db.session import sqlite_file
from haltguard.journal import recover
from haltguard.journal import verify as verify_journal

ID_TIME_FORMAT: Final = "%Y%m%dT%H%M%SZ"
RESTORED_CONFIG_DIR: Final = "restored-config"
INCOMPLETE_KEPT_S: Final = 24 * 3600.0
"""A backup folder without a manifest may be one being written: removed only after this."""
PG_RESTORE_TIMEOUT_S: Final = 3600

Progress = Callable[[str], None]


def _quiet(_line: str) -> None:
    """Progress that goes nowhere (the schedule, the tests)."""


@dataclass
class VerifyOutcome:
    backup_id: str
    target: str
    ok: bool
    problems: list[str]
    venue_seq: int = 0
    state_hash: str = ""
    duration_s: float = 0.0
    manifest: Manifest | None = None


@dataclass
class RestoreOutcome:
    backup_id: str
    target: str
    destination: Path
    restore_s: float
    venue_seq: int
    venue_ts_ns: int
    state_hash: str
    manifest: Manifest
    notes: list[str] = field(default_factory=list)


BACKGROUND_NICE = 10
"""How much lower than the venue a backup's thread runs, so the order path keeps the CPU."""


def run_in_background() -> None:
    """Lower the CPU priority of the calling thread (Linux: a thread has its own nice
    value), for the backup thread inside ``serve`` and the ``backup`` commands."""
    with contextlib.suppress(OSError, AttributeError):
        thread_id = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread_id)
        os.setpriority(os.PRIO_PROCESS, thread_id, max(current, BACKGROUND_NICE))


class Pacer:
    """Sleeps as needed so that the bytes taken average at most ``bytes_per_s``."""

    def __init__(self, bytes_per_s: int) -> None:
        self.bytes_per_s = bytes_per_s
        self.started = time.monotonic()
        self.taken = 0

    def take(self, size: int) -> None:
        self.taken += size
        ahead_s = self.taken / self.bytes_per_s - (time.monotonic() - self.started)
        if ahead_s > 0:
            time.sleep(ahead_s)


def new_backup_id(now: datetime) -> str:
    """A name that sorts by time: ``20261208T013000Z-1a2b3c``."""
    return f"{now.astimezone(UTC).strftime(ID_TIME_FORMAT)}-{secrets.token_hex(3)}"


def backup_time(backup_id: str) -> datetime | None:
    try:
        return datetime.strptime(backup_id[:16], ID_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


# --- create -----------------------------------------------------------------------------


def create_backup(
    settings: BackupSettings, sources: BackupSources, *, now: datetime,
    progress: Progress = _quiet,
) -> Manifest:
    """Take one backup to ``settings.target_url``; return its manifest.

    Checks the target and the key before reading anything; on any failure the partial
    backup is removed from the target and the error raised (nothing counts as a backup
    without its manifest anyway).
    """
    target = open_target(settings.target_url, settings.s3)
    target.check()
    key = archive.read_key_file(settings.key_file) if settings.key_file else None
    backup_id = new_backup_id(now)
    progress(f"backup {backup_id} to {target.url}")
    try:
        return _create(settings, sources, target, key, backup_id, now, progress)
    except BaseException:
        with contextlib.suppress(Exception):
            target.delete_backup(backup_id)
        raise


def _create(  # noqa: PLR0917  (the steps of one backup, each named)
    settings: BackupSettings, sources: BackupSources, target: Target, key: bytes | None,
    backup_id: str, now: datetime, progress: Progress,
) -> Manifest:
    entries: list[FileEntry] = []
    notes: list[str] = []
    pacer = Pacer(settings.bytes_per_s_max) if settings.bytes_per_s_max else None

    def store(item: CapturedFile) -> None:
        with target.writer(f"{backup_id}/files/{item.path}") as sink:
            stored = archive.write_stored(
                item.source, item.length, sink, name=item.path,
                compression=settings.compression, key=key, chunk_bytes=settings.chunk_bytes,
                pace=pacer.take if pacer is not None else None)
        entries.append(FileEntry(item.path, item.role, stored.size_bytes, stored.sha256,
                                 stored.stored_bytes, stored.stored_sha256))

    def store_file(path: Path, relative: str, role: str) -> None:
        with path.open("rb") as source:
            store(CapturedFile(relative, role, source, os.fstat(source.fileno()).st_size))

    if key is not None and sources.keys_dir is not None and sources.keys_dir.is_dir():
        for path in sorted(sources.keys_dir.iterdir()):
            if path.is_file():
                store_file(path, f"keys/{path.name}", "keys")
    elif sources.keys_dir is not None:
        notes.append("keys not included: the backup is not encrypted (backup.key_file)")
    if sources.anchor_file is not None and sources.anchor_file.is_file():
        store_file(sources.anchor_file, "audit-anchor.log", "anchor")
    for path in sources.include_files:
        store_file(path, f"{RESTORED_CONFIG_DIR}/{path.name}", "config")
    database: DatabasePart | None = None
    with _staging(sources.data_dir) as staging, ThreadPoolExecutor(
        1, thread_name_prefix="backup-database"
    ) as beside:
        copying: Future[DatabasePart] | None = None
        database_file = sqlite_file(sources.database_url) if sources.database_url else None
        if database_file is not None:
            # The snapshot is fixed now, before the venue's commit mark is read; the copy
            # itself then runs beside the venue's.
            pinned = pin_sqlite(database_file)
            progress("copying the operations database beside the venue's files")
            copying = beside.submit(_copy_sqlite, pinned, settings, target, key, backup_id,
                                    staging, store_file, entries)
        elif sources.database_url:
            progress("copying the operations database")
            database = _copy_database(settings, sources.database_url, staging)
            store_file(staging / database.file, database.file, "database")
        progress("copying the venue's snapshot and journal")
        with venue_files(sources.data_dir) as (venue, files):
            for item in files:
                store(item)
        if copying is not None:
            database = copying.result()
    manifest = Manifest(
        format=MANIFEST_FORMAT, backup_id=backup_id, created_at=now.astimezone(UTC).isoformat(),
        haltguard_version=__version__, compression=settings.compression,
        encrypted=key is not None, key_check=archive.key_check(key) if key else "",
        files=entries, venue=venue, database=database, notes=notes,
    )
    with target.writer(f"{backup_id}/{MANIFEST_NAME}") as sink:
        sink.write(manifest.encode())
    progress(f"backup {backup_id}: {len(entries)} files, {manifest.stored_bytes} bytes stored")
    return manifest


@contextlib.contextmanager
def _staging(data_dir: Path) -> Iterator[Path]:
    """A private scratch directory beside the data (same disk, room for a database copy)."""
    parent = data_dir if data_dir.is_dir() else Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=parent) as name:
        yield Path(name)


def _copy_sqlite(  # noqa: PLR0917  (one step of _create, its inputs named)
    pinned: sqlite3.Connection, settings: BackupSettings, target: Target, key: bytes | None,
    backup_id: str, staging: Path, store_file: Callable[[Path, str, str], None],
    entries: list[FileEntry],
) -> DatabasePart:
    """Copy the pinned SQLite snapshot into the backup. A plain backup to a directory has the
    online backup API write the copy at its final place (one write, then its digest);
    otherwise the copy is staged and stored (compressed, encrypted, paced) like any file."""
    placing = None
    if key is None and settings.compression == "none" and not settings.bytes_per_s_max:
        placing = target.direct_path(f"{backup_id}/files/{SQLITE_FILE}")
    if placing is None:
        database = sqlite_copy(pinned, staging / SQLITE_FILE)
        store_file(staging / database.file, database.file, "database")
        return database
    with placing as path:
        database = sqlite_copy(pinned, path)
        digest = hashlib.sha256()
        with path.open("rb") as copy:
            while chunk := copy.read(archive.COPY_BYTES):
                digest.update(chunk)
        size = path.stat().st_size
    entries.append(FileEntry(database.file, "database", size, digest.hexdigest(), size,
                             digest.hexdigest()))
    return database


def _copy_database(settings: BackupSettings, url: str, staging: Path) -> DatabasePart:
    database_file = sqlite_file(url)
    if database_file is not None:
        return sqlite_copy(pin_sqlite(database_file), staging / SQLITE_FILE)
    if make_url(url).drivername.startswith("postgresql"):
        return pg_dump(url, staging / PG_DUMP_FILE, settings.pg_bin_dir)
    raise BackupError(
        f"the database {make_url(url).drivername} cannot be backed up (SQLite or PostgreSQL)",
        message_ja="このデータベースはバックアップできません(SQLite または PostgreSQL のみ)",
        next_step="use SQLite or PostgreSQL for the operations database",
    )


# --- reading a backup -------------------------------------------------------------------


def complete_backups(target: Target) -> list[str]:
    """Backup ids with a manifest (complete), oldest first."""
    return [backup_id for backup_id in target.backup_ids()
            if target.exists(f"{backup_id}/{MANIFEST_NAME}")]


def load_manifest(target: Target, backup_id: str | None) -> Manifest:
    """The manifest of ``backup_id`` (None: the newest complete backup)."""
    if backup_id is None:
        found = complete_backups(target)
        if not found:
            raise BackupNotFoundError(
                f"no complete backup at {target.url}",
                message_ja=f"{target.url} に完全なバックアップがありません",
                next_step="take one with `haltguard backup create`",
                next_step_ja="`haltguard backup create` で取得してください",
            )
        backup_id = found[-1]
    if not target.exists(f"{backup_id}/{MANIFEST_NAME}"):
        raise BackupNotFoundError(
            f"no complete backup {backup_id} at {target.url} (missing, or its manifest was "
            "never written)",
            message_ja=f"{target.url} に完全なバックアップ {backup_id} がありません",
            next_step="list the backups with `haltguard backup list`",
            next_step_ja="`haltguard backup list` で一覧を確認してください",
        )
    with target.reader(f"{backup_id}/{MANIFEST_NAME}") as source:
        data = source.read()
    try:
        return decode_manifest(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise DamagedBackupError(
            f"{MANIFEST_NAME} of {backup_id} is damaged ({exc})",
            message_ja=f"{backup_id} の {MANIFEST_NAME} が破損しています",
            next_step="restore from an older backup (`haltguard backup list`)",
        ) from exc


def check_key(manifest: Manifest, key_file: Path | None) -> bytes | None:
    """The key to read ``manifest``'s files, or :class:`WrongKeyError` before any is read."""
    if not manifest.encrypted:
        return None
    if key_file is None:
        raise WrongKeyError(
            f"backup {manifest.backup_id} is encrypted and no key file was given",
            message_ja=f"バックアップ {manifest.backup_id} は暗号化されていますが"
            "鍵ファイルがありません",
            next_step="give the key file it was made with (backup.key_file or --key-file)",
            next_step_ja="作成時の鍵ファイルを指定してください(backup.key_file または --key-file)",
        )
    key = archive.read_key_file(key_file)
    if archive.key_check(key) != manifest.key_check:
        raise WrongKeyError(
            f"{key_file} is not the key backup {manifest.backup_id} was encrypted with",
            message_ja=f"{key_file} はバックアップ {manifest.backup_id} の暗号化鍵ではありません",
            next_step="give the key file the backup was made with; nothing was written",
            next_step_ja="作成時の鍵ファイルを指定してください。何も書き込まれていません",
        )
    return key


def materialize(
    target: Target, manifest: Manifest, key: bytes | None, destination: Path, *,
    stop_at_first: bool, progress: Progress = _quiet, entries: list[FileEntry] | None = None,
) -> list[str]:
    """Decode every file of ``manifest`` (or ``entries`` of it) into ``destination`` (a data
    directory's layout); return the problems, each naming its file (or raise the first with
    ``stop_at_first``)."""
    problems: list[str] = []
    for entry in manifest.files if entries is None else entries:
        path = destination / entry.path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            with target.reader(f"{manifest.backup_id}/files/{entry.path}") as source:
                _decode_entry(source, path, entry, manifest, key)
        except DamagedBackupError as exc:
            exc.message = exc.message.removeprefix(f"{manifest.backup_id}/files/")
            if stop_at_first:
                raise
            problems.append(exc.message)
            continue
        if entry.role == "keys":
            path.chmod(0o600)
        progress(f"restored {entry.path}")
    return problems


class _HashingReader:
    """Reads through to ``source`` and digests what was read (the stored form's check, in
    the same pass as decoding)."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.source.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data


def _decode_entry(
    source: BinaryIO, path: Path, entry: FileEntry, manifest: Manifest, key: bytes | None
) -> None:
    """Decode one stored file to ``path``, checking the stored form and the restored one
    against the manifest in one read; damage is named precisely (truncated, corrupted)."""
    plain = manifest.compression == "none" and key is None  # stored form is the file itself
    reading = _HashingReader(source)
    try:
        with path.open("wb") as sink:
            archive.read_stored(source if plain else reading, sink,
                                name=entry.path, compression=manifest.compression, key=key,
                                size_bytes=entry.size_bytes, sha256=entry.sha256)
    except DamagedBackupError:
        source.seek(0)
        _check_stored(source, entry)  # a truncated or altered stored file says so
        raise
    if not plain and (reading.size, reading.digest.hexdigest()) != (
        entry.stored_bytes, entry.stored_sha256
    ):
        source.seek(0)
        _check_stored(source, entry)


def _check_stored(source: BinaryIO, entry: FileEntry) -> None:
    """The stored bytes as the manifest recorded them (names truncation and corruption
    precisely even without a key)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(archive.COPY_BYTES):
        digest.update(chunk)
        size += len(chunk)
    source.seek(0)
    if size < entry.stored_bytes:
        raise archive.damaged_file(
            entry.path, f"truncated: {size} of {entry.stored_bytes} stored bytes",
            f"途中で切れています: 保存バイト {entry.stored_bytes} のうち {size}")
    if size != entry.stored_bytes or digest.hexdigest() != entry.stored_sha256:
        raise archive.damaged_file(entry.path, "corrupted: its stored SHA-256 differs from the "
                               "manifest's", "破損: 保存時の SHA-256 が一致しません")


# --- verify -----------------------------------------------------------------------------


def verify_backup(
    settings: BackupSettings, backup_id: str | None, *, pg_server_url: str = "",
    progress: Progress = _quiet,
) -> VerifyOutcome:
    """Restore ``backup_id`` (None: the newest) into scratch and check it (module doc).

    Problems are collected, not raised: the outcome lists each, naming the file at fault. A
    target that cannot be reached or a wrong key raises, since nothing could be checked.
    ``pg_server_url`` is a PostgreSQL server where a scratch database may be created to
    restore a PostgreSQL dump into (default: the dump's own server is not touched, and the
    dump is only listed).
    """
    started = time.perf_counter()
    target = open_target(settings.target_url, settings.s3)
    manifest = load_manifest(target, backup_id)
    key = check_key(manifest, settings.key_file)
    outcome = VerifyOutcome(manifest.backup_id, target.url, False, [], manifest=manifest)
    database = manifest.database
    database_entries = [entry for entry in manifest.files if entry.role == "database"]
    other_entries = [entry for entry in manifest.files if entry.role != "database"]

    def check_database(scratch: Path) -> list[str]:
        """Restore and check the database copy (on its own thread, beside the replay)."""
        problems = materialize(target, manifest, key, scratch, stop_at_first=False,
                               progress=progress, entries=database_entries)
        if database is not None and not problems:
            progress("opening the database copy")
            problems += _verify_database(scratch, database, settings, pg_server_url)
        return problems

    with tempfile.TemporaryDirectory(prefix="haltguard-verify-") as scratch_name, \
            ThreadPoolExecutor(1, thread_name_prefix="backup-verify-db") as beside:
        scratch = Path(scratch_name)
        database_checked = beside.submit(check_database, scratch)
        outcome.problems = materialize(target, manifest, key, scratch, stop_at_first=False,
                                       progress=progress, entries=other_entries)
        damaged = {problem.split(":", 1)[0] for problem in outcome.problems}
        if manifest.venue is not None and not any(
            entry.role == "venue" and entry.path in damaged for entry in manifest.files
        ):
            progress("replaying the venue's journal")
            outcome.problems += _verify_venue(scratch, manifest.venue, outcome)
        outcome.problems += database_checked.result()
    outcome.ok = not outcome.problems
    outcome.duration_s = time.perf_counter() - started
    return outcome


def _verify_venue(scratch: Path, venue: VenuePart, outcome: VerifyOutcome) -> list[str]:
    report = verify_journal(scratch)
    problems = [f"venue: {problem}" for problem in report.problems]
    outcome.venue_seq, outcome.state_hash = report.last_seq, report.state_hash
    if report.torn_tail is not None:
        problems.append(f"venue: the journal copy ends in a torn record "
                        f"({report.torn_tail.describe()})")
    if not report.problems and report.last_seq != venue.last_seq:
        problems.append(f"venue: the journal replays to seq {report.last_seq}, the manifest "
                        f"says {venue.last_seq}")
    return problems


def _verify_database(
    scratch: Path, database: DatabasePart, settings: BackupSettings, pg_server_url: str
) -> list[str]:
    if database.kind == "sqlite":
        path = scratch / database.file
        try:
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                verdict = connection.execute("PRAGMA quick_check").fetchone()
            finally:
                connection.close()
            if verdict is None or verdict[0] != "ok":
                return [f"{database.file}: SQLite's quick_check failed: {verdict}"]
            revisions, counts = sqlite_describe(path)
        except sqlite3.Error as exc:
            return [f"{database.file}: does not open as a SQLite database ({exc})"]
    else:
        listed = subprocess.run(
            [pg_tool("pg_restore", settings.pg_bin_dir), "--list", str(scratch / database.file)],
            capture_output=True, text=True, check=False, timeout=PG_RESTORE_TIMEOUT_S)
        if listed.returncode != 0:
            return [f"{database.file}: pg_restore cannot read it ({listed.stderr.strip()[:300]})"]
        if not pg_server_url:
            return []
        revisions, counts = _pg_scratch_describe(scratch / database.file, settings,
                                                 pg_server_url)
    return _compare_database(database, revisions, counts)


def _compare_database(
    database: DatabasePart, revisions: list[str], counts: dict[str, int]
) -> list[str]:
    problems = []
    if revisions != database.revisions:
        problems.append(f"{database.file}: migrations {revisions}, the manifest says "
                        f"{database.revisions}")
    unknown = set(revisions) - head_revisions()
    if unknown:
        problems.append(f"{database.file}: at revision(s) {sorted(unknown)} that are not "
                        "this haltguard's heads (restore with the version that made it, or "
                        "migrate after restoring)")
    for table, rows in sorted(database.row_counts.items()):
        found = counts.get(table)
        if found != rows:
            problems.append(f"{database.file}: table {table} has {found} rows, the manifest "
                            f"says {rows}")
    extra = set(counts) - set(database.row_counts)
    if extra:
        problems.append(f"{database.file}: tables not in the manifest: {sorted(extra)}")
    return problems


def _pg_scratch_describe(
    dump: Path, settings: BackupSettings, server_url: str
) -> tuple[list[str], dict[str, int]]:
    """Restore ``dump`` into a scratch database on ``server_url``, describe it, drop it."""
    scratch_name = f"haltguard_verify_{secrets.token_hex(4)}"
    uri, password = libpq_url(server_url)
    with psycopg.connect(uri, password=password, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{scratch_name}"')
        try:
            scratch_uri, _ = libpq_url(
                make_url(server_url).set(database=scratch_name).render_as_string(False))
            _pg_restore(dump, scratch_uri, password, settings)
            with psycopg.connect(scratch_uri, password=password) as connection:
                return pg_describe(connection)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch_name}" WITH (FORCE)')


def _pg_restore(
    dump: Path, uri: str, password: str | None, settings: BackupSettings
) -> None:
    with tool_uri(uri, password) as restore_uri:
        completed = subprocess.run(
            [pg_tool("pg_restore", settings.pg_bin_dir), "--no-owner", "--exit-on-error",
             f"--dbname={restore_uri}", str(dump)],
            capture_output=True, text=True, check=False, timeout=PG_RESTORE_TIMEOUT_S)
    if completed.returncode != 0:
        raise BackupError(
            f"pg_restore failed: {completed.stderr.strip()[:500]}",
            message_ja=f"pg_restore が失敗しました: {completed.stderr.strip()[:500]}",
            next_step="check that the database is empty and pg_restore matches the server",
            code="backup_restore_failed",
        )


# --- restore ----------------------------------------------------------------------------


def restore_backup(
    settings: BackupSettings, backup_id: str | None, destination: Path, *,
    database_url: str = "", progress: Progress = _quiet,
) -> RestoreOutcome:
    """Rebuild a data directory at ``destination`` from ``backup_id`` (None: the newest).

    Refuses a destination that exists and is not empty. The files are decoded into a
    sibling directory, the venue recovered there (which proves it starts), and only then is
    it renamed to ``destination``. A PostgreSQL dump is restored into ``database_url`` when
    given, and only into a database without tables.
    """
    started = time.perf_counter()
    _refuse_live(destination)
    target = open_target(settings.target_url, settings.s3)
    manifest = load_manifest(target, backup_id)
    key = check_key(manifest, settings.key_file)
    destination = destination.absolute()
    destination.parent.mkdir(parents=True, exist_ok=True)
    building = destination.with_name(f".{destination.name}.restoring-{manifest.backup_id}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(mode=0o700)
    notes: list[str] = list(manifest.notes)
    try:
        materialize(target, manifest, key, building, stop_at_first=True, progress=progress)
        venue_seq, venue_ts, state_hash = 0, 0, ""
        if manifest.venue is not None:
            progress("recovering the venue from the restored journal")
            venue, report = recover(building, repair=True)
            venue_seq, venue_ts, state_hash = report.last_seq, report.last_ts, venue.state_hash()
        if manifest.database is not None and manifest.database.kind == "postgresql":
            if database_url:
                _restore_postgres(building / manifest.database.file, database_url, settings)
                notes.append("the PostgreSQL dump was restored into the database given")
            else:
                notes.append(f"the PostgreSQL dump is in {manifest.database.file}: restore "
                             "it with --database-url into an empty database")
        if any(entry.role == "config" for entry in manifest.files):
            notes.append(f"configuration and rules files are in {RESTORED_CONFIG_DIR}/: "
                         "put them back where the configuration names them")
        _refuse_live(destination)
        if destination.exists():
            destination.rmdir()
        building.rename(destination)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return RestoreOutcome(manifest.backup_id, target.url, destination,
                          time.perf_counter() - started, venue_seq, venue_ts, state_hash,
                          manifest, notes)


def _refuse_live(destination: Path) -> None:
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise RestoreRefusedError(
            f"{destination} exists and is not empty: a restore never overwrites a data "
            "directory",
            message_ja=f"{destination} は空ではありません。"
            "復元はデータディレクトリを上書きしません",
            next_step="stop the system and move that directory aside (or restore to a new "
            "path and point data_dir at it)",
            next_step_ja="システムを止めてディレクトリを退避するか、"
            "新しいパスに復元して data_dir をそこに向けてください",
        )


def _restore_postgres(dump: Path, database_url: str, settings: BackupSettings) -> None:
    uri, password = libpq_url(database_url)
    with psycopg.connect(uri, password=password) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    if row is not None and int(row[0]) > 0:
        raise RestoreRefusedError(
            "the PostgreSQL database given already has tables: a restore never overwrites one",
            message_ja="指定の PostgreSQL データベースには既にテーブルがあります。上書きしません",
            next_step="create an empty database and restore into it",
        )
    _pg_restore(dump, uri, password, settings)


# --- retention --------------------------------------------------------------------------


def backups_to_keep(
    backup_ids: list[str], *, keep_hourly: int, keep_daily: int, keep_weekly: int
) -> set[str]:
    """Grandfather-father-son: the newest backup of each of the last ``keep_hourly`` hours,
    ``keep_daily`` days and ``keep_weekly`` ISO weeks that have one; the newest always."""
    timed = sorted(((when, backup_id) for backup_id in backup_ids
                    if (when := backup_time(backup_id)) is not None), reverse=True)
    keep: set[str] = {timed[0][1]} if timed else set()
    for count, bucket in (
        (keep_hourly, lambda when: when.strftime("%Y%m%d%H")),
        (keep_daily, lambda when: when.strftime("%Y%m%d")),
        (keep_weekly, lambda when: "{}-{:02d}".format(*when.isocalendar()[:2])),
    ):
        seen: set[str] = set()
        for when, backup_id in timed:
            name = bucket(when)
            if name not in seen and len(seen) < count:
                seen.add(name)
                keep.add(backup_id)
    return keep


def prune_backups(settings: BackupSettings, *, now: datetime) -> list[str]:
    """Remove the complete backups retention does not keep, and incomplete ones older than
    a day (a crash during a backup); return the removed ids."""
    target = open_target(settings.target_url, settings.s3)
    complete = complete_backups(target)
    keep = backups_to_keep(complete, keep_hourly=settings.keep_hourly,
                           keep_daily=settings.keep_daily, keep_weekly=settings.keep_weekly)
    removed = []
    for backup_id in target.backup_ids():
        when = backup_time(backup_id)
        stale_incomplete = backup_id not in complete and (
            when is None or now - when > timedelta(seconds=INCOMPLETE_KEPT_S))
        if (backup_id in complete and backup_id not in keep) or stale_incomplete:
            target.delete_backup(backup_id)
            removed.append(backup_id)
    return removed
