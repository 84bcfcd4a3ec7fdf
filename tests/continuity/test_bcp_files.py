"""The plan and the register are loaded strictly: an unknown field, a key given twice or a
reference to nothing is refused with the field and its line, and the shipped examples load."""

from __future__ import annotations

from pathlib import Path

import pytest
from continuity_support import PLAN_TEXT, REGISTER_TEXT, write

from haltguard.continuity.bcp import PLAN_EXAMPLE, REGISTER_EXAMPLE, load_plan, load_register
from haltguard.continuity.errors import ContinuityFileError


def test_the_shipped_examples_load() -> None:
    plan = load_plan(PLAN_EXAMPLE)
    register = load_register(REGISTER_EXAMPLE)
    assert {service.id for service in plan.services} >= {"trading", "ledger"}
    assert len(register.risks) >= 8
    assert {risk.cause.value for risk in register.risks} >= {
        "server_down", "database", "unauthorized_access", "ddos", "natural_disaster"}


def test_an_unknown_field_in_the_plan_is_named_with_its_line(tmp_path: Path) -> None:
    text = PLAN_TEXT.replace("    rpo_s: 0\n", "    rpo_s: 0\n    rpo_minutes: 5\n", 1)
    path = write(tmp_path / "bcp.yaml", text)
    line = text.splitlines().index("    rpo_minutes: 5") + 1
    with pytest.raises(ContinuityFileError) as caught:
        load_plan(path)
    message = caught.value.message
    assert f"{path}:{line}: unknown field 'rpo_minutes' in services.0" in message
    assert "rto_s, rpo_s" in message  # the fields that could have been meant
    assert "rpo_minutes" in (caught.value.message_ja or "")


def test_an_unknown_field_in_the_register_is_named_with_its_line(tmp_path: Path) -> None:
    text = REGISTER_TEXT.replace("    owner: bob\n", "    owner: bob\n    probability: 3\n", 1)
    path = write(tmp_path / "risks.yaml", text)
    line = text.splitlines().index("    probability: 3") + 1
    with pytest.raises(ContinuityFileError) as caught:
        load_register(path)
    assert f"{path}:{line}: unknown field 'probability' in risks.1" in caught.value.message


def test_every_problem_of_a_file_is_listed_at_once(tmp_path: Path) -> None:
    text = (REGISTER_TEXT.replace("likelihood: 3\n    impact: 5\n    owner: alice",
                                  "likelihood: 7\n    impact: 5\n    owner: alice")
            .replace("cause: ddos", "cause: meteor"))
    with pytest.raises(ContinuityFileError) as caught:
        load_register(write(tmp_path / "risks.yaml", text))
    problems = [problem.text_en() for problem in caught.value.problems]
    assert any("risks.0.likelihood" in problem for problem in problems)
    assert any("risks.1.cause" in problem for problem in problems)


def test_a_key_given_twice_is_refused_not_overwritten(tmp_path: Path) -> None:
    text = PLAN_TEXT.replace("    rto_s: 600\n", "    rto_s: 600\n    rto_s: 60\n", 1)
    with pytest.raises(ContinuityFileError, match="'rto_s' is given twice"):
        load_plan(write(tmp_path / "bcp.yaml", text))


def test_a_service_naming_an_unknown_scenario_is_refused(tmp_path: Path) -> None:
    text = PLAN_TEXT.replace("scenarios: [server-down]", "scenarios: [meteor-strike]", 1)
    with pytest.raises(ContinuityFileError, match="names scenario 'meteor-strike'"):
        load_plan(write(tmp_path / "bcp.yaml", text))


def test_a_residual_rating_above_the_inherent_one_is_refused(tmp_path: Path) -> None:
    text = REGISTER_TEXT.replace("residual: {likelihood: 1, impact: 2}",
                                 "residual: {likelihood: 5, impact: 5}")
    with pytest.raises(ContinuityFileError, match="controls cannot make a risk worse"):
        load_register(write(tmp_path / "risks.yaml", text))


def test_broken_yaml_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bcp.yaml", "plan:\n  title: [unclosed\n")
    with pytest.raises(ContinuityFileError, match=rf"{path}:\d+: not valid YAML"):
        load_plan(path)
