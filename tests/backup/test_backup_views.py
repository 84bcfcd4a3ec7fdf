"""The backup evidence over HTTP, through the real operations app and permission table."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.backup import service
from haltguard.backup.flows import VerifyOutcome
from haltguard.db.session import session_scope
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.web.settings import Settings

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
NOW = datetime(2026, 12, 8, 2, 0, tzinfo=UTC)


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(database_url="", data_dir=tmp_path, migrate_on_start=False),
                     engine=engine, escalation_interval_s=None,
                     security_settings=fast_test_settings())
    with TestClient(app, base_url="https://testserver") as http:
        yield http


@SQLITE_ONLY
def test_a_responder_sees_the_last_failure_and_the_last_passing_verify(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    with session_scope(session_factory) as session:
        service.record_backup_failure(session, "file:///mnt/backup", "disk missing",
                                      started_at=NOW, finished_at=NOW)
        service.record_verification(session, VerifyOutcome(
            "20261208T010000Z-abcdef", "file:///mnt/backup", True, [], venue_seq=42,
            state_hash="ab" * 32, duration_s=3.0), finished_at=NOW)
    headers = provision_operator(session_factory, Role.RESPONDER,
                                 settings=fast_test_settings()).headers
    viewer = provision_operator(session_factory, Role.VIEWER,
                                settings=fast_test_settings()).headers

    answer = client.get("/api/backups", headers=headers)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["evidence"]["last_failure"] == "disk missing"
    assert body["evidence"]["last_good_backup_at"] is None
    assert body["evidence"]["last_verified_backup_id"] == "20261208T010000Z-abcdef"
    assert [record["status"] for record in body["backups"]] == ["failed"]
    assert client.get("/api/backups").status_code == 401
    assert client.get("/api/backups", headers=viewer).status_code == 403
