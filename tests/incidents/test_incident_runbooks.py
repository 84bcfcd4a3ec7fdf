"""Runbooks: every file loads, follows chapter 2, and a broken file is refused with lines."""

from __future__ import annotations

import pytest

from haltguard.incidents.rules import CATEGORIES, Category, CategoryGroup
from haltguard.incidents.runbook import (
    RunbookError,
    all_runbooks,
    general_runbook,
    parse_runbook_text,
    runbook_for,
)

GOOD_GENERAL = """\
schema: 1
name: general
version: 3
title: {ja: 標準, en: Standard}
phases:
  - key: initial_response
    title: {ja: 初動対応, en: Initial response}
    steps:
      - key: assess
        owner: incident_commander
        due_minutes: 10
        ja: 状況把握
        en: Assess
      - key: halt
        owner: incident_commander
        due_minutes: 15
        ja: 取引停止
        en: Halt
"""


def test_every_category_has_a_runbook_extending_the_general_one() -> None:
    general_keys = [step.key for _phase, step in general_runbook().steps()]
    for category in Category:
        runbook = runbook_for(category)
        keys = [step.key for _phase, step in runbook.steps()]
        assert runbook.name == category.value
        assert [key for key in keys if key in general_keys] == general_keys
        assert len(keys) > len(general_keys), f"{category} adds nothing to the general runbook"


def test_runbooks_follow_the_three_parts_of_chapter_two() -> None:
    phases = [phase.key for phase in general_runbook().phases]
    assert phases == ["initial_response", "cause_and_recovery", "disclosure_and_customers"]
    keys = {step.key for _phase, step in general_runbook().steps()}
    assert {"assess_situation", "gather_information", "notify_and_form_team", "halt_if_needed",
            "identify_cause", "plan_recovery", "restore_system", "publish_status",
            "support_customers", "assess_compensation"} <= keys


def test_security_categories_include_a_containment_step() -> None:
    for category, info in CATEGORIES.items():
        text = " ".join(step.en for _phase, step in runbook_for(category).steps())
        contains = "Security containment" in text
        assert contains == (info.group == CategoryGroup.SECURITY), category


def test_every_step_reads_in_japanese_and_english_with_an_owner_and_a_due_time() -> None:
    for runbook in all_runbooks():
        for _phase, step in runbook.steps():
            assert step.ja and step.en and step.owner_role and step.due_minutes > 0


def test_each_runbook_has_a_version_and_a_digest_of_its_files() -> None:
    digests = {runbook.digest for runbook in all_runbooks()}
    assert len(digests) == len(all_runbooks())
    assert all(runbook.version >= 1 for runbook in all_runbooks())


def test_a_valid_text_loads() -> None:
    runbook = parse_runbook_text("general.yaml", GOOD_GENERAL)
    assert runbook.version == 3
    assert [step.key for _phase, step in runbook.steps()] == ["assess", "halt"]


def test_an_extension_inserts_its_steps_after_the_named_step() -> None:
    base = parse_runbook_text("general.yaml", GOOD_GENERAL)
    extension = """\
schema: 1
name: ddos
version: 1
extends: general
title: {ja: DDoS, en: DDoS}
phases:
  - key: initial_response
    steps:
      - {key: filter, after: assess, owner: responder, due_minutes: 5, ja: 遮断, en: Filter}
      - {key: scale, after: assess, owner: responder, due_minutes: 5, ja: 増強, en: Scale}
"""
    runbook = parse_runbook_text("ddos.yaml", extension, base)
    assert [step.key for _phase, step in runbook.steps()] == ["assess", "filter", "scale", "halt"]


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (GOOD_GENERAL.replace("owner: incident_commander\n        due_minutes: 15",
                              "owner: janitor\n        due_minutes: 15"),
         "general.yaml:15: phases[0].steps[1].owner 'janitor' is not a role"),
        (GOOD_GENERAL.replace("due_minutes: 10", "due_minutes: ten"),
         "general.yaml:11: phases[0].steps[0].due_minutes must be a whole number"),
        (GOOD_GENERAL.replace("        en: Assess\n", ""),
         "general.yaml:9: phases[0].steps[0] is missing the required key 'en'"),
        (GOOD_GENERAL.replace("version: 3", "version: 3\ncolour: red"),
         "general.yaml:4: the runbook has an unknown key 'colour'"),
        (GOOD_GENERAL.replace("name: general", "name: other"),
         "general.yaml:2: name 'other' must match the file name 'general'"),
        (GOOD_GENERAL.replace("key: halt", "key: assess"),
         "step key 'assess' is used twice"),
        ("schema: 1\nname: [unclosed\n", "general.yaml:"),
    ],
)
def test_a_malformed_runbook_is_refused_with_file_and_line(broken: str, expected: str) -> None:
    with pytest.raises(RunbookError) as caught:
        parse_runbook_text("general.yaml", broken)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_every_problem_in_a_file_is_reported_at_once() -> None:
    broken = GOOD_GENERAL.replace("due_minutes: 10", "due_minutes: 0").replace(
        "owner: incident_commander\n        due_minutes: 15",
        "owner: nobody\n        due_minutes: 15",
    )
    with pytest.raises(RunbookError) as caught:
        parse_runbook_text("general.yaml", broken)
    assert len(caught.value.problems) == 2


def test_an_extension_naming_an_unknown_phase_is_refused() -> None:
    base = parse_runbook_text("general.yaml", GOOD_GENERAL)
    extension = """\
schema: 1
name: ddos
version: 1
extends: general
title: {ja: DDoS, en: DDoS}
phases:
  - key: aftermath
    steps:
      - {key: filter, owner: responder, due_minutes: 5, ja: 遮断, en: Filter}
"""
    with pytest.raises(RunbookError, match=r"ddos\.yaml:7: phase 'aftermath' is not in 'general'"):
        parse_runbook_text("ddos.yaml", extension, base)
