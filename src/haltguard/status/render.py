"""The public HTML pages, from a snapshot: Japanese at the root, English under ``en/``.

Pages work without JavaScript, carry their CSS inline and link only relatively, so the same
files serve from the app, from a CDN or from a plain directory while the exchange is down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib import resources

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from haltguard.status.rules import INDICATOR_DESCRIPTION, ComponentStatus, Indicator
from haltguard.status.snapshot import ComponentView, EventView, Snapshot
from haltguard.status.texts import (
    STATUS_LABEL,
    Language,
    format_time,
    update_label,
)

_BAR_CLASS = {
    ComponentStatus.OPERATIONAL: "o",
    ComponentStatus.DEGRADED_PERFORMANCE: "d",
    ComponentStatus.PARTIAL_OUTAGE: "p",
    ComponentStatus.MAJOR_OUTAGE: "m",
    ComponentStatus.UNDER_MAINTENANCE: "u",
}

_WORDS: dict[str, tuple[str, str]] = {
    "language_name": ("日本語", "English"),
    "other_language_name": ("English", "日本語"),
    "language_switch": ("言語", "Language"),
    "active_maintenance": ("実施中のメンテナンス", "Maintenance in progress"),
    "open_incidents": ("発生中の障害", "Current incidents"),
    "upcoming_maintenance": ("予定されているメンテナンス", "Scheduled maintenance"),
    "components": ("サービスの状態", "Service status"),
    "past_incidents": ("過去の障害", "Past incidents"),
    "no_past_incidents": ("過去90日間に障害はありません。", "No incidents in the past 90 days."),
    "scheduled": ("予定日時", "Scheduled"),
    "affected": ("対象", "Affected"),
    "last_updated": ("最終更新", "Last updated"),
    "today": ("今日", "Today"),
    "back": ("ステータスページに戻る", "Back to the status page"),
    "no_data": ("データなし", "No data"),
    "times_note": ("時刻は日本時間 (JST) と協定世界時 (UTC) で表示しています。",
                   "Times are shown in Japan time (JST) and UTC."),
}


@dataclass(frozen=True)
class Words:
    """Everything a template says in one language."""

    language: Language
    snapshot: Snapshot

    def __getattr__(self, name: str) -> str:
        if name in _WORDS:
            ja, en = _WORDS[name]
            return ja if self.language == "ja" else en
        raise AttributeError(name)

    @property
    def other_language(self) -> Language:
        return "en" if self.language == "ja" else "ja"

    def time(self, moment: datetime | None) -> str:
        return "" if moment is None else format_time(moment, self.language)

    def status(self, status: ComponentStatus) -> str:
        return STATUS_LABEL[status].get(self.language)

    def update_label(self, status: str) -> str:
        return update_label(status, self.language)

    def indicator(self, indicator: Indicator) -> str:
        ja, en = INDICATOR_DESCRIPTION[indicator]
        return ja if self.language == "ja" else en

    def names(self, keys: Sequence[str]) -> str:
        names = []
        for key in keys:
            try:
                names.append(self.snapshot.component(key).name.get(self.language))
            except KeyError:
                names.append(key)
        return ("、" if self.language == "ja" else ", ").join(names)

    def bar_class(self, status: ComponentStatus | None) -> str:
        return "n" if status is None else _BAR_CLASS[status]

    def day(self, day: date) -> str:
        return f"{day.month}月{day.day}日" if self.language == "ja" else day.strftime("%d %b %Y")

    def day_status(self, status: ComponentStatus | None) -> str:
        return self.no_data if status is None else self.status(status)

    def days_ago(self, days: int) -> str:
        return f"{days}日前" if self.language == "ja" else f"{days} days ago"

    def uptime_text(self, component: ComponentView) -> str:
        if component.uptime_percent is None:
            return self.no_data
        return (f"稼働率 {component.uptime_percent}%" if self.language == "ja"
                else f"{component.uptime_percent}% uptime")

    def uptime_label(self, component: ComponentView) -> str:
        name = component.name.get(self.language)
        return (f"{name} 過去90日間の状態 ({self.uptime_text(component)})" if self.language == "ja"
                else f"{name}, the past 90 days ({self.uptime_text(component)})")


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("haltguard.status", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _css() -> str:
    text = resources.files("haltguard.status").joinpath("templates/status.css").read_text("utf-8")
    return text.replace("\n", "")


def _visible_members(snapshot: Snapshot) -> dict[str, list[ComponentView]]:
    members: dict[str, list[ComponentView]] = {}
    for component in snapshot.components:
        if component.is_group:
            members[component.key] = [
                snapshot.component(key) for key in component.children
                if not (snapshot.component(key).only_show_if_degraded
                        and snapshot.component(key).status == ComponentStatus.OPERATIONAL)
            ]
    return members


def index_page(snapshot: Snapshot, language: Language) -> str:
    """``index.html`` (Japanese) or ``en/index.html`` (English)."""
    words = Words(language, snapshot)
    groups = [component for component in snapshot.components if component.is_group]
    return _environment().get_template("index.html").render(
        t=words, snapshot=snapshot, page=snapshot.page, css=_css(), root="",
        switch_href="en/" if language == "ja" else "../",
        groups=groups, members=_visible_members(snapshot),
    )


def incident_page(snapshot: Snapshot, event: EventView, language: Language) -> str:
    """``incidents/<id>.html`` under each language's root."""
    words = Words(language, snapshot)
    switch = f"../en/incidents/{event.id}.html" if language == "ja" \
        else f"../../incidents/{event.id}.html"
    return _environment().get_template("incident.html").render(
        t=words, snapshot=snapshot, page=snapshot.page, css=_css(), root="../",
        switch_href=switch, event=event,
    )
