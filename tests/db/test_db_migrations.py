"""The schema comes from the migrations, and the migrations match the models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, StatementError

from haltguard.db.migrate import (
    MODEL_MODULES,
    current_revisions,
    head_revisions,
    import_all_models,
    schema_differences,
)
from haltguard.db.session import make_engine
from haltguard.db.types import UtcDateTime

JST = timezone(timedelta(hours=9))


def test_every_model_module_is_migrated() -> None:
    assert import_all_models() == list(MODEL_MODULES)


def test_migrated_database_is_at_the_newest_revision(engine: Engine) -> None:
    assert current_revisions(engine) == head_revisions()


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert schema_differences(engine) == []


def _insert_timeline_entry(engine: Engine) -> None:
    now = datetime(2025, 1, 6, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO incidents (id, title, summary, category, severity, peak_severity, "
                "status, affected_markets, affected_components, cause, runbook_name, "
                "runbook_version, runbook_digest, detected_at, created_by, created_at) VALUES "
                "(1, 't', '', 'network', 'SEV3', 'SEV3', 'detected', '[]', '[]', '', 'network', "
                "1, 'x', :now, 'alice', :now)"
            ),
            {"now": now.replace(tzinfo=None) if engine.dialect.name == "sqlite" else now},
        )
        connection.execute(
            text(
                "INSERT INTO incident_timeline (incident_id, at, actor, kind, message, details) "
                "VALUES (1, :now, 'alice', 'comment', 'first words', '{}')"
            ),
            {"now": now.replace(tzinfo=None) if engine.dialect.name == "sqlite" else now},
        )


@pytest.mark.parametrize(
    "statement",
    ["UPDATE incident_timeline SET message = 'rewritten'", "DELETE FROM incident_timeline"],
)
def test_database_refuses_to_change_the_timeline(engine: Engine, statement: str) -> None:
    _insert_timeline_entry(engine)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT message FROM incident_timeline")).scalars().all() \
            == ["first words"]


def test_times_come_back_in_utc_whatever_zone_they_were_written_in(engine: Engine) -> None:
    from sqlalchemy import Column, Integer, MetaData, Table

    table = Table("times_probe", MetaData(), Column("id", Integer, primary_key=True),
                  Column("at", UtcDateTime))
    table.create(engine)
    written = datetime(2025, 1, 6, 9, 30, 15, 123456, tzinfo=JST)
    with engine.begin() as connection:
        connection.execute(table.insert().values(id=1, at=written))
    with engine.connect() as connection:
        read = connection.execute(table.select()).one().at
    assert read == written
    assert read.tzinfo == UTC
    assert read.hour == 0


def test_a_naive_time_is_refused(engine: Engine) -> None:
    from sqlalchemy import Column, Integer, MetaData, Table

    table = Table("naive_probe", MetaData(), Column("id", Integer, primary_key=True),
                  Column("at", UtcDateTime))
    table.create(engine)
    with pytest.raises(StatementError, match="naive datetime"), engine.begin() as connection:
        connection.execute(table.insert().values(id=1, at=datetime(2025, 1, 6, 9, 30)))


def test_sqlite_runs_in_wal_mode(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/wal.sqlite3")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
