"""The page as plain, comparable data: everything the HTML, the JSON API and the feeds show.

The service builds a :class:`Snapshot` from the database; the renderers are pure functions
of it. Two snapshots compare equal exactly when every rendered file would be the same, so
the publisher renders once per change and serves the same bytes until the next one. The
snapshot holds no "now": its ``updated_at`` is the time of the latest change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from haltguard.status.rules import ComponentStatus, Impact, Indicator
from haltguard.status.texts import Bilingual, Language


@dataclass(frozen=True)
class PageInfo:
    id: str
    name: Bilingual
    url: str  # the public address of the Japanese page, ending in "/"
    time_zone: str = "Asia/Tokyo"

    def url_for(self, language: Language) -> str:
        return self.url if language == "ja" else f"{self.url}en/"


@dataclass(frozen=True)
class ComponentView:
    key: str
    name: Bilingual
    description: Bilingual
    status: ComponentStatus
    group_key: str | None
    children: tuple[str, ...]  # keys of the members, for a group
    position: int
    showcase: bool
    only_show_if_degraded: bool
    created_at: datetime
    updated_at: datetime
    days: tuple[tuple[date, ComponentStatus | None], ...]
    uptime_percent: str | None  # "99.98", or None before any data

    @property
    def is_group(self) -> bool:
        return bool(self.children)


@dataclass(frozen=True)
class AffectedView:
    key: str
    old_status: ComponentStatus
    new_status: ComponentStatus


@dataclass(frozen=True)
class UpdateView:
    id: str
    status: str
    body: Bilingual
    published_at: datetime
    affected: tuple[AffectedView, ...]


@dataclass(frozen=True)
class EventView:
    """An incident or a maintenance as customers see it; updates newest first."""

    id: str
    kind: str  # "incident" or "maintenance"
    name: Bilingual
    status: str
    impact: Impact
    created_at: datetime
    updated_at: datetime
    started_at: datetime
    monitoring_at: datetime | None
    resolved_at: datetime | None
    components: tuple[str, ...]
    updates: tuple[UpdateView, ...]
    scheduled_for: datetime | None = None
    scheduled_until: datetime | None = None

    @property
    def resolved(self) -> bool:
        return self.resolved_at is not None


@dataclass(frozen=True)
class Snapshot:
    page: PageInfo
    updated_at: datetime
    indicator: Indicator
    components: tuple[ComponentView, ...]  # display order: groups, each followed by members
    incidents: tuple[EventView, ...]  # newest first
    maintenances: tuple[EventView, ...]  # soonest first

    def component(self, key: str) -> ComponentView:
        for component in self.components:
            if component.key == key:
                return component
        raise KeyError(key)

    @property
    def unresolved_incidents(self) -> tuple[EventView, ...]:
        return tuple(incident for incident in self.incidents if not incident.resolved)

    @property
    def resolved_incidents(self) -> tuple[EventView, ...]:
        return tuple(incident for incident in self.incidents if incident.resolved)

    @property
    def active_maintenances(self) -> tuple[EventView, ...]:
        return tuple(m for m in self.maintenances if m.status in {"in_progress", "verifying"})

    @property
    def upcoming_maintenances(self) -> tuple[EventView, ...]:
        return tuple(m for m in self.maintenances if m.status == "scheduled")
