"""Scanner output as findings: ``pip-audit`` JSON and SARIF 2.1.0 (what most code and
container scanners write). Pure: text in, findings out; the service stores them.

Each finding gets a key that stays the same when the same scan is imported again, so a
re-import updates the finding it already tracks instead of adding a copy. A file that is not
what it claims to be is refused as a whole, each problem named by where it is.

Severity: SARIF carries it (a rule's ``security-severity`` score, CVSS-like, else the
result's ``level``); ``pip-audit`` does not, so its findings take the severity the importer
gives (``continuity.pip_audit_severity``, ``high`` by default).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from haltguard.continuity.errors import ContinuityFileError, Problem
from haltguard.continuity.models import FINDING_KEY_LENGTH_MAX, Severity

SCAN_BYTES_MAX = 32 * 1024 * 1024
FINDINGS_PER_IMPORT_MAX = 20_000
TITLE_CHARS_MAX = 1_000


class ScanFormat(StrEnum):
    PIP_AUDIT = "pip-audit"
    SARIF = "sarif"


@dataclass(frozen=True)
class ScannedFinding:
    key: str
    scanner: str
    identifier: str
    severity: Severity
    title: str
    package: str = ""
    installed_version: str = ""
    fix_versions: tuple[str, ...] = ()
    location: str = ""


@dataclass(frozen=True)
class Scan:
    scanner: str
    findings: tuple[ScannedFinding, ...]


def _refuse(source: str, problems: list[Problem]) -> ContinuityFileError:
    return ContinuityFileError(f"the scanner output {source}", f"スキャナーの出力 {source} ",
                               problems)


def _problem(source: str, where: str, en: str, ja: str) -> Problem:
    return Problem(f"{source}: {where}" if where else source, en, ja)


def _json(text: str, source: str) -> Any:
    if len(text.encode("utf-8")) > SCAN_BYTES_MAX:
        raise _refuse(source, [Problem(source, f"larger than {SCAN_BYTES_MAX} bytes",
                                       f"{SCAN_BYTES_MAX} バイトを超えています")])
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse(source, [Problem(f"{source}:{exc.lineno}", f"not valid JSON: {exc.msg}",
                                       f"JSONとして読めません: {exc.msg}")]) from None


def _key(*parts: str) -> str:
    key = ":".join(parts)
    return key if len(key) <= FINDING_KEY_LENGTH_MAX else key[:FINDING_KEY_LENGTH_MAX]


def _text(value: Any) -> str:
    return value.strip()[:TITLE_CHARS_MAX] if isinstance(value, str) else ""


# --- pip-audit ---------------------------------------------------------------------------------


def parse_pip_audit(text: str, source: str, *, severity: Severity) -> Scan:
    """``pip-audit -f json`` output (the ``{"dependencies": [...]}`` form or the older bare
    list): one finding per vulnerable package and advisory."""
    body = _json(text, source)
    dependencies = body.get("dependencies") if isinstance(body, dict) else body
    if not isinstance(dependencies, list):
        raise _refuse(source, [_problem(source, "", "not pip-audit JSON: expected "
                                        "'dependencies', a list of packages",
                                        "pip-audit の JSON ではありません（dependencies がない）")])
    problems: list[Problem] = []
    found: list[ScannedFinding] = []
    for index, dependency in enumerate(dependencies):
        where = f"dependencies[{index}]"
        if not isinstance(dependency, dict) or not isinstance(dependency.get("name"), str):
            problems.append(_problem(source, where, "a package needs a name",
                                     "パッケージ名がありません"))
            continue
        vulns = dependency.get("vulns", [])
        if not isinstance(vulns, list):
            problems.append(_problem(source, f"{where}.vulns", "must be a list",
                                     "リストでなければなりません"))
            continue
        name, version = dependency["name"], str(dependency.get("version", ""))
        for number, vuln in enumerate(vulns):
            if not isinstance(vuln, dict) or not isinstance(vuln.get("id"), str):
                problems.append(_problem(source, f"{where}.vulns[{number}]",
                                         "an advisory needs an id", "勧告のIDがありません"))
                continue
            aliases = [alias for alias in vuln.get("aliases", []) if isinstance(alias, str)]
            fixes = tuple(str(fix) for fix in vuln.get("fix_versions", []))
            identifier = vuln["id"] + (f" ({', '.join(aliases)})" if aliases else "")
            found.append(ScannedFinding(
                key=_key("pip-audit", name.lower(), version, vuln["id"]),
                scanner="pip-audit", identifier=identifier[:200], severity=severity,
                title=_text(vuln.get("description")) or vuln["id"], package=name,
                installed_version=version, fix_versions=fixes))
    if problems:
        raise _refuse(source, problems)
    return _bounded(source, Scan("pip-audit", tuple(found)))


# --- SARIF ---------------------------------------------------------------------------------------


def severity_of_score(score: float) -> Severity:
    """A CVSS-like score as GitHub code scanning bands it."""
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    return Severity.LOW


LEVEL_SEVERITY = {"error": Severity.HIGH, "warning": Severity.MEDIUM, "note": Severity.LOW,
                  "none": Severity.LOW}


def _rules(driver: dict[str, Any]) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    rules = driver.get("rules", [])
    listed = rules if isinstance(rules, list) else []
    by_id = {rule["id"]: rule for rule in listed
             if isinstance(rule, dict) and isinstance(rule.get("id"), str)}
    return listed, by_id


def _sarif_severity(result: dict[str, Any], rule: dict[str, Any]) -> Severity:
    properties = rule.get("properties", {})
    score = properties.get("security-severity") if isinstance(properties, dict) else None
    try:
        if score is not None:
            return severity_of_score(float(score))
    except (TypeError, ValueError):
        pass
    level = result.get("level")
    if not isinstance(level, str):
        configuration = rule.get("defaultConfiguration", {})
        level = configuration.get("level") if isinstance(configuration, dict) else None
    return LEVEL_SEVERITY.get(level or "warning", Severity.MEDIUM)


def _location(result: dict[str, Any]) -> str:
    locations = result.get("locations")
    if not isinstance(locations, list) or not locations or not isinstance(locations[0], dict):
        return ""
    physical = locations[0].get("physicalLocation", {})
    if not isinstance(physical, dict):
        return ""
    artifact = physical.get("artifactLocation", {})
    uri = artifact.get("uri", "") if isinstance(artifact, dict) else ""
    region = physical.get("region", {})
    line = region.get("startLine") if isinstance(region, dict) else None
    return f"{uri}:{line}" if uri and isinstance(line, int) else str(uri)


def _fingerprint(result: dict[str, Any]) -> str:
    for field in ("fingerprints", "partialFingerprints"):
        prints = result.get(field)
        if isinstance(prints, dict) and prints:
            return str(sorted(prints.items())[0][1])
    return ""


def parse_sarif(text: str, source: str) -> Scan:
    """SARIF 2.1.0: one finding per result of every run."""
    body = _json(text, source)
    runs = body.get("runs") if isinstance(body, dict) else None
    if not isinstance(runs, list) or str(body.get("version", "")) != "2.1.0":
        raise _refuse(source, [_problem(source, "", "not SARIF 2.1.0: expected 'version': "
                                        "'2.1.0' and a list of 'runs'",
                                        "SARIF 2.1.0 ではありません（version と runs が必要）")])
    problems: list[Problem] = []
    found: list[ScannedFinding] = []
    scanners: list[str] = []
    for run_index, run in enumerate(runs):
        driver = run.get("tool", {}).get("driver") if isinstance(run, dict) else None
        if not isinstance(driver, dict) or not isinstance(driver.get("name"), str):
            problems.append(_problem(source, f"runs[{run_index}].tool.driver",
                                     "needs the tool's name", "ツール名がありません"))
            continue
        tool = driver["name"]
        scanners.append(tool)
        listed, by_id = _rules(driver)
        results = run.get("results", [])
        for index, result in enumerate(results if isinstance(results, list) else []):
            where = f"runs[{run_index}].results[{index}]"
            if not isinstance(result, dict):
                problems.append(_problem(source, where, "must be an object",
                                         "オブジェクトでなければなりません"))
                continue
            rule_id = result.get("ruleId")
            rule_index = result.get("ruleIndex")
            if not isinstance(rule_id, str) and isinstance(rule_index, int) \
                    and 0 <= rule_index < len(listed) and isinstance(listed[rule_index], dict):
                rule_id = listed[rule_index].get("id")
            if not isinstance(rule_id, str):
                problems.append(_problem(source, where, "needs a ruleId",
                                         "ruleId がありません"))
                continue
            rule = by_id.get(rule_id, {})
            message = result.get("message", {})
            title = _text(message.get("text") if isinstance(message, dict) else None)
            short = rule.get("shortDescription", {})
            location = _location(result)
            found.append(ScannedFinding(
                key=_key("sarif", tool, rule_id, _fingerprint(result) or location),
                scanner=tool[:100], identifier=rule_id[:200],
                severity=_sarif_severity(result, rule),
                title=title or _text(short.get("text") if isinstance(short, dict) else None)
                or rule_id, location=location[:500]))
    if problems:
        raise _refuse(source, problems)
    return _bounded(source, Scan(", ".join(dict.fromkeys(scanners))[:100] or "sarif",
                                 tuple(found)))


def _bounded(source: str, scan: Scan) -> Scan:
    if len(scan.findings) > FINDINGS_PER_IMPORT_MAX:
        raise _refuse(source, [Problem(source, f"more than {FINDINGS_PER_IMPORT_MAX} findings "
                                       "in one file; import it in parts",
                                       f"1ファイルの指摘が{FINDINGS_PER_IMPORT_MAX}件を超えています。"
                                       "分割して取り込んでください")])
    unique = {finding.key: finding for finding in scan.findings}
    return Scan(scan.scanner, tuple(unique.values()))


def parse_scan(text: str, source: str, scan_format: ScanFormat, *,
               pip_audit_severity: Severity) -> Scan:
    if scan_format is ScanFormat.PIP_AUDIT:
        return parse_pip_audit(text, source, severity=pip_audit_severity)
    return parse_sarif(text, source)
