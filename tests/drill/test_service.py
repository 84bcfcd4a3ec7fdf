"""``/api/drills`` on a served system: the drill token guards it, and one drill runs at a
time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from haltguard.app.system import System
from haltguard.cli.main import app
from haltguard.drill.scenario import Check, DrillContext, DrillResult, Measurements
from haltguard.drill.scenarios import SCENARIOS


class WaitingScenario:
    """A scenario that runs until the test releases it, so a second start finds it busy."""

    name = "test-waiting"
    title_en = "Waits for the test"
    title_ja = "テストを待つ"

    def __init__(self) -> None:
        self.release = threading.Event()

    def run(self, context: DrillContext) -> DrillResult:
        context.progress("waiting for the test")
        released = self.release.wait(20)
        return DrillResult(self.name, None, Measurements(ledger_invariant_ok=True), [
            Check("released", released, "released by the test", str(released))])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, make_drill_system: Any
           ) -> Iterator[System]:
    lines: list[str] = []
    data_dir = tmp_path_factory.mktemp("drills-api") / "data"
    with make_drill_system(data_dir, lines, venue_process=False) as system:
        yield system


def test_drills_api_refuses_a_request_without_the_drill_token(served: System) -> None:
    answer = httpx.post(f"{served.api_url}/api/drills", json={"scenario": "server-down"})
    assert answer.status_code == 401
    assert "Bearer <drill token>" in answer.text


def test_drills_api_refuses_a_wrong_drill_token(served: System) -> None:
    answer = httpx.post(f"{served.api_url}/api/drills", json={"scenario": "server-down"},
                        headers={"Authorization": "Bearer not-the-token"})
    assert answer.status_code == 403


def test_drills_api_refuses_an_unknown_scenario_naming_the_known_ones(served: System) -> None:
    answer = httpx.post(f"{served.api_url}/api/drills", json={"scenario": "meteor"},
                        headers={"Authorization": f"Bearer {served.drill_token}"})
    assert answer.status_code == 404
    assert "server-down" in answer.text


def test_drills_api_runs_one_drill_at_a_time_and_reports_its_result(
    served: System, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    scenario = WaitingScenario()
    monkeypatch.setitem(SCENARIOS, scenario.name, scenario)
    headers = {"Authorization": f"Bearer {served.drill_token}"}
    with httpx.Client(base_url=served.api_url, headers=headers, timeout=10) as client:
        first = client.post("/api/drills", json={"scenario": scenario.name, "scale": "reduced"})
        assert first.status_code == 202, first.text
        run_id = first.json()["id"]
        second = client.post("/api/drills", json={"scenario": scenario.name})
        assert second.status_code == 409
        assert second.json()["error"]["code"] == "drill_running"
        assert run_id in second.json()["error"]["message"]
        scenario.release.set()
        deadline = time.monotonic() + 10
        body = client.get(f"/api/drills/{run_id}").json()
        while body["state"] != "done" and time.monotonic() < deadline:
            time.sleep(0.05)
            body = client.get(f"/api/drills/{run_id}").json()
    assert body["state"] == "done"
    assert "waiting for the test" in body["lines"]
    assert body["result"]["checks"][0] == {
        "name": "released", "passed": True, "expected": "released by the test", "seen": "True",
        "name_ja": "", "expected_ja": "", "seen_ja": ""}
    assert any(path.endswith(".md") for path in body["result"]["report_paths"])


def test_drill_command_runs_the_drill_inside_the_running_serve(
    served: System, monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = WaitingScenario()
    scenario.release.set()
    monkeypatch.setitem(SCENARIOS, scenario.name, scenario)
    served.write_serve_file()
    answer = CliRunner().invoke(app, ["drill", scenario.name, "--scale", "reduced",
                                      "--data-dir", str(served.config.data_dir)])
    assert "Drilling the running serve" in answer.output
    assert "waiting for the test" in answer.output
    assert "結果 / Result: 合格 / PASS" in answer.output
    assert answer.exit_code == 0, answer.output
