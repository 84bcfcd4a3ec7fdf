"""``haltguard oncall ...`` on a real database file."""

from __future__ import annotations

import getpass
import json
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from haltguard.cli.main import app
from haltguard.common.clock import ManualClock
from haltguard.responders.contacts import INCIDENT_CATEGORIES
from haltguard.responders.settings import ResponderSettings

from .conftest import ACK_SECRET, HttpReceiver, SmtpServer
from .oncall_setup import page_state, send_page, two_level_policy

Factory = sessionmaker[Session]


@pytest.fixture
def runner(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("HALTGUARD_DATABASE_URL", database_url)
    return CliRunner()


def test_cli_ack_stops_the_page_and_names_the_os_user(
    runner: CliRunner, session_factory: Factory, clock: ManualClock,
    settings: ResponderSettings, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id = send_page(session_factory, clock, settings)

    result = runner.invoke(app, ["oncall", "ack", str(page_id), "--note", "on it"])
    assert result.exit_code == 0, result.output
    assert "escalation stopped" in result.output
    shown = page_state(session_factory, page_id)
    assert (shown.status, shown.ack_via) == ("acknowledged", "cli")
    assert shown.acknowledged_by == f"cli:{getpass.getuser()}"


def test_cli_ack_of_a_missing_page_says_how_to_find_pages(runner: CliRunner) -> None:
    result = runner.invoke(app, ["oncall", "ack", "4242"])
    assert result.exit_code == 1
    assert "no page 4242" in result.output and "haltguard oncall pages" in result.output


def test_cli_loads_the_example_setup_and_shows_the_contact_tree(
    runner: CliRunner, tmp_path: Path,
) -> None:
    example = tmp_path / "oncall.yaml"
    example.write_text(resources.files("haltguard.responders").joinpath(
        "oncall.example.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    loaded = runner.invoke(app, ["oncall", "load", str(example)])
    assert loaded.exit_code == 0, loaded.output
    assert "5 people, 2 schedules, 2 policies, 4 routes" in loaded.output

    shown = runner.invoke(app, ["oncall", "contacts", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    tree = json.loads(shown.output)
    assert list(tree) == list(INCIDENT_CATEGORIES)
    assert tree["unauthorized_access"][0] == {"person": "ito", "backup": "kobayashi",
                                              "role": "CISO"}

    who = runner.invoke(app, ["oncall", "schedule", "who", "infra-primary",
                              "--at", "2026-01-12T09:00+09:00"])
    assert who.exit_code == 0, who.output
    assert who.output.startswith("suzuki from 2026-01-12 09:00:00 JST (00:00:00 UTC)")


def test_cli_refuses_a_bad_setup_file_and_changes_nothing(
    runner: CliRunner, tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "people:\n  - {handle: tanaka, display_name: Tanaka}\n"
        "schedules:\n  - {name: infra, start_date: 2026-03-02, members: [tanaka, ghost]}\n",
        encoding="utf-8")
    result = runner.invoke(app, ["oncall", "load", str(bad)])
    assert result.exit_code == 1
    assert "unknown people: ghost" in result.output
    listed = runner.invoke(app, ["oncall", "person", "list"])
    assert "0 people" in listed.output


def test_cli_sets_one_category_of_the_contact_tree(runner: CliRunner) -> None:
    for handle in ("ito", "kobayashi"):
        added = runner.invoke(app, ["oncall", "person", "add", handle, "--name", handle,
                                    "--email", f"{handle}@example.com"])
        assert added.exit_code == 0, added.output
    result = runner.invoke(app, ["oncall", "contacts", "set", "malware",
                                 "--contact", "ito:kobayashi:CISO"])
    assert result.exit_code == 0, result.output
    tree = json.loads(runner.invoke(app, ["oncall", "contacts", "show", "--json"]).output)
    assert tree == {"malware": [{"person": "ito", "backup": "kobayashi", "role": "CISO"}]}


def test_cli_pages_one_person_directly_and_says_why(
    *, runner: CliRunner, session_factory: Factory, clock: ManualClock,
    http_receiver: HttpReceiver, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    monkeypatch.setenv("HALTGUARD_SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("HALTGUARD_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("HALTGUARD_ACK_SECRET", ACK_SECRET.decode())
    page = ["oncall", "page", "--incident", "INC-4", "--summary", "DB failover",
            "--category", "database", "--severity", "SEV2", "--person", "suzuki"]
    refused = runner.invoke(app, page)
    assert refused.exit_code == 2 and "--reason" in refused.output
    sent = runner.invoke(app, [*page, "--reason", "owns the database runbook"])
    assert sent.exit_code == 0, sent.output
    assert "Paged suzuki directly (owns the database runbook)" in sent.output
    assert smtp_server.mailbox.recipients == [["suzuki@example.com"]]
