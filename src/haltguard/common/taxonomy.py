"""The incident taxonomy of the manual's chapter 1: the categories of trading interruption
and the severities, each with its Japanese and English wording.

It sits in the lowest layer because more than one domain names incidents by it: the incident
rules (``incidents/rules.py`` re-exports every name) and the responders' contact tree and page
texts, which must not import the incident domain that pages through them.
"""

from __future__ import annotations

from dataclasses import dataclass
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
