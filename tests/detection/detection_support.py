"""Shared by the detection tests: rules from text, signals, and a replayed venue day."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from textwrap import dedent
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.detection.actions import ActionExecutor
from haltguard.detection.feed import protect_in_process
from haltguard.detection.models import DecisionRecord
from haltguard.detection.policies import RuleSet
from haltguard.detection.rulesfile import DEFAULT_RULES_PATH, load_rules_text
from haltguard.detection.service import DetectionService
from haltguard.detection.signals import Signal
from haltguard.detection.views import router
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.incidents import service as incidents_service
from haltguard.incidents.models import Incident, TimelineEntry
from haltguard.responders.service import ManualClock
from haltguard.security import audit
from haltguard.security.testing import fast_test_settings
from haltguard.venue.commands import Command
from haltguard.venue.engine import Venue
from haltguard.venue.events import Event
from haltguard.venue.markets import BreakerConfig
from haltguard.venue.types import MarketState
from haltguard.venue.workload import WORKLOAD_MARKET, order_flow, setup_commands
from haltguard.web.settings import Settings

NS = 1_000_000_000
EXAMPLE_RULES = DEFAULT_RULES_PATH
DAY_START_NS = 1_767_225_600 * NS  # 2026-01-01 00:00 UTC
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def rules(text: str, source: str = "test-rules.yaml") -> RuleSet:
    """A rule set from YAML written indented inside a test."""
    return load_rules_text(dedent(text), source)


def signal(
    name: str, value: int | str, ts_s: float, *, resolved: bool = False, **labels: str
) -> Signal:
    return Signal(source="test", name=name, value=Decimal(value), ts_ns=int(ts_s * NS),
                  labels=labels, resolved=resolved)


def replay_day(
    commands: int, *, seed: int = 11, hours: int = 8, breaker: BreakerConfig | None = None,
) -> Iterator[tuple[Venue, int, int, list[Event]]]:
    """A normal trading day: the standard workload through a real :class:`Venue`, with
    arrival times drawn from a seeded Poisson process spread over ``hours``. Yields the
    venue, seq, ts and events of every command."""
    venue = Venue()
    rng = random.Random(seed)
    mean_gap_ns = hours * 3600 * NS // commands
    ts = DAY_START_NS
    setup: list[Command] = setup_commands(breaker=breaker)
    seq = 0
    for command in setup:
        seq += 1
        yield venue, seq, ts, venue.apply(seq, ts, command)
    for command in order_flow(seed, commands, first_seq=seq + 1):
        seq += 1
        ts += 1 + int(rng.expovariate(1.0) * mean_gap_ns)
        yield venue, seq, ts, venue.apply(seq, ts, command)


@dataclass(frozen=True)
class Audited:
    actor: str
    action: str
    target: str
    details: dict[str, Any]


class Protected:
    """A real venue runtime (the workload market, open) with detection acting on it and on
    a real operations database."""

    def __init__(self, runtime: VenueRuntime, detection: DetectionService,
                 executor: ActionExecutor, session_factory: sessionmaker[Session],
                 clock: ManualClock) -> None:
        self.runtime = runtime
        self.detection = detection
        self.executor = executor
        self.session_factory = session_factory
        self.clock = clock

    def market_state(self, market: str = WORKLOAD_MARKET) -> MarketState:
        return self.runtime.read(lambda venue: venue.market_state(market).state)

    def incidents(self) -> list[Incident]:
        with self.session_factory() as session:
            return list(session.scalars(select(Incident).order_by(Incident.id)))

    def timeline(self, incident_id: int) -> list[TimelineEntry]:
        with self.session_factory() as session:
            return incidents_service.timeline(session, incident_id)

    def decisions(self) -> list[DecisionRecord]:
        with self.session_factory() as session:
            return list(session.scalars(select(DecisionRecord).order_by(DecisionRecord.id)))

    def audit(self, action_prefix: str) -> list[Audited]:
        with self.session_factory() as session:
            entries, _ = audit.list_entries(session, limit=200, newest_first=False)
            return [Audited(entry.actor, entry.action, entry.target,
                            json.loads(entry.details_json))
                    for entry in entries if entry.action.startswith(action_prefix)]


def protected_venue(
    tmp_path: Path, session_factory: sessionmaker[Session], rule_text: str,
    *, in_process: bool = False,
) -> Protected:
    """Start the venue (10 funded accounts) and a detection service with ``rule_text``:
    ``in_process`` wires the market detectors and the brake lane to the runtime, otherwise
    the executor works the venue through its control only."""
    runtime = VenueRuntime(tmp_path / "venue").start()
    for future in [runtime.submit(command) for command in setup_commands(accounts=10)]:
        future.result()
    clock = ManualClock(START)
    detection = DetectionService(rules=rules(rule_text))
    if in_process:
        protect_in_process(runtime, detection, session_factory=session_factory, clock=clock)
    else:
        detection.set_executor(ActionExecutor(session_factory=session_factory,
                                              venue=InProcessVenueControl(runtime), clock=clock))
    executor = detection.executor
    assert isinstance(executor, ActionExecutor)
    detection.start(tick_interval_s=0)
    return Protected(runtime, detection, executor, session_factory, clock)


def detection_routes() -> FastAPI:
    """The detection router alone, to enumerate its routes (requests go to the service app)."""
    routes = FastAPI()
    routes.include_router(router)
    return routes


def detection_app(
    session_factory: sessionmaker[Session], detection: DetectionService, clock: ManualClock
) -> FastAPI:
    """The operations app as the composition root builds it on the database of
    ``session_factory``, its detection routes answering from ``detection``."""
    engine = session_factory.kw["bind"]
    assert isinstance(engine, Engine)
    return create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                      clock=clock, security_settings=fast_test_settings(),
                      detection_service=detection, escalation_interval_s=None)
