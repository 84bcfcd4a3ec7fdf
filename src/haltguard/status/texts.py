"""What customers read, in Japanese and English: component names, status labels, times, and
the templates an operator's draft starts from (manual 2.3: situation, cause, expected
recovery, promptly and regularly).

Everything here is a pure function of its arguments, so a draft is the same text for the
same facts and the templates are tested as golden text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

from haltguard.status.rules import ComponentStatus, MaintenanceStatus, UpdateStatus

Language = Literal["ja", "en"]
LANGUAGES: tuple[Language, ...] = ("ja", "en")
JST = timezone(timedelta(hours=9), "JST")


@dataclass(frozen=True)
class Bilingual:
    ja: str
    en: str

    def get(self, language: Language) -> str:
        return self.ja if language == "ja" else self.en


STATUS_LABEL: dict[ComponentStatus, Bilingual] = {
    ComponentStatus.OPERATIONAL: Bilingual("正常", "Operational"),
    ComponentStatus.DEGRADED_PERFORMANCE: Bilingual("パフォーマンス低下", "Degraded performance"),
    ComponentStatus.PARTIAL_OUTAGE: Bilingual("一部停止", "Partial outage"),
    ComponentStatus.MAJOR_OUTAGE: Bilingual("停止", "Major outage"),
    ComponentStatus.UNDER_MAINTENANCE: Bilingual("メンテナンス中", "Under maintenance"),
}

UPDATE_STATUS_LABEL: dict[UpdateStatus, Bilingual] = {
    UpdateStatus.INVESTIGATING: Bilingual("調査中", "Investigating"),
    UpdateStatus.IDENTIFIED: Bilingual("原因特定", "Identified"),
    UpdateStatus.MONITORING: Bilingual("経過観察中", "Monitoring"),
    UpdateStatus.RESOLVED: Bilingual("解決済み", "Resolved"),
    UpdateStatus.POSTMORTEM: Bilingual("事後報告", "Postmortem"),
}

MAINTENANCE_STATUS_LABEL: dict[MaintenanceStatus, Bilingual] = {
    MaintenanceStatus.SCHEDULED: Bilingual("予定", "Scheduled"),
    MaintenanceStatus.IN_PROGRESS: Bilingual("実施中", "In progress"),
    MaintenanceStatus.VERIFYING: Bilingual("確認中", "Verifying"),
    MaintenanceStatus.COMPLETED: Bilingual("完了", "Completed"),
}


def update_label(status: str, language: Language) -> str:
    """The label of an incident or maintenance update status."""
    if status in UpdateStatus.__members__.values():
        return UPDATE_STATUS_LABEL[UpdateStatus(status)].get(language)
    return MAINTENANCE_STATUS_LABEL[MaintenanceStatus(status)].get(language)


# --- component names ----------------------------------------------------------------------

GROUP_MARKETS = "group:markets"
GROUP_FUNDS = "group:funds"
GROUP_SERVICES = "group:services"

GROUP_NAMES: dict[str, Bilingual] = {
    GROUP_MARKETS: Bilingual("取引", "Trading"),
    GROUP_FUNDS: Bilingual("入出金", "Deposits and withdrawals"),
    GROUP_SERVICES: Bilingual("サービス", "Services"),
}

SERVICE_NAMES: dict[str, Bilingual] = {
    "order-api": Bilingual("注文API", "Order API"),
    "website": Bilingual("ウェブサイト", "Website"),
    "mobile-app": Bilingual("スマートフォンアプリ", "Mobile app"),
}

SERVICE_DESCRIPTIONS: dict[str, Bilingual] = {
    "order-api": Bilingual("APIによる注文・取消・残高照会", "Placing and cancelling orders and "
                           "reading balances through the API"),
    "website": Bilingual("ウェブブラウザからのログインと取引", "Logging in and trading in a web "
                         "browser"),
    "mobile-app": Bilingual("iOS・Android アプリからのログインと取引", "Logging in and trading "
                            "in the iOS and Android apps"),
}

_ASSET_NAMES_JA = {"JPY": "日本円"}


def market_label(symbol: str) -> str:
    """``BTC-JPY`` as customers see it: ``BTC/JPY``."""
    return symbol.replace("-", "/")


def asset_label(asset: str, language: Language) -> str:
    return _ASSET_NAMES_JA.get(asset, asset) if language == "ja" else asset


def component_name(key: str) -> Bilingual:
    """The default name of a component from its key."""
    if key in GROUP_NAMES:
        return GROUP_NAMES[key]
    if key in SERVICE_NAMES:
        return SERVICE_NAMES[key]
    kind, _, subject = key.partition(":")
    if kind == "market":
        return Bilingual(f"{market_label(subject)} 取引", f"{market_label(subject)} trading")
    if kind == "deposits":
        return Bilingual(f"{asset_label(subject, 'ja')} 入金", f"{subject} deposits")
    if kind == "withdrawals":
        return Bilingual(f"{asset_label(subject, 'ja')} 出金", f"{subject} withdrawals")
    return Bilingual(key, key)


def component_description(key: str) -> Bilingual:
    if key in SERVICE_DESCRIPTIONS:
        return SERVICE_DESCRIPTIONS[key]
    kind, _, subject = key.partition(":")
    if kind == "market":
        label = market_label(subject)
        return Bilingual(f"{label} の注文受付と約定", f"Order entry and matching on {label}")
    return Bilingual("", "")


# --- times ----------------------------------------------------------------------------------


def time_ja(moment: datetime) -> str:
    """``2025年1月6日 09:30 (JST) / 00:30 (UTC)``: both zones, as customers abroad read it."""
    local = moment.astimezone(JST)
    utc = moment.astimezone(UTC)
    same_day = local.date() == utc.date()
    utc_text = utc.strftime("%H:%M") if same_day else f"{utc.month}月{utc.day}日 {utc:%H:%M}"
    return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M} (JST) / {utc_text} (UTC)"


def time_en(moment: datetime) -> str:
    """``6 Jan 2025 09:30 JST (00:30 UTC)``."""
    local = moment.astimezone(JST)
    utc = moment.astimezone(UTC)
    same_day = local.date() == utc.date()
    utc_text = f"{utc:%H:%M}" if same_day else f"{utc.day} {utc:%b} {utc:%H:%M}"
    return f"{local.day} {local:%b} {local.year} {local:%H:%M} JST ({utc_text} UTC)"


def format_time(moment: datetime, language: Language) -> str:
    return time_ja(moment) if language == "ja" else time_en(moment)


# --- drafts from templates --------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentFacts:
    """What a template needs to know about an incident; all public, nothing internal."""

    components: Sequence[str]  # component keys, in display order
    started_at: datetime
    now: datetime
    cause: Bilingual | None  # None: not known yet
    expected_recovery_at: datetime | None
    next_update_at: datetime | None


_SITUATION: dict[UpdateStatus, Bilingual] = {
    UpdateStatus.INVESTIGATING: Bilingual(
        "現在、障害が発生しており、原因を調査しております。",
        "We are experiencing a problem and are investigating the cause.",
    ),
    UpdateStatus.IDENTIFIED: Bilingual(
        "原因を特定し、復旧に向けて対応しております。",
        "We have identified the cause and are working on recovery.",
    ),
    UpdateStatus.MONITORING: Bilingual(
        "復旧のための対応を実施し、現在は経過を観察しております。",
        "A fix has been put in place and we are monitoring the results.",
    ),
    UpdateStatus.RESOLVED: Bilingual(
        "本件は解決いたしました。",
        "This incident has been resolved.",
    ),
    UpdateStatus.POSTMORTEM: Bilingual(
        "本件の原因と再発防止策をご報告いたします。",
        "We are reporting the cause of this incident and what we are doing to prevent it "
        "from happening again.",
    ),
}

_APOLOGY = Bilingual(
    "お客様には多大なるご迷惑をおかけしておりますことを深くお詫び申し上げます。",
    "We sincerely apologise for the inconvenience.",
)
_APOLOGY_DONE = Bilingual(
    "お客様には多大なるご迷惑をおかけしましたことを深くお詫び申し上げます。",
    "We sincerely apologise for the inconvenience caused.",
)


def _targets(components: Sequence[str], language: Language) -> str:
    names = [component_name(key).get(language) for key in components]
    if not names:
        return "サービス全般" if language == "ja" else "the service in general"
    return "、".join(names) if language == "ja" else ", ".join(names)


def incident_name(components: Sequence[str]) -> Bilingual:
    """A default public title: what is affected, not the internal incident title."""
    return Bilingual(f"{_targets(components, 'ja')}の障害について",
                     f"Service disruption: {_targets(components, 'en')}")


def incident_update_text(status: UpdateStatus, facts: IncidentFacts) -> Bilingual:
    """The draft of a public incident update in both languages."""
    return Bilingual(_incident_text(status, facts, "ja"), _incident_text(status, facts, "en"))


def _incident_text(status: UpdateStatus, facts: IncidentFacts, language: Language) -> str:
    ja = language == "ja"
    lines = [_SITUATION[status].get(language), ""]
    lines.append(("【対象】" if ja else "Affected: ") + _targets(facts.components, language))
    lines.append(("【発生日時】" if ja else "Started: ")
                 + format_time(facts.started_at, language))
    if status in {UpdateStatus.RESOLVED, UpdateStatus.POSTMORTEM}:
        lines.append(("【復旧日時】" if ja else "Resolved: ") + format_time(facts.now, language))
    if facts.cause is not None:
        cause = facts.cause.get(language)
    else:
        cause = "調査中" if ja else "under investigation"
    lines.append(("【原因】" if ja else "Cause: ") + cause)
    if status in {UpdateStatus.INVESTIGATING, UpdateStatus.IDENTIFIED}:
        if facts.expected_recovery_at is not None:
            recovery = format_time(facts.expected_recovery_at, language)
        else:
            recovery = ("未定(判明次第お知らせいたします)" if ja
                        else "not known yet (we will tell you as soon as it is)")
        lines.append(("【復旧見込み】" if ja else "Expected recovery: ") + recovery)
    if status not in {UpdateStatus.RESOLVED, UpdateStatus.POSTMORTEM} and facts.next_update_at:
        when = format_time(facts.next_update_at, language)
        lines.append(f"【次回更新】{when} までに" if ja else f"Next update: by {when}")
    lines.append("")
    done = status in {UpdateStatus.RESOLVED, UpdateStatus.POSTMORTEM}
    lines.append((_APOLOGY_DONE if done else _APOLOGY).get(language))
    return "\n".join(lines)


@dataclass(frozen=True)
class MaintenanceFacts:
    components: Sequence[str]
    scheduled_for: datetime
    scheduled_until: datetime
    details: Bilingual | None


_MAINTENANCE_SITUATION: dict[MaintenanceStatus, Bilingual] = {
    MaintenanceStatus.SCHEDULED: Bilingual(
        "下記の日時にメンテナンスを実施いたします。メンテナンス中は対象のサービスをご利用いただけません。",
        "We will carry out maintenance at the time below. The services listed will not be "
        "available during the maintenance.",
    ),
    MaintenanceStatus.IN_PROGRESS: Bilingual(
        "メンテナンスを開始いたしました。",
        "The maintenance has started.",
    ),
    MaintenanceStatus.VERIFYING: Bilingual(
        "メンテナンス作業が終了し、現在動作を確認しております。",
        "The maintenance work is done and we are verifying that everything works.",
    ),
    MaintenanceStatus.COMPLETED: Bilingual(
        "メンテナンスが完了いたしました。ご協力ありがとうございました。",
        "The maintenance is complete. Thank you for your patience.",
    ),
}


def maintenance_name(components: Sequence[str]) -> Bilingual:
    return Bilingual(f"{_targets(components, 'ja')}のメンテナンスのお知らせ",
                     f"Scheduled maintenance: {_targets(components, 'en')}")


def maintenance_update_text(status: MaintenanceStatus, facts: MaintenanceFacts) -> Bilingual:
    return Bilingual(_maintenance_text(status, facts, "ja"),
                     _maintenance_text(status, facts, "en"))


def _maintenance_text(status: MaintenanceStatus, facts: MaintenanceFacts,
                      language: Language) -> str:
    ja = language == "ja"
    start = format_time(facts.scheduled_for, language)
    end = format_time(facts.scheduled_until, language)
    lines = [_MAINTENANCE_SITUATION[status].get(language), ""]
    lines.append(("【対象】" if ja else "Affected: ") + _targets(facts.components, language))
    lines.append(f"【日時】{start} 〜 {end}" if ja else f"When: {start} to {end}")
    if facts.details is not None:
        lines.append(("【内容】" if ja else "Details: ") + facts.details.get(language))
    return "\n".join(lines)
