"""The continuity settings come from the configuration like every other domain's: defaults
that point at the data directory, overrides from the environment, bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from haltguard.app.config import ConfigError, from_environment
from haltguard.continuity.bcp import PLAN_EXAMPLE
from haltguard.continuity.models import Severity
from haltguard.continuity.settings import parse_finding_days


def test_the_defaults_use_the_shipped_examples_and_the_data_directory(tmp_path: Path) -> None:
    settings = from_environment({"HALTGUARD_DATA_DIR": str(tmp_path)}).continuity_settings()
    assert settings.plan_file == PLAN_EXAMPLE
    assert settings.drill_report_dirs == (tmp_path / "drills", Path("drill-reports"))
    assert settings.report_dir == tmp_path / "continuity" / "reports"
    assert settings.finding_days[Severity.CRITICAL] == 7
    assert settings.remind_interval_s == 3600.0


def test_the_environment_overrides_and_bad_values_are_named(tmp_path: Path) -> None:
    settings = from_environment({
        "HALTGUARD_DATA_DIR": str(tmp_path),
        "HALTGUARD_CONTINUITY_PLAN_FILE": str(tmp_path / "bcp.yaml"),
        "HALTGUARD_CONTINUITY_DRILL_REPORT_DIRS": f"{tmp_path / 'a'}:{tmp_path / 'b'}",
        "HALTGUARD_CONTINUITY_REMIND_INTERVAL_S": "0",
    }).continuity_settings()
    assert settings.plan_file == tmp_path / "bcp.yaml"
    assert settings.drill_report_dirs == (tmp_path / "a", tmp_path / "b")
    assert settings.remind_interval_s == 0
    with pytest.raises(ConfigError, match=r"continuity\.remind_interval_s"):
        from_environment({"HALTGUARD_CONTINUITY_REMIND_INTERVAL_S": "5"})


def test_finding_deadlines_keep_the_defaults_for_severities_not_named() -> None:
    days = parse_finding_days("critical=3")
    assert (days[Severity.CRITICAL], days[Severity.LOW]) == (3, 180)
    with pytest.raises(ValueError, match="severity=days"):
        parse_finding_days("urgent=1")
