"""The unauthorized-access drill at a reduced scale: a credential-stuffing burst from a
loopback address of its own is detected from the audit chain and the address blocked from
the login route only (it keeps trading); withdrawals to a stranger's address from three
accounts freeze the asset; the unfreeze is the (drill-played) operator's decision."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from haltguard.drill.runner import run_scenario
from haltguard.drill.scenario import DRILL_ACTOR, DrillResult, Scale
from haltguard.drill.scenarios.unauthorized_access import ATTACKER_ADDRESS, SCENARIO
from haltguard.drill.surface import database
from haltguard.incidents import service as incidents
from haltguard.incidents.models import TimelineKind

REDUCED = Scale(orders=20, burst=12, timeout_s=15.0)


@dataclass(frozen=True)
class Outcome:
    result: DrillResult
    category: str
    withdrawal_entries: list[tuple[str, str]]  # (actor, message)
    frozen_now: bool
    attacker_login_answer: int


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory, make_drill_system: Any) -> Iterator[Outcome]:
    base = tmp_path_factory.mktemp("unauthorized-access")
    lines: list[str] = []
    with make_drill_system(base / "data", lines, venue_process=False) as system:
        result = run_scenario(system, SCENARIO, scale=REDUCED, progress=lines.append,
                              report_dir=None)
        assert result.incident_id is not None, result.failures()
        with database(system) as session:
            incident = incidents.get(session, result.incident_id)
            entries = [(e.actor, e.message) for e in incidents.timeline(session, incident.id)
                       if e.kind == TimelineKind.WITHDRAWALS]
            category = incident.category.value
        assets = httpx.get(f"{system.venue_api_url}/v1/assets").json()["assets"]
        frozen_now = any(asset["withdrawals_frozen"] for asset in assets)
        transport = httpx.HTTPTransport(local_address=ATTACKER_ADDRESS)
        with httpx.Client(transport=transport) as attacker:
            answer = attacker.post(f"{system.api_url}/api/auth/login", json={
                "username": "after-the-drill", "password": "Winter2026!",
                "totp_code": "000000"}).status_code
        yield Outcome(result, category, entries, frozen_now, answer)


def test_credential_stuffing_is_detected_and_its_address_blocked(drill: Outcome) -> None:
    checks = {check.name: check for check in drill.result.checks}
    assert checks["every stuffed login refused"].passed
    assert checks["stuffing address blocked at the login route"].seen == "login_throttled"
    assert checks["trading from that address untouched"].passed
    assert drill.result.measurements.extra["stuffing_incident"].startswith("INC-")


def test_withdrawals_to_a_stranger_freeze_the_asset_under_a_security_incident(
    drill: Outcome,
) -> None:
    assert drill.category == "unauthorized_access"
    freeze, unfreeze = drill.withdrawal_entries[0], drill.withdrawal_entries[-1]
    assert freeze[0] == "system:detection" and "withdrawals-to-new-destinations" in freeze[1]
    checks = {check.name: check for check in drill.result.checks}
    assert checks["withdrawal refused while frozen"].passed
    measured = drill.result.measurements
    assert measured.time_to_halt_s is not None and measured.time_to_halt_s <= 5.0
    assert DRILL_ACTOR in unfreeze[0]


def test_the_operator_unfreezes_and_lifts_the_block_and_the_drill_passes(drill: Outcome) -> None:
    assert not drill.frozen_now
    assert drill.attacker_login_answer == 401, "the login block was lifted"
    assert drill.result.measurements.ledger_invariant_ok
    assert drill.result.passed, drill.result.failures()
