"""The other screens: status page admin, on-call, audit (with its verify button), detection
rules; each behind the permission the API's route for the same data demands."""

from __future__ import annotations

from console_support import SQLITE_ONLY, desk
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from haltguard.responders import service as responders
from haltguard.responders.service import ManualClock
from haltguard.security.testing import ProvisionedOperator
from haltguard.status import service as status
from haltguard.status.rules import ComponentStatus

pytestmark = SQLITE_ONLY

ONCALL_YAML = """\
people:
  - handle: tanaka
    display_name: 田中 一郎
    contacts: [{kind: email, address: tanaka@example.test}]
schedules:
  - name: primary
    timezone: Asia/Tokyo
    start_date: 2025-01-01
    handoff: "09:00"
    rotation_days: 7
    members: [tanaka]
"""


def test_a_commander_opens_every_screen_and_an_admin_verifies_the_audit_chain(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
) -> None:
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    for path, expected in (("/console/status-admin", "ステータスページ"),
                           ("/console/oncall", "オンコール"), ("/console/rules", "検知ルール"),
                           ("/console/audit", "operator.login_succeeded")):
        page = carol.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert expected in page.text, path
    found = carol.get("/console/audit?actor=operator:carol&action=operator.login_succeeded")
    assert found.text.count("<td>operator.login_succeeded</td>") == 1
    assert "<td>operator.created</td>" not in found.text
    assert "/console/audit/verify" not in carol.get("/console/audit").text  # admins verify
    assert carol.post("/console/audit/verify", {}, token_from="/console/audit").status_code == 403
    ada = desk(app, operators["ada"], clock)
    assert ada.login().status_code == 303
    verified = ada.post("/console/audit/verify", {}, token_from="/console/audit")
    assert verified.status_code == 200
    assert 'data-chain-ok="true"' in verified.text


def test_a_viewer_has_no_audit_screen_in_the_menu_and_cannot_open_it(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
) -> None:
    vic = desk(app, operators["vic"], clock)
    assert vic.login().status_code == 303
    overview = vic.get("/console/overview")
    assert 'href="/console/audit"' not in overview.text
    assert 'href="/console/incidents"' in overview.text
    refused = vic.get("/console/audit")
    assert refused.status_code == 403 and "audit.read" in refused.text
    assert vic.post("/console/audit/verify", {}).status_code == 403


def test_the_on_call_screen_names_who_holds_each_schedule_now(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        responders.apply_config(session, responders.parse_config_yaml(ONCALL_YAML),
                                actor="system:test-setup", clock=clock)
    vic = desk(app, operators["vic"], clock)
    assert vic.login().status_code == 303
    page = vic.get("/console/oncall")
    assert page.status_code == 200
    assert "primary" in page.text and "<strong>tanaka</strong>" in page.text
    assert "<strong>tanaka</strong>" in vic.get("/console/overview").text


def test_a_commander_overrides_a_component_and_support_may_not(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        status.ensure_components(session, ["BTC-JPY"], now=clock.now())
    key = "market:BTC-JPY"
    sam = desk(app, operators["sam"], clock)
    assert sam.login().status_code == 303
    page = sam.get("/console/status-admin")
    assert key in page.text and "/override" not in page.text
    refused = sam.post(f"/console/status-admin/components/{key}/override",
                       {"status": "major_outage", "reason": "x"},
                       token_from="/console/status-admin")
    assert refused.status_code == 403
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    done = carol.post(f"/console/status-admin/components/{key}/override",
                      {"status": "major_outage", "reason": "orders failing"},
                      token_from="/console/status-admin")
    assert done.status_code == 303, done.text
    with session_factory() as session:
        component = status.get_component(session, key)
        assert component.override_status == ComponentStatus.MAJOR_OUTAGE
        assert component.override_by == "carol"
    wrong = carol.post(f"/console/status-admin/components/{key}/override",
                       {"status": "on_fire", "reason": "x"}, token_from="/console/status-admin")
    assert wrong.status_code == 422 and "major_outage" in wrong.text


def test_support_reads_compensation_runs_and_a_viewer_may_not(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
) -> None:
    sam = desk(app, operators["sam"], clock)
    assert sam.login().status_code == 303
    assert sam.get("/console/compensation").status_code == 200
    missing = sam.get("/console/compensation/99")
    assert missing.status_code == 404
    refused = sam.post("/console/compensation/99/approve", {"digest": "x"},
                       token_from="/console/compensation")
    assert refused.status_code == 403  # approving is a commander's, whoever proposed
    vic = desk(app, operators["vic"], clock)
    assert vic.login().status_code == 303
    assert vic.get("/console/compensation").status_code == 403
