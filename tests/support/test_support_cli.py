"""``haltguard support staffing`` shows the Erlang C calculation and the answer."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from haltguard.cli.main import app


def test_staffing_shows_the_calculation_and_the_agents_needed() -> None:
    result = CliRunner().invoke(app, ["support", "staffing", "--arrivals-per-hour", "200",
                                      "--handle-s", "180"])
    assert result.exit_code == 0, result.output
    assert "= 10.00 erlangs" in result.output
    assert "0.6821" in result.output and "88.8%" in result.output
    assert "Agents needed: 14" in result.output


def test_staffing_as_json_and_a_bad_forecast_says_what_to_fix() -> None:
    result = CliRunner().invoke(app, ["support", "--json", "staffing",
                                      "--arrivals-per-hour", "200", "--handle-s", "180"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["agents"] == 14
    bad = CliRunner().invoke(app, ["support", "staffing", "--arrivals-per-hour", "200",
                                   "--handle-s", "0"])
    assert bad.exit_code == 1
    assert "handling time must be above 0" in bad.output
    neither = CliRunner().invoke(app, ["support", "staffing"])
    assert neither.exit_code == 1 and "--arrivals-per-hour" in neither.output
