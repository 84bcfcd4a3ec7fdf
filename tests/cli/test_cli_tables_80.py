"""The CLI's other tables with times, read at 80 columns: the audit chain, on-call shifts and
pages show Japan time to the second with UTC beside (no ISO strings, no microseconds), and no
column shrinks to a letter a line."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from haltguard.cli.main import app
from haltguard.common.clock import ManualClock
from haltguard.responders import paging
from haltguard.responders import service as responders

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ONCALL_YAML = """\
people:
  - handle: tanaka
    display_name: 田中 一郎
    contacts: [{kind: email, address: tanaka@example.test}]
  - handle: suzuki
    display_name: 鈴木 花子
    contacts: [{kind: email, address: suzuki@example.test}]
schedules:
  - name: primary
    timezone: Asia/Tokyo
    start_date: 2025-01-01
    handoff: "09:00"
    rotation_days: 1
    members: [tanaka, suzuki]
"""
START = datetime(2025, 1, 6, 0, 30, 5, 123456, tzinfo=UTC)  # 09:30:05 JST


def _at_80_columns(output: str, *, iso_in_details: bool = False) -> str:
    assert max(len(line) for line in output.splitlines()) <= 80, output
    if not iso_in_details:  # the audit's details are the entry's own JSON, shown as stored
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:", output), "an ISO time string"
        assert ".123456" not in output and "+00:00" not in output
    assert not re.search(r"│ [^\W\d_] │", output), "a column shrank to one letter a line"
    return output


@pytest.fixture
def loaded(database_url: str, session_factory: sessionmaker[Session],
           engine: object) -> CliRunner:
    clock = ManualClock(START)
    with session_factory.begin() as session:
        responders.apply_config(session, responders.parse_config_yaml(ONCALL_YAML),
                                actor="system:test-setup", clock=clock)
    with session_factory.begin() as session:
        paging.page_person(session, person="suzuki", incident_id="INC-7",
                           summary="Order database unreachable", category="database",
                           severity="SEV2", reason="the database expert", clock=clock,
                           actor="operator:carol")
    return CliRunner(env={"HALTGUARD_DATABASE_URL": database_url, "COLUMNS": "80"})


def test_on_call_shifts_and_pages_show_japan_time_with_utc_at_80_columns(
    loaded: CliRunner,
) -> None:
    shifts = loaded.invoke(app, ["oncall", "schedule", "shifts", "primary", "--days", "2",
                                 "--start", "2025-01-06T09:00+09:00"])
    assert shifts.exit_code == 0, shifts.output
    text = _at_80_columns(shifts.output)
    assert "2025-01-06 09:00:00 JST" in text and "00:00:00 UTC" in text
    assert "2025-01-07 09:00:00 JST" in text
    pages = loaded.invoke(app, ["oncall", "pages"])
    assert pages.exit_code == 0, pages.output
    text = _at_80_columns(pages.output)
    assert "2025-01-06" in text and "09:30:05 JST" in text and "00:30:05 UTC" in text
    shown = loaded.invoke(app, ["oncall", "show", "1"])
    assert shown.exit_code == 0, shown.output
    assert "2025-01-06 09:30:05 JST (00:30:05 UTC)" in shown.output


def test_the_audit_list_shows_japan_time_with_utc_at_80_columns(loaded: CliRunner) -> None:
    listed = loaded.invoke(app, ["audit", "list", "--limit", "5"])
    assert listed.exit_code == 0, listed.output
    text = _at_80_columns(listed.output, iso_in_details=True)
    assert re.search(r"│ \d{4}-\d\d-\d\d", text), text
    assert re.search(r"│ \d\d:\d\d:\d\d JST", text), text
    assert re.search(r"│ \d\d:\d\d:\d\d UTC", text), text
    assert "time (UTC)" not in text
