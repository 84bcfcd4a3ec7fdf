"""The screens of the domains beside the console (backups, trade corrections, continuity,
failover): each renders for a role the API lets read the same data and is refused to one it
does not; the corrections' approval keeps four eyes and busts the trade in the venue."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from console_support import SQLITE_ONLY, desk
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.backup import service as backups
from haltguard.backup.models import BackupRecord, BackupStatus
from haltguard.console.failover_screen import FailoverBoard, ReplicaSetReader
from haltguard.console.texts import JST
from haltguard.corrections import flows as corrections
from haltguard.corrections.models import BustBody
from haltguard.corrections.settings import CorrectionsSettings
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.incidents import flows as incident_flows
from haltguard.incidents.models import IncidentCreate
from haltguard.incidents.rules import Category, Severity
from haltguard.replication.lease import LeaseKeeper
from haltguard.replication.link import StreamLink
from haltguard.replication.models import FollowerProgress, Replication, ReplicationSettings
from haltguard.replication.processes import NODE_HOST, NodeProcess, PrimaryWatch
from haltguard.replication.server import NatsServer
from haltguard.replication.views import StandbyHttp
from haltguard.responders.service import ManualClock
from haltguard.security import audit
from haltguard.security.models import AuditEntry
from haltguard.security.testing import ProvisionedOperator
from haltguard.venue.commands import AddAsset, AddMarket, Deposit, PlaceOrder
from haltguard.venue.events import Trade
from haltguard.venue.markets import Asset, make_market
from haltguard.venue.types import MarketState, Side, TimeInForce
from haltguard.web.context import context_of

pytestmark = SQLITE_ONLY

BTC, JPY = Asset("BTC", 8), Asset("JPY", 4)
MARKET = "BTC-JPY"
SPEC = make_market(MARKET, BTC, JPY, tick_size="1", lot_size="0.0001", min_qty="0.0001",
                   max_qty="100", maker_fee_bps=0, taker_fee_bps=10)
LOT = SPEC.to_lots("0.01")


@dataclass(frozen=True)
class Crash:
    """Two trades far below the market, between steady ones, and the window around them."""

    trade_ids: list[int]
    from_time: datetime
    to_time: datetime


def _cross(runtime: VenueRuntime, seller: int, buyer: int, price: str) -> tuple[list[int], int]:
    runtime.submit_and_wait(PlaceOrder(MARKET, seller, Side.SELL, LOT, SPEC.to_ticks(price)))
    done = runtime.submit_and_wait(PlaceOrder(MARKET, buyer, Side.BUY, LOT, SPEC.to_ticks(price),
                                              tif=TimeInForce.IOC))
    return [e.trade_id for e in done.events if isinstance(e, Trade)], done.ts


def _flash_crash(runtime: VenueRuntime) -> Crash:
    for command in (AddAsset(BTC), AddAsset(JPY), AddMarket(SPEC, MarketState.OPEN)):
        runtime.submit_and_wait(command)
    for account in range(1, 6):
        runtime.submit_and_wait(Deposit(account, "JPY", JPY.to_minor("100000000")))
        runtime.submit_and_wait(Deposit(account, "BTC", BTC.to_minor("10")))
    for _ in range(5):
        _cross(runtime, 1, 2, "15000000")
    first = runtime.read(lambda venue: venue.last_ts) + 1
    crashed, _ = _cross(runtime, 3, 4, "1500000")
    more, last = _cross(runtime, 5, 4, "2000000")
    _cross(runtime, 1, 2, "15000000")
    return Crash(crashed + more, _at(first + 999), _at(last + 1_000))


def _at(ts_ns: int) -> datetime:
    """A journal time as a datetime, rounded down to the microsecond."""
    return datetime.fromtimestamp(ts_ns // 1_000 / 1_000_000, UTC)


@pytest.fixture
def crash(venue_dir: Path) -> Iterator[tuple[InProcessVenueControl, Crash]]:
    runtime = VenueRuntime(venue_dir).start()
    story = _flash_crash(runtime)
    yield InProcessVenueControl(runtime), story
    runtime.stop()


@pytest.fixture
def venue(crash: tuple[InProcessVenueControl, Crash]) -> InProcessVenueControl:
    """This module's venue: the flash crash instead of the demo markets."""
    return crash[0]


def test_the_backups_screen_shows_the_last_good_backups_age_and_failures_and_support_may_not(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    session_factory: sessionmaker[Session],
) -> None:
    finished = clock.now() - timedelta(hours=2, minutes=5) + timedelta(seconds=31)  # login
    with session_factory.begin() as session:
        session.add(BackupRecord(
            backup_id="bk-20250106-0025", target="file:///backups", status=BackupStatus.OK.value,
            started_at=finished - timedelta(seconds=30), finished_at=finished, venue_seq=1234,
            files=3, stored_bytes=4096, source_bytes=8192, duration_s=30.0))
        backups.record_backup_failure(session, "s3://offsite", "bucket <refused>",
                                      started_at=finished, finished_at=finished)
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    page = carol.get("/console/backups")
    assert page.status_code == 200, page.text[:500]
    assert f'data-backup-age="{2 * 3600 + 5 * 60}"' in page.text
    assert "2時間5分前" in page.text and 'data-backup="bk-20250106-0025"' in page.text
    assert 'data-backup-status="failed"' in page.text
    assert "bucket &lt;refused&gt;" in page.text  # escaped
    assert 'href="/console/backups"' in page.text
    sam = desk(app, operators["sam"], clock)
    assert sam.login().status_code == 303
    assert 'href="/console/backups"' not in sam.get("/console/overview").text
    refused = sam.get("/console/backups")
    assert refused.status_code == 403 and "continuity.read" in refused.text


def _propose_bust(session_factory: sessionmaker[Session], *, app_settings: CorrectionsSettings,
                  crash: Crash, trade_id: int, incident_id: int, now: datetime) -> int:
    with session_factory.begin() as session:
        proposed = corrections.propose_bust(
            session, BustBody(from_time=crash.from_time, to_time=crash.to_time,
                              incident_id=incident_id, reason="flash crash",
                              trade_ids=[trade_id]),
            settings=app_settings, actor="operator:carol", role="incident_commander", now=now)
    assert proposed.id is not None
    return proposed.id


def test_a_correction_is_refused_to_its_proposer_rejected_or_approved_by_a_second_operator(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    session_factory: sessionmaker[Session], crash: tuple[InProcessVenueControl, Crash],
) -> None:
    venue, story = crash
    settings = context_of(app).part(CorrectionsSettings)  # the shipped policy
    with session_factory.begin() as session:
        incident_id = incident_flows.open_incident(
            session, IncidentCreate(title="Flash crash on BTC-JPY",
                                    category=Category.SOFTWARE_BUG, severity=Severity.SEV2,
                                    affected_markets=[MARKET]),
            actor="operator:carol", clock=clock).id
    first, second = story.trade_ids
    approved_id, rejected_id = (
        _propose_bust(session_factory, app_settings=settings, crash=story, trade_id=trade_id,
                      incident_id=incident_id, now=clock.now())
        for trade_id in (first, second))
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    page = carol.get("/console/corrections")
    assert page.status_code == 200, page.text[:500]
    assert f'data-correction-pending="{approved_id}"' in page.text
    assert f'data-correction-own="{approved_id}"' in page.text  # no approve button for her
    assert f"/console/corrections/{approved_id}/approve" not in page.text
    with session_factory() as session:
        digests = {r.id: r.digest for r in corrections.service.list_requests(
            session, incident_id=None, offset=0, limit=10)[0]}
    own = carol.post(f"/console/corrections/{approved_id}/approve",
                     {"digest": digests[approved_id]}, token_from="/console/corrections")
    assert own.status_code == 403 and "four_eyes_required" in own.text

    sam = desk(app, operators["sam"], clock)
    assert sam.login().status_code == 303
    assert sam.get("/console/corrections").status_code == 403
    assert sam.post(f"/console/corrections/{approved_id}/approve",
                    {"digest": digests[approved_id]}).status_code == 403

    dave = desk(app, operators["dave"], clock)
    assert dave.login().status_code == 303
    shown = dave.get("/console/corrections").text
    assert f"/console/corrections/{approved_id}/approve" in shown
    no_reason = dave.post(f"/console/corrections/{rejected_id}/reject",
                          {"digest": digests[rejected_id], "reason": " "},
                          token_from="/console/corrections")
    assert no_reason.status_code == 422, no_reason.text[:300]
    no_token = dave.post(f"/console/corrections/{approved_id}/approve",
                         {"digest": digests[approved_id]}, with_token=False)
    assert no_token.status_code == 403
    assert not venue.runtime.read(lambda v: v.corrections.is_busted(first))
    rejected = dave.post(f"/console/corrections/{rejected_id}/reject",
                         {"digest": digests[rejected_id], "reason": "the <price> stands"},
                         token_from="/console/corrections")
    assert rejected.status_code == 303, rejected.text[:500]
    approved = dave.post(f"/console/corrections/{approved_id}/approve",
                         {"digest": digests[approved_id]}, token_from="/console/corrections")
    assert approved.status_code == 303, approved.text[:500]

    assert venue.runtime.read(lambda v: v.corrections.is_busted(first))
    assert not venue.runtime.read(lambda v: v.corrections.is_busted(second))
    after = dave.get("/console/corrections").text
    assert f'data-correction="{approved_id}" data-correction-status="applied"' in after
    assert f'data-correction="{rejected_id}" data-correction-status="rejected"' in after
    assert "the &lt;price&gt; stands" in after
    with session_factory() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.index)))
        assert audit.verify(session).ok
    decided = [(e.actor, e.action) for e in entries if e.action.startswith("corrections.")]
    assert ("operator:dave", "corrections.reject") in decided
    assert ("operator:dave", "corrections.approve") in decided
    assert ("operator:dave", "corrections.apply") in decided
    assert not any(actor == "operator:carol" and action in {
        "corrections.approve", "corrections.reject"} for actor, action in decided)


def test_the_continuity_screen_shows_the_plans_check_and_the_heat_map_and_support_may_not(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
) -> None:
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    page = carol.get("/console/continuity")
    assert page.status_code == 200, page.text[:500]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'data-bcp-passed="false"' in page.text  # no drill, no backup: the plan fails
    assert 'data-bcp-service="' in page.text and "不合格" in page.text
    assert page.text.count("<svg") == 2  # inherent and residual, inline
    assert 'data-findings-open="critical:0"' in page.text
    carol.get("/console/language/en")
    english = carol.get("/console/continuity").text
    assert "Risk heat map" in english and "FAIL" in english and "リスクヒートマップ" not in english
    sam = desk(app, operators["sam"], clock)
    assert sam.login().status_code == 303
    assert 'href="/console/continuity"' not in sam.get("/console/overview").text
    assert sam.get("/console/continuity").status_code == 403


def test_the_failover_screen_says_replication_is_off_and_how_to_turn_it_on(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
) -> None:
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    page = carol.get("/console/failover")
    assert page.status_code == 200, page.text[:500]
    assert 'data-replication="off"' in page.text
    assert "HALTGUARD_CONTINUITY_REPLICATION=jetstream" in page.text
    sam = desk(app, operators["sam"], clock)
    assert sam.login().status_code == 303
    assert sam.get("/console/failover").status_code == 403


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((NODE_HOST, 0))
        return int(probe.getsockname()[1])


def test_the_failover_screen_shows_the_lease_holder_and_a_standbys_lag_from_the_replica_set(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    tmp_path: Path,
) -> None:
    settings = ReplicationSettings(replication=Replication.JETSTREAM, stream="CONSOLE",
                                   lease_ttl_ms=60_000)
    server = NatsServer(tmp_path / "nats").start()
    holder = StreamLink(settings, server.url, name="node-a")
    progress = FollowerProgress(applied_seq=1_200, stream_seq=40, stream_last_seq=43,
                                lag_commands=3, lag_ms=4.5)
    standby_port = _free_port()
    standby = StandbyHttp(NODE_HOST, standby_port, lambda: progress,
                          lambda: {"node": "b", "progress": dataclasses.asdict(progress)})
    try:
        lease = LeaseKeeper(holder.connect(), "a").try_take()
        assert lease is not None
        standby.start()
        nodes = [NodeProcess("a", tmp_path / "a", _free_port(), server.url, settings),
                 NodeProcess("b", tmp_path / "b", standby_port, server.url, settings)]
        watch = PrimaryWatch(nodes)  # polled by hand: node a's process is not running here
        watch.poll_once()
        context_of(app).part(FailoverBoard).follow(
            ReplicaSetReader(watch, settings, server.url))
        carol = desk(app, operators["carol"], clock)
        assert carol.login().status_code == 303
        page = carol.get("/console/failover")
    finally:
        standby.stop()
        holder.close()
        server.stop()
    assert page.status_code == 200, page.text[:500]
    assert 'data-replication="on"' in page.text
    assert 'data-lease-holder="a"' in page.text
    expires = datetime.fromtimestamp(lease.renewed_ns / 1e9 + 60, UTC)
    assert f"{expires.astimezone(JST):%H:%M:%S} JST" in page.text
    assert 'data-standby="b" data-standby-lag="3"' in page.text and "4.5" in page.text
    assert 'data-primary=""' in page.text  # nothing answers 200 on node a's port
