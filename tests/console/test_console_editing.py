"""The console's editing screens: on-call schedules and overrides, paging a named responder
from the incident page, and a maintenance announcement previewed (the public page and the
notice, nothing saved) and then published; each behind the API's permission."""

from __future__ import annotations

from console_support import SQLITE_ONLY, desk
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.notify.models import StoredNotice
from haltguard.responders import directory, paging
from haltguard.responders import service as responders
from haltguard.responders.service import ManualClock
from haltguard.security import audit
from haltguard.security.models import AuditEntry
from haltguard.security.testing import ProvisionedOperator
from haltguard.status import service as status
from haltguard.status.models import UpdateState

pytestmark = SQLITE_ONLY

ONCALL_YAML = """\
people:
  - handle: tanaka
    display_name: 田中 一郎
    contacts: [{kind: email, address: tanaka@example.test}]
  - handle: suzuki
    display_name: 鈴木 花子
    contacts: [{kind: email, address: suzuki@example.test}]
schedules:
  - name: primary
    timezone: Asia/Tokyo
    start_date: 2025-01-01
    handoff: "09:00"
    rotation_days: 7
    members: [tanaka]
"""


def _with_people(session_factory: sessionmaker[Session], clock: ManualClock) -> None:
    with session_factory.begin() as session:
        responders.apply_config(session, responders.parse_config_yaml(ONCALL_YAML),
                                actor="system:test-setup", clock=clock)


def test_an_admin_edits_a_schedule_and_an_override_and_a_commander_may_not(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    session_factory: sessionmaker[Session],
) -> None:
    _with_people(session_factory, clock)
    dave = desk(app, operators["dave"], clock)  # on-call set-up is an admin's (oncall.manage)
    assert dave.login().status_code == 303
    assert "/console/oncall/schedules" not in dave.get("/console/oncall").text
    refused = dave.post("/console/oncall/schedules", {
        "name": "night", "start_date": "2025-01-01", "members": "tanaka"},
        token_from="/console/oncall")
    assert refused.status_code == 403
    carol = desk(app, operators["ada"], clock)
    assert carol.login().status_code == 303
    created = carol.post("/console/oncall/schedules", {
        "name": "night", "description": "夜間", "timezone": "Asia/Tokyo",
        "start_date": "2025-01-01", "handoff": "21:00", "rotation_days": "1",
        "members": "suzuki, tanaka"}, token_from="/console/oncall")
    assert created.status_code == 303, created.text
    covered = carol.post("/console/oncall/schedules/primary/overrides", {
        "person": "suzuki", "start": "2025-01-06T09:00:00+09:00",
        "end": "2025-01-06T18:00:00+09:00", "reason": "tanaka at the dentist"},
        token_from="/console/oncall")
    assert covered.status_code == 303, covered.text
    page = carol.get("/console/oncall").text
    assert 'data-schedule="night"' in page and "suzuki, tanaka" in page
    assert "<strong>suzuki</strong> (" in page  # holds primary now, by the override
    assert "tanaka at the dentist" in page and "ada" in page
    naive = carol.post("/console/oncall/schedules/primary/overrides", {
        "person": "suzuki", "start": "2025-01-07T09:00:00", "end": "2025-01-07T18:00:00"},
        token_from="/console/oncall")
    assert naive.status_code == 422 and "タイムゾーン付き" in naive.text
    with session_factory() as session:
        schedule = directory.schedule_out(directory.get_schedule(session, "primary"))
        assert [override.person for override in schedule.overrides] == ["suzuki"]
        assert directory.on_call(session, "primary", clock.now()).person == "suzuki"
        override_id = schedule.overrides[0].id
    removed = carol.post(f"/console/oncall/schedules/primary/overrides/{override_id}/remove",
                         {}, token_from="/console/oncall")
    assert removed.status_code == 303, removed.text
    with session_factory() as session:
        assert directory.on_call(session, "primary", clock.now()).person == "tanaka"


def test_a_commander_pages_a_named_responder_from_the_incident_page_and_support_may_not(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    session_factory: sessionmaker[Session],
) -> None:
    _with_people(session_factory, clock)
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    opened = carol.post("/console/incidents", {
        "title": "Order database unreachable", "category": "database", "severity": "SEV2",
        "affected_markets": "BTC-JPY"}, token_from="/console/incidents")
    incident_path = opened.headers["location"].split("?")[0]
    page = carol.get(incident_path).text
    assert 'value="suzuki"' in page and "鈴木 花子" in page
    empty = carol.post(f"{incident_path}/page-person", {"person": "suzuki", "reason": ""},
                       token_from=incident_path)
    assert empty.status_code == 422
    paged = carol.post(f"{incident_path}/page-person", {
        "person": "suzuki", "reason": "the database expert"}, token_from=incident_path)
    assert paged.status_code == 303, paged.text
    sam = desk(app, operators["sam"], clock)
    assert sam.login().status_code == 303
    assert "page-person" not in sam.get(incident_path).text
    refused = sam.post(f"{incident_path}/page-person", {
        "person": "tanaka", "reason": "x"}, token_from=incident_path)
    assert refused.status_code == 403
    with session_factory() as session:
        found, _ = paging.list_pages(session, limit=10)
        named = [paging.page_out(page) for page in found if page.created_by == "operator:carol"]
        assert len(named) == 1, [paging.page_out(page) for page in found]
        assert named[0].summary == "Order database unreachable"
        assert named[0].severity == "SEV2" and named[0].policy == "direct"
        assert "suzuki" in str(named[0])


def test_a_maintenance_announcement_is_previewed_without_a_trace_and_then_published(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        status.ensure_components(session, ["BTC-JPY"], now=clock.now())
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    scheduled = carol.post("/console/status-admin/maintenances", {
        "scheduled_for": "2025-01-10T02:00:00+09:00",
        "scheduled_until": "2025-01-10T04:00:00+09:00", "components": "market:BTC-JPY",
        "name_ja": "定期メンテナンス", "name_en": "Planned maintenance"},
        token_from="/console/status-admin")
    assert scheduled.status_code == 303, scheduled.text
    with session_factory() as session:
        draft = session.scalars(status.updates_query(state=UpdateState.DRAFT)).one()
        draft_id = draft.id
        notices_before = session.scalar(select(func.count()).select_from(StoredNotice))
        audit_before = session.scalar(select(func.max(AuditEntry.index)))
    admin = carol.get("/console/status-admin").text
    assert f'data-draft="{draft_id}"' in admin and f"/console/previews/{draft_id}" in admin
    preview = carol.post(f"/console/previews/{draft_id}", {
        "body_ja": "1月10日 2時から4時まで、BTC-JPY の取引を停止します。",
        "body_en": "BTC-JPY trading stops from 02:00 to 04:00 JST on 10 January."},
        token_from="/console/status-admin")
    assert preview.status_code == 200, preview.text
    assert "定期メンテナンス" in preview.text and "Planned maintenance" in preview.text
    assert "BTC-JPY trading stops from 02:00" in preview.text  # the notice, as edited
    frame = preview.text.split('src="/console/previews/', 1)[1].split('"', 1)[0]
    token = frame.split("/")[0]
    assert "1月10日 2時から4時まで" in carol.get(f"/console/previews/{token}/ja").text
    english = carol.get(f"/console/previews/{token}/en")
    assert english.status_code == 200
    assert "BTC-JPY trading stops from 02:00" in english.text  # the public page, as edited
    assert "sandbox" in english.headers["content-security-policy"]
    assert carol.get("/console/previews/not-a-token/en").status_code == 422
    with session_factory() as session:  # nothing of the preview stayed
        kept = status.get_update(session, draft_id)
        assert kept.state == UpdateState.DRAFT and "trading stops" not in kept.body_en
        assert session.scalar(select(func.count()).select_from(StoredNotice)) == notices_before
        assert session.scalar(select(func.max(AuditEntry.index))) == audit_before
        assert audit.verify(session).ok
    assert "trading stops" not in carol.client.get("/status/en/").text
    published = carol.post(f"/console/updates/{draft_id}/publish", {
        "body_ja": "1月10日 2時から4時まで、BTC-JPY の取引を停止します。",
        "body_en": "BTC-JPY trading stops from 02:00 to 04:00 JST on 10 January."},
        token_from="/console/status-admin")
    assert published.status_code == 303, published.text
    with session_factory() as session:
        assert status.get_update(session, draft_id).state == UpdateState.PUBLISHED
        assert session.scalar(select(func.count()).select_from(StoredNotice)) == \
            (notices_before or 0) + 1
    assert "BTC-JPY trading stops from 02:00" in carol.client.get("/status/en/").text
