"""The drills screen: a commander starts a drill on a served system with drills allowed and
watches its progress arrive; past drills' reports are listed and open from the reports
directory only; who may read and who may start."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
from console_support import SQLITE_ONLY, csrf_of, desk
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from haltguard.app.config import load_config
from haltguard.app.drill_system import own_system
from haltguard.app.system import System
from haltguard.console.live import ChangeFeed
from haltguard.drill.report import write_files
from haltguard.drill.scenario import Check, DrillContext, DrillResult, Measurements, Targets
from haltguard.drill.scenarios import SCENARIOS
from haltguard.responders.service import ManualClock
from haltguard.security.models import AuditEntry
from haltguard.security.permissions import Role
from haltguard.security.testing import ProvisionedOperator, provision_operator
from haltguard.status.texts import Bilingual
from haltguard.web.context import context_of

DRILL_WAIT_S_MAX = 15.0


class WaitingScenario:
    """A drill that says where it is and waits for the test, so its progress can be watched
    while it runs (the scenarios' own behaviour is proved in tests/drill)."""

    name = "console-waiting"
    title_en = "Waits for the console test"
    title_ja = "コンソールのテストを待つ"

    def __init__(self) -> None:
        self.release = threading.Event()

    def run(self, context: DrillContext) -> DrillResult:
        context.progress("step 1: waiting for the operator")
        released = self.release.wait(DRILL_WAIT_S_MAX)
        context.progress("step 2: released")
        return DrillResult(self.name, None, Measurements(ledger_invariant_ok=True), [
            Check("released", released, "released by the test", str(released))])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    data_dir = tmp_path_factory.mktemp("console-drills") / "data"
    config = load_config(None, environ={}, overrides={
        "data_dir": str(data_dir), "venue.admin_token": "console-drill-admin-token-0123456789",
        "venue.process": False, "drill.enabled": True})
    with own_system(config, lambda line: None) as system:
        yield system


def _log_in(system: System, operator: ProvisionedOperator) -> TestClient:
    client = TestClient(system.operations, base_url="https://testserver")
    page = client.get("/console/login")
    answer = client.post("/console/login", data={
        "csrf_token": csrf_of(page.text), "username": operator.username,
        "password": operator.password,
        "totp_code": pyotp.TOTP(operator.totp_secret).at(datetime.now(UTC))},
        follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return client


def _wait_for(client: TestClient, path: str, marker: str) -> str:
    deadline = time.monotonic() + DRILL_WAIT_S_MAX
    while True:
        html: str = client.get(path).text
        if marker in html:
            return html
        assert time.monotonic() < deadline, f"{marker!r} never appeared at {path}"
        time.sleep(0.05)


def test_a_commander_starts_a_drill_watches_it_live_and_opens_its_report(
    served: System, monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = WaitingScenario()
    monkeypatch.setitem(SCENARIOS, scenario.name, scenario)
    carol = provision_operator(served.session_factory, Role.INCIDENT_COMMANDER,
                               username="drill-carol")
    client = _log_in(served, carol)
    screen = client.get("/console/drills").text
    assert f'value="{scenario.name}"' in screen and "data-drills-disabled" not in screen
    started = client.post("/console/drills", data={
        "csrf_token": csrf_of(screen), "scenario": scenario.name, "scale": "reduced"},
        follow_redirects=False)
    assert started.status_code == 303, started.text
    run_path = started.headers["location"]
    run_id = run_path.rsplit("/", 1)[1]
    running = client.get(run_path).text
    assert f'data-live-src="/console/live/drills/runs/{run_id}"' in running
    live = _wait_for(client, f"/console/live/drills/runs/{run_id}",
                     "step 1: waiting for the operator")
    assert 'data-drill-state="running"' in live
    busy = client.post("/console/drills", data={
        "csrf_token": csrf_of(screen), "scenario": scenario.name, "scale": "reduced"},
        follow_redirects=False)
    assert busy.status_code == 409 and run_id in busy.text  # one drill at a time
    with served.session_factory() as session:
        started_entries = list(session.scalars(select(AuditEntry).where(
            AuditEntry.action == "drill.started")))
        assert [(entry.actor, entry.target) for entry in started_entries] == [
            ("operator:drill-carol", f"drill:{run_id}")]  # the refused second start left none
    feed = context_of(served.operations).part(ChangeFeed)
    loud_before, _ = feed._read()
    scenario.release.set()
    done = _wait_for(client, f"/console/live/drills/runs/{run_id}", 'data-drill-state="done"')
    assert "step 2: released" in done and "合格" in done
    loud_after, _ = feed._read()
    assert loud_after != loud_before  # the open drill pages are told of the progress
    linked = done.split('href="/console/drills/reports/', 1)[1].split('"', 1)[0]
    listing = client.get("/console/drills").text
    assert linked.endswith(".md")  # the run's page links its reports as written
    assert f'data-report="{linked[:-3]}.html"' in listing  # and the list of past drills has it
    opened = client.get(f"/console/drills/reports/{linked}")
    assert opened.status_code == 200 and "released" in opened.text
    report = listing.split(f'data-report="drill-{scenario.name}', 1)[1].split('"', 1)[0]
    html = client.get(f"/console/drills/reports/drill-{scenario.name}{report}")
    assert html.status_code == 200 and "released" in html.text
    assert "sandbox" in html.headers["content-security-policy"]


@SQLITE_ONLY
def test_drills_read_by_responders_started_by_commanders_and_reports_stay_in_their_folder(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    venue_dir: Path,
) -> None:
    finished = datetime(2025, 1, 5, 1, 0, tzinfo=UTC)
    result = DrillResult("server-down", None, Measurements(ledger_invariant_ok=True,
                                                           recovery_time_s=12.5),
                         [Check("recovered", True, "under 60 s", "12.5 s")],
                         started_at=finished, finished_at=finished)
    write_files(result, Targets(), Bilingual("サーバー停止", "Server down"),
                venue_dir / "drills" / "drill-server-down-20250105T010000Z")
    sam = desk(app, operators["sam"], clock)
    assert sam.login().status_code == 303
    assert 'href="/console/drills"' not in sam.get("/console/overview").text
    assert sam.get("/console/drills").status_code == 403
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    screen = carol.get("/console/drills").text
    assert "data-drills-disabled" in screen  # this app has no drills allowed
    assert "12.5 s" in screen and "2025-01-05 10:00:00 JST" in screen
    path = "drill-server-down-20250105T010000Z/drill-server-down-20250105T010000Z.html"
    assert f'data-report="{path}"' in screen
    assert carol.get(f"/console/drills/reports/{path}").status_code == 200
    markdown = carol.get(f"/console/drills/reports/{path[:-5]}.md")
    assert markdown.status_code == 200 and markdown.headers["content-type"].startswith(
        "text/plain")
    for wrong in ("../../venue/journal", "drill-server-down-20250105T010000Z/x.json",
                  "%2e%2e/%2e%2e/etc/passwd"):
        assert carol.get(f"/console/drills/reports/{wrong}").status_code == 404, wrong
    refused = carol.post("/console/drills", {"scenario": "server-down"},
                         token_from="/console/drills")
    assert refused.status_code == 403 and "drill.enabled" in refused.text
