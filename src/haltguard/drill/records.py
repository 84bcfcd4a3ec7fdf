"""A drill's result kept as a machine-readable record beside its report, and read back as
evidence (the continuity plan's check asks: when was each scenario last drilled, did it pass,
how long did recovery take, what was lost).

Each finished drill writes ``drill-<scenario>-<time>.json`` next to its Markdown and HTML
report; :func:`latest_records` finds the newest record of each scenario under the report
directories. A file that is not a drill record is skipped, never trusted.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from haltguard.drill.scenario import DrillResult

RECORD_FORMAT = "haltguard.drill-record/1"
RECORD_BYTES_MAX = 4 * 1024 * 1024
RECORDS_SCANNED_MAX = 10_000
"""Files looked at per search: report directories grow by a handful a week."""


@dataclass(frozen=True)
class DrillRecord:
    """What one finished drill proved, as evidence."""

    scenario: str
    passed: bool
    completed: bool
    finished_at: datetime
    started_at: datetime | None
    recovery_time_s: float | None
    acknowledged_orders_lost: int
    ledger_invariant_ok: bool
    incident_id: int | None
    path: Path
    extra: dict[str, str]


def write_record(result: DrillResult, path: Path) -> Path:
    """``result`` as JSON at ``path`` (the report's base name with ``.json``)."""
    body = {"format": RECORD_FORMAT, "passed": result.passed, **dataclasses.asdict(result)}
    path.write_text(json.dumps(body, ensure_ascii=False, indent=1, default=str) + "\n",
                    encoding="utf-8")
    return path


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else None


def read_record(path: Path) -> DrillRecord | None:
    """The record at ``path``, or ``None`` if it is not a complete drill record."""
    try:
        if path.stat().st_size > RECORD_BYTES_MAX:
            return None
        body = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(body, dict) or body.get("format") != RECORD_FORMAT:
            return None
        measured = body["measurements"]
        finished = _moment(body.get("finished_at"))
        if finished is None or not isinstance(body["scenario"], str):
            return None
        recovery = measured.get("recovery_time_s")
        incident = body.get("incident_id")
        return DrillRecord(
            scenario=body["scenario"], passed=bool(body["passed"]),
            completed=bool(body.get("completed", True)), finished_at=finished,
            started_at=_moment(body.get("started_at")),
            recovery_time_s=float(recovery) if isinstance(recovery, int | float) else None,
            acknowledged_orders_lost=int(measured.get("acknowledged_orders_lost", 0)),
            ledger_invariant_ok=bool(measured.get("ledger_invariant_ok", False)),
            incident_id=incident if isinstance(incident, int) else None,
            path=path, extra={str(k): str(v) for k, v in dict(measured.get("extra", {})).items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def latest_records(directories: Iterable[Path]) -> dict[str, DrillRecord]:
    """The newest record of each scenario found under ``directories`` (recursively)."""
    newest: dict[str, DrillRecord] = {}
    scanned = 0
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("drill-*.json")):
            scanned += 1
            if scanned > RECORDS_SCANNED_MAX:
                return newest
            record = read_record(path)
            if record is None:
                continue
            known = newest.get(record.scenario)
            if known is None or record.finished_at > known.finished_at:
                newest[record.scenario] = record
    return newest
