"""Shared set-ups for responders integration tests: people, a rotation, a two-level policy."""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import ManualClock
from haltguard.db.session import session_scope
from haltguard.responders import service
from haltguard.responders.models import LevelIn, PolicyIn, RouteIn, ScheduleIn

from .conftest import HttpReceiver, add_person

ACTOR = "system:test-setup"
ACK_LINK = re.compile(r"https://haltguard\.example\.test(/api/pages/(\d+)/ack\?token=[^\s]+)")


def two_level_policy(
    session_factory: sessionmaker[Session], clock: ManualClock, http: HttpReceiver, *,
    repeat_count: int = 0, schedule_start: date = date(2026, 3, 2),
) -> None:
    """tanaka (email + webhook) and suzuki rotate weekly on infra-primary; level 1 pages the
    rotation (5 min), level 2 pages kobayashi (10 min); every category routes there."""
    add_person(session_factory, clock, "tanaka", emails=("tanaka@example.com",),
               webhooks=(http.url("/hooks/tanaka"),))
    add_person(session_factory, clock, "suzuki", emails=("suzuki@example.com",), language="en")
    add_person(session_factory, clock, "kobayashi", emails=("kobayashi@example.com",))
    with session_scope(session_factory) as session:
        service.put_schedule(session, ScheduleIn(
            name="infra-primary", start_date=schedule_start, members=["tanaka", "suzuki"],
        ), actor=ACTOR, clock=clock)
        service.put_policy(session, PolicyIn(name="infra", repeat_count=repeat_count, levels=[
            LevelIn(ack_timeout_s=300, targets=["schedule:infra-primary"]),
            LevelIn(ack_timeout_s=600, targets=["person:kobayashi"]),
        ]), actor=ACTOR, clock=clock)
        service.set_routes(session, [RouteIn(policy="infra")], actor=ACTOR, clock=clock)


def send_page(
    session_factory: sessionmaker[Session], clock: ManualClock,
    settings: service.ResponderSettings, *, incident_id: str = "INC-1",
    category: str = "server_down", severity: str = "SEV1",
) -> int:
    with session_scope(session_factory) as session:
        sent = service.page(session, incident_id=incident_id,
                            summary="BTC/JPY の約定が停止 / matching stalled",
                            category=category, severity=severity, clock=clock,
                            settings=settings)
        return sent.id


def tick(
    session_factory: sessionmaker[Session], clock: ManualClock,
    settings: service.ResponderSettings,
) -> service.TickReport:
    with session_scope(session_factory) as session:
        return service.escalation_tick(session, clock.now(), settings=settings)


def page_state(session_factory: sessionmaker[Session], page_id: int) -> service.PageOut:
    with session_scope(session_factory) as session:
        return service.page_out(service.get_page(session, page_id))
