"""The status service: components from the venue's markets, statuses with their history,
overrides in the audit chain, publishing as the one record of what customers were told, and
notices queued for subscribers. The tests that write history, audit entries, timeline entries
and notices run on SQLite and PostgreSQL; the rest on SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from status_support import SQLITE_ONLY, START

from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import (
    HoldKind,
    IncidentCreate,
    PublicUpdateCreate,
    TimelineKind,
)
from haltguard.incidents.rules import Category, IncidentStatus, Severity
from haltguard.notify import service as notify
from haltguard.responders.service import ManualClock
from haltguard.security import audit
from haltguard.status import service
from haltguard.status.errors import StatusError
from haltguard.status.models import (
    ComponentHistory,
    DraftEdit,
    IncidentDraftRequest,
    StatusComponent,
    UpdateState,
)
from haltguard.status.rules import ComponentStatus, UpdateStatus
from haltguard.status.settings import StatusSettings
from haltguard.venue.types import MarketState

MARKETS = {"BTC-JPY": MarketState.OPEN, "ETH-JPY": MarketState.OPEN}
SETTINGS = StatusSettings(url="https://status.example.test/")


def _open(session: Session, clock: ManualClock, **fields: object) -> int:
    data = IncidentCreate.model_validate({"title": "Order database unreachable",
                                          "category": Category.DATABASE,
                                          "severity": Severity.SEV3, **fields})
    incident = incident_flows.open_incident(session, data, actor="alice", clock=clock)
    session.commit()
    return incident.id


def _status(session: Session, key: str) -> ComponentStatus:
    return service.get_component(session, key).status


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def ready(session: Session, clock: ManualClock) -> Session:
    service.ensure_components(session, MARKETS, now=clock.now())
    service.refresh_statuses(session, now=clock.now(), market_states=MARKETS)
    session.commit()
    return session


@SQLITE_ONLY
def test_components_cover_each_market_each_assets_funds_and_the_services(
    ready: Session,
) -> None:
    keys = [row.key for row in ready.scalars(service.components_query())]
    assert keys == [
        "group:markets", "group:funds", "group:services",
        "market:BTC-JPY", "market:ETH-JPY",
        "deposits:BTC", "withdrawals:BTC", "deposits:ETH", "withdrawals:ETH",
        "deposits:JPY", "withdrawals:JPY",
        "order-api", "website", "mobile-app",
    ]
    assert service.get_component(ready, "withdrawals:JPY").name_ja == "日本円 出金"
    assert service.get_component(ready, "market:BTC-JPY").group_key == "group:markets"


@SQLITE_ONLY
def test_a_market_listed_later_gets_its_components_in_display_order(
    ready: Session, clock: ManualClock
) -> None:
    created = service.ensure_components(ready, {**MARKETS, "XRP-JPY": MarketState.OPEN},
                                        now=clock.now())
    assert created == ["market:XRP-JPY", "deposits:XRP", "withdrawals:XRP"]
    keys = [row.key for row in ready.scalars(service.components_query())]
    assert keys.index("market:XRP-JPY") == keys.index("market:ETH-JPY") + 1


def test_a_halted_market_is_a_major_outage_recorded_in_the_history_with_its_reason(
    ready: Session, clock: ManualClock
) -> None:
    clock.advance(timedelta(minutes=3))
    changed = service.refresh_statuses(ready, now=clock.now(),
                                       market_states={**MARKETS, "BTC-JPY": MarketState.HALTED})
    assert changed == ["market:BTC-JPY", "group:markets"]
    btc = service.get_component(ready, "market:BTC-JPY")
    history = list(ready.scalars(select(ComponentHistory).where(
        ComponentHistory.component_id == btc.id).order_by(ComponentHistory.id)))
    assert [(row.status, row.started_at) for row in history] == [
        (ComponentStatus.OPERATIONAL, START),
        (ComponentStatus.MAJOR_OUTAGE, START + timedelta(minutes=3)),
    ]
    assert "market BTC-JPY is halted (halted -> major_outage)" in history[-1].reason
    assert _status(ready, "group:markets") == ComponentStatus.MAJOR_OUTAGE


@SQLITE_ONLY
def test_an_open_incident_degrades_the_components_it_names_until_resolved(
    ready: Session, clock: ManualClock
) -> None:
    incident_id = _open(ready, clock, severity=Severity.SEV2,
                        affected_components=["order-api", "withdrawals"])
    service.refresh_statuses(ready, now=clock.now(), market_states=MARKETS)
    assert _status(ready, "order-api") == ComponentStatus.PARTIAL_OUTAGE
    assert _status(ready, "withdrawals:ETH") == ComponentStatus.PARTIAL_OUTAGE
    assert _status(ready, "deposits:ETH") == ComponentStatus.OPERATIONAL
    incident = incidents.get(ready, incident_id)
    incidents.transition(ready, incident, IncidentStatus.RESOLVED, actor="alice",
                         now=clock.now(), market_states=MARKETS)
    service.refresh_statuses(ready, now=clock.now(), market_states=MARKETS)
    assert _status(ready, "order-api") == ComponentStatus.OPERATIONAL


@SQLITE_ONLY
def test_frozen_withdrawals_show_as_a_major_outage_of_that_asset(
    ready: Session, clock: ManualClock
) -> None:
    incident_id = _open(ready, clock)
    incidents.add_hold(ready, incidents.get(ready, incident_id), HoldKind.WITHDRAWALS, "BTC",
                       actor="alice", now=clock.now())
    service.refresh_statuses(ready, now=clock.now(), market_states=MARKETS)
    btc = service.get_component(ready, "withdrawals:BTC")
    assert btc.status == ComponentStatus.MAJOR_OUTAGE
    assert f"withdrawals of BTC frozen by INC-{incident_id}" in btc.reason


@SQLITE_ONLY
def test_without_the_venue_markets_keep_their_last_known_status(
    ready: Session, clock: ManualClock
) -> None:
    service.refresh_statuses(ready, now=clock.now(),
                             market_states={**MARKETS, "BTC-JPY": MarketState.HALTED})
    service.refresh_statuses(ready, now=clock.now(), market_states=None)
    assert _status(ready, "market:BTC-JPY") == ComponentStatus.MAJOR_OUTAGE
    assert "venue not reachable" in service.get_component(ready, "market:BTC-JPY").reason


def test_an_override_is_shown_audited_and_survives_refreshes_until_cleared(
    ready: Session, clock: ManualClock
) -> None:
    service.set_override(ready, "website", ComponentStatus.DEGRADED_PERFORMANCE,
                         "slow logins reported by customers", actor="carol", now=clock.now())
    service.refresh_statuses(ready, now=clock.now(), market_states=MARKETS)
    website = service.get_component(ready, "website")
    assert (website.status, website.automatic_status, website.override_by) == (
        ComponentStatus.DEGRADED_PERFORMANCE, ComponentStatus.OPERATIONAL, "carol")
    service.clear_override(ready, "website", "fixed", actor="carol", now=clock.now())
    assert _status(ready, "website") == ComponentStatus.OPERATIONAL
    ready.commit()
    entries, _total = audit.list_entries(ready, offset=0, limit=50)
    overrides = [(entry.actor, entry.action, entry.target) for entry in entries
                 if entry.action.startswith("status.")]
    assert ("operator:carol", "status.override", "component:website") in overrides
    assert ("operator:carol", "status.override_clear", "component:website") in overrides
    assert audit.verify(ready).ok


@SQLITE_ONLY
def test_clearing_an_override_that_is_not_there_says_what_the_component_shows(
    ready: Session, clock: ManualClock
) -> None:
    with pytest.raises(StatusError, match="website has no override; it shows operational"):
        service.clear_override(ready, "website", "oops", actor="carol", now=clock.now())


def test_publishing_records_the_update_on_the_incident_timeline_and_queues_one_notice(
    ready: Session, clock: ManualClock
) -> None:
    incident_id = _open(ready, clock, affected_markets=["BTC-JPY"])
    draft = service.draft_incident_update(
        ready, incident_id, IncidentDraftRequest(status=UpdateStatus.INVESTIGATING),
        actor="sam", now=clock.now(), settings=SETTINGS)
    service.edit_draft(ready, draft.id, DraftEdit(body_en="We are looking into it."),
                       actor="sam", now=clock.now())
    published = service.publish(ready, draft.id, actor="alice", now=clock.now(),
                                settings=SETTINGS)
    ready.commit()
    entries = [e for e in incidents.timeline(ready, incident_id)
               if e.kind == TimelineKind.PUBLIC_UPDATE]
    assert len(entries) == 1 and entries[0].id == published.timeline_entry_id
    assert entries[0].details["message_en"] == "We are looking into it."
    assert entries[0].details["message_ja"].startswith("現在、障害が発生しており")
    notices, total = notify.list_notices(ready)
    assert total == 1
    assert notices[0].key == f"status-update-{published.id}"
    assert notices[0].affected_component_ids == ["market:BTC-JPY"]
    assert notices[0].subject_ja == "[調査中] BTC/JPY 取引の障害について"
    with pytest.raises(StatusError, match="only a draft can be edited, published"):
        service.publish(ready, draft.id, actor="alice", now=clock.now(), settings=SETTINGS)


def test_a_public_update_recorded_on_the_incident_appears_on_the_page_once(
    ready: Session, clock: ManualClock
) -> None:
    incident_id = _open(ready, clock, affected_markets=["ETH-JPY"])
    incidents.post_public_update(
        ready, incidents.get(ready, incident_id),
        PublicUpdateCreate(message_ja="調査しております。", message_en="We are investigating."),
        actor="alice", now=clock.now())
    assert service.absorb_public_updates(ready, now=clock.now(), settings=SETTINGS) == 1
    assert service.absorb_public_updates(ready, now=clock.now(), settings=SETTINGS) == 0
    snapshot = service.build_snapshot(ready, now=clock.now(), settings=SETTINGS)
    (event,) = snapshot.incidents
    assert event.id == f"INC-{incident_id}"
    assert event.status == "investigating"
    assert event.updates[0].body.en == "We are investigating."
    assert event.name.en == "Service disruption: ETH/JPY trading"


@SQLITE_ONLY
def test_a_postmortem_needs_a_resolved_update_first(ready: Session, clock: ManualClock) -> None:
    incident_id = _open(ready, clock)
    draft = service.draft_incident_update(
        ready, incident_id, IncidentDraftRequest(status=UpdateStatus.POSTMORTEM),
        actor="alice", now=clock.now(), settings=SETTINGS)
    with pytest.raises(StatusError, match="publish a resolved update"):
        service.publish(ready, draft.id, actor="alice", now=clock.now(), settings=SETTINGS)
    assert service.get_update(ready, draft.id).state == UpdateState.DRAFT


@SQLITE_ONLY
def test_a_draft_naming_an_unknown_component_lists_the_known_ones(
    ready: Session, clock: ManualClock
) -> None:
    incident_id = _open(ready, clock)
    request = IncidentDraftRequest(status=UpdateStatus.IDENTIFIED, components=["market:DOGE"])
    with pytest.raises(StatusError, match="no component market:DOGE; the components are: "
                       "group:markets"):
        service.draft_incident_update(ready, incident_id, request, actor="alice",
                                      now=clock.now(), settings=SETTINGS)


@SQLITE_ONLY
def test_each_change_customers_can_see_bumps_the_revision(
    ready: Session, clock: ManualClock
) -> None:
    before = service.revision(ready)
    service.refresh_statuses(ready, now=clock.now(), market_states=MARKETS)
    assert service.revision(ready) == before  # nothing changed
    service.refresh_statuses(ready, now=clock.now(),
                             market_states={**MARKETS, "ETH-JPY": MarketState.POST_ONLY})
    assert service.revision(ready) == before + 1
    assert ready.scalar(select(StatusComponent.status).where(
        StatusComponent.key == "market:ETH-JPY")) == ComponentStatus.DEGRADED_PERFORMANCE
