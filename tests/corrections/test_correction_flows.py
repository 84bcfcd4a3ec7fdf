"""Corrections through the operations API on a real venue: a flash crash reviewed, busted with
four eyes, customers told; bad input refused with nothing stored or journaled; a rollback
proposed, approved and applied; a stale plan refused by the venue and recorded."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from corrections_support import LOT, MARKET, NORMAL_PRICE, TEST_POLICY, Story, flash_crash
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.corrections.models import CorrectionRequest
from haltguard.corrections.settings import CorrectionsSettings
from haltguard.db.session import session_scope
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import IncidentCreate
from haltguard.incidents.rules import Category, Severity
from haltguard.reports import regulatory
from haltguard.responders.service import ManualClock
from haltguard.security.permissions import Role
from haltguard.security.testing import ProvisionedOperator, fast_test_settings, provision_operator
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.types import Side, TimeInForce
from haltguard.web.settings import Settings

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""The flash-crash walk-through runs on both databases; the rest on SQLite (time)."""
OPERATORS = {"carol": Role.INCIDENT_COMMANDER, "dave": Role.INCIDENT_COMMANDER,
             "rita": Role.RESPONDER}


@dataclass
class World:
    client: TestClient
    operators: dict[str, ProvisionedOperator]
    runtime: VenueRuntime
    story: Story
    incident_id: int
    session_factory: sessionmaker[Session]

    def post(self, who: str, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(path, json=body, headers=self.operators[who].headers)

    def window(self, **more: Any) -> dict[str, Any]:
        return {"from_time": self.story.crash_from.isoformat(),
                "to_time": self.story.crash_to.isoformat(), **more}

    def total(self, account: int, asset: str) -> int:
        available, held = self.runtime.read(lambda v: v.balances(account)).get(asset, (0, 0))
        return available + held

    def requests_stored(self) -> int:
        with session_scope(self.session_factory) as session:
            return int(session.scalar(select(func.count()).select_from(CorrectionRequest)) or 0)


@pytest.fixture
def world(engine: Engine, session_factory: sessionmaker[Session], tmp_path: Path
          ) -> Iterator[World]:
    runtime = VenueRuntime(tmp_path / "venue").start()
    story = flash_crash(runtime)
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY, encoding="utf-8")
    now = datetime.now(UTC)
    clock = ManualClock(now)
    with session_scope(session_factory) as session:
        incident = incident_flows.open_incident(
            session, IncidentCreate(title="Flash crash on BTC-JPY", category=Category.SOFTWARE_BUG,
                                    severity=Severity.SEV1, affected_markets=[MARKET]),
            actor="carol", clock=clock)
        incident_id = incident.id
    app = create_app(
        Settings(database_url=str(engine.url), data_dir=tmp_path / "venue",
                 migrate_on_start=False),
        venue_control=InProcessVenueControl(runtime), clock=clock, engine=engine,
        security_settings=fast_test_settings(), escalation_interval_s=None,
        corrections_settings=CorrectionsSettings(journal_dir=tmp_path / "venue",
                                                 policy_file=policy),
    )
    operators = {name: provision_operator(session_factory, role, username=name, now=now)
                 for name, role in OPERATORS.items()}
    try:
        with TestClient(app, base_url="https://testserver") as client:
            yield World(client, operators, runtime, story, incident_id, session_factory)
    finally:
        runtime.stop()


def test_a_flash_crash_is_busted_by_two_operators_and_the_customers_are_told(
    world: World,
) -> None:
    buyer_jpy = world.total(4, "JPY")
    review = world.post("carol", "/api/corrections/review", world.window()).json()
    assert [f["trade_id"] for f in review["findings"]] == world.story.crash_trade_ids

    dry = world.post("carol", "/api/corrections/busts",
                     world.window(incident_id=world.incident_id, reason="flash crash",
                                  dry_run=True)).json()
    assert dry["id"] is None and world.requests_stored() == 0
    proposed = world.post("carol", "/api/corrections/busts",
                          world.window(incident_id=world.incident_id, reason="flash crash")
                          ).json()
    assert proposed["digest"] == dry["digest"]  # the dry run showed exactly this
    assert proposed["status"] == "proposed" and proposed["accounts"] == [3, 4, 5]
    path = f"/api/corrections/requests/{proposed['id']}/approve"

    own = world.post("carol", path, {"digest": proposed["digest"]})
    assert own.status_code == 403 and own.json()["error"]["code"] == "four_eyes_required"
    approved = world.post("dave", path, {"digest": proposed["digest"]}).json()

    assert approved["status"] == "applied" and approved["approved_by"] == "operator:dave"
    assert world.total(4, "JPY") > buyer_jpy  # the buyer has its yen back
    notices = world.client.get(f"/api/corrections/requests/{proposed['id']}/notices",
                               headers=world.operators["dave"].headers).json()["items"]
    assert [n["account"] for n in notices] == [3, 4, 5]
    trade = world.story.crash_trade_ids[0]
    assert f"trade {trade}" in notices[1]["body_en"]
    assert f"約定番号 {trade}" in notices[1]["body_ja"]
    assert "flash crash" in notices[1]["body_en"]
    with session_scope(world.session_factory) as session:
        messages = [e.message for e in incidents.timeline(session, world.incident_id)]
        report = regulatory.render_markdown(
            regulatory.build(session, incidents.get(session, world.incident_id)))
    assert any("2 trade(s) busted" in m for m in messages)
    ids = ", ".join(map(str, world.story.crash_trade_ids))
    assert f"誤った価格の約定(約定番号 {ids})を取消し(理由: flash crash)" in report
    assert "顧客へ公表: BTC-JPY で誤った価格で成立した約定 2 件を取り消しました。" in report
    assert world.runtime.read(lambda v: v.check_invariants()) == []


@SQLITE_ONLY
def test_busting_a_busted_trade_again_is_refused_and_nothing_is_stored(world: World) -> None:
    body = world.window(incident_id=world.incident_id, reason="flash crash")
    proposed = world.post("carol", "/api/corrections/busts", body).json()
    world.post("dave", f"/api/corrections/requests/{proposed['id']}/approve",
               {"digest": proposed["digest"]})
    last_seq = world.runtime.read(lambda v: v.last_seq)

    again = world.post("carol", "/api/corrections/busts",
                       {**body, "trade_ids": world.story.crash_trade_ids[:1]})

    assert again.status_code == 409 and again.json()["error"]["code"] == "already_busted"
    assert world.requests_stored() == 1
    assert world.runtime.read(lambda v: v.last_seq) == last_seq  # nothing journaled


@SQLITE_ONLY
def test_bad_input_is_refused_with_a_clear_error_and_nothing_stored(world: World) -> None:
    body = world.window(incident_id=world.incident_id, reason="re-price", price="15000000",
                        trade_id=world.story.crash_trade_ids[0])
    last_seq = world.runtime.read(lambda v: v.last_seq)

    off_grid = world.post("carol", "/api/corrections/adjustments", body | {"price": "1.5"})
    unknown = world.post("carol", "/api/corrections/adjustments", body | {"trade_id": 99})
    not_allowed = world.post("rita", "/api/corrections/busts", body)
    too_late = world.post("carol", "/api/corrections/rollbacks", {
        "incident_id": world.incident_id, "reason": "r", "target_seq": last_seq})

    assert (off_grid.status_code, off_grid.json()["error"]["code"]) == (422, "price_off_grid")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_trade")
    assert "not erroneous trades" in unknown.json()["error"]["message"]
    assert not_allowed.status_code == 403
    assert too_late.json()["error"]["code"] == "rollback_target_invalid"
    assert world.requests_stored() == 0
    assert world.runtime.read(lambda v: v.last_seq) == last_seq  # nothing journaled


@SQLITE_ONLY
def test_an_adjustment_re_prices_the_trade_once_approved(world: World) -> None:
    seller_jpy = world.total(3, "JPY")
    proposed = world.post("carol", "/api/corrections/adjustments", world.window(
        incident_id=world.incident_id, reason="re-price to the last good price",
        price="15000000", trade_id=world.story.crash_trade_ids[0])).json()

    approved = world.post("dave", f"/api/corrections/requests/{proposed['id']}/approve",
                          {"digest": proposed["digest"]}).json()

    assert approved["status"] == "applied"
    assert world.total(3, "JPY") - seller_jpy == 135_000 * 10_000  # 0.01 BTC x 13.5M JPY more


@SQLITE_ONLY
def test_a_rollback_is_planned_proposed_approved_and_applied(world: World) -> None:
    body = {"incident_id": world.incident_id, "reason": "roll back the crash",
            "target_seq": world.story.before_crash_seq}
    plan = world.post("carol", "/api/corrections/rollbacks", {**body, "dry_run": True}).json()
    assert plan["plan"]["trades_to_bust"] == 3 and plan["plan"]["orders_to_cancel"] == 1
    proposed = world.post("carol", "/api/corrections/rollbacks", body).json()

    approved = world.post("dave", f"/api/corrections/requests/{proposed['id']}/approve",
                          {"digest": proposed["digest"]}).json()

    assert approved["status"] == "applied", approved["detail"]
    assert world.runtime.read(lambda v: v.resting_orders(MARKET)) == []
    assert world.runtime.read(lambda v: v.check_invariants()) == []


@SQLITE_ONLY
def test_a_rollback_planned_before_more_trading_is_refused_by_the_venue_and_recorded(
    world: World,
) -> None:
    proposed = world.post("carol", "/api/corrections/rollbacks", {
        "incident_id": world.incident_id, "reason": "roll back the crash",
        "target_seq": world.story.before_crash_seq}).json()
    world.runtime.submit_and_wait(PlaceOrder(MARKET, 1, Side.SELL, LOT, NORMAL_PRICE))
    world.runtime.submit_and_wait(PlaceOrder(MARKET, 2, Side.BUY, LOT, NORMAL_PRICE,
                                             tif=TimeInForce.IOC))

    decided = world.post("dave", f"/api/corrections/requests/{proposed['id']}/approve",
                         {"digest": proposed["digest"]}).json()

    assert decided["status"] == "refused" and "stale_plan" in decided["detail"]


@SQLITE_ONLY
def test_a_second_operator_rejects_a_correction_and_nothing_reaches_the_venue(
        world: World) -> None:
    proposed = world.post("carol", "/api/corrections/busts",
                          world.window(incident_id=world.incident_id, reason="flash crash")
                          ).json()
    path = f"/api/corrections/requests/{proposed['id']}/reject"
    last_seq = world.runtime.read(lambda v: v.last_seq)

    own = world.post("carol", path, {"digest": proposed["digest"], "reason": "mine"})
    rejected = world.post("dave", path, {"digest": proposed["digest"],
                                         "reason": "the trades stand under the policy"})

    assert own.status_code == 403 and own.json()["error"]["code"] == "four_eyes_required"
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    assert world.runtime.read(lambda v: v.last_seq) == last_seq  # nothing journaled
    late = world.post("dave", f"/api/corrections/requests/{proposed['id']}/approve",
                      {"digest": proposed["digest"]})
    assert late.status_code == 409  # a rejected correction cannot be approved after all
