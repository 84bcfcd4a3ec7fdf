"""The incident rules, pure: taxonomy, severities, the lifecycle and the response metrics.

Nothing here touches a database, a clock or the network, so the rules are tested alone and
every other layer asks them rather than repeating them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Category(StrEnum):
    """Chapter 1 of the manual: what caused the interruption."""

    SERVER_DOWN = "server_down"
    NETWORK = "network"
    DATABASE = "database"
    SOFTWARE_BUG = "software_bug"
    UNAUTHORIZED_ACCESS = "unauthorized_access"
    DDOS = "ddos"
    MALWARE = "malware"
    REGULATION_CHANGE = "regulation_change"
    MARKET_VOLATILITY = "market_volatility"
    NATURAL_DISASTER = "natural_disaster"


class CategoryGroup(StrEnum):
    SYSTEM = "system"
    SECURITY = "security"
    EXTERNAL = "external"


@dataclass(frozen=True)
class CategoryInfo:
    group: CategoryGroup
    label_ja: str
    label_en: str


CATEGORIES: dict[Category, CategoryInfo] = {
    Category.SERVER_DOWN: CategoryInfo(CategoryGroup.SYSTEM, "サーバーダウン", "Server down"),
    Category.NETWORK: CategoryInfo(CategoryGroup.SYSTEM, "ネットワーク障害", "Network failure"),
    Category.DATABASE: CategoryInfo(CategoryGroup.SYSTEM, "データベース障害", "Database failure"),
    Category.SOFTWARE_BUG: CategoryInfo(CategoryGroup.SYSTEM, "ソフトウェアのバグ", "Software bug"),
    Category.UNAUTHORIZED_ACCESS: CategoryInfo(
        CategoryGroup.SECURITY, "不正アクセス", "Unauthorized access"
    ),
    Category.DDOS: CategoryInfo(CategoryGroup.SECURITY, "DDoS攻撃", "DDoS attack"),
    Category.MALWARE: CategoryInfo(CategoryGroup.SECURITY, "マルウェア感染", "Malware infection"),
    Category.REGULATION_CHANGE: CategoryInfo(
        CategoryGroup.EXTERNAL, "法規制の変更", "Change of law or regulation"
    ),
    Category.MARKET_VOLATILITY: CategoryInfo(
        CategoryGroup.EXTERNAL, "市場の急変動", "Sharp market moves"
    ),
    Category.NATURAL_DISASTER: CategoryInfo(CategoryGroup.EXTERNAL, "自然災害", "Natural disaster"),
}


class Severity(StrEnum):
    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"

    @property
    def rank(self) -> int:
        """1 is the worst; a smaller rank is more severe."""
        return int(self.value[-1])


@dataclass(frozen=True)
class SeverityDefinition:
    ja: str
    en: str
    pages_on_open: bool


SEVERITY_DEFINITIONS: dict[Severity, SeverityDefinition] = {
    Severity.SEV1: SeverityDefinition(
        ja="全顧客の取引または資産に影響がある(全市場の停止、入出金の停止、資産の流出またはその疑い)。",
        en="Trading or funds are affected for all customers (every market halted, deposits or "
        "withdrawals stopped, assets lost or suspected lost).",
        pages_on_open=True,
    ),
    Severity.SEV2: SeverityDefinition(
        ja="一部の市場または多数の顧客の取引に影響がある、もしくは主要機能が使えない。",
        en="Trading is affected in some markets or for many customers, or a major function "
        "is unavailable.",
        pages_on_open=True,
    ),
    Severity.SEV3: SeverityDefinition(
        ja="機能の一部が劣化しているが回避策があり、取引と資産は守られている。",
        en="Part of the service is degraded with a workaround; trading and funds are safe.",
        pages_on_open=False,
    ),
    Severity.SEV4: SeverityDefinition(
        ja="顧客への影響はない、または軽微(社内ツールの不具合、予兆の検知)。",
        en="No or negligible customer impact (an internal tool fault, an early warning).",
        pages_on_open=False,
    ),
}


class IncidentStatus(StrEnum):
    DETECTED = "detected"
    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MITIGATING = "mitigating"
    MONITORING = "monitoring"
    RESOLVED = "resolved"
    CLOSED = "closed"


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
