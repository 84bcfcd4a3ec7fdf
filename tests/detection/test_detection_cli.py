"""``haltguard detect``: rules checked offline with lines, reloaded on a running service."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from detection_support import START, detection_app, rules
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from haltguard.cli.main import app
from haltguard.detection.rulesfile import reference_markdown
from haltguard.detection.service import DetectionService
from haltguard.responders.service import ManualClock
from haltguard.security.permissions import Role
from haltguard.security.testing import provision_operator

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
GOOD = """\
version: 1
rules:
  - id: crash
    signal: market.price_move_bps
    when: ">= 1000"
    classification: market_volatility
    severity: SEV2
    actions: [open_or_update_incident, halt_market]
"""
runner = CliRunner()


def test_rules_check_passes_a_good_file_and_lists_every_problem_of_a_bad_one(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD, encoding="utf-8")
    passed = runner.invoke(app, ["detect", "rules", "check", str(good)])
    assert passed.exit_code == 0, passed.output
    assert "1 rules, all good" in passed.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("halt_market", "unfreeze_withdrawals").replace(
        ">= 1000", "big"), encoding="utf-8")
    refused = runner.invoke(app, ["detect", "rules", "check", str(bad)])
    assert refused.exit_code == 1
    said = refused.output.replace("\n", "")
    assert f"{bad}:5: rule 'crash': when must be 'OP NUMBER'" in said
    assert f"{bad}:8: rule 'crash': action 'unfreeze_withdrawals' would loosen" in said


def test_rules_reference_prints_the_generated_document() -> None:
    result = runner.invoke(app, ["detect", "rules", "reference"])
    assert result.exit_code == 0
    assert result.output == reference_markdown()


@pytest.fixture
def served(session_factory: sessionmaker[Session]) -> Iterator[tuple[str, str, DetectionService]]:
    clock = ManualClock(START)
    detection = DetectionService(rules=rules(GOOD))
    token = provision_operator(session_factory, Role.INCIDENT_COMMANDER,
                               now=clock.now()).api_token
    server = uvicorn.Server(uvicorn.Config(detection_app(session_factory, detection, clock),
                                           host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", token, detection
    server.should_exit = True
    thread.join(10)


@SQLITE_ONLY
def test_rules_reload_puts_a_file_in_force_on_the_running_service_or_refuses_it(
    served: tuple[str, str, DetectionService], tmp_path: Path,
) -> None:
    url, token, detection = served
    base = ["detect", "--url", url, "--token", token, "rules", "reload"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("SEV2", "SEV0"), encoding="utf-8")
    refused = runner.invoke(app, [*base, str(bad)])
    assert refused.exit_code == 1
    said = refused.output.replace("\n", "")  # the error console wraps long lines
    assert "bad.yaml:7" in said and "running rules stay in force" in said
    assert detection.rules.rules[0].when.threshold == 1000
    good = tmp_path / "good.yaml"
    good.write_text(GOOD.replace(">= 1000", ">= 800"), encoding="utf-8")
    loaded = runner.invoke(app, [*base, str(good)])
    assert loaded.exit_code == 0, loaded.output
    assert f"in force: 1 rules from {good}" in loaded.output
    assert detection.rules.rules[0].when.threshold == 800
