"""Engines and sessions. SQLite runs in WAL mode with foreign keys on; PostgreSQL as given.

Every engine carries the keyring (``db/keys.py``) of its deployment: the audit key and
the secrets key, kept outside the database. A SQLite file is owner-only (0600; SQLite gives
its ``-wal`` and ``-shm`` files the same mode) in a data directory created 0700.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from haltguard.db.keys import (
    PRIVATE_FILE_MODE,
    Keyring,
    KeySettings,
    attach,
    private_directory,
    private_file,
)

DEFAULT_DATA_DIR = Path("data")


def database_url(data_dir: Path = DEFAULT_DATA_DIR) -> str:
    """The embedded SQLite file under ``data_dir`` (created 0700 if missing); a configured
    URL (``HALTGUARD_DATABASE_URL``) is chosen in ``app/config.py``."""
    private_directory(data_dir)
    return f"sqlite:///{(data_dir / 'haltguard.sqlite3').resolve()}"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, or ``None`` (another database, or SQLite in memory)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    name = parsed.database or ""
    return None if name in {"", ":memory:"} or name.startswith("file:") else Path(name)


def default_keyring(url: str, data_dir: Path = DEFAULT_DATA_DIR) -> Keyring:
    """The keyring kept in files: in ``keys/`` beside the SQLite file of ``url``, or (another
    database) in ``data_dir``. Keys given in the configuration or the environment come from
    ``app/config.py`` as a :class:`KeySettings`."""
    database_file = sqlite_file(url)
    return Keyring(KeySettings(data_dir=database_file.parent if database_file is not None
                               else data_dir))


def _private_sqlite_file(path: Path) -> None:
    """Create the database file owner-only before SQLite does (SQLite would use the umask,
    typically 0644) and tighten an existing one and its WAL files."""
    private_directory(path.parent)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    for suffix in ("", "-wal", "-shm", "-journal"):
        private_file(path.with_name(path.name + suffix))


def make_engine(url: str, *, keyring: Keyring | None = None) -> Engine:
    """An engine for ``url`` with ``keyring`` attached (default: :func:`default_keyring`);
    SQLite gets WAL, foreign keys, a busy timeout and an owner-only file."""
    chosen_keyring = keyring or default_keyring(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        database_file = sqlite_file(url)
        if database_file is not None:
            _private_sqlite_file(database_file)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        attach(engine, chosen_keyring)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True)
    attach(engine, chosen_keyring)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
