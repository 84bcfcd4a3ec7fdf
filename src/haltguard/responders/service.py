"""The responders domain as the rest of haltguard sees it: import from here only.

Paging (for the incidents domain)::

    page(session, *, incident_id, summary, category, severity, clock,
         actor="system:incidents", settings=None) -> Page
    page_person(session, *, person, incident_id, summary, category, severity, reason, clock,
                actor="system:incidents", ack_timeout_s=None, settings=None) -> Page
        # one named person first (e.g. the incident commander), then the routed policy
    acknowledge(session, *, page_id, actor, via, clock, note="") -> Page   # via: api|cli|link
    acknowledge_with_token(session, *, page_id, token, clock, settings=None) -> Page
    cancel_page(session, *, page_id, actor, reason, clock) -> Page
    cancel_pages_for_incident(session, *, incident_id, actor, reason, clock) -> list[Page]
    escalation_tick(session, now, *, settings=None) -> TickReport
    run_escalation_loop(stop_event, session_factory, clock, interval_s, *, settings=None)
    start_escalation_thread(session_factory, clock, interval_s=5.0, *, settings=None)

Timeline hook: ``on_page_event(listener)`` registers ``listener(session, event: PageEvent)``,
called for every page event (paged, escalated, level_empty, acknowledged, exhausted,
cancelled, delivery_failed) inside the transaction that caused it, including escalations
made by the background loop. ``list_page_events(session, incident_id=...)`` reads the same
events back from the ``page_events`` table.
"""

from __future__ import annotations

from haltguard.common.clock import Clock, ManualClock, SystemClock
from haltguard.responders.directory import (
    add_override,
    apply_config,
    check_paging,
    choose_plan,
    contact_tree,
    delete_person,
    delete_policy,
    delete_schedule,
    get_person,
    get_policy,
    get_schedule,
    list_people,
    list_policies,
    list_routes,
    list_schedules,
    on_call,
    parse_config_yaml,
    person_out,
    policy_out,
    put_person,
    put_policy,
    put_schedule,
    remove_override,
    replace_contact_tree,
    schedule_out,
    schedule_spec,
    set_category_contacts,
    set_routes,
    upcoming_shifts,
)
from haltguard.responders.errors import (
    AckRefusedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RespondersError,
)
from haltguard.responders.events import PageEvent, PageEventKind
from haltguard.responders.models import Page, PageEventOut, PageOut, PageStatus
from haltguard.responders.paging import (
    DIRECT_PLAN_NAME,
    TickReport,
    ack_secret,
    ack_url,
    acknowledge,
    acknowledge_with_token,
    cancel_page,
    cancel_pages_for_incident,
    escalation_tick,
    event_out,
    get_page,
    list_page_events,
    list_pages,
    on_page_event,
    page,
    page_out,
    page_person,
    run_escalation_loop,
    start_escalation_thread,
)
from haltguard.responders.settings import ResponderSettings, SmtpSettings

__all__ = [
    "DIRECT_PLAN_NAME",
    "AckRefusedError",
    "Clock",
    "ConflictError",
    "InvalidInputError",
    "ManualClock",
    "NotFoundError",
    "Page",
    "PageEvent",
    "PageEventKind",
    "PageEventOut",
    "PageOut",
    "PageStatus",
    "ResponderSettings",
    "RespondersError",
    "SmtpSettings",
    "SystemClock",
    "TickReport",
    "ack_secret",
    "ack_url",
    "acknowledge",
    "acknowledge_with_token",
    "add_override",
    "apply_config",
    "cancel_page",
    "cancel_pages_for_incident",
    "check_paging",
    "choose_plan",
    "contact_tree",
    "delete_person",
    "delete_policy",
    "delete_schedule",
    "escalation_tick",
    "event_out",
    "get_page",
    "get_person",
    "get_policy",
    "get_schedule",
    "list_page_events",
    "list_pages",
    "list_people",
    "list_policies",
    "list_routes",
    "list_schedules",
    "on_call",
    "on_page_event",
    "page",
    "page_out",
    "page_person",
    "parse_config_yaml",
    "person_out",
    "policy_out",
    "put_person",
    "put_policy",
    "put_schedule",
    "remove_override",
    "replace_contact_tree",
    "run_escalation_loop",
    "schedule_out",
    "schedule_spec",
    "set_category_contacts",
    "set_routes",
    "start_escalation_thread",
    "upcoming_shifts",
]
