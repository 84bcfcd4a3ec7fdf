"""``haltguard venue state-at`` on a golden journal, and ``haltguard impact show`` against a
real local operations server reading it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from impact_support import LiveVenue, golden_incident
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from haltguard.app.operations import create_app
from haltguard.cli.main import app as haltguard_cli
from haltguard.common.clock import ManualClock
from haltguard.common.taxonomy import Category, Severity
from haltguard.db.session import session_scope
from haltguard.incidents import flows
from haltguard.incidents.models import IncidentCreate
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.web.settings import Settings

SERVER_START_S_MAX = 10.0
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(haltguard_cli, list(args), env={"COLUMNS": "250", **(env or {})})
    return result.exit_code, result.output


@pytest.fixture
def golden(tmp_path: Path) -> LiveVenue:
    return golden_incident(tmp_path / "venue")


def test_state_at_prints_the_books_and_balances_of_that_seq(golden: LiveVenue) -> None:
    code, output = _run("venue", "state-at", str(golden.data_dir), "--seq",
                        str(golden.marks["halt"]), "--asset", "COIN", "--market", "COIN-JPY",
                        "--json")
    assert code == 0, output
    state = json.loads(output)
    assert state["markets"]["COIN-JPY"] == {"state": "halted", "open_orders": 2}
    assert state["balances"]["2"] == {"total": "48.00000000", "available": "45.00000000",
                                      "locked": "3.00000000"}
    assert state["book"] == {"bids": [["100", "3"]], "asks": [["110", "3"]]}


def test_state_at_a_time_outside_the_journal_says_the_range(golden: LiveVenue) -> None:
    code, output = _run("venue", "state-at", str(golden.data_dir), "--time",
                        "2025-12-31T00:00:00Z")
    assert code == 1
    flat = " ".join(output.split())
    assert "outside the journal, which holds seq 1 to 39" in flat
    assert "Next: ask for a seq or time inside that range" in flat


@pytest.fixture
def server_url(engine: Engine, golden: LiveVenue) -> Iterator[str]:
    app = create_app(Settings(database_url="unused", data_dir=golden.data_dir,
                              migrate_on_start=False),
                     engine=engine, escalation_interval_s=None,
                     security_settings=fast_test_settings())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S_MAX
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(SERVER_START_S_MAX)


@SQLITE_ONLY
def test_impact_show_prints_the_counts_and_writes_the_csv(
    server_url: str, session_factory: sessionmaker[Session], golden: LiveVenue, tmp_path: Path,
) -> None:
    started = datetime.fromtimestamp(golden.seen[golden.marks["halt"]].ts // 10**9, UTC)
    with session_scope(session_factory) as session:
        incident = flows.open_incident(session, IncidentCreate(
            title="Matching fault", category=Category.SOFTWARE_BUG, severity=Severity.SEV2,
            started_at=started), actor="alice", clock=ManualClock(started))
        incident_id = incident.id
    viewer = provision_operator(session_factory, Role.VIEWER, settings=fast_test_settings())
    env = {"HALTGUARD_URL": server_url, "HALTGUARD_TOKEN": viewer.api_token,
           "HALTGUARD_CONFIG_DIR": str(tmp_path)}
    code, output = _run("impact", "show", "--incident", str(incident_id), env=env)
    assert code == 0, output
    flat = " ".join(output.split())
    assert "Impact of INC-1: journal seq 25 to 39" in flat
    assert "affected accounts │ 5" in flat
    assert "負荷制御" in flat
    target = tmp_path / "accounts.csv"
    code, output = _run("impact", "show", "--incident", str(incident_id), "--csv", str(target),
                        env=env)
    assert code == 0, output
    assert target.read_text().splitlines()[1].startswith("1,cancel_refused;")
    code, output = _run("impact", "show", "--from-seq", "1", "--to-seq", "999", env=env)
    assert code == 1
    assert "outside_journal, HTTP 422" in " ".join(output.split())
