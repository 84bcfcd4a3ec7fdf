"""The JSON documents of the Atlassian Statuspage public API v2, field for field, from a
snapshot, so tools that read Statuspage pages read ours.

One set per language: the Japanese one under ``api/v2/`` (the page's own language) and the
English one under ``en/api/v2/``. Times are in the page's time zone (JST) with milliseconds,
as Statuspage writes them. Ids are our own stable names: component keys (``market:BTC-JPY``),
incident refs (``INC-3``), maintenance refs (``MNT-1``) and update ids (``U-7``).

Checked field for field (names, order, nesting, null-or-value) against the documents real
Statuspage pages serve, as read by public clients of the API: the Go types of
github.com/Gowee/github-status-bot (``pkg/api/types.go``, written from githubstatus.com's
``summary.json``, ``incidents.json``, ``components.json``, ``status.json`` and
``scheduled-maintenances.json``), the Python reader github.com/DevilXD/aRez
(``arez/statuspage.py``: needs ``group``/``group_id`` on components, at least one
``incident_updates`` entry per event, ``scheduled_for``/``scheduled_until`` on maintenances,
times with milliseconds and a ``+hh:mm`` offset), and Atlassian's own API page
(https://confluence.status.atlassian.com/api). Fields were already as Statuspage names them;
the overall ``critical`` description differed and is now Statuspage's "Major System Outage".
Fields only the authenticated management API has (``postmortem_*``, ``scheduled_remind_*``,
``impact_override``) are deliberately left out, as on real public pages.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from haltguard.status.rules import INDICATOR_DESCRIPTION
from haltguard.status.snapshot import ComponentView, EventView, Snapshot, UpdateView
from haltguard.status.texts import JST, Language

API_EVENTS_MAX = 50

# The documents, by path under api/v2/.
DOCUMENTS = (
    "summary.json",
    "status.json",
    "components.json",
    "incidents.json",
    "incidents/unresolved.json",
    "scheduled-maintenances.json",
    "scheduled-maintenances/upcoming.json",
    "scheduled-maintenances/active.json",
)


def stamp(moment: datetime | None) -> str | None:
    """``2025-01-06T09:30:00.000+09:00``: the page's zone, milliseconds, as Statuspage."""
    if moment is None:
        return None
    return moment.astimezone(JST).isoformat(timespec="milliseconds")


def _page(snapshot: Snapshot, language: Language) -> dict[str, Any]:
    return {
        "id": snapshot.page.id,
        "name": snapshot.page.name.get(language),
        "url": snapshot.page.url_for(language),
        "time_zone": snapshot.page.time_zone,
        "updated_at": stamp(snapshot.updated_at),
    }


def _component(snapshot: Snapshot, component: ComponentView, language: Language
               ) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": component.key,
        "name": component.name.get(language),
        "status": component.status.value,
        "created_at": stamp(component.created_at),
        "updated_at": stamp(component.updated_at),
        "position": component.position,
        "description": component.description.get(language) or None,
        "showcase": component.showcase,
        "start_date": component.created_at.astimezone(JST).date().isoformat(),
        "group_id": component.group_key,
        "page_id": snapshot.page.id,
        "group": component.is_group,
        "only_show_if_degraded": component.only_show_if_degraded,
    }
    if component.is_group:
        document["components"] = list(component.children)
    return document


def _update(snapshot: Snapshot, event: EventView, update: UpdateView, language: Language
            ) -> dict[str, Any]:
    return {
        "id": update.id,
        "status": update.status,
        "body": update.body.get(language),
        "incident_id": event.id,
        "created_at": stamp(update.published_at),
        "updated_at": stamp(update.published_at),
        "display_at": stamp(update.published_at),
        "affected_components": [
            {"code": item.key, "name": _name(snapshot, item.key, language),
             "old_status": item.old_status.value, "new_status": item.new_status.value}
            for item in update.affected
        ],
        "deliver_notifications": True,
        "custom_tweet": None,
        "tweet_id": None,
    }


def _name(snapshot: Snapshot, key: str, language: Language) -> str:
    try:
        return snapshot.component(key).name.get(language)
    except KeyError:
        return key


def _event(snapshot: Snapshot, event: EventView, language: Language) -> dict[str, Any]:
    link = f"{snapshot.page.url_for(language)}"
    link += f"incidents/{event.id}.html" if event.kind == "incident" else f"#{event.id}"
    document: dict[str, Any] = {
        "id": event.id,
        "name": event.name.get(language),
        "status": event.status,
        "created_at": stamp(event.created_at),
        "updated_at": stamp(event.updated_at),
        "monitoring_at": stamp(event.monitoring_at),
        "resolved_at": stamp(event.resolved_at),
        "impact": event.impact.value,
        "shortlink": link,
        "started_at": stamp(event.started_at),
        "page_id": snapshot.page.id,
        "incident_updates": [_update(snapshot, event, update, language)
                             for update in event.updates],
        "components": [_component(snapshot, snapshot.component(key), language)
                       for key in event.components if _known(snapshot, key)],
    }
    if event.kind == "maintenance":
        document["scheduled_for"] = stamp(event.scheduled_for)
        document["scheduled_until"] = stamp(event.scheduled_until)
    return document


def _known(snapshot: Snapshot, key: str) -> bool:
    return any(component.key == key for component in snapshot.components)


def _status(snapshot: Snapshot, language: Language) -> dict[str, str]:
    ja, en = INDICATOR_DESCRIPTION[snapshot.indicator]
    return {"indicator": snapshot.indicator.value, "description": ja if language == "ja" else en}


def documents(snapshot: Snapshot, language: Language) -> dict[str, dict[str, Any]]:
    """Every API document by its path under ``api/v2/``."""
    page = _page(snapshot, language)
    components = [_component(snapshot, c, language) for c in snapshot.components]
    incidents = [_event(snapshot, e, language) for e in snapshot.incidents[:API_EVENTS_MAX]]
    unresolved = [_event(snapshot, e, language) for e in snapshot.unresolved_incidents]
    newest_first = sorted(snapshot.maintenances,
                          key=lambda m: (m.scheduled_for or m.created_at, m.id), reverse=True)
    maintenances = [_event(snapshot, m, language) for m in newest_first[:API_EVENTS_MAX]]
    upcoming = [_event(snapshot, m, language) for m in snapshot.upcoming_maintenances]
    active = [_event(snapshot, m, language) for m in snapshot.active_maintenances]
    status = _status(snapshot, language)
    return {
        "summary.json": {"page": page, "components": components, "incidents": unresolved,
                         "scheduled_maintenances": active + upcoming, "status": status},
        "status.json": {"page": page, "status": status},
        "components.json": {"page": page, "components": components},
        "incidents.json": {"page": page, "incidents": incidents},
        "incidents/unresolved.json": {"page": page, "incidents": unresolved},
        "scheduled-maintenances.json": {"page": page, "scheduled_maintenances": maintenances},
        "scheduled-maintenances/upcoming.json": {"page": page,
                                                 "scheduled_maintenances": upcoming},
        "scheduled-maintenances/active.json": {"page": page, "scheduled_maintenances": active},
    }


def encode(document: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, keys in the order Statuspage writes them."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
