"""The SQLite database, its WAL files and the data directory it is created in are readable
by the service's own user only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import text

from haltguard.db.session import make_engine


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_its_wal_files_and_its_new_data_directory_are_owner_only(
    tmp_path: Path,
) -> None:
    old_umask = os.umask(0o022)
    try:
        data_dir = tmp_path / "data"
        engine = make_engine(f"sqlite:///{data_dir / 'haltguard.sqlite3'}")
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY)"))
            connection.execute(text("INSERT INTO probe (id) VALUES (1)"))
        files = {name: mode(data_dir / name) for name in os.listdir(data_dir)
                 if name.startswith("haltguard.sqlite3")}
        engine.dispose()
    finally:
        os.umask(old_umask)
    assert mode(data_dir) == 0o700
    assert set(files) >= {"haltguard.sqlite3", "haltguard.sqlite3-wal", "haltguard.sqlite3-shm"}
    assert set(files.values()) == {0o600}, files


def test_an_existing_world_readable_database_is_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "haltguard.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    path.chmod(0o644)
    make_engine(f"sqlite:///{path}").dispose()
    assert mode(path) == 0o600
