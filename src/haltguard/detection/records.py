"""The decisions log and the rule-set history, as plain functions over a session."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from haltguard.detection.decisions import Decision
from haltguard.detection.models import DecisionRecord, RuleSetRecord
from haltguard.detection.policies import RuleSet


def add_decision(
    session: Session, decision: Decision, *, now: datetime, incident_id: int | None,
    outcomes: Sequence[dict[str, Any]],
) -> DecisionRecord:
    """Write one decision, with what each of its actions did (nothing, when dry-run)."""
    signal = decision.signal
    row = DecisionRecord(
        decided_at=now,
        key=decision.key[:300],
        kind=decision.kind.value,
        rule_id=decision.rule_id,
        ruleset_version=decision.ruleset_version,
        classification=decision.classification.value,
        severity=decision.severity.value,
        title=decision.title[:256],
        signal_source=signal.source[:128],
        signal_name=signal.name[:128],
        signal_value=str(signal.value)[:64],
        signal_ts_ns=signal.ts_ns,
        labels=dict(signal.labels),
        details=dict(signal.details),
        observed=decision.observed[:128],
        condition=decision.condition[:128],
        planned=[{"kind": action.kind.value, "target": action.target,
                  "params": dict(action.params)} for action in decision.actions],
        outcomes=list(outcomes),
        dry_run=decision.dry_run,
        incident_id=incident_id,
        explanation=decision.explanation(),
    )
    session.add(row)
    session.flush()
    return row


def last_incident_of(session: Session, key: str) -> int | None:
    """The incident the episode ``key`` last acted in, if any."""
    return session.scalar(
        select(DecisionRecord.incident_id)
        .where(DecisionRecord.key == key[:300], DecisionRecord.incident_id.is_not(None))
        .order_by(DecisionRecord.id.desc())
        .limit(1)
    )


def decisions_query(
    *, rule_id: str | None = None, dry_run: bool | None = None, incident_id: int | None = None,
) -> Select[DecisionRecord]:
    query = select(DecisionRecord).order_by(DecisionRecord.id.desc())
    if rule_id is not None:
        query = query.where(DecisionRecord.rule_id == rule_id)
    if dry_run is not None:
        query = query.where(DecisionRecord.dry_run == dry_run)
    if incident_id is not None:
        query = query.where(DecisionRecord.incident_id == incident_id)
    return query


def add_rule_set(
    session: Session, ruleset: RuleSet, text: str, *, loaded_by: str, now: datetime
) -> RuleSetRecord:
    row = RuleSetRecord(
        version=ruleset.version, source=ruleset.source[:500], loaded_at=now,
        loaded_by=loaded_by[:128], rule_count=len(ruleset.rules), text=text,
    )
    session.add(row)
    session.flush()
    return row


def rule_sets(session: Session, limit: int = 50) -> list[RuleSetRecord]:
    return list(session.scalars(
        select(RuleSetRecord).order_by(RuleSetRecord.id.desc()).limit(limit)
    ))
