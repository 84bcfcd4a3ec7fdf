"""The impact routes and the reports they fill in, on the golden incident's journal, through
the real operations app (permission table, error handler, database)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from impact_support import INCIDENT, LiveVenue, golden_incident
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.common.clock import ManualClock
from haltguard.common.taxonomy import Category, Severity
from haltguard.db.session import session_scope
from haltguard.incidents import flows
from haltguard.incidents.models import IncidentCreate
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.web.settings import Settings

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""HTTP and reports, not storage: SQLite is enough."""


def _moment(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC)


@pytest.fixture
def golden(tmp_path: Path) -> LiveVenue:
    return golden_incident(tmp_path / "venue")


@pytest.fixture
def client(engine: Engine, golden: LiveVenue) -> Iterator[TestClient]:
    app = create_app(Settings(database_url="", data_dir=golden.data_dir, migrate_on_start=False),
                     engine=engine, escalation_interval_s=None,
                     security_settings=fast_test_settings())
    with TestClient(app, base_url="https://testserver") as http:
        yield http


@pytest.fixture
def incident_id(session_factory: sessionmaker[Session], golden: LiveVenue) -> int:
    """The incident as recorded: started when the halt was journaled, not resolved yet."""
    started = _moment(golden.seen[golden.marks["halt"]].ts)
    with session_scope(session_factory) as session:
        incident = flows.open_incident(session, IncidentCreate(
            title="Matching fault", category=Category.SOFTWARE_BUG, severity=Severity.SEV2,
            started_at=started,
        ), actor="alice", clock=ManualClock(started))
        assert incident.ref == INCIDENT
        return incident.id


def _headers(session_factory: sessionmaker[Session], role: Role) -> dict[str, str]:
    return provision_operator(session_factory, role, settings=fast_test_settings()).headers


@SQLITE_ONLY
def test_an_incidents_impact_is_read_from_the_journal(
    client: TestClient, session_factory: sessionmaker[Session], incident_id: int,
    golden: LiveVenue,
) -> None:
    viewer = _headers(session_factory, Role.VIEWER)
    answer = client.get(f"/api/incidents/{incident_id}/impact", headers=viewer)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["incident_ref"] == INCIDENT
    assert report["journal"]["first_seq"] == golden.marks["halt"]
    assert report["journal"]["last_seq"] == max(golden.seen)
    assert report["counts"]["affected_accounts"] == 5
    assert [a["account"] for a in report["affected"]] == [1, 2, 3, 4, 5]
    assert report["load_shedding"]["in_journal"] is False


@SQLITE_ONLY
def test_lists_are_cut_to_the_limit_and_whole_in_the_csv(
    client: TestClient, session_factory: sessionmaker[Session], incident_id: int,
) -> None:
    viewer = _headers(session_factory, Role.VIEWER)
    short = client.get(f"/api/incidents/{incident_id}/impact", headers=viewer,
                       params={"limit": 2}).json()
    assert len(short["affected"]) == 2
    assert short["counts"]["affected_accounts"] == 5
    answer = client.get(f"/api/incidents/{incident_id}/impact.csv", headers=viewer,
                        params={"list": "refused_orders"})
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert len(rows) == 1 + 3
    assert rows[1][-2:] == ["market_halted", ""]


@SQLITE_ONLY
def test_a_window_by_seq_and_bad_windows(
    client: TestClient, session_factory: sessionmaker[Session], golden: LiveVenue,
) -> None:
    viewer = _headers(session_factory, Role.VIEWER)
    m = golden.marks
    answer = client.get("/api/impact", headers=viewer,
                        params={"from_seq": m["halt"], "to_seq": m["freeze"],
                                "market": ["COIN-JPY"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["counts"]["orders_refused"] == 1
    outside = client.get("/api/impact", headers=viewer, params={"to_seq": 10_000})
    assert outside.status_code == 422
    assert outside.json()["error"]["code"] == "outside_journal"
    assert "seq 1 to" in outside.json()["error"]["message"]
    naive = client.get("/api/impact", headers=viewer, params={"from": "2026-01-01T00:00:20"})
    assert naive.json()["error"]["code"] == "impact_invalid_window"


@SQLITE_ONLY
def test_impact_needs_a_login(client: TestClient, incident_id: int) -> None:
    assert client.get(f"/api/incidents/{incident_id}/impact").status_code == 401


@SQLITE_ONLY
def test_the_regulator_report_and_postmortem_are_filled_in_from_the_journal(
    client: TestClient, session_factory: sessionmaker[Session], incident_id: int,
) -> None:
    responder = _headers(session_factory, Role.RESPONDER)
    regulatory = client.get(f"/api/incidents/{incident_id}/reports/regulatory",
                            headers=responder).text
    assert "| 影響を受けた顧客数 | 5 名(取引記録から集計) |" in regulatory
    assert "| 受付できなかった注文数 | 3 件(取引記録から集計) |" in regulatory
    assert "集計元の記録 | シーケンス番号 25 から 39 まで" in regulatory
    assert f"/api/incidents/{incident_id}/impact.csv?list=accounts" in regulatory
    postmortem = client.get(f"/api/incidents/{incident_id}/reports/postmortem",
                            headers=responder).text
    assert "| Customers affected (from the journal) | 5 |" in postmortem
    assert "| Counted from | journal seq 25 to 39" in postmortem
