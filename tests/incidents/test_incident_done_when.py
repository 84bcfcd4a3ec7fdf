"""The issue's "done when", end to end through the CLI against a real HTTP server, on SQLite
and PostgreSQL: log in with password and TOTP, open a SEV1, see its runbook tasks, halt a
market through it, page the on-call (escalating when nobody acknowledges), resume with a
second operator's approval, resolve, write both reports, close; every step is in the
timeline and the audit chain verifies."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from incident_helpers import OPERATORS_E2E, Mailbox
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from haltguard.cli.main import app as haltguard_cli
from haltguard.db.session import session_scope
from haltguard.gateway.control import InProcessVenueControl
from haltguard.responders import service as responders
from haltguard.responders.service import ManualClock
from haltguard.security.testing import (
    ProvisionedOperator,
    provision_operator,
)
from haltguard.venue.types import MarketState


class Operator:
    """One person at a terminal: their own saved login, running ``haltguard incident``."""

    def __init__(self, account: ProvisionedOperator, url: str, home: Path) -> None:
        self.account = account
        self.env = {"HALTGUARD_URL": url, "HALTGUARD_CONFIG_DIR": str(home / account.username),
                    "HALTGUARD_TOKEN": "", "COLUMNS": "250"}
        self.runner = CliRunner()

    def run(self, *args: str, ok: bool = True) -> str:
        result = self.runner.invoke(haltguard_cli, ["incident", *args], env=self.env)
        assert (result.exit_code == 0) == ok, f"{args}: {result.output}"
        return " ".join(result.output.split())  # wrapping depends on the terminal

    def json(self, *args: str) -> Any:
        result = self.runner.invoke(haltguard_cli, ["incident", "--json", *args], env=self.env)
        assert result.exit_code == 0, f"{args}: {result.output}"
        return json.loads(result.output)

    def login(self, clock: ManualClock) -> str:
        code = pyotp.TOTP(self.account.totp_secret).at(clock.now())
        return self.run("login", "--username", self.account.username,
                        "--password", self.account.password, "--totp", code)


def test_an_operator_runs_a_sev1_from_the_cli_alone(
    *, server_url: str, session_factory: sessionmaker[Session], clock: ManualClock,
    venue: InProcessVenueControl, oncall: Mailbox, tmp_path: Path,
    database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    accounts = {name: provision_operator(session_factory, role, username=name, now=clock.now())
                for name, role in OPERATORS_E2E.items()}
    alice = Operator(accounts["alice"], server_url, tmp_path)
    dave = Operator(accounts["dave"], server_url, tmp_path)

    assert "logged in as alice (incident_commander)" in alice.login(clock)
    incident = alice.json("open", "BTC-JPY matching stalled", "--category", "software_bug",
                          "--severity", "sev1", "--market", "BTC-JPY", "--customers", "40000")
    number = str(incident["id"])
    assert incident["status"] == "detected"

    tasks = alice.json("tasks", number)
    assert tasks["items"][0]["step_key"] == "assess_situation"
    assert "roll_back_or_fix" in [task["step_key"] for task in tasks["items"]]

    # Paged at once (SEV1); nobody acknowledges for 5 minutes, so the next level is paged.
    assert len(oncall.to("tanaka@example.test")) == 1
    clock.advance(timedelta(minutes=2))
    alice.run("transition", number, "investigating", "--note", "looking at the engine")
    assert "ok BTC-JPY: BTC-JPY open -> halted" in alice.run(
        "halt", number, "BTC-JPY", "--reason", "matching stalled")
    assert venue.market_states()["BTC-JPY"] == MarketState.HALTED
    clock.advance(timedelta(minutes=4))
    with session_scope(session_factory) as session:
        responders.escalation_tick(session, clock.now(), settings=oncall.settings)
    assert len(oncall.to("suzuki@example.test")) == 1

    alice.run("task-done", number, "assess_situation", "--note", "engine thread deadlocked")
    alice.run("transition", number, "mitigating")
    asked = alice.json("resume", number, "BTC-JPY", "--reason", "engine restarted",
                       "--auction-seconds", "0")
    approval = str(asked["approval"]["id"])
    assert asked["approval"]["status"] == "pending"
    assert "a different operator must approve" in alice.run("approve", approval, ok=False)
    assert dave.login(clock)
    assert "ok BTC-JPY" in dave.run("approve", approval, "--note", "books reconciled")
    assert venue.market_states()["BTC-JPY"] == MarketState.OPEN

    clock.advance(timedelta(minutes=20))
    assert alice.json("transition", number, "resolved")["status"] == "resolved"
    postmortem_file = tmp_path / "postmortem.yaml"
    postmortem_file.write_text(
        "cause: A deadlock in the matching thread under a burst of cancels.\n"
        "went_well: [Halted within 2 minutes]\n"
        "went_badly: [Nobody acknowledged the first page]\n"
        "recurrence_prevention: [キャンセル集中時のロック順序を修正する。]\n"
        "action_items: [{description: Fix the lock order, owner: dave, due: '2025-01-20'}]\n",
        encoding="utf-8")
    alice.run("postmortem", number, str(postmortem_file))
    alice.run("report", number, "--output", str(tmp_path / "postmortem.md"))
    alice.run("report", number, "--format", "html", "--output", str(tmp_path / "pm.html"))
    alice.run("report", number, "--kind", "regulatory", "--output", str(tmp_path / "ja.md"))
    assert "| Markets halted or restricted | BTC-JPY |" in (tmp_path / "postmortem.md").read_text()
    assert "<h2>Timeline</h2>" in (tmp_path / "pm.html").read_text()
    regulator = (tmp_path / "ja.md").read_text()
    assert "BTC-JPY の取引を停止" in regulator and "BTC-JPY の取引を再開" in regulator
    assert alice.json("transition", number, "closed")["status"] == "closed"

    entries = alice.json("timeline", number)["items"]
    steps = [(entry["kind"], entry["details"].get("event") or entry["details"].get("new"))
             for entry in entries]
    for expected in [("opened", None), ("page", "paged"), ("status_changed", "investigating"),
                     ("market_action", None), ("page", "escalated"), ("task_done", None),
                     ("approval_requested", None), ("resume", None),
                     ("approval_decided", None), ("status_changed", "resolved"),
                     ("postmortem", None), ("report", None), ("status_changed", "closed")]:
        assert expected in steps, f"{expected} missing from the timeline: {steps}"
    assert [entry["actor"] for entry in entries if entry["kind"] == "resume"] == ["dave"]

    monkeypatch.setenv("HALTGUARD_DATABASE_URL", database_url)
    verified = CliRunner().invoke(haltguard_cli, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "chain intact" in verified.output
