"""The rules file: refused whole with file, line and reason; only-safer actions; the
reference document generated from the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from detection_support import EXAMPLE_RULES, rules, signal

from haltguard.detection.rulesfile import RulesError, load_rules_file, reference_markdown
from haltguard.detection.service import DetectionService

GOOD = """\
version: 1
rules:
  - id: crash
    signal: market.price_move_bps
    when: ">= 500"
    classification: market_volatility
    severity: SEV2
    actions: [open_or_update_incident, halt_market]
"""


def _problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(RulesError) as refused:
        rules(text, "bad.yaml")
    return [(problem.line, problem.message) for problem in refused.value.problems]


def test_bad_rules_file_is_refused_with_each_line_and_reason() -> None:
    problems = _problems("""\
        version: 1
        rules:
          - id: fine
            signal: market.price_move_bps
            when: ">= 500"
            classification: market_volatility
            severity: SEV2
            actions: [open_or_update_incident]
          - id: broken
            signal: market.price_move_bps
            when: "about 500"
            classification: weather
            severity: SEV2
            actions: [open_or_update_incident]
    """)
    assert [line for line, _ in problems] == [11, 12]
    assert "when must be 'OP NUMBER'" in problems[0][1]
    assert "classification 'weather' is not one of" in problems[1][1]


def test_rule_that_would_loosen_protection_is_refused_at_load() -> None:
    for loosening in ("resume_market", "unfreeze_withdrawals", "open_market", "unblock_client"):
        problems = _problems(f"""\
            version: 1
            rules:
              - id: undo
                signal: market.price_move_bps
                when: "< 100"
                classification: market_volatility
                severity: SEV4
                actions:
                  - open_or_update_incident
                  - {loosening}
        """)
        assert problems[0][0] == 10
        assert "would loosen protection" in problems[0][1], loosening
        assert "always a person's decision" in problems[0][1]


def test_unknown_keys_actions_and_parameters_are_named() -> None:
    problems = _problems("""\
        version: 1
        rules:
          - id: typo
            signal: market.price_move_bps
            whne: ">= 5"
            when: ">= 5"
            classification: market_volatility
            severity: SEV4
            actions:
              - open_or_update_incident
              - halt_markets
              - halt_market: {market: "{market}", state: open}
              - pause_market: {market: "{market}"}
    """)
    messages = dict(problems)
    assert "unknown key 'whne'" in messages[5]
    assert "unknown action 'halt_markets'" in messages[11]
    assert "unknown key 'state'" in messages[12]
    assert "'auction_s' is required" in messages[13]


def test_action_on_a_template_label_needs_that_label_in_group_by() -> None:
    problems = _problems("""\
        version: 1
        rules:
          - id: freeze
            signal: security.withdrawals
            when: "> 5"
            group_by: [account]
            classification: unauthorized_access
            severity: SEV2
            actions: [open_or_update_incident, {freeze_withdrawals: {asset: "{asset}"}}]
    """)
    assert problems == [(6, "rule 'freeze': an action uses '{asset}', so group_by must list "
                            "'asset' (one episode per asset)")]


def test_overlapping_fire_and_clear_conditions_are_refused() -> None:
    problems = _problems(GOOD.replace('    when: ">= 500"\n',
                                      '    when: ">= 500"\n    clear_when: "< 600"\n'))
    assert problems[0][0] == 6
    assert "overlaps" in problems[0][1]


def test_duplicate_rule_ids_yaml_errors_and_decimal_thresholds() -> None:
    problems = _problems(GOOD + GOOD.split("rules:\n")[1])
    assert problems == [(9, "rule id 'crash' is used twice (first at line 3); ids must be "
                            "unique")]
    assert _problems("version: 1\nrules:\n  - id: a\n    when: a: b\n") == [
        (4, "not valid YAML: mapping values are not allowed here")]
    decimal = rules(GOOD.replace('">= 500"', '">= 2.5"'))
    assert str(decimal.rules[0].when) == ">= 2.5"


def test_refused_reload_keeps_the_running_rules_in_force(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD, encoding="utf-8")
    detection = DetectionService(rules_path=path)
    version = detection.rules.version
    path.write_text(GOOD.replace("SEV2", "SEV7"), encoding="utf-8")
    with pytest.raises(RulesError) as refused:
        detection.reload()
    assert f"{path}:7: rule 'crash': severity 'SEV7'" in str(refused.value)
    assert detection.rules.version == version
    decisions = detection.submit(signal("market.price_move_bps", 900, 0, market="A-B"))
    assert [d.rule_id for d in decisions] == ["crash"]


def test_shipped_example_rules_load() -> None:
    ruleset = load_rules_file(EXAMPLE_RULES)
    assert len(ruleset.rules) >= 8
    assert {rule.classification.value for rule in ruleset.rules} >= {
        "market_volatility", "server_down", "unauthorized_access"}


def test_rules_reference_document_is_generated_from_the_schema() -> None:
    document = Path(__file__).parents[2] / "docs" / "rules-reference.md"
    assert document.read_text(encoding="utf-8") == reference_markdown(), (
        "docs/rules-reference.md is stale: run "
        "`haltguard detect rules reference > docs/rules-reference.md`")
