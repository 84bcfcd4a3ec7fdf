"""The conformance suite passes against our venue (reached through the adapter file that
describes its /v1/admin API) and against the other venue (a different API), and it fails
the right check when a venue breaks the contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from adapter_support import OTHER_FILE, OURS_FILE, TOKEN, other_venue, our_spec, our_venue
from othervenue import SECRET, OtherVenueServer
from typer.testing import CliRunner

from haltguard.adapters.control import AdapterVenueControl
from haltguard.cli.main import app as haltguard_cli
from haltguard.conformance.suite import CHECK_NAMES, ConformanceReport, run_conformance


def _holding(report: ConformanceReport) -> dict[str, bool]:
    return {result.name: result.holds for result in report.results}


def test_our_venue_through_its_adapter_file_keeps_the_whole_contract(tmp_path: Path) -> None:
    with our_venue(tmp_path / "venue") as (_runtime, server), AdapterVenueControl(
        our_spec(server.url)
    ) as control:
        report = run_conformance(control)
    assert [r.name for r in report.results] == list(CHECK_NAMES)
    assert report.passed, [(r.name, r.detail) for r in report.failed()]


def test_the_other_venue_through_its_own_adapter_file_keeps_the_whole_contract() -> None:
    with other_venue() as (_venue, control):
        report = run_conformance(control)
    assert report.passed, [(r.name, r.detail) for r in report.failed()]


def test_a_venue_that_takes_orders_while_halted_fails_that_check_and_only_that() -> None:
    with other_venue() as (venue, control):
        venue.faults.orders_ignore_status = True
        report = run_conformance(control, only=("halt_refuses_orders", "halt_allows_cancels",
                                                "kill_switch"))
    assert _holding(report) == {"halt_refuses_orders": False, "halt_allows_cancels": True,
                                "kill_switch": False}
    assert "accepted order" in report.results[0].detail


def test_a_feed_that_loses_events_fails_the_feed_check() -> None:
    with other_venue() as (venue, control):
        venue.faults.stream_loses_every = 5
        report = run_conformance(control, only=("feed_resumes",))
    assert _holding(report) == {"feed_resumes": False}


def test_a_venue_that_answers_500_now_and_then_still_conforms_through_the_retries() -> None:
    with other_venue() as (venue, control):
        venue.faults.fail_next = 2
        report = run_conformance(control, only=("health", "halt_refuses_orders"))
    assert report.passed, [(r.name, r.detail) for r in report.failed()]


def test_the_command_prints_what_holds_and_exits_zero() -> None:
    with OtherVenueServer() as server:
        result = CliRunner().invoke(haltguard_cli, [
            "venue", "conformance", "--adapter", str(OTHER_FILE), "--set",
            f"base_url={server.url}", "--set", f"signing_secret={SECRET}",
            "--only", "health", "--only", "halt_allows_cancels"])
    assert result.exit_code == 0, result.output
    assert "2 of 2 hold" in result.output and "2 件中 2 件が成立" in result.output


def test_the_command_exits_one_naming_the_checks_that_fail() -> None:
    with OtherVenueServer() as server:
        server.venue.faults.orders_ignore_status = True
        result = CliRunner().invoke(haltguard_cli, [
            "venue", "conformance", "--adapter", str(OTHER_FILE), "--set",
            f"base_url={server.url}", "--set", f"signing_secret={SECRET}",
            "--only", "halt_refuses_orders"])
    assert result.exit_code == 1
    assert "FAILS" in result.output


@pytest.mark.parametrize("problem", ["unreachable", "bad template"])
def test_the_command_refuses_a_bad_start_naming_the_files_line(
    tmp_path: Path, problem: str
) -> None:
    path = OURS_FILE
    if problem == "bad template":
        path = tmp_path / "ours.yaml"
        path.write_text(OURS_FILE.read_text().replace('"{reason}"', '"{why}"', 1))
    result = CliRunner().invoke(haltguard_cli, [
        "venue", "conformance", "--adapter", str(path), "--set", "base_url=http://127.0.0.1:9",
        "--set", f"admin_token={TOKEN}"])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert f"{path}:" in output
    assert ("(operations.health.url)" in output) if problem == "unreachable" else (
        "{why}" in output)
