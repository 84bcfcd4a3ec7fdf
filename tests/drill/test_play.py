"""The operators a drill plays, on a served demo system: a SEV1 resume is played by two
different operators."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from haltguard.app.system import System
from haltguard.drill.observe import wait_trading
from haltguard.drill.play import DRILL_SECOND_ACTOR, play_resume
from haltguard.drill.scenario import DRILL_ACTOR
from haltguard.drill.surface import database
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import HaltRequest, IncidentCreate, TimelineKind
from haltguard.incidents.rules import Category, Severity


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, make_drill_system: Any
           ) -> Iterator[System]:
    lines: list[str] = []
    data_dir = tmp_path_factory.mktemp("play") / "data"
    with make_drill_system(data_dir, lines, venue_process=False) as system:
        yield system


def test_sev1_resume_is_played_by_two_different_operators(served: System) -> None:
    with database(served) as session:
        incident = incident_flows.open_incident(
            session, IncidentCreate(title="drill toolkit test", category=Category.SOFTWARE_BUG,
                                    severity=Severity.SEV1, affected_markets=["ETH-JPY"]),
            actor=DRILL_ACTOR, clock=served.clock)
        incident_flows.halt_markets(session, served.venue_control, incident,
                                    HaltRequest(markets=["ETH-JPY"], reason="test"),
                                    actor=DRILL_ACTOR, now=served.clock.now())
        incident_id = incident.id
    outcome = play_resume(served, incident_id, ["ETH-JPY"], reason="test resume")
    assert outcome.approvals == 1
    wait_trading(served, ["ETH-JPY"], 15)
    with database(served) as session:
        entries = incidents.timeline(session, incident_id)
    requested = [e for e in entries if e.kind == TimelineKind.APPROVAL_REQUESTED]
    decided = [e for e in entries if e.kind == TimelineKind.APPROVAL_DECIDED]
    assert [e.actor for e in requested] == [DRILL_ACTOR]
    assert [e.actor for e in decided] == [DRILL_SECOND_ACTOR]
    assert any(e.kind == TimelineKind.RESUME and e.details.get("ok") for e in entries)
