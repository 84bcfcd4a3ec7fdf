"""The incident rules, pure: taxonomy and severities (defined in ``common/taxonomy.py``,
re-exported here), the lifecycle and the response metrics.

Nothing here touches a database, a clock or the network, so the rules are tested alone and
every other layer asks them rather than repeating them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from haltguard.common.taxonomy import (
    CATEGORIES,
    SEVERITY_DEFINITIONS,
    Category,
    CategoryGroup,
    CategoryInfo,
    Severity,
    SeverityDefinition,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "CATEGORIES",
    "OPEN_STATUSES",
    "SEVERITY_DEFINITIONS",
    "Category",
    "CategoryGroup",
    "CategoryInfo",
    "IllegalTransitionError",
    "IncidentStatus",
    "ResponseMetrics",
    "ResponseTimes",
    "Severity",
    "SeverityDefinition",
    "check_transition",
    "incident_id_of",
    "incident_ref",
    "mean",
    "response_metrics",
]


class IncidentStatus(StrEnum):
    DETECTED = "detected"
    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MITIGATING = "mitigating"
    MONITORING = "monitoring"
    RESOLVED = "resolved"
    CLOSED = "closed"


_INCIDENT_REF = re.compile(r"^INC-(\d{1,12})$")


def incident_ref(incident_id: int) -> str:
    """The name people, pages and the venue journal use for an incident: ``INC-<id>``."""
    return f"INC-{incident_id}"


def incident_id_of(ref: str) -> int | None:
    """The id in an incident reference (``INC-7`` is 7), or None if ``ref`` is not one."""
    match = _INCIDENT_REF.match(ref)
    return int(match.group(1)) if match else None


_S = IncidentStatus

# Forward moves may skip steps; the few backward moves are a relapse or a reopening.
ALLOWED_TRANSITIONS: dict[IncidentStatus, frozenset[IncidentStatus]] = {
    _S.DETECTED: frozenset({_S.INVESTIGATING, _S.IDENTIFIED, _S.MITIGATING, _S.MONITORING,
                            _S.RESOLVED}),
    _S.INVESTIGATING: frozenset({_S.IDENTIFIED, _S.MITIGATING, _S.MONITORING, _S.RESOLVED}),
    _S.IDENTIFIED: frozenset({_S.INVESTIGATING, _S.MITIGATING, _S.MONITORING, _S.RESOLVED}),
    _S.MITIGATING: frozenset({_S.INVESTIGATING, _S.IDENTIFIED, _S.MONITORING, _S.RESOLVED}),
    _S.MONITORING: frozenset({_S.INVESTIGATING, _S.MITIGATING, _S.RESOLVED}),
    _S.RESOLVED: frozenset({_S.CLOSED, _S.INVESTIGATING}),
    _S.CLOSED: frozenset(),
}

OPEN_STATUSES = frozenset(set(IncidentStatus) - {_S.RESOLVED, _S.CLOSED})


class IllegalTransitionError(ValueError):
    """A lifecycle move the rules forbid; the message names the legal moves."""


def check_transition(current: IncidentStatus, target: IncidentStatus) -> None:
    """Raise :class:`IllegalTransitionError` unless ``current -> target`` is a legal move."""
    allowed = ALLOWED_TRANSITIONS[current]
    if target in allowed:
        return
    if not allowed:
        raise IllegalTransitionError(
            f"the incident is {current}: a closed incident cannot change"
        )
    legal = ", ".join(sorted(allowed))
    raise IllegalTransitionError(
        f"cannot move from {current} to {target}; legal next states: {legal}"
    )


@dataclass(frozen=True)
class ResponseTimes:
    """The four timestamps the response metrics come from; any may still be missing."""

    started_at: datetime | None
    detected_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True)
class ResponseMetrics:
    """Seconds. ``None`` where the incident has not reached that point yet.

    MTTD: from the start of impact to detection. MTTA: detection to the first responder
    acknowledging (leaving ``detected``). MTTM: detection to mitigation (entering
    ``monitoring``). MTTR: detection to resolution.
    """

    time_to_detect_s: float | None
    time_to_acknowledge_s: float | None
    time_to_mitigate_s: float | None
    time_to_resolve_s: float | None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start) / timedelta(seconds=1), 0.0)


def response_metrics(times: ResponseTimes) -> ResponseMetrics:
    return ResponseMetrics(
        time_to_detect_s=_seconds(times.started_at, times.detected_at),
        time_to_acknowledge_s=_seconds(times.detected_at, times.acknowledged_at),
        time_to_mitigate_s=_seconds(times.detected_at, times.mitigated_at),
        time_to_resolve_s=_seconds(times.detected_at, times.resolved_at),
    )


def mean(values: list[float | None]) -> float | None:
    """The mean of the values that exist, or ``None`` when none does."""
    present = [value for value in values if value is not None]
    if not present:
        return None
    return sum(present) / len(present)
