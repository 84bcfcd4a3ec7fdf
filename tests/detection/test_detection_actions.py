"""Automatic actions on a real venue and a real database: one incident per episode, every
action explained in the timeline and the audit chain, dry-run does nothing, only tighter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from detection_support import Protected, protected_venue, signal
from sqlalchemy.orm import Session, sessionmaker

from haltguard.detection.decisions import ActionKind, Decision, PlannedAction
from haltguard.incidents.models import TimelineKind
from haltguard.security import audit
from haltguard.venue.types import MarketState
from haltguard.venue.workload import WORKLOAD_MARKET

RULES = """
    version: 1
    rules:
      - id: crash-halt
        signal: market.price_move_bps
        when: ">= 1000"
        clear_when: "< 300"
        clear_after_s: 30
        cooldown_s: 600
        classification: market_volatility
        severity: SEV2
        title: "{market} moved {value} bps"
        actions:
          - open_or_update_incident
          - halt_market: {market: "{market}"}
      - id: wobble-pause
        signal: market.wobble_bps
        when: ">= 100"
        classification: market_volatility
        severity: SEV4
        group_by: [market]
        actions:
          - open_or_update_incident
          - pause_market: {market: "{market}", auction_s: 60}
      - id: stuffing
        signal: security.failed_logins
        when: ">= 20"
        classification: unauthorized_access
        severity: SEV3
        group_by: [source]
        actions:
          - rate_limit_client: {client: "{source}", limit_per_s: 1, duration_s: 600}
"""
MOVE = "market.price_move_bps"


@pytest.fixture
def protected(tmp_path: Path, session_factory: sessionmaker[Session]) -> Iterator[Protected]:
    setup = protected_venue(tmp_path, session_factory, RULES)
    yield setup
    setup.detection.stop()
    setup.runtime.stop()


def _submit(protected: Protected, *signals: object) -> None:
    for item in signals:
        protected.detection.submit(item)  # type: ignore[arg-type]
    assert protected.detection.flush(30)


def test_automatic_halt_is_explained_in_the_timeline_and_the_audit_chain(
    protected: Protected,
) -> None:
    _submit(protected, signal(MOVE, 1500, 0, market=WORKLOAD_MARKET, direction="down"))
    assert protected.market_state() is MarketState.HALTED
    [incident] = protected.incidents()
    assert (incident.severity, incident.category) == ("SEV2", "market_volatility")
    assert incident.affected_markets == [WORKLOAD_MARKET]
    entries = protected.timeline(incident.id)
    halt = [entry for entry in entries if entry.kind is TimelineKind.MARKET_ACTION]
    assert len(halt) == 1
    assert "halt market SIM-JPY: SIM-JPY open -> halted" in halt[0].message
    fired = [entry for entry in entries if entry.message.startswith("rule crash-halt fired")]
    assert [entry.kind for entry in fired] == [TimelineKind.DETECTION]
    assert "rule crash-halt fired: market.price_move_bps = 1500 (condition >= 1000)" in (
        halt[0].message)
    for entry in (halt[0], *[e for e in entries if "rule crash-halt" in e.message]):
        assert entry.details["rule_id"] == "crash-halt"
        assert entry.details["observed"] == "1500"
        assert entry.details["condition"] == ">= 1000"
        assert entry.details["labels"] == {"market": WORKLOAD_MARKET, "direction": "down"}
    [audited] = protected.audit("detection.halt_market")
    assert audited.actor == "system:detection"
    assert audited.details["rule_id"] == "crash-halt"
    assert audited.details["observed"] == "1500"
    assert audited.details["condition"] == ">= 1000"
    with protected.session_factory() as session:
        assert audit.verify(session).ok
    [decision] = protected.decisions()
    assert decision.incident_id == incident.id and not decision.dry_run
    assert [o["kind"] for o in decision.outcomes] == ["open_or_update_incident", "halt_market"]
    assert all(o["ok"] for o in decision.outcomes)


def test_flapping_signal_opens_one_incident(protected: Protected) -> None:
    flaps = []
    for step in range(40):  # crosses the thresholds every 10 s; never clear for 30 s
        value = 1500 if step % 2 == 0 else 100
        flaps.append(signal(MOVE, value, step * 10, market=WORKLOAD_MARKET))
    _submit(protected, *flaps)
    # Clear for long enough, then the same trouble again within the cool-down.
    _submit(protected, signal(MOVE, 100, 500, market=WORKLOAD_MARKET))
    protected.detection.tick(531 * 10**9)
    _submit(protected, signal(MOVE, 1800, 600, market=WORKLOAD_MARKET))
    assert len(protected.incidents()) == 1
    kinds = [(d.rule_id, d.kind) for d in protected.decisions()]
    assert kinds == [("crash-halt", "fired"), ("crash-halt", "resolved"),
                     ("crash-halt", "fired")]
    assert protected.market_state() is MarketState.HALTED


def test_dry_run_records_what_would_happen_and_does_nothing(protected: Protected) -> None:
    protected.detection.set_dry_run(True)
    _submit(protected, signal(MOVE, 1500, 0, market=WORKLOAD_MARKET))
    assert protected.market_state() is MarketState.OPEN
    assert protected.incidents() == []
    assert protected.audit("detection.") == []
    [record] = protected.decisions()
    assert record.dry_run and record.incident_id is None
    assert [o["detail"] for o in record.outcomes] == [
        "dry-run: would open or update incident", "dry-run: would halt market SIM-JPY"]


def test_pause_never_reopens_a_market_a_person_halted(protected: Protected) -> None:
    protected.executor.venue.set_market_state(  # type: ignore[union-attr]
        WORKLOAD_MARKET, MarketState.HALTED, actor="operator:carol", reason="maintenance")
    _submit(protected, signal("market.wobble_bps", 150, 0, market=WORKLOAD_MARKET))
    assert protected.market_state() is MarketState.HALTED
    [record] = protected.decisions()
    pause = next(o for o in record.outcomes if o["kind"] == "pause_market")
    assert pause["detail"].startswith("left halted")


def test_client_action_goes_to_its_enforcer_and_is_audited_without_an_incident(
    protected: Protected,
) -> None:
    enforced: list[tuple[str, PlannedAction]] = []

    def enforce(decision: Decision, action: PlannedAction) -> None:
        enforced.append((decision.rule_id, action))

    protected.detection.add_enforcer(ActionKind.RATE_LIMIT_CLIENT, enforce)
    _submit(protected, signal("security.failed_logins", 25, 0, source="203.0.113.9"))
    assert enforced == [("stuffing", PlannedAction(
        ActionKind.RATE_LIMIT_CLIENT, "203.0.113.9", {"limit_per_s": "1", "duration_s": "600"}))]
    assert protected.incidents() == []
    [audited] = protected.audit("detection.rate_limit_client")
    assert audited.target == "203.0.113.9"
    assert audited.details["rule_id"] == "stuffing"
    assert audited.details["observed"] == "25"


def test_resolving_undoes_nothing(protected: Protected) -> None:
    _submit(protected, signal(MOVE, 1500, 0, market=WORKLOAD_MARKET),
            signal(MOVE, 10, 1, market=WORKLOAD_MARKET))
    protected.detection.tick(40 * 10**9)
    assert protected.detection.flush(30)
    assert protected.market_state() is MarketState.HALTED
    [incident] = protected.incidents()
    last = protected.timeline(incident.id)[-1]
    assert "rule crash-halt resolved" in last.message
    assert "nothing is undone automatically" in last.message
