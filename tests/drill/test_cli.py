"""``haltguard drill``: lists the scenarios, refuses bad input with exit code 2."""

from __future__ import annotations

from typer.testing import CliRunner

from haltguard.cli.main import app

runner = CliRunner()


def test_drill_list_names_every_registered_scenario() -> None:
    answer = runner.invoke(app, ["drill", "list"])
    assert answer.exit_code == 0
    for name in ("server-down", "database-down", "software-bug"):
        assert name in answer.output


def test_drill_refuses_an_unknown_scenario_with_exit_code_2() -> None:
    answer = runner.invoke(app, ["drill", "meteor-strike"])
    assert answer.exit_code == 2
    assert "haltguard drill list" in answer.output


def test_drill_refuses_an_unknown_scale_with_exit_code_2() -> None:
    answer = runner.invoke(app, ["drill", "server-down", "--scale", "huge"])
    assert answer.exit_code == 2
    assert "--scale must be one of full, reduced" in answer.output
