"""``haltguard bcp``, ``risk``, ``vuln``, ``training`` and ``insurance`` on a real database
file: exit codes say pass (0), fail (1) and bad input (2); bad input stores nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from continuity_support import (
    PLAN_TEXT,
    REGISTER_TEXT,
    SARIF,
    Mailbox,
    add_person,
    drill_record,
    write,
)
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from haltguard.cli import continuity as continuity_cli
from haltguard.cli.main import app
from haltguard.common.clock import utc_now
from haltguard.continuity import service
from haltguard.db.session import session_scope
from haltguard.responders.settings import ResponderSettings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def runner(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("HALTGUARD_DATABASE_URL", database_url)
    monkeypatch.setenv("HALTGUARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HALTGUARD_CONTINUITY_PLAN_FILE", str(write(tmp_path / "bcp.yaml",
                                                                   PLAN_TEXT)))
    monkeypatch.setenv("HALTGUARD_CONTINUITY_REGISTER_FILE",
                       str(write(tmp_path / "risks.yaml", REGISTER_TEXT)))
    monkeypatch.setenv("HALTGUARD_CONTINUITY_DRILL_REPORT_DIRS", str(tmp_path / "drills"))
    monkeypatch.setenv("HALTGUARD_CONTINUITY_REPORT_DIR", str(tmp_path / "report"))
    return CliRunner()


def test_bcp_check_exits_1_and_writes_the_report_when_evidence_is_missing(
        runner: CliRunner, tmp_path: Path) -> None:
    drill_record(tmp_path / "drills", "server-down", utc_now() - timedelta(days=1))
    result = runner.invoke(app, ["bcp", "check", "--json"])
    assert result.exit_code == 1, result.output
    body = json.loads(result.output)
    assert body["services"] == {"trading": True, "ledger": False}
    assert any(path.endswith(".html") for path in body["report"])
    assert (tmp_path / "report" / "risk-heatmap-inherent.svg").exists()


def test_bcp_check_exits_2_naming_an_unknown_field_and_writes_nothing(
        runner: CliRunner, tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", PLAN_TEXT.replace("  version: 2\n",
                                                         "  version: 2\n  owner: me\n"))
    result = runner.invoke(app, ["bcp", "check", "--plan", str(bad)])
    assert result.exit_code == 2, result.output
    assert f"{bad}:4: unknown field 'owner' in plan" in result.output
    assert not (tmp_path / "report").exists()


def test_bcp_example_prints_a_plan_that_loads(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["bcp", "example", "plan"])
    assert result.exit_code == 0
    copied = write(tmp_path / "mine.yaml", result.output)
    assert runner.invoke(app, ["bcp", "show", "--plan", str(copied)]).exit_code == 0


def test_risk_heatmap_writes_the_svg(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "heat.svg"
    result = runner.invoke(app, ["risk", "heatmap", "--out", str(out), "--rating", "residual"])
    assert result.exit_code == 0, result.output
    assert 'data-rating="residual"' in out.read_text(encoding="utf-8")


def test_vuln_import_of_a_broken_file_stores_nothing(
        runner: CliRunner, tmp_path: Path, session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        add_person(session, "carol")
    broken = json.loads(json.dumps(SARIF))
    broken["runs"][0]["results"].append({"message": {"text": "no rule"}})
    path = write(tmp_path / "scan.sarif", json.dumps(broken))
    result = runner.invoke(app, ["vuln", "import", str(path), "--format", "sarif",
                                 "--owner", "carol"])
    assert result.exit_code == 2 and "runs[0].results[4]: needs a ruleId" in result.output
    with session_scope(session_factory) as session:
        assert service.list_findings(session, today=utc_now().date()) == []
    good = write(tmp_path / "good.sarif", json.dumps(SARIF))
    imported = runner.invoke(app, ["vuln", "import", str(good), "--format", "sarif",
                                   "--owner", "carol"])
    assert imported.exit_code == 0 and "4 new" in imported.output


def test_training_assign_for_a_person_nobody_can_page_is_refused(runner: CliRunner) -> None:
    result = runner.invoke(app, ["training", "assign", "zed", "Phishing", "--due",
                                 "2027-01-31"])
    assert result.exit_code == 1
    assert "haltguard oncall person add zed" in result.output


def test_the_example_insurance_policy_is_recorded_and_listed(
        runner: CliRunner, tmp_path: Path, session_factory: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the module's console keeps the width it was made with (another test may import it at
    # 80 columns): a wide one, so the row is not cut short
    monkeypatch.setattr(continuity_cli.console, "width", 300)
    with session_scope(session_factory) as session:
        add_person(session, "alice")
    example = runner.invoke(app, ["bcp", "example", "insurance"])
    path = write(tmp_path / "policy.yaml", example.output)
    added = runner.invoke(app, ["insurance", "add", str(path)])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["insurance", "list"], env={"COLUMNS": "300"})
    assert "Example Marine" in listed.output and "+81-120-000-000" in listed.output
    bad = write(tmp_path / "bad.yaml", example.output.replace("currency: JPY",
                                                              "currency: JPY\nexcess: 1"))
    refused = runner.invoke(app, ["insurance", "add", str(bad)])
    assert refused.exit_code == 2 and "unknown field 'excess'" in refused.output


def test_bcp_remind_pages_the_owners_and_exits_1_for_one_it_could_not_reach(
        runner: CliRunner, session_factory: sessionmaker[Session], tmp_path: Path,
        mailbox: tuple[Mailbox, ResponderSettings], monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, paging = mailbox
    monkeypatch.setenv("HALTGUARD_SMTP_HOST", paging.smtp.host)
    monkeypatch.setenv("HALTGUARD_SMTP_PORT", str(paging.smtp.port))
    with session_scope(session_factory) as session:
        add_person(session, "alice")  # R-01's owner; R-02's owner bob is not in the directory
    register = REGISTER_TEXT.replace("review_by: 2027-06-30", "review_by: 2026-01-01", 1)
    monkeypatch.setenv("HALTGUARD_CONTINUITY_REGISTER_FILE",
                       str(write(tmp_path / "overdue.yaml", register)))
    result = runner.invoke(app, ["bcp", "remind"], env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    assert "risk:R-01 -> alice: page" in result.output
    assert "risk:R-02 -> bob: NOT SENT" in result.output
    assert len(inbox.to("alice@example.com")) == 1
    again = runner.invoke(app, ["bcp", "remind"])
    assert again.exit_code == 0 and "0 reminder(s) today" in again.output
