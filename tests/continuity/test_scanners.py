"""Scanner output becomes findings: pip-audit JSON (both its forms) and SARIF 2.1.0, with
severities and stable keys; a file that is not what it claims is refused, naming where."""

from __future__ import annotations

import json

import pytest
from continuity_support import PIP_AUDIT, SARIF

from haltguard.continuity.errors import ContinuityFileError
from haltguard.continuity.models import Severity
from haltguard.continuity.scanners import parse_pip_audit, parse_sarif


def test_pip_audit_json_gives_one_finding_per_package_and_advisory() -> None:
    scan = parse_pip_audit(json.dumps(PIP_AUDIT), "audit.json", severity=Severity.HIGH)
    assert scan.scanner == "pip-audit"
    assert [(f.package, f.identifier) for f in scan.findings] == [
        ("jinja2", "GHSA-h5c8-rqwp-cp95 (CVE-2024-22195)"),
        ("requests", "GHSA-9wx4-h78v-vm56"),
        ("requests", "PYSEC-2023-74"),
    ]
    assert scan.findings[0].fix_versions == ("3.1.3",)
    assert {f.severity for f in scan.findings} == {Severity.HIGH}
    older_form = parse_pip_audit(json.dumps(PIP_AUDIT["dependencies"]), "old.json",
                                 severity=Severity.MEDIUM)
    assert [f.key for f in older_form.findings] == [f.key for f in scan.findings]


def test_sarif_severity_comes_from_the_score_else_the_level() -> None:
    scan = parse_sarif(json.dumps(SARIF), "trivy.sarif")
    assert scan.scanner == "trivy"
    by_id = {f.identifier: f for f in scan.findings}
    assert by_id["CVE-2024-0001"].severity is Severity.CRITICAL
    assert by_id["CVE-2024-0001"].location == "Dockerfile:1"
    assert by_id["CVE-2024-0002"].severity is Severity.MEDIUM  # found by ruleIndex
    assert by_id["weak-hash"].severity is Severity.LOW
    assert by_id["unlisted"].severity is Severity.HIGH
    again = parse_sarif(json.dumps(SARIF), "trivy.sarif")
    assert [f.key for f in again.findings] == [f.key for f in scan.findings]


def test_a_file_that_is_not_the_format_named_is_refused() -> None:
    with pytest.raises(ContinuityFileError, match=r"not SARIF 2\.1\.0"):
        parse_sarif(json.dumps(PIP_AUDIT), "audit.json")
    with pytest.raises(ContinuityFileError, match="not pip-audit JSON"):
        parse_pip_audit(json.dumps({"runs": []}), "x.json", severity=Severity.HIGH)
    with pytest.raises(ContinuityFileError, match=r"broken.json:2: not valid JSON"):
        parse_sarif('{"version":\n  oops}', "broken.json")


def test_a_result_without_a_rule_is_named_and_nothing_is_taken() -> None:
    broken = json.loads(json.dumps(SARIF))
    broken["runs"][0]["results"].append({"message": {"text": "no rule"}})
    with pytest.raises(ContinuityFileError) as caught:
        parse_sarif(json.dumps(broken), "trivy.sarif")
    assert caught.value.problems[0].where == "trivy.sarif: runs[0].results[4]"
