"""The status page as plain functions over a session, in one place for callers outside the
status domain (the views, the CLI, the drills, the publisher).

The functions live in one module per sub-area, each building only on those before it:

- :mod:`~haltguard.status.components`: components and their statuses, overrides, the
  revision counter every change customers can see bumps;
- :mod:`~haltguard.status.notices`: the notice of a published update, the one hand-off to
  the notify domain;
- :mod:`~haltguard.status.maintenance`: scheduling, announcing and moving maintenance along;
- :mod:`~haltguard.status.updates`: drafts, publishing, and public updates recorded straight
  on an incident (:func:`absorb_public_updates`);
- :mod:`~haltguard.status.cadence`: when each incident's next public update is due;
- :mod:`~haltguard.status.page`: the snapshot the page is drawn from.

Time is always passed in (``now``), never read. What customers were told about an incident
is recorded once, on the incident's timeline (``incidents.service.post_public_update``).
Code inside the status domain that needs one sub-area imports its module directly.
"""

from __future__ import annotations

from haltguard.incidents.service import audit_actor
from haltguard.status.cadence import cadence, last_told_at
from haltguard.status.components import (
    REVISION_ROW_ID,
    SYSTEM_ACTOR,
    clear_override,
    component_keys_for_markets,
    components_query,
    ensure_components,
    get_component,
    incident_component_keys,
    mark_changed,
    refresh_statuses,
    revision,
    set_override,
)
from haltguard.status.maintenance import (
    MAINTENANCE_DURATION_MAX,
    advance_maintenances,
    draft_maintenance_update,
    get_maintenance,
    maintenances_query,
    schedule_maintenance,
)
from haltguard.status.page import HISTORY_WINDOW, PUBLIC_INCIDENTS_MAX, build_snapshot
from haltguard.status.statuspage import API_EVENTS_MAX
from haltguard.status.updates import (
    ABSORB_BATCH_MAX,
    absorb_public_updates,
    discard_draft,
    draft_incident_update,
    edit_draft,
    enqueue_notice_for,
    get_update,
    last_published_at,
    publish,
    updates_query,
)

__all__ = [
    "ABSORB_BATCH_MAX",
    "API_EVENTS_MAX",
    "HISTORY_WINDOW",
    "MAINTENANCE_DURATION_MAX",
    "PUBLIC_INCIDENTS_MAX",
    "REVISION_ROW_ID",
    "SYSTEM_ACTOR",
    "absorb_public_updates",
    "advance_maintenances",
    "audit_actor",
    "build_snapshot",
    "cadence",
    "clear_override",
    "component_keys_for_markets",
    "components_query",
    "discard_draft",
    "draft_incident_update",
    "draft_maintenance_update",
    "edit_draft",
    "enqueue_notice_for",
    "ensure_components",
    "get_component",
    "get_maintenance",
    "get_update",
    "incident_component_keys",
    "last_published_at",
    "last_told_at",
    "maintenances_query",
    "mark_changed",
    "publish",
    "refresh_statuses",
    "revision",
    "schedule_maintenance",
    "set_override",
    "updates_query",
]
