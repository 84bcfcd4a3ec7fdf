"""Operator work on detection: checking and reloading rules, switching dry-run.

Each change comes into force whole or not at all, and is written to the audit chain with
who did it and why; a refused rules file is audited too, with its problems.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from haltguard.detection import records
from haltguard.detection.models import ProblemRead, RulesCheckResult
from haltguard.detection.policies import RuleSet
from haltguard.detection.rulesfile import (
    RuleProblem,
    RulesError,
    load_rules_text,
    read_rules_file,
)
from haltguard.detection.service import DetectionService
from haltguard.security import audit


def check_rules(text: str, source: str) -> RulesCheckResult:
    """Check a rules file's text without putting it in force."""
    try:
        ruleset = load_rules_text(text, source)
    except RulesError as exc:
        return RulesCheckResult(ok=False, version=None, rule_count=0, problems=[
            ProblemRead(source=p.source, line=p.line, message=p.message) for p in exc.problems
        ])
    return RulesCheckResult(ok=True, version=ruleset.version, rule_count=len(ruleset.rules),
                            problems=[])


def reload_rules(
    session: Session, detection: DetectionService, *, text: str | None, source: str,
    actor: str, now: datetime,
) -> RuleSet:
    """Put new rules in force: ``text`` if given, else the service's rules file.

    Raises :class:`RulesError` (after auditing the refusal in ``session``) when any part of
    the file is wrong; the running rules then stay in force.
    """
    try:
        if text is None:
            path = detection.rules_path
            if path is None:
                raise RulesError("<no file>", [RuleProblem(
                    "<no file>", 0, "the detection service was started without a rules file; "
                    "send the rules' text instead")])
            text, source = read_rules_file(path), str(path)
        ruleset = load_rules_text(text, source)
    except RulesError as exc:
        audit.record(session, actor=actor, action="detection.rules_refused",
                     target=exc.source[:200], at=now,
                     details={"problems": [str(problem) for problem in exc.problems][:100],
                              "running_version": detection.rules.version})
        raise
    previous = detection.rules.version
    detection.load(ruleset)
    records.add_rule_set(session, ruleset, text, loaded_by=actor, now=now)
    audit.record(session, actor=actor, action="detection.rules_reload",
                 target=ruleset.source[:200], at=now,
                 details={"version": ruleset.version, "previous_version": previous,
                          "rules": [rule.id for rule in ruleset.rules][:1000],
                          "dry_run": ruleset.dry_run})
    return ruleset


def set_dry_run(
    session: Session, detection: DetectionService, enabled: bool, *, actor: str, reason: str,
    now: datetime,
) -> None:
    """Switch global dry-run. On, no rule acts (decisions are only recorded): audited with
    the reason, since it turns automatic protection off."""
    was = detection.dry_run
    detection.set_dry_run(enabled)
    audit.record(session, actor=actor, action="detection.dry_run", target="detection",
                 at=now, details={"enabled": enabled, "was": was, "reason": reason})


def record_rules_in_force(
    session: Session, detection: DetectionService, *, actor: str, now: datetime
) -> bool:
    """Keep the rule set the service started with in the history (once per version), so
    every decision traces to the rules' text. Returns True when it was recorded now."""
    ruleset = detection.rules
    latest = records.rule_sets(session, limit=1)
    if latest and latest[0].version == ruleset.version:
        return False
    path = detection.rules_path
    text = read_rules_file(path) if path is not None else ""
    records.add_rule_set(session, ruleset, text, loaded_by=actor, now=now)
    audit.record(session, actor=actor, action="detection.rules_in_force",
                 target=ruleset.source[:200], at=now,
                 details={"version": ruleset.version, "rules": len(ruleset.rules)})
    return True
